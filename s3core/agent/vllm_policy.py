"""vLLM as the searcher's rollout engine: offline generation for inference, and in training an engine
colocated with the DeepSpeed learner on the same GPU(s), its weights replaced in place after every update
(DESIGN.md section 3, "Searcher rollouts" and "Training"; the paper samples its rollouts with vLLM).

The engine core always runs inside the calling process (VLLM_ENABLE_V1_MULTIPROCESSING=0; executor "uni",
or "external_launcher" when colocated), so no engine process is forked from a process that already holds
CUDA state or models.

Colocation (`colocated=True`, the training path):
- the engine runs inside the learner's process (`distributed_executor_backend="external_launcher"`, which
  also turns vLLM's engine-core subprocess off), on the torch.distributed group DeepSpeed already set up:
  each rank holds a whole engine (tensor parallel 1) and samples its own share of the batch;
- it is created before the learner loads any model: vLLM sizes its KV cache from the memory free at start
  (`gpu_memory_utilization` is its share of the whole GPU), and an engine started after transformers had
  built a model in the same process was seen to hang at start-up (../shared/offline-gpu/README.md);
- between rollouts it sleeps (`sleep_between_steps`): level 2 frees its weights and KV cache for the update;
  `wake_up(["weights"])`, the learner's weights loaded in place (`load_weights`, by Hugging Face parameter
  names, so no checkpoint is written), then `wake_up(["kv_cache"])` and a prefix-cache reset (cached
  prefixes hold keys and values of the old weights).

Log-probs: vLLM returns the raw log-probs, log softmax(logits) at temperature 1 (`logprobs_mode`
"raw_logprobs"); `logprob_temperature` says so, and the trainer compares them with the learner's at the
same temperature in its first steps (`ppo.sampler_check_steps`, metric `sampler_logp_gap`). The learner
recomputes the log-probs PPO uses, so this is a check of the weight sync and of numerics, never an input.

Seen on one H200 with vLLM 0.20.0 (docs/PERFORMANCE.md, issue 22):
- the colocated engine agrees with the learner on the same weights and follows pushed weights
  (tests/test_vllm_gpu.py);
- the tiny world trained with it, was killed and resumed;
- inference through the "uni" engine in the Prefect process did not hang.

vLLM is imported lazily: nothing here runs on a machine without it, and the CPU suite never imports it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from s3core.agent.sampling import PolicyOutput, SamplingSettings

NEED_VLLM = ("searcher.policy_backend 'vllm' needs vLLM 0.20 on a CUDA machine (PYTHON=python3.12 S3_GPU=1 "
             "scripts/setup_env.sh installs it; or set S3_VLLM_PYTHON to an environment that has it); use "
             "policy_backend: transformers elsewhere")


@dataclass(frozen=True)
class EngineSettings:
    """What a vLLM engine is started with (SearcherConfig.vllm)."""

    gpu_memory_utilization: float = 0.3
    enforce_eager: bool = True
    max_model_len: int | None = None
    dtype: str = "bfloat16"
    sleep_between_steps: bool = True
    load_format: str = "auto"  # "dummy": random weights of the folder's shape (benchmarks; load_weights fills them)
    # sample only ids the tokenizer has: for a random-weight shape whose tokenizer is smaller than its vocabulary
    # (a trained model never samples the padded rows, and the mask costs a vocabulary-sized list per request)
    restrict_to_tokenizer: bool = False


def finish_reason(finish: str, stop_reason) -> str:
    """vLLM's (finish_reason, stop_reason) as ours: a matched stop string is 'stop', end of sequence 'eos'."""
    if finish == "stop":
        return "stop" if isinstance(stop_reason, str) else "eos"
    return "length"


