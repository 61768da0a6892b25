"""Tiny models built locally for the tiny world (DESIGN.md section 4).

No weights can be downloaded on our machines, so the tiny world carries its own models: a byte-level BPE
tokenizer trained on the world's text, two small causal LMs (the "searcher" that RL trains and the frozen
"generator"), and a small BERT-style encoder for dense retrieval. They exist so that every stage of the
pipeline (retrieval, rollouts, the generator's reward, training, evaluation) runs end to end on 2 CPU cores
in minutes. The causal LMs are random-init: numbers they produce say nothing about the quality of a method.
Given the world folder, the encoder is then trained contrastively on the world's train questions
(``s3core.models.encoder_training``), so dense retrieval on the tiny world is a real, if small, retriever.

They follow the real models' formats on purpose, so downstream code has a single loading path:
- the causal LMs are ``Qwen2ForCausalLM`` folders (the s3 searcher is Qwen2.5-7B-Instruct) with a ChatML
  chat template, ``<|endoftext|>`` as eos/pad and ``<|im_end|>`` as an extra stop token, as in Qwen2.5;
- the encoder is a ``BertModel`` with a lowercase WordPiece tokenizer (the E5 retriever is BERT-shaped);
- each folder is self-contained (weights as safetensors, config, generation config, tokenizer files) and
  loads with ``AutoTokenizer`` / ``AutoModelForCausalLM`` / ``AutoModel.from_pretrained(folder)``.

How they differ from the real ones, and why:
- the BPE tokenizer is a ``Qwen2Tokenizer`` (Qwen2's NFC + split pattern + byte-level pipeline) with a vocab
  of ~2k instead of ~152k, and the s3 protocol tags (``<query>``, ``<information>``, ...) are added tokens,
  one token each, which keeps the tiny models' sequences short. Real Qwen tokenizers split these tags into
  several tokens, so downstream code must never rely on a tag being one token;
- the chat template is plain ChatML, without Qwen2.5's default system prompt and tool-calling branches;
- WordPiece training is made deterministic (see ``_train_wordpiece``): the same texts and seeds give
  byte-identical folders, so cached stages downstream can key on them. For the same reason models.json
  records the encoder training's losses but not its wall-clock time (that goes to the log).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import BPE, WordPiece
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)

from s3core.config.tiny_models import (  # re-exported: the configs live apart from torch
    CAUSAL_SPECIAL_TOKENS,
    EOS_TOKEN,
    IM_END_TOKEN,
    IM_START_TOKEN,
    EncoderTrainingConfig,
    TinyCausalLMConfig,
    TinyEncoderConfig,
    TinyModelsConfig,
)
from s3core.models.encoder_training import train_encoder, training_pairs

log = logging.getLogger(__name__)


# The s3 protocol tags: the searcher writes <think>, <query>, <important_info>, <search_complete>; the
# environment writes <information>; the generator writes <answer>.
S3_TAGS = tuple(
    tag
    for name in ("query", "information", "important_info", "search_complete", "think", "answer")
    for tag in (f"<{name}>", f"</{name}>")
)

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# ChatML as Qwen2.5 writes it, without Qwen's default system prompt and tool-calling branches.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('chat role must be system, user or assistant, got ' + message['role']) }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

MODELS_JSON = "models.json"

# Qwen2's pre-tokenizer split pattern (transformers' models/qwen2/tokenization_qwen2.py, PRETOKENIZE_REGEX).
QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


# --- tokenizers ---------------------------------------------------------------------------------------


def _train_byte_level_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on texts; the special tokens get ids 0, 1, 2.

    The pipeline (NFC, Qwen2's split pattern, byte-level without its own regex) is the one ``Qwen2Tokenizer``
    rebuilds around a vocab and merges, so the merges learned here are the merges it applies.
    """
    tokenizer = Tokenizer(BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CAUSAL_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocab and the ordered merges of a trained BPE tokenizer, read from its JSON serialization."""
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> PreTrainedTokenizerFast:
    """Train the causal LMs' byte-level BPE tokenizer on texts and save it to out_dir.

    The result is a ``Qwen2Tokenizer`` (a ``PreTrainedTokenizerFast``), the class real Qwen2.5 folders name,
    so ``AutoTokenizer`` builds the same tokenizer from out_dir alone and from a model folder whose config
    says ``qwen2``. It has ``<|endoftext|>`` as eos and pad, ``<|im_start|>``/``<|im_end|>`` as special
    tokens, a ChatML chat template, and the s3 protocol tags as ordinary added tokens (one token each, kept
    by ``decode(..., skip_special_tokens=True)``). Training is deterministic for the same texts.
    """
    vocab, merges = _vocab_and_merges(_train_byte_level_bpe(texts, vocab_size))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        extra_special_tokens=[IM_START_TOKEN, IM_END_TOKEN],
        chat_template=CHATML_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens(list(S3_TAGS))
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def _continuation_pieces(texts: list[str], tokenizer: Tokenizer) -> list[str]:
    """``##c`` for every character c that follows another inside a word of texts, sorted."""
    chars: set[str] = set()
    for text in texts:
        for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text)):
            chars.update(word[1:])
    return [f"##{char}" for char in sorted(chars)]


