"""Contrastive training of the tiny encoder (s3core.models.encoder_training) on a generated tiny world.

CPU only. One small world (the default entities, 500 questions) and two short trainings (~3 s each) are
shared by the module; the whole file runs in well under a minute.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pydantic  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from s3core.data.formats import split_wiki_contents  # noqa: E402
from s3core.data.tiny_world import TinyWorldConfig, generate_world, read_world_texts, write_world  # noqa: E402
from s3core.models import encoder_training as et  # noqa: E402
from s3core.models import tiny  # noqa: E402
from s3core.retrieval.encoder import DenseEncoder  # noqa: E402

# Short training for tests (the defaults take ~30 s); small causal LMs, which these tests never use.
TRAINING = {"steps": 60, "batch_size": 32, "max_length": 96}
MODELS_CFG = tiny.TinyModelsConfig(
    causal_lm={"hidden_size": 32, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64},
    encoder_training=TRAINING,
)


# -- the readable reference of the loss ----------------------------------------------------------------
def _reference_info_nce(q: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, temperature: float) -> float:
    """Row by row: -log softmax of the positive among the unmasked columns, both directions, averaged."""
    size = q.shape[0]
    sims = [[float(q[i] @ p[j]) / temperature for j in range(size)] for i in range(size)]

    def direction(score) -> float:
        total = 0.0
        for i in range(size):
            kept = [score(i, j) for j in range(size) if j == i or not mask[i, j]]
            total += -(score(i, i) - math.log(sum(math.exp(s) for s in kept)))
        return total / size

    return (direction(lambda i, j: sims[i][j]) + direction(lambda i, j: sims[j][i])) / 2


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_shared_positive_mask_marks_shared_queries_and_passages():
    mask = et.shared_positive_mask(["q1", "q1", "q2", "q3"], ["pa", "pb", "pc", "pa"])
    expected = torch.tensor([
        [False, True, False, True],  # pair 1 has the same query, pair 3 the same passage
        [True, False, False, False],
        [False, False, False, False],
        [True, False, False, False],
    ])
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("masked", [[], [(0, 1), (1, 0), (2, 4), (4, 2)]])
def test_info_nce_matches_the_reference(masked):
    q, p = _unit(5, 8, seed=0), _unit(5, 8, seed=1)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    for i, j in masked:
        mask[i, j] = True
    loss = et.info_nce_loss(q, p, mask, temperature=0.1)
    assert loss.item() == pytest.approx(_reference_info_nce(q, p, mask, 0.1), rel=1e-5)


def test_a_shared_passage_is_not_pushed_away():
    """Two questions about one passage, both embedded on it: once masked, the loss is ~0, not ~log 2."""
    basis = torch.eye(4)
    q = basis[[0, 0, 1]]  # [3, 4]: questions 0 and 1 point at the same passage
    p = basis[[0, 0, 1]]  # [3, 4]: pairs 0 and 1 hold the same passage
    mask = et.shared_positive_mask(["who?", "when?", "where?"], ["x", "x", "y"])
    masked = et.info_nce_loss(q, p, mask, temperature=0.05)
    unmasked = et.info_nce_loss(q, p, torch.zeros(3, 3, dtype=torch.bool), temperature=0.05)
    assert masked.item() < 1e-6
    assert unmasked.item() == pytest.approx(2 / 3 * math.log(2), rel=1e-4)


def test_warmup_then_decay():
    factors = [et.warmup_then_decay(step, total_steps=10, warmup_steps=2) for step in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))
    assert factors[-1] == pytest.approx(1 / 8)
    assert et.warmup_then_decay(0, total_steps=5, warmup_steps=0) == 1.0


def test_batches_are_seeded_whole_and_fill_the_steps():
    batches = list(et.batch_indices(n_pairs=10, batch_size=4, steps=7, seed=3))
    assert len(batches) == 7 and all(len(b) == 4 and len(set(b)) == 4 for b in batches)
    assert batches == list(et.batch_indices(n_pairs=10, batch_size=4, steps=7, seed=3))
    assert batches != list(et.batch_indices(n_pairs=10, batch_size=4, steps=7, seed=4))
    assert list(et.batch_indices(n_pairs=3, batch_size=8, steps=2, seed=0))[0] != []  # fewer pairs than a batch


# -- pairs ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    write_world(generate_world(TinyWorldConfig(n_questions=500)), folder)
    return folder


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_pairs_come_from_train_and_corpus_only(world_dir):
    opened: list[str] = []
    recording = [False]

    def hook(event, args):
        if recording[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    sys.addaudithook(hook)  # audit hooks cannot be removed; this one records only while `recording` is on
    recording[0] = True
    try:
        pairs = et.training_pairs(world_dir, include_titles=True)
    finally:
        recording[0] = False
    names = {Path(path).name for path in opened if Path(path).parent == world_dir}
    assert names == {"train.jsonl", "corpus.jsonl"}
    assert not [path for path in opened if Path(path).name in ("dev.jsonl", "test.jsonl")]

    train, corpus = _jsonl(world_dir / "train.jsonl"), _jsonl(world_dir / "corpus.jsonl")
    contents = {row["id"]: row["contents"] for row in corpus}
    first_hops = [(q["question"], contents[pid]) for q in train
                  for pid in q["metadata"]["supporting_ids"][: 1 if q["metadata"]["bridge"] else None]]
    titles = [(split_wiki_contents(row["contents"])[0], row["contents"]) for row in corpus]
    assert pairs == first_hops + titles
    assert et.training_pairs(world_dir, include_titles=False) == first_hops


def test_two_hop_questions_pair_with_their_bridge_passage_only_when_asked(world_dir):
    train, corpus = _jsonl(world_dir / "train.jsonl"), _jsonl(world_dir / "corpus.jsonl")
    contents = {row["id"]: row["contents"] for row in corpus}
    two_hop = next(q for q in train if q["metadata"]["bridge"])
    first, second = (contents[pid] for pid in two_hop["metadata"]["supporting_ids"])
    default = [p for q, p in et.training_pairs(world_dir, include_titles=False) if q == two_hop["question"]]
    with_bridge = [p for q, p in et.training_pairs(world_dir, include_titles=False, bridge_pairs=True)
                   if q == two_hop["question"]]
    assert default == [first]
    assert with_bridge == [first, second]


def test_pairs_need_supporting_ids(tmp_path):
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"id": "0", "contents": '"A"\nText.'}) + "\n")
    (tmp_path / "train.jsonl").write_text(json.dumps({"id": "q", "question": "?", "golden_answers": ["A"]}) + "\n")
    with pytest.raises(ValueError, match="metadata.supporting_ids"):
        et.training_pairs(tmp_path, include_titles=False)


# -- training through build_tiny_models ----------------------------------------------------------------
@pytest.fixture(scope="module")
def builds(world_dir, tmp_path_factory) -> dict[str, Path]:
    """The same models built without (untrained) and with (trained) the world folder."""
    texts = read_world_texts(world_dir)
    root = tmp_path_factory.mktemp("models")
    untrained = tiny.build_tiny_models(texts, MODELS_CFG, root / "untrained")
    trained = tiny.build_tiny_models(texts, MODELS_CFG, root / "trained", world_dir=world_dir)
    return {"untrained": Path(untrained["encoder"]), "trained": Path(trained["encoder"])}


def _encoder_record(encoder_dir: Path) -> dict:
    return json.loads((encoder_dir.parent / tiny.MODELS_JSON).read_text())["models"]["encoder"]


def _weights(encoder_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(encoder_dir / "model.safetensors")


def test_models_json_records_the_training_and_the_loss_falls(builds):
    assert _encoder_record(builds["untrained"])["training"] is None
    stats = _encoder_record(builds["trained"])["training"]
    assert stats["steps"] == TRAINING["steps"] and stats["batch_size"] == TRAINING["batch_size"]
    assert "seconds" not in stats  # models.json stays byte-identical from build to build
    assert stats["final_loss"] < stats["first_loss"] / 3
    assert stats["first_loss"] == pytest.approx(math.log(TRAINING["batch_size"]), abs=0.5)  # ~chance at start


def test_training_changes_weights_but_keeps_the_tokenizer(builds):
    before, after = _weights(builds["untrained"]), _weights(builds["trained"])
    assert before.keys() == after.keys()
    assert not torch.equal(before["embeddings.word_embeddings.weight"], after["embeddings.word_embeddings.weight"])
    assert not torch.equal(before["encoder.layer.1.output.dense.weight"], after["encoder.layer.1.output.dense.weight"])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (builds["untrained"] / name).read_bytes() == (builds["trained"] / name).read_bytes()


def _support_recall(encoder_dir: Path, world_dir: Path, split: str, k: int) -> float:
    """Share of the split's questions with a supporting passage among the top k by inner product."""
    corpus = _jsonl(world_dir / "corpus.jsonl")
    questions = _jsonl(world_dir / f"{split}.jsonl")
    titles, texts = zip(*(split_wiki_contents(row["contents"]) for row in corpus))
    encoder = DenseEncoder(str(encoder_dir), query_prefix="query: ", passage_prefix="passage: ", device="cpu")
    try:
        passages = encoder.encode_passages(titles, texts)  # [N, D]
        queries = encoder.encode_queries([q["question"] for q in questions])  # [Q, D]
    finally:
        encoder.close()
    top = np.argsort(-(queries @ passages.T), axis=1, kind="stable")[:, :k]  # [Q, k]
    ids = np.array([row["id"] for row in corpus])
    hits = [bool(set(ids[row]) & set(q["metadata"]["supporting_ids"])) for row, q in zip(top, questions)]
    return float(np.mean(hits))


