"""In-process generator backend on Hugging Face transformers (DESIGN.md section 2, "Generator"; section 3).

The embedded default for machines without vLLM and for the tiny world: the model is loaded into this process
and answers batches of chats. It follows the OpenAI backend's contract so the two are interchangeable:

- the chat template is applied with `add_generation_prompt=True` (what a chat server does);
- prompts are LEFT-padded, so every row's new tokens start at the same column and a batched reply equals the
  reply to the same chat alone (up to float rounding of padded attention);
- temperature 0 is greedy decoding (the paper's generator); temperature > 0 samples with top-p;
- `max_new_tokens=None` (no limit, the public code's request to its server) is capped at UNCAPPED_NEW_TOKENS;
- only the new tokens are decoded, with special tokens skipped, and the reply is stripped. A blank reply is a
  legitimate (wrong) answer from a working model and is returned as "": it scores 0 like any wrong answer.
  Failures to answer (a model that cannot load or run) raise `GeneratorError`.

The blocking tokenise/generate/decode work runs in a worker thread (`asyncio.to_thread`), so the event loop
that drives the other stages (retrieval calls, other generator batches) stays responsive.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from s3core.generation.base import GenerationParams, GeneratorError, Message

UNCAPPED_NEW_TOKENS = 512  # what "no limit" means in-process: a model that never stops would run forever


def _pick_device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _dtype(name: str) -> torch.dtype:
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ValueError(f"dtype {name!r} is not one of {sorted(dtypes)}")
    return dtypes[name]


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TransformersChatBackend:
    """A causal LM folder loaded with AutoTokenizer + AutoModelForCausalLM, answering chats in batches."""

    name = "transformers"

    def __init__(self, model_path: str, device: str | None = None, dtype: str = "float32", batch_size: int = 16):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_path = str(model_path)
        self.device = _pick_device(device)
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=_dtype(dtype))
        self.model.to(self.device).eval()
        self._lock = threading.Lock()  # one generate at a time on the shared model

    async def health(self) -> None:
        if getattr(self, "model", None) is None or getattr(self, "tokenizer", None) is None:
            raise GeneratorError(f"transformers generator {self.model_path} is not loaded")

    async def generate(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str]:
        return await asyncio.to_thread(self.generate_blocking, conversations, params)

    def generate_blocking(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str]:
        """The synchronous work behind `generate`: one reply per conversation, in order."""
        replies: list[str] = []
        with self._lock:
            for batch in _batches(list(conversations), self.batch_size):
                replies.extend(self._generate_batch(batch, params))
        return replies

    def _encode(self, conversations: Sequence[Sequence[Message]]) -> dict[str, torch.Tensor]:
        prompts = [
            self.tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
            for messages in conversations
        ]
        # The template already wrote every special token the model needs.
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return {key: value.to(self.device) for key, value in encoded.items()}  # each [B, T_prompt]

    def _sampling_kwargs(self, params: GenerationParams) -> dict:
        if params.temperature <= 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p, "top_k": None}

    @torch.no_grad()
    def _generate_batch(self, conversations: Sequence[Sequence[Message]], params: GenerationParams) -> list[str]:
        encoded = self._encode(conversations)
        prompt_len = encoded["input_ids"].shape[1]  # T_prompt (left padding: every prompt ends here)
        output = self.model.generate(
            **encoded,
            max_new_tokens=params.max_new_tokens or UNCAPPED_NEW_TOKENS,
            pad_token_id=self.tokenizer.pad_token_id,
            **self._sampling_kwargs(params),
        )  # [B, T_prompt + T_new]
        new_tokens = output[:, prompt_len:]  # [B, T_new]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [text.strip() for text in texts]