def _train_wordpiece(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A lowercase WordPiece ``tokenizers.Tokenizer`` trained on texts, with the BERT special tokens first.

    The ``tokenizers`` WordPiece trainer gives ``##c`` pieces ids in hash-map order, and merge ties are broken
    by id, so two runs on the same texts can learn different vocabularies. Handing it every ``##c`` piece up
    front, sorted, fixes their ids and makes training deterministic.
    """
    texts = list(texts)
    tokenizer = Tokenizer(WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=[*BERT_SPECIAL_TOKENS, *_continuation_pieces(texts, tokenizer)],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _copy_files(src_dir: Path, dst_dir: Path) -> None:
    """Copy the plain files of src_dir into dst_dir (the tokenizer files into a model folder)."""
    for path in sorted(Path(src_dir).iterdir()):
        if path.is_file():
            shutil.copy2(path, Path(dst_dir) / path.name)


# --- models -------------------------------------------------------------------------------------------


def _qwen2_config(cfg: TinyCausalLMConfig, tokenizer: PreTrainedTokenizerFast) -> Qwen2Config:
    """A Qwen2Config sized from cfg and the tokenizer; bos = eos = pad = <|endoftext|>, as in Qwen2.5."""
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """Greedy by default; stops at <|im_end|> (end of a chat turn) or <|endoftext|>, like Qwen2.5-Instruct."""
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END_TOKEN)
    return GenerationConfig(
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=[im_end_id, tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )


def build_causal_lm(tokenizer_dir: Path, cfg: TinyCausalLMConfig, seed: int, out_dir: Path) -> Path:
    """Save a random-init Qwen2ForCausalLM (weights fixed by seed) with its tokenizer as the folder out_dir."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = _qwen2_config(cfg, tokenizer)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = _generation_config(tokenizer)
    out_dir = Path(out_dir)
    # transformers 5 always writes safetensors (save_pretrained no longer takes safe_serialization).
    model.save_pretrained(out_dir)
    _copy_files(Path(tokenizer_dir), out_dir)
    return out_dir


def build_encoder(texts: Iterable[str], cfg: TinyEncoderConfig, seed: int, vocab_size: int, out_dir: Path) -> Path:
    """Save a random-init BertModel (weights fixed by seed) and a WordPiece tokenizer trained on texts as out_dir."""
    wordpiece = _train_wordpiece(texts, vocab_size)
    tokenizer = BertTokenizerFast(
        vocab=wordpiece.get_vocab(), do_lower_case=True, model_max_length=cfg.max_position_embeddings
    )
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


# --- the whole set --------------------------------------------------------------------------------------


def _count_parameters(model_dir: Path) -> int:
    """Number of stored weights in a folder's safetensors files (a tied LM head is stored, and counted, once)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(path, framework="pt") as weights:
            for name in weights.keys():
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def _describe_model(folder: Path, architecture: str, seed: int) -> dict:
    """One entry of models.json: where the folder is (relative to models.json) and what it holds."""
    return {
        "path": folder.name,
        "architecture": architecture,
        "num_parameters": _count_parameters(folder),
        "vocab_size": len(AutoTokenizer.from_pretrained(folder)),
        "seed": seed,
    }


def _describe(root: Path, cfg: TinyModelsConfig, encoder_training: dict | None) -> dict:
    """The content of models.json: folders, parameter counts, vocab sizes, seeds, the encoder's training
    (None when it stayed random-init) and the config."""
    models = {
        "searcher": _describe_model(root / "searcher", "Qwen2ForCausalLM", cfg.seed),
        "generator": _describe_model(root / "generator", "Qwen2ForCausalLM", cfg.seed + 1),
        "encoder": {**_describe_model(root / "encoder", "BertModel", cfg.seed + 2), "training": encoder_training},
    }
    tokenizer = {"path": "tokenizer", "vocab_size": models["searcher"]["vocab_size"], "s3_tags": list(S3_TAGS)}
    return {"tokenizer": tokenizer, "models": models, "config": cfg.model_dump()}


def _train_encoder_on_world(encoder_dir: Path, world_dir: Path, cfg: EncoderTrainingConfig) -> dict:
    """Train the encoder folder on the world's train split; the stats models.json keeps (no wall-clock time)."""
    stats = train_encoder(encoder_dir, training_pairs(world_dir, cfg.title_pairs, cfg.bridge_pairs), cfg)
    log.info("tiny encoder trained on %s: %s", world_dir, stats)
    return {name: value for name, value in stats.items() if name != "seconds"}


def _build_all(texts: list[str], cfg: TinyModelsConfig, root: Path, world_dir: Path | None) -> None:
    """Build tokenizer, searcher, generator and encoder under root (training the encoder on world_dir's train
    split when given and enabled), then models.json (written last)."""
    train_tokenizer(texts, cfg.vocab_size, root / "tokenizer")
    build_causal_lm(root / "tokenizer", cfg.causal_lm, cfg.seed, root / "searcher")
    build_causal_lm(root / "tokenizer", cfg.causal_lm, cfg.seed + 1, root / "generator")
    build_encoder(texts, cfg.encoder, cfg.seed + 2, cfg.vocab_size, root / "encoder")
    encoder_training = None
    if world_dir is not None and cfg.encoder_training.enabled:
        encoder_training = _train_encoder_on_world(root / "encoder", Path(world_dir), cfg.encoder_training)
    description = _describe(root, cfg, encoder_training)
    (root / MODELS_JSON).write_text(json.dumps(description, indent=2) + "\n")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename staging to out_dir; an existing out_dir is moved aside first and removed once the swap is done."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, old / out_dir.name)
    os.replace(staging, out_dir)
    shutil.rmtree(old)


def build_tiny_models(
    texts: list[str], cfg: TinyModelsConfig, out_dir: Path, world_dir: Path | None = None
) -> dict[str, str]:
    """Build the tiny world's tokenizer, searcher, generator and encoder into out_dir.

    With world_dir (a tiny world folder) and cfg.encoder_training.enabled, the encoder is then trained on the
    world's train questions (never dev or test); without it the encoder stays random-init.
    Everything is written into a temporary sibling folder that is renamed to out_dir at the end, so out_dir
    either holds a complete set (with models.json) or is untouched. Returns the folders' paths by name.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        _build_all(texts, cfg, staging, world_dir)
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {name: str(out_dir / name) for name in ("searcher", "generator", "encoder", "tokenizer")}