def test_trained_encoder_retrieves_held_out_dev_support(builds, world_dir):
    untrained = _support_recall(builds["untrained"], world_dir, "dev", k=20)
    trained = _support_recall(builds["trained"], world_dir, "dev", k=20)
    print(f"dev support recall@20: untrained {untrained:.3f}, trained {trained:.3f}")
    assert trained >= 0.3
    assert trained >= 2 * untrained


def test_same_seed_gives_identical_weights(builds, world_dir, tmp_path):
    again = tmp_path / "encoder"
    shutil.copytree(builds["untrained"], again)
    cfg = MODELS_CFG.encoder_training
    global_state = torch.random.get_rng_state()
    stats = et.train_encoder(again, et.training_pairs(world_dir, cfg.title_pairs), cfg)
    assert torch.equal(torch.random.get_rng_state(), global_state)  # the caller's RNG is left alone
    assert stats["first_loss"] == _encoder_record(builds["trained"])["training"]["first_loss"]
    first, second = _weights(builds["trained"]), _weights(again)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_disabled_training_leaves_the_encoder_random(world_dir, tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("encoder training ran although it is disabled")

    monkeypatch.setattr(tiny, "train_encoder", no_training)
    cfg = MODELS_CFG.model_copy(update={"encoder_training": tiny.EncoderTrainingConfig(enabled=False)})
    paths = tiny.build_tiny_models(read_world_texts(world_dir), cfg, tmp_path / "models", world_dir=world_dir)
    assert _encoder_record(Path(paths["encoder"]))["training"] is None


# -- config --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("training", "field", "fix"),
    [
        ({"batch_size": 1}, "batch_size", "set batch_size to at least 2"),
        ({"steps": 0}, "steps", "set a positive count"),
        ({"temperature": 0.0}, "temperature", "must be > 0"),
        ({"warmup_fraction": 1.0}, "warmup_fraction", "e.g. 0.1"),
        ({"max_length": 1024}, "encoder_training.max_length", "set encoder_training.max_length to at most 512"),
        ({"epochs": 2}, "epochs", "Extra inputs are not permitted"),
    ],
)
def test_training_config_validation_names_the_field(training, field, fix):
    with pytest.raises(pydantic.ValidationError) as error:
        tiny.TinyModelsConfig(encoder_training=training)
    message = str(error.value)
    assert field in message and fix in message