class VLLMPolicy:
    """A vLLM engine continuing batches of token sequences; in training, colocated with the learner."""

    logprob_temperature = 1.0  # raw log-probs: log softmax(logits), whatever the sampling temperature

    def __init__(self, model_path: str, settings: EngineSettings = EngineSettings(), colocated: bool = False,
                 seed: int = 0, tokenizer=None):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ImportError(NEED_VLLM) from exc
        from transformers import AutoTokenizer

        self.model_path, self.settings, self.colocated = str(model_path), settings, colocated
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(self.model_path)
        # the engine core in this process, never a forked or spawned one (see the module docstring)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        engine_kwargs = {"distributed_executor_backend": "external_launcher" if colocated else "uni"}
        if settings.max_model_len is not None:
            engine_kwargs["max_model_len"] = settings.max_model_len
        self.llm = LLM(model=self.model_path, dtype=settings.dtype, seed=seed,
                       gpu_memory_utilization=settings.gpu_memory_utilization, enforce_eager=settings.enforce_eager,
                       enable_sleep_mode=colocated and settings.sleep_between_steps, tensor_parallel_size=1,
                       enable_prefix_caching=True, load_format=settings.load_format, **engine_kwargs)
        self.asleep = False
        self.allowed_token_ids = list(range(len(self.tokenizer))) if settings.restrict_to_tokenizer else None

    def continue_sequences(self, sequences: Sequence[Sequence[int]], settings: SamplingSettings) -> list[PolicyOutput]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if self.asleep:
            raise RuntimeError("the vLLM engine is asleep: call load_weights (or wake) before sampling")
        params = SamplingParams(
            temperature=settings.temperature, top_p=settings.top_p if settings.temperature > 0 else 1.0,
            max_tokens=settings.max_new_tokens, stop=list(settings.stop_strings), include_stop_str_in_output=True,
            logprobs=0, seed=settings.seed, skip_special_tokens=False, allowed_token_ids=self.allowed_token_ids,
        )
        results = self.llm.generate([TokensPrompt(prompt_token_ids=list(s)) for s in sequences], params, use_tqdm=False)
        outputs = []
        for result in results:
            completion = result.outputs[0]
            tokens = list(completion.token_ids)
            logprobs = [entry[token].logprob for token, entry in zip(tokens, completion.logprobs)]
            outputs.append(PolicyOutput(tokens, logprobs, finish_reason(completion.finish_reason,
                                                                        completion.stop_reason)))
        return outputs

    # -- training: sleep through the update, then take the learner's weights ------------------------------
    def sleep(self) -> None:
        """Free the engine's GPU memory (weights and KV cache) while the learner updates."""
        if self.colocated and self.settings.sleep_between_steps and not self.asleep:
            self.llm.sleep(level=2)
            self.asleep = True

    def load_weights(self, named_tensors: Iterable[tuple[str, object]]) -> int:
        """Replace the engine's weights in place by (HF parameter name, tensor) pairs; returns how many.
        Wakes a sleeping engine: its weights first, its KV cache once the new weights are in."""
        if self.asleep:
            import torch

            torch.cuda.empty_cache()  # the learner's cached blocks back to the driver, where the engine's come from
            self.llm.wake_up(tags=["weights"])
        count = [0]

        def counted():
            for name, tensor in named_tensors:
                count[0] += 1
                yield name, tensor

        self.llm.apply_model(lambda model: model.load_weights(counted()))
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()  # cached prefixes were computed with the old weights
        return count[0]


def learner_weights(model) -> Iterator[tuple[str, object]]:
    """A Hugging Face causal LM's parameters by their state-dict names, each whole and each once (as
    `named_parameters` lists them): ZeRO-3 partitions are gathered one module at a time, so no more than one
    module's full weights exist at once."""
    import contextlib

    import torch

    def gathered(params):
        partitioned = [p for p in params if hasattr(p, "ds_id")]  # only ZeRO-3 marks its partitions
        if not partitioned:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(partitioned)

    seen: set[int] = set()  # a tied lm_head is the embedding itself: sent once, under the embedding's name
    with torch.no_grad():
        for module_name, module in model.named_modules():
            own = [(name, p) for name, p in module.named_parameters(recurse=False) if id(p) not in seen]
            if not own:
                continue
            seen.update(id(p) for _, p in own)
            with gathered([p for _, p in own]):
                for name, param in own:
                    yield (f"{module_name}.{name}" if module_name else name), param.data
