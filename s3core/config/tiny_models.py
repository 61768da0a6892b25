"""Configs of the tiny local models (kept apart from tiny.py so loading a run config never imports torch)."""

from __future__ import annotations

import pydantic
from pydantic import ConfigDict, Field

EOS_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
CAUSAL_SPECIAL_TOKENS = (EOS_TOKEN, IM_START_TOKEN, IM_END_TOKEN)


class TinyCausalLMConfig(pydantic.BaseModel):
    """Shape of the tiny Qwen2-style causal LMs (searcher and generator)."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(default=64, ge=2, description="Width of the residual stream.")
    num_layers: int = Field(default=2, ge=1, description="Number of decoder layers.")
    num_heads: int = Field(default=4, ge=1, description="Number of query attention heads.")
    num_kv_heads: int = Field(
        default=2, ge=1, description="Number of key/value heads (grouped-query attention, as in Qwen2)."
    )
    intermediate_size: int = Field(default=192, ge=1, description="Width of the SwiGLU MLP.")
    max_position_embeddings: int = Field(
        default=2048, ge=16, description="Longest sequence (prompt + generation) the model accepts."
    )
    tie_word_embeddings: bool = Field(
        default=True, description="Share the input embedding and the LM head (as Qwen2.5's small models do)."
    )

    @pydantic.model_validator(mode="after")
    def _check_heads(self) -> TinyCausalLMConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}): "
                f"set hidden_size to a multiple of num_heads ({self.num_heads})"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"hidden_size / num_heads ({self.hidden_size // self.num_heads}) must be even, since rotary "
                f"embeddings rotate pairs of channels: set hidden_size to a multiple of 2 * num_heads "
                f"({2 * self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads}): "
                f"set num_kv_heads to a divisor of num_heads ({self.num_heads})"
            )
        return self


class TinyEncoderConfig(pydantic.BaseModel):
    """Shape of the tiny BERT-style encoder used for dense retrieval."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int = Field(default=64, ge=1, description="Width of the encoder (the embedding dimension).")
    num_layers: int = Field(default=2, ge=1, description="Number of transformer layers.")
    num_heads: int = Field(default=4, ge=1, description="Number of attention heads.")
    intermediate_size: int = Field(default=192, ge=1, description="Width of the feed-forward layer.")
    max_position_embeddings: int = Field(
        default=512, ge=16, description="Longest input in tokens (also the tokenizer's model_max_length)."
    )

    @pydantic.model_validator(mode="after")
    def _check_heads(self) -> TinyEncoderConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads}): "
                f"set hidden_size to a multiple of num_heads ({self.num_heads})"
            )
        return self


class EncoderTrainingConfig(pydantic.BaseModel):
    """Contrastive training of the tiny encoder on the tiny world's train split (s3core.models.encoder_training).

    The defaults keep training to about half a minute on 2 CPU cores with the default encoder shape.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        default=True,
        description="Train the encoder after building it (needs the world folder); false keeps it random-init.",
    )
    steps: int = Field(default=250, description="Optimizer steps (one batch of pairs each).")
    batch_size: int = Field(
        default=64, description="Pairs per step; every other passage of the batch is a negative for a query."
    )
    lr: float = Field(default=2e-3, description="Peak AdamW learning rate, reached after the warm-up.")
    warmup_fraction: float = Field(
        default=0.1, description="Share of the steps with a linear warm-up from 0 to lr; the rest decays to 0."
    )
    temperature: float = Field(
        default=0.05, description="Softmax temperature of the InfoNCE loss over cosine similarities."
    )
    max_length: int = Field(default=128, description="Inputs are truncated to this many tokens while training.")
    seed: int = Field(
        default=0, description="Seed of the pair order and of torch's RNG while training; same seed, same weights."
    )
    query_prefix: str = Field(
        default="query: ", description="Put before every question (match retrieval.dense.query_prefix)."
    )
    passage_prefix: str = Field(
        default="passage: ", description="Put before every passage (match retrieval.dense.passage_prefix)."
    )
    title_pairs: bool = Field(
        default=True,
        description="Also train on (entity title -> each of its passages) pairs from the corpus, which teaches "
        "the encoder every entity name, not only those the train questions mention.",
    )
    bridge_pairs: bool = Field(
        default=False,
        description="Also pair a two-hop train question with its second-hop passage. Off by default: that "
        "passage is about the bridge entity, which the question does not name, so the encoder could only learn "
        "the hop by heart. It then retrieves both hops of train questions but not of dev/test ones (with it on, "
        "naive top-3 GenAcc on two-hop questions was 0.52 on train and 0.10 on dev), and a searcher trained on "
        "train questions learns that searching is rarely needed.",
    )

    @pydantic.field_validator("steps", "max_length")
    @classmethod
    def _positive(cls, value: int, info: pydantic.ValidationInfo) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be at least 1 (got {value}); set a positive count")
        return value

    @pydantic.field_validator("batch_size")
    @classmethod
    def _has_negatives(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"batch_size ({value}) leaves no in-batch negatives: the other pairs of a batch are the "
                "negatives, so set batch_size to at least 2 (e.g. 64)"
            )
        return value

    @pydantic.field_validator("lr", "temperature")
    @classmethod
    def _strictly_positive(cls, value: float, info: pydantic.ValidationInfo) -> float:
        if not value > 0:
            raise ValueError(f"{info.field_name} must be > 0 (got {value}); e.g. lr 2e-3, temperature 0.05")
        return value

    @pydantic.field_validator("warmup_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1) (got {value}); e.g. 0.1 for a 10% warm-up")
        return value


class TinyModelsConfig(pydantic.BaseModel):
    """Everything needed to build the tiny world's models (see ``build_tiny_models``)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(
        default=0, description="Seed of the searcher's weights; the generator uses seed + 1, the encoder seed + 2."
    )
    vocab_size: int = Field(
        default=2048,
        description="Vocabulary size of the BPE tokenizer (before the s3 tags are added) and of the encoder's "
        "WordPiece tokenizer, both trained on the world's text.",
    )
    causal_lm: TinyCausalLMConfig = Field(
        default_factory=TinyCausalLMConfig, description="Shape of the searcher and generator."
    )
    encoder: TinyEncoderConfig = Field(default_factory=TinyEncoderConfig, description="Shape of the encoder.")
    encoder_training: EncoderTrainingConfig = Field(
        default_factory=EncoderTrainingConfig,
        description="Contrastive training of the encoder on the world's train questions, so dense retrieval on the "
        "tiny world works; needs the world folder (build_tiny_models(..., world_dir=...)).",
    )

    @pydantic.field_validator("vocab_size")
    @classmethod
    def _check_vocab_size(cls, value: int) -> int:
        minimum = 256 + len(CAUSAL_SPECIAL_TOKENS) + 1
        if value < minimum:
            raise ValueError(
                f"vocab_size ({value}) leaves no room for merges: byte-level BPE starts from 256 byte symbols "
                f"and {len(CAUSAL_SPECIAL_TOKENS)} special tokens; set vocab_size to at least {minimum}"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _training_fits_the_encoder(self) -> TinyModelsConfig:
        longest = self.encoder.max_position_embeddings
        if self.encoder_training.max_length > longest:
            raise ValueError(
                f"encoder_training.max_length ({self.encoder_training.max_length}) exceeds the encoder's "
                f"max_position_embeddings ({longest}): set encoder_training.max_length to at most {longest}"
            )
        return self
