"""Random-weight model folders at the published Qwen2.5 shapes, for GPU benchmarks and tests of the paper's
setting where no pretrained weights can be fetched (docs/PERFORMANCE.md; issue 22).

A folder holds a Qwen2 `config.json` of the named shape, a byte-level tokenizer with exactly the shape's
vocabulary size (any text encodes byte by byte; the Qwen chat markers are real special tokens, so chat
templates and stop tokens work) and, unless `weights=False`, random weights in safetensors. Without weights it is what vLLM's
`load_format="dummy"` needs. Speed depends on the shape alone, never on the values of the weights, so these
folders time the real code at the paper's sizes; what they answer is noise.

The shapes are those of the Qwen2.5 configs (hidden size, MLP width, layers, query and key/value heads,
vocabulary, tied embeddings). `tiny` is a 4-layer model for tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@dataclass(frozen=True)
class Shape:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int = 151_936
    tie_word_embeddings: bool = False

    def parameters(self) -> int:
        """Parameter count (embeddings counted once when tied)."""
        head = self.hidden_size // self.num_heads
        attention = self.hidden_size * head * (self.num_heads * 2 + self.num_kv_heads * 2) + head * (
            self.num_heads + 2 * self.num_kv_heads)  # q, k, v, o weights + q, k, v biases
        layer = attention + 3 * self.hidden_size * self.intermediate_size + 2 * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * layer + embeddings + self.hidden_size


QWEN25_SHAPES: dict[str, Shape] = {
    "tiny": Shape(256, 512, 4, 4, 2, vocab_size=4096, tie_word_embeddings=True),
    "0.5b": Shape(896, 4864, 24, 14, 2, tie_word_embeddings=True),
    "1.5b": Shape(1536, 8960, 28, 12, 2, tie_word_embeddings=True),
    "3b": Shape(2048, 11008, 36, 16, 2, tie_word_embeddings=True),
    "7b": Shape(3584, 18944, 28, 28, 4),
    "14b": Shape(5120, 13824, 48, 40, 8),
}


def shape_named(name: str) -> Shape:
    if name not in QWEN25_SHAPES:
        raise ValueError(f"unknown model shape {name!r}: choose one of {sorted(QWEN25_SHAPES)}")
    return QWEN25_SHAPES[name]


def qwen2_config(shape: Shape, max_positions: int = 32_768) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size, "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads, "num_key_value_heads": shape.num_kv_heads,
        "vocab_size": shape.vocab_size, "tie_word_embeddings": shape.tie_word_embeddings,
        "max_position_embeddings": max_positions, "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6,
        "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0, "dtype": "bfloat16",
        "use_sliding_window": False,
    }


def byte_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer of exactly vocab_size tokens: the three chat specials, the 256 byte symbols
    (any text encodes, one token per byte), then filler tokens `w<i>` that only a model emits. Byte-level BPE
    is the form transformers rebuilds a Qwen2 tokenizer from, so AutoTokenizer (and vLLM) load it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_symbols = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(SPECIAL_TOKENS) + len(byte_symbols):
        raise ValueError(f"vocab_size {vocab_size} is below the {len(SPECIAL_TOKENS) + len(byte_symbols)} tokens "
                         "a byte-level tokenizer needs")
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(byte_symbols):
        vocab[symbol] = len(vocab)
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=["<|im_start|>"])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def write_model_folder(name: str, folder: Path | str, weights: bool = True, seed: int = 0,
                       device: str = "cpu", max_positions: int = 32_768) -> Path:
    """A Qwen2.5-shaped folder (config, tokenizer, random bf16 weights unless weights=False); returns it.
    Written under a temporary name and renamed, so a folder that exists is complete."""
    import shutil

    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    shape = shape_named(name)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    config = qwen2_config(shape, max_positions)
    if weights:
        import torch
        from transformers import AutoModelForCausalLM, Qwen2Config

        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(Qwen2Config(**config), dtype=torch.bfloat16)
        model.save_pretrained(partial, safe_serialization=True)
        del model
    (partial / "config.json").write_text(json.dumps(config, indent=1))
    byte_tokenizer(shape.vocab_size).save_pretrained(partial)
    (partial / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "pad_token_id": 0}))
    partial.rename(folder)
    return folder
