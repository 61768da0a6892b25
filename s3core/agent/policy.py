"""Searcher policy backends: continue token sequences, returning the new tokens and their log-probs
(DESIGN.md section 3, "Searcher rollouts").

`TransformersPolicy` runs anywhere (CPU or GPU). It decodes with its own loop over the model's KV cache
rather than `model.generate`, because training needs, for every row, exactly the tokens that were sampled
(no padding, nothing past a stop string) and their log-probs under the sampling distribution:

- rows are LEFT-padded so all of them decode in step; position ids follow the real tokens;
- temperature 0 is greedy; otherwise logits are divided by the temperature, nucleus (top-p) filtered and
  sampled with a seeded generator. The returned log-prob is log softmax(logits / T) of the sampled token,
  before top-p filtering: the quantity PPO's ratio compares against (greedy: log softmax(logits));
- a row stops at EOS (kept), at a stop string (kept, checked on the decoded tail of the row), or at
  `max_new_tokens`.

vLLM's engine is the other backend (agent/vllm_policy.py, GPU only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from s3core.agent.sampling import Policy, PolicyOutput, SamplingSettings

__all__ = ["Policy", "PolicyOutput", "SamplingSettings", "TransformersPolicy", "choose_tokens", "left_pad",
           "top_p_filter"]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (ids [B, T], attention mask [B, T]) padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            ids[i, width - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[i, width - len(seq):] = 1
    return ids, mask


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits [B, V] with everything outside the smallest set of tokens of mass >= top_p set to -inf."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # [B, V]
    cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)  # [B, V]
    drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p  # mass before this token >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def choose_tokens(logits: torch.Tensor, settings: SamplingSettings, generator: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens [B] and their log-probs [B] from last-position logits [B, V]."""
    logits = logits.float()
    if settings.temperature <= 0:
        logprobs = torch.log_softmax(logits, dim=-1)  # [B, V]
        tokens = logits.argmax(dim=-1)  # [B]
    else:
        scaled = logits / settings.temperature  # [B, V]
        logprobs = torch.log_softmax(scaled, dim=-1)
        probs = torch.softmax(top_p_filter(scaled, settings.top_p), dim=-1)  # [B, V]
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # [B]
    return tokens, logprobs.gather(-1, tokens[:, None]).squeeze(-1)


class TransformersPolicy:
    """A causal LM folder (AutoModelForCausalLM) continuing batches of token sequences."""

    logprob_temperature = None  # its log-probs are at the sampling temperature (module docstring)

    def __init__(self, model_path: str, device: str | None = None, dtype: str = "float32", batch_size: int = 64,
                 model=None, tokenizer=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = batch_size
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.model_path)
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        self.model = model if model is not None else AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtypes[dtype])
        self.model.to(self.device).eval()
        eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else next(iter(self.eos_ids))

    def continue_sequences(self, sequences: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PolicyOutput]:
        generator = None
        if settings.temperature > 0:
            generator = torch.Generator(device=self.device).manual_seed(settings.seed)
        outputs: list[PolicyOutput] = []
        for start in range(0, len(sequences), self.batch_size):
            outputs.extend(self._continue_batch(sequences[start:start + self.batch_size], settings, generator))
        return outputs

    def _stopped_by_string(self, tokens: list[int], stop_strings: tuple[str, ...]) -> bool:
        if not stop_strings:
            return False
        # checked after every token, so a stop string first appears within the last few tokens
        tail = self.tokenizer.decode(tokens[-16:], skip_special_tokens=False)
        return any(s in tail for s in stop_strings)

    @torch.no_grad()
    def _continue_batch(self, sequences: Sequence[Sequence[int]], settings: SamplingSettings,
                        generator: torch.Generator | None) -> list[PolicyOutput]:
        ids, mask = left_pad(sequences, self.pad_id)  # [B, T], [B, T]
        ids, mask = ids.to(self.device), mask.to(self.device)
        batch = ids.shape[0]
        new_tokens: list[list[int]] = [[] for _ in range(batch)]
        new_logprobs: list[list[float]] = [[] for _ in range(batch)]
        finish = ["length"] * batch
        running = [True] * batch  # host copy of `active`, so the per-row bookkeeping needs no GPU syncs
        active = torch.ones(batch, dtype=torch.bool, device=self.device)  # [B]
        position = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
        # logits of the last position only: the full [B, T, V] would be ~70 GB at B=256, T=900, V=152k
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1)
        cache, logits = out.past_key_values, out.logits[:, -1, :]  # [B, V]
        next_pos = position[:, -1] + 1  # [B]
        for _ in range(settings.max_new_tokens):
            tokens, logprobs = choose_tokens(logits, settings, generator)  # [B], [B]
            tokens = torch.where(active, tokens, torch.full_like(tokens, self.pad_id))
            host_tokens, host_logprobs = tokens.tolist(), logprobs.tolist()  # one device->host copy per step
            for row in range(batch):
                if not running[row]:
                    continue
                token = host_tokens[row]
                new_tokens[row].append(token)
                new_logprobs[row].append(host_logprobs[row])
                if token in self.eos_ids:
                    finish[row], running[row] = "eos", False
                elif self._stopped_by_string(new_tokens[row], settings.stop_strings):
                    finish[row], running[row] = "stop", False
            if not any(running):
                break
            active = torch.tensor(running, device=self.device)
            mask = torch.cat([mask, active.long()[:, None]], dim=-1)  # [B, T + 1]; finished rows attend no more
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache, logits = out.past_key_values, out.logits[:, -1, :]
            next_pos = next_pos + 1
        return [PolicyOutput(t, lp, f) for t, lp, f in zip(new_tokens, new_logprobs, finish)]
