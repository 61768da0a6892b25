"""The tiny world's sizes and seed (DESIGN.md section 4), apart from its 1,400-line generator.

`TinyWorldConfig` checks that a world of the asked size can hold the asked questions. That check needs a
few counts of the generator's tables (facts per entity kind, two-hop chains, comparison kinds); they are
kept here so that loading a config never imports the generator, and `data/tiny_world.py` checks at import
that they still match its tables (`check_capacity_tables`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

QUESTION_TYPES = ("single_hop", "two_hop", "comparison")
ENTITY_KINDS = ("country", "city", "person", "organisation", "work")
MIN_PASSAGES_PER_ENTITY = 3  # the three fact passages of every kind
MAX_PASSAGES_PER_ENTITY = 6  # plus three kinds of extra passage
# Counts of the generator's tables, for question_capacity: single-hop facts per entity of a kind
# (FACT_SECTIONS), two-hop chains starting at an entity of a kind (CHAINS), and the kinds of the comparison
# templates, one entry per template (COMPARISONS).
SINGLE_HOP_FACTS = {"country": 4, "city": 3, "person": 5, "organisation": 4, "work": 4}
TWO_HOP_CHAINS = {"work": 7, "person": 11, "organisation": 7, "city": 4, "country": 2}
COMPARISON_KINDS = ("person", "organisation", "city", "city", "work", "country")


class TinyWorldConfig(BaseModel):
    """Sizes and seed of the tiny world (DESIGN.md section 4). Defaults give ~2,000 passages, 1,000 questions."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = Field(default=13, description="random seed; the same seed gives a byte-identical world")
    n_countries: int = Field(default=10, description="number of countries")
    n_cities: int = Field(default=60, description="number of cities (each country gets at least one)")
    n_people: int = Field(default=220, description="number of people")
    n_organisations: int = Field(default=60, description="number of organisations (companies)")
    n_works: int = Field(default=130, description="number of works (novels, poetry collections, films, albums)")
    passages_per_entity: int = Field(
        default=4,
        description=f"passages per entity, {MIN_PASSAGES_PER_ENTITY}-{MAX_PASSAGES_PER_ENTITY}: three carry the "
        "entity's facts, the rest name related entities or add background",
    )
    n_questions: int = Field(default=1000, description="number of questions over all splits")
    question_mix: dict[str, float] = Field(
        default_factory=lambda: {"single_hop": 0.4, "two_hop": 0.4, "comparison": 0.2},
        description="share of each question type (single_hop, two_hop, comparison); sums to 1",
    )
    split_fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "dev": 0.1, "test": 0.1},
        description="share of the questions in each split, applied per question type; sums to 1",
    )
    distractor_rate: float = Field(
        default=0.25,
        description="share of people, organisations and works whose name borrows a part of another "
        "entity's name (a surname, a city name, a title word), so lexical matching is not enough",
    )

    @field_validator("n_countries", "n_cities", "n_people", "n_organisations", "n_works", "n_questions")
    @classmethod
    def _positive(cls, value: int, info) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be at least 1 (got {value}); set a positive count")
        return value

    @field_validator("passages_per_entity")
    @classmethod
    def _passage_count_in_range(cls, value: int) -> int:
        if not MIN_PASSAGES_PER_ENTITY <= value <= MAX_PASSAGES_PER_ENTITY:
            raise ValueError(
                f"passages_per_entity must be between {MIN_PASSAGES_PER_ENTITY} and {MAX_PASSAGES_PER_ENTITY} "
                f"(got {value}): three passages carry the facts and there are three kinds of extra passage"
            )
        return value

    @field_validator("distractor_rate")
    @classmethod
    def _rate_is_fraction(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"distractor_rate must be in [0, 1] (got {value}); e.g. 0.25")
        return value

    @field_validator("question_mix")
    @classmethod
    def _mix_is_distribution(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != set(QUESTION_TYPES):
            raise ValueError(
                f"question_mix must have exactly the keys {list(QUESTION_TYPES)} (got {sorted(value)}); "
                "give 0 to a type you do not want"
            )
        _check_distribution("question_mix", value)
        return {name: value[name] for name in QUESTION_TYPES}

    @field_validator("split_fractions")
    @classmethod
    def _splits_are_distribution(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError('split_fractions is empty; give at least one split, e.g. {"train": 1.0}')
        bad = [name for name in value if not name.isidentifier()]
        if bad:
            raise ValueError(f"split_fractions names must be plain identifiers like train/dev/test (got {bad})")
        _check_distribution("split_fractions", value)
        return value

    @model_validator(mode="after")
    def _world_is_big_enough(self) -> TinyWorldConfig:
        if self.n_cities < self.n_countries:
            raise ValueError(
                f"n_cities ({self.n_cities}) must be at least n_countries ({self.n_countries}): every country "
                "needs a capital city; raise n_cities or lower n_countries"
            )
        for qtype, wanted in question_counts(self).items():
            capacity = question_capacity(self, qtype)
            if wanted > capacity:
                raise ValueError(
                    f"n_questions={self.n_questions} with question_mix[{qtype!r}]={self.question_mix[qtype]} asks "
                    f"for {wanted} {qtype} questions, but a world of this size supports about {capacity}: raise "
                    "the entity counts (n_people, n_cities, n_organisations, n_works) or lower n_questions"
                )
        return self


def _check_distribution(field_name: str, value: dict[str, float]) -> None:
    out_of_range = {name: share for name, share in value.items() if not 0.0 <= share <= 1.0}
    if out_of_range:
        raise ValueError(f"{field_name} values must be in [0, 1] (got {out_of_range})")
    total = sum(value.values())
    if abs(total - 1.0) > 1e-6:
        scaled = {name: round(share / total, 4) for name, share in value.items()} if total > 0 else None
        hint = f"scale them, e.g. {scaled}" if scaled else "give at least one a positive share"
        raise ValueError(f"{field_name} must sum to 1 (got {total:g}); {hint}")


def question_counts(cfg: TinyWorldConfig) -> dict[str, int]:
    """Questions per type: n_questions times each share, rounded, with the remainder on the last type."""
    counts = {qtype: round(cfg.n_questions * cfg.question_mix[qtype]) for qtype in QUESTION_TYPES[:-1]}
    counts[QUESTION_TYPES[-1]] = cfg.n_questions - sum(counts.values())
    if counts[QUESTION_TYPES[-1]] < 0:  # rounding overshoot with a zero last share
        counts[QUESTION_TYPES[0]] += counts[QUESTION_TYPES[-1]]
        counts[QUESTION_TYPES[-1]] = 0
    return counts


def question_capacity(cfg: TinyWorldConfig, qtype: str) -> int:
    """A conservative count of distinct questions of a type that a world of this size can hold.

    Two-hop and comparison candidates are halved because the generator drops those that one passage
    could answer (see the module docstring).
    """
    sizes = _kind_sizes(cfg)
    if qtype == "single_hop":
        return sum(sizes[kind] * facts for kind, facts in SINGLE_HOP_FACTS.items())
    if qtype == "two_hop":
        return sum(sizes[kind] * chains for kind, chains in TWO_HOP_CHAINS.items()) // 2
    return sum(sizes[kind] * (sizes[kind] - 1) // 2 for kind in COMPARISON_KINDS) // 2


def _kind_sizes(cfg: TinyWorldConfig) -> dict[str, int]:
    return {"country": cfg.n_countries, "city": cfg.n_cities, "person": cfg.n_people,
            "organisation": cfg.n_organisations, "work": cfg.n_works}
