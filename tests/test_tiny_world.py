"""The tiny world generator (s3core/data/tiny_world.py): sizes, determinism, answerability, file formats.

Answer checks use their own normalisation (lowercase, punctuation stripped, whole words), independent of
the generator's, so they check the generator rather than repeat it.
"""

from __future__ import annotations

import collections
import json
import string
import time

import pydantic
import pytest

from s3core.config.tiny_world import QUESTION_TYPES, TinyWorldConfig
from s3core.data.tiny_world import generate_world, write_world


def normalise(text: str) -> str:
    """Lowercase, drop punctuation, collapse whitespace; padded with spaces for whole-word search."""
    return " " + " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split()) + " "


def occurs(phrase: str, text: str) -> bool:
    return normalise(phrase) in normalise(text)


@pytest.fixture(scope="module")
def world():
    return generate_world(TinyWorldConfig())


@pytest.fixture(scope="module")
def lookups(world):
    passages = {p.id: p for p in world.passages}
    entities = {e.id: e for e in world.entities}
    return passages, entities


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    return out, write_world(world, out)


# -- sizes and determinism ----------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(written, tmp_path):
    first_dir, first_counts = written
    second_counts = write_world(generate_world(TinyWorldConfig()), tmp_path)
    assert first_counts == second_counts
    for name in ("corpus.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "entities.jsonl"):
        assert (first_dir / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_different_seed_gives_a_different_world(world):
    other = generate_world(TinyWorldConfig(seed=14))
    assert [e.name for e in other.entities] != [e.name for e in world.entities]
    assert [p.text for p in other.passages] != [p.text for p in world.passages]
    assert [q.question for q in other.questions] != [q.question for q in world.questions]


def test_default_sizes(world):
    assert 1500 <= len(world.passages) <= 2500
    assert len(world.questions) == world.config.n_questions == 1000
    by_type = collections.Counter(q.metadata["type"] for q in world.questions)
    assert by_type == {"single_hop": 400, "two_hop": 400, "comparison": 200}
    by_split = collections.Counter(q.split for q in world.questions)
    assert by_split == {"train": 800, "dev": 100, "test": 100}


def test_every_split_has_every_type(world):
    present = {(q.split, q.metadata["type"]) for q in world.questions}
    for split in world.config.split_fractions:
        for qtype in QUESTION_TYPES:
            assert (split, qtype) in present, (split, qtype)


def test_generation_is_fast():
    start = time.perf_counter()
    generate_world(TinyWorldConfig(seed=3))
    assert time.perf_counter() - start < 5.0


def test_ids_are_sequential_and_unique(world):
    assert [p.id for p in world.passages] == [str(i) for i in range(len(world.passages))]
    assert len({q.id for q in world.questions}) == len(world.questions)
    assert len({q.question for q in world.questions}) == len(world.questions)
    assert len({e.name for e in world.entities}) == len(world.entities)


def test_passages_have_encyclopedia_shape(world, lookups):
    _, entities = lookups
    per_entity = collections.Counter(p.entity_id for p in world.passages)
    assert set(per_entity.values()) == {world.config.passages_per_entity}
    for passage in world.passages:
        assert 40 <= len(passage.text.split()) <= 120, passage
        assert passage.title == entities[passage.entity_id].name
        assert occurs(passage.title, passage.text), passage


def test_passage_count_follows_config():
    cfg = TinyWorldConfig(n_countries=3, n_cities=8, n_people=30, n_organisations=9, n_works=12,
                          n_questions=60, passages_per_entity=6)
    small = generate_world(cfg)
    assert len(small.passages) == 6 * len(small.entities) == 6 * 62
    assert len(small.questions) == 60


# -- answerability ----------------------------------------------------------------------------------------
def test_every_answer_is_in_a_supporting_passage(world, lookups):
    passages, entities = lookups
    for q in world.questions:
        support = [passages[i] for i in q.metadata["supporting_ids"]]
        assert any(occurs(answer, p.text) for answer in q.golden_answers for p in support), q
        for p in support:
            assert occurs(entities[p.entity_id].name, p.text), (q, p)


def test_every_question_names_its_entity(world, lookups):
    _, entities = lookups
    for q in world.questions:
        named = q.metadata["entities"][:2] if q.metadata["type"] == "comparison" else q.metadata["entities"][:1]
        for entity_id in named:
            assert entities[entity_id].name in q.question, q


def test_multi_hop_questions_need_two_different_passages(world, lookups):
    passages, _ = lookups
    for q in world.questions:
        if q.metadata["type"] == "single_hop":
            assert q.metadata["hops"] == 1 and len(q.metadata["supporting_ids"]) == 1
            continue
        ids = q.metadata["supporting_ids"]
        assert q.metadata["hops"] == 2 and len(set(ids)) >= 2, q
        assert len({passages[i].entity_id for i in ids}) == 2, q


def test_two_hop_first_passage_does_not_state_the_answer(world, lookups):
    passages, entities = lookups
    two_hop = [q for q in world.questions if q.metadata["type"] == "two_hop"]
    for q in two_hop:
        start, bridge = (entities[i] for i in q.metadata["entities"][:2])
        first_hop = passages[q.metadata["supporting_ids"][0]]
        assert first_hop.entity_id == start.id and occurs(bridge.name, first_hop.text), q
        assert q.metadata["bridge"] == bridge.name
        assert not any(occurs(answer, first_hop.text) for answer in q.golden_answers), q


def test_no_passage_names_the_question_entity_and_states_the_answer(world, lookups):
    _, entities = lookups
    texts = [normalise(p.text) for p in world.passages]
    for q in world.questions:
        if q.metadata["type"] != "two_hop":
            continue
        start = normalise(entities[q.metadata["entities"][0]].name)
        answers = [normalise(a) for a in q.golden_answers]
        for text in texts:
            if start in text:
                assert not any(a in text for a in answers), (q, text)


def test_no_passage_names_both_compared_entities(world, lookups):
    _, entities = lookups
    texts = [normalise(p.text) for p in world.passages]
    for q in world.questions:
        if q.metadata["type"] != "comparison":
            continue
        a, b = (normalise(entities[i].name) for i in q.metadata["entities"][:2])
        assert not any(a in text and b in text for text in texts), q
        assert q.golden_answers[0] in (entities[i].name for i in q.metadata["entities"][:2])


def test_comparison_answer_is_right(world, lookups):
    _, entities = lookups
    for q in world.questions:
        if q.metadata["type"] != "comparison":
            continue
        kind_attr, pick = q.metadata["relation"].split(":")
        attr = kind_attr.split(".")[1]
        a, b = (entities[i] for i in q.metadata["entities"])
        winner = (min if pick == "min" else max)((a, b), key=lambda e: e.attrs[attr])
        assert a.attrs[attr] != b.attrs[attr]
        assert q.golden_answers[0] == winner.name, q


def test_surname_alias_only_when_unambiguous(world):
    tokens = collections.Counter(t for e in world.entities for t in set(e.name.lower().split()))
    for q in world.questions:
        for alias in q.golden_answers[1:]:
            if " " not in alias and not alias.replace(",", "").isdigit():
                assert tokens[alias.lower()] == 1, (q, alias)


# -- names ------------------------------------------------------------------------------------------------
def test_distractor_names_exist(world):
    owners = collections.defaultdict(set)
    for e in world.entities:
        for token in e.name.split():
            if token not in ("The", "of", "to", "in", "at", "over"):
                owners[token].add(e.id)
    shared = {t: ids for t, ids in owners.items() if len(ids) > 1}
    kinds_sharing = {tuple(sorted({i.split("_")[0] for i in ids})) for ids in shared.values()}
    assert ("person",) in kinds_sharing  # e.g. two people with one surname
    assert any("city" in k and "organisation" in k for k in kinds_sharing)  # a city and a firm named after it
    people = [e for e in world.entities if e.kind == "person"]
    sharing = [p for p in people if any(len(owners[t]) > 1 for t in p.name.split())]
    assert 0.1 < len(sharing) / len(people) < 0.6


def test_no_distractors_at_rate_zero():
    world = generate_world(TinyWorldConfig(distractor_rate=0.0, n_questions=200))
    parts = []
    for e in world.entities:
        if e.kind == "person":
            parts += e.name.split()
        elif e.kind == "organisation":
            parts.append(e.name.split()[0])  # the base word; the suffix names the industry
        elif e.kind in ("city", "country"):
            parts.append(e.name)
    assert len(parts) == len(set(parts))


# -- files ------------------------------------------------------------------------------------------------
def test_written_files_parse_back(world, written):
    out, counts = written
    assert counts == {"passages": len(world.passages), "train": 800, "dev": 100, "test": 100,
                      "entities": len(world.entities)}
    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(corpus) == counts["passages"]
    for row, passage in zip(corpus, world.passages):
        title, text = row["contents"].split("\n", 1)
        assert row["id"] == passage.id and title == f'"{passage.title}"' and text == passage.text
    for split in ("train", "dev", "test"):
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(rows) == counts[split]
        for row in rows:
            assert row["id"].startswith(f"{split}_") and row["question"].endswith("?")
            assert row["golden_answers"] and all(isinstance(a, str) for a in row["golden_answers"])
            assert row["metadata"]["type"] in QUESTION_TYPES
    entities = [json.loads(line) for line in (out / "entities.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {e["kind"] for e in entities} == {"country", "city", "person", "organisation", "work"}
    assert all(len(e["passage_ids"]) == world.config.passages_per_entity for e in entities)
    assert not list(out.glob(".*.tmp"))


# -- config validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"question_mix": {"single_hop": 0.5, "two_hop": 0.4, "comparison": 0.2}}, "question_mix"),
        ({"question_mix": {"single_hop": 1.0}}, "question_mix"),
        ({"split_fractions": {"train": 0.8, "dev": 0.1}}, "split_fractions"),
        ({"split_fractions": {"train": 1.2, "dev": -0.2}}, "split_fractions"),
        ({"n_people": 0}, "n_people"),
        ({"n_works": -3}, "n_works"),
        ({"distractor_rate": 1.5}, "distractor_rate"),
        ({"passages_per_entity": 2}, "passages_per_entity"),
        ({"n_countries": 20, "n_cities": 10}, "n_cities"),
        ({"n_questions": 100_000}, "n_questions"),
    ],
)
def test_config_errors_name_the_field(overrides, field):
    with pytest.raises(pydantic.ValidationError) as info:
        TinyWorldConfig(**overrides)
    assert field in str(info.value)


def test_config_rejects_unknown_fields():
    with pytest.raises(pydantic.ValidationError, match="n_planets"):
        TinyWorldConfig(n_planets=3)


def test_mix_error_says_how_to_fix():
    with pytest.raises(pydantic.ValidationError, match="sum to 1.*scale them"):
        TinyWorldConfig(question_mix={"single_hop": 0.5, "two_hop": 0.5, "comparison": 0.5})
