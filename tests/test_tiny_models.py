"""Tiny locally built models (s3core.models.tiny): they load like real Hugging Face folders, offline, and
are reproducible. CPU only; the whole file runs in a few seconds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pydantic  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from s3core.models import tiny  # noqa: E402

PEOPLE = ["Alba Renn", "Borin Tal", "Celth Amory", "Dara Voss", "Eskel Marr", "Fenna Lowe"]
PLACES = ["Norwick", "Ostmere", "Pellan", "Quarry Vale", "Rusk"]
TRADES = ["painter", "river pilot", "clockmaker", "astronomer", "cartographer"]


def _synthetic_texts(n: int = 300, seed: int = 0) -> list[str]:
    """Encyclopedia-like sentences about made-up people and places."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        person, place, trade = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(TRADES)
        texts.append(
            f"{person} ({1700 + rng.randrange(300)}-{2000 + i % 20}) was a {trade} from {place}. "
            f"{place} is a town of {rng.randrange(100, 90000)} people on the river {rng.choice(PLACES)}."
        )
    return texts


def _mean_pool_normalized(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the unmasked token vectors, L2-normalised: [B, T, H], [B, T] -> [B, H]."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # [B, H]
    return torch.nn.functional.normalize(pooled, dim=-1)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return _synthetic_texts()


@pytest.fixture(scope="module")
def built(texts, tmp_path_factory) -> dict[str, str]:
    out_dir = tmp_path_factory.mktemp("tiny") / "models"
    return tiny.build_tiny_models(texts, tiny.TinyModelsConfig(), out_dir)


def test_build_returns_folders_and_writes_models_json(built):
    assert set(built) == {"searcher", "generator", "encoder", "tokenizer"}
    root = Path(built["searcher"]).parent
    assert all(Path(path).parent == root and Path(path).is_dir() for path in built.values())
    description = json.loads((root / tiny.MODELS_JSON).read_text())
    assert description["config"] == tiny.TinyModelsConfig().model_dump()
    searcher = AutoModelForCausalLM.from_pretrained(built["searcher"])
    encoder = AutoModel.from_pretrained(built["encoder"])
    models = description["models"]
    assert models["searcher"]["num_parameters"] == sum(p.numel() for p in searcher.parameters())
    assert models["encoder"]["num_parameters"] == sum(p.numel() for p in encoder.parameters())
    assert models["searcher"]["vocab_size"] == searcher.config.vocab_size == description["tokenizer"]["vocab_size"]
    assert [models[name]["seed"] for name in ("searcher", "generator", "encoder")] == [0, 1, 2]


def test_causal_lm_loads_chats_and_generates_deterministically(built):
    tokenizer = AutoTokenizer.from_pretrained(built["searcher"])
    model = AutoModelForCausalLM.from_pretrained(built["searcher"])
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == model.config.pad_token_id == tokenizer.eos_token_id
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    messages = [
        {"role": "system", "content": "You are a search agent."},
        {"role": "user", "content": "Where was Alba Renn from?"},
        {"role": "assistant", "content": "<query>Alba Renn</query>"},
        {"role": "user", "content": "<information>Norwick</information>"},
    ]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a search agent.<|im_end|>\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    inputs = tokenizer(prompt, return_tensors="pt")
    outputs = [model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False) for _ in range(2)]
    prompt_len = inputs["input_ids"].shape[1]
    assert outputs[0].shape == (1, prompt_len + 5)
    assert torch.equal(outputs[0], outputs[1])


def test_generation_config_stops_at_end_of_turn(built):
    tokenizer = AutoTokenizer.from_pretrained(built["searcher"])
    model = AutoModelForCausalLM.from_pretrained(built["searcher"])
    stops = model.generation_config.eos_token_id
    assert set(stops) == {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}


def test_s3_tags_are_single_tokens(built):
    tokenizer = AutoTokenizer.from_pretrained(built["searcher"])
    assert len(tiny.S3_TAGS) == 12
    for tag in tiny.S3_TAGS + ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        ids = tokenizer.encode(tag, add_special_tokens=False)
        assert len(ids) == 1, (tag, ids)
    text = "<think>plan</think><query>Dara Voss</query>"
    assert tokenizer.decode(tokenizer.encode(text), skip_special_tokens=True) == text


@pytest.mark.parametrize(
    "sentence",
    [
        "Fenna Lowe (1733-2004) was a clockmaker from Rusk.",
        "It's 12,345 people;  two spaces, a tab\tand\nnew lines <answer> Rusk </answer>!",
    ],
)
def test_tokenizer_round_trips_and_matches_across_folders(built, sentence):
    from_tokenizer_dir = AutoTokenizer.from_pretrained(built["tokenizer"])
    from_model_dir = AutoTokenizer.from_pretrained(built["searcher"])
    assert type(from_tokenizer_dir) is type(from_model_dir)
    ids = from_model_dir.encode(sentence)
    assert from_tokenizer_dir.encode(sentence) == ids
    assert from_model_dir.decode(ids) == sentence


def test_tokenizer_training_is_deterministic(texts, tmp_path):
    first = tiny.train_tokenizer(texts, 600, tmp_path / "a")
    second = tiny.train_tokenizer(texts, 600, tmp_path / "b")
    assert first.get_vocab() == second.get_vocab()
    assert (tmp_path / "a" / "tokenizer.json").read_text() == (tmp_path / "b" / "tokenizer.json").read_text()
    assert len(first) > 300  # merges were learned beyond the byte alphabet


def test_same_seed_gives_same_weights_and_generator_differs(built, tmp_path):
    cfg = tiny.TinyModelsConfig().causal_lm
    again = tiny.build_causal_lm(Path(built["tokenizer"]), cfg, seed=0, out_dir=tmp_path / "searcher-again")
    searcher = AutoModelForCausalLM.from_pretrained(built["searcher"]).state_dict()
    rebuilt = AutoModelForCausalLM.from_pretrained(again).state_dict()
    generator = AutoModelForCausalLM.from_pretrained(built["generator"]).state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(searcher[name], rebuilt[name])
    assert all(torch.equal(searcher[key], rebuilt[key]) for key in searcher)
    assert not torch.equal(searcher[name], generator[name])
    assert not torch.equal(searcher["model.embed_tokens.weight"], generator["model.embed_tokens.weight"])


def test_encoder_build_is_deterministic(texts, tmp_path):
    cfg = tiny.TinyEncoderConfig()
    folders = [tiny.build_encoder(texts, cfg, seed=7, vocab_size=800, out_dir=tmp_path / f"e{i}") for i in range(3)]
    for name in ("tokenizer.json", "model.safetensors"):
        contents = {(folder / name).read_bytes() for folder in folders}
        assert len(contents) == 1, name


def test_encoder_embeds_a_batch_into_unit_vectors(built):
    tokenizer = AutoTokenizer.from_pretrained(built["encoder"])
    model = AutoModel.from_pretrained(built["encoder"]).eval()
    assert model.config.model_type == "bert"
    batch = tokenizer(
        ["Alba Renn was a painter.", "Quarry Vale is a town of many people on the river Rusk."],
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    assert batch["input_ids"][0, 0].item() == tokenizer.cls_token_id
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # [2, T, H]
    assert hidden.shape == (2, batch["input_ids"].shape[1], tiny.TinyEncoderConfig().hidden_size)
    embeddings = _mean_pool_normalized(hidden, batch["attention_mask"])  # [2, H]
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))
    assert tokenizer.tokenize("ALBA") == tokenizer.tokenize("alba")  # lowercase WordPiece


@pytest.mark.parametrize(
    ("kwargs", "field", "fix"),
    [
        ({"causal_lm": {"hidden_size": 66, "num_heads": 4}}, "hidden_size", "set hidden_size to a multiple of"),
        ({"causal_lm": {"num_heads": 4, "num_kv_heads": 3}}, "num_kv_heads", "set num_kv_heads to a divisor"),
        ({"causal_lm": {"hidden_size": 12, "num_heads": 4}}, "hidden_size", "multiple of 2 * num_heads"),
        ({"encoder": {"hidden_size": 30, "num_heads": 4}}, "hidden_size", "set hidden_size to a multiple of"),
        ({"vocab_size": 100}, "vocab_size", "set vocab_size to at least"),
        ({"vocab": 100}, "vocab", "Extra inputs are not permitted"),
    ],
)
def test_config_validation_names_the_field(kwargs, field, fix):
    with pytest.raises(pydantic.ValidationError) as error:
        tiny.TinyModelsConfig(**kwargs)
    message = str(error.value)
    assert field in message and fix in message


def test_failed_build_leaves_no_folder(texts, tmp_path, monkeypatch):
    def broken_encoder(*args, **kwargs):
        raise RuntimeError("encoder build failed")

    monkeypatch.setattr(tiny, "build_encoder", broken_encoder)
    with pytest.raises(RuntimeError, match="encoder build failed"):
        tiny.build_tiny_models(texts, tiny.TinyModelsConfig(vocab_size=400), tmp_path / "models")
    assert list(tmp_path.iterdir()) == []


def test_rebuild_replaces_an_existing_folder_whole(texts, tmp_path):
    out_dir = tmp_path / "models"
    out_dir.mkdir()
    (out_dir / "stale.txt").write_text("from an older build")
    cfg = tiny.TinyModelsConfig(vocab_size=400)
    paths = tiny.build_tiny_models(texts, cfg, out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([*paths, tiny.MODELS_JSON])
    assert [p.name for p in tmp_path.iterdir()] == ["models"]
