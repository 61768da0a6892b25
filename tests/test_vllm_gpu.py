"""vLLM on a CUDA GPU (issue 22): the colocated rollout engine samples, takes the learner's weights in place,
sleeps through an update and wakes with them; the pipeline's `serve: vllm` generator answers chats and is
stopped by PID. Marked `gpu`: run through the device tool (docs/PERFORMANCE.md), never in CI.

The model is a 4-layer random-weight Qwen2 (s3core/models/shapes.py, `tiny`): what is checked is that vLLM
and the learner compute the same distribution from the same weights, which any weights show.
"""

from __future__ import annotations

import asyncio
import math

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from s3core.models.shapes import write_model_folder

    return write_model_folder("tiny", tmp_path_factory.mktemp("shape") / "tiny", seed=0, max_positions=4096)


def _prompts(tokenizer, n: int = 8) -> list[list[int]]:
    chats = [[{"role": "user", "content": f"Question {i}: who wrote the play number {i}?"}] for i in range(n)]
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    return [tokenizer(t, add_special_tokens=False).input_ids for t in texts]


def _learner_gap(model, prompts, outputs) -> float:
    """Mean |log p_model - log p_vllm| of vLLM's sampled tokens (temperature 1, the engine's raw log-probs)."""
    gaps = []
    with torch.no_grad():
        for prompt, out in zip(prompts, outputs):
            ids = torch.tensor([prompt + out.tokens], device="cuda")  # [1, T]
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()  # [R, V]
            logp = torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt):, None]).squeeze(-1)  # [R]
            gaps.append((logp - torch.tensor(out.logprobs, device="cuda")).abs())
    return float(torch.cat(gaps).mean())


def test_colocated_engine_takes_the_learners_weights_and_sleeps_through_updates(model_dir):
    from transformers import AutoModelForCausalLM

    from s3core.agent.sampling import SamplingSettings
    from s3core.agent.vllm_policy import EngineSettings, VLLMPolicy, learner_weights
    from s3core.rl.engine import ensure_distributed

    ensure_distributed()  # the learner's one-rank group, which the engine joins (external_launcher)
    engine = VLLMPolicy(str(model_dir), EngineSettings(gpu_memory_utilization=0.15, enforce_eager=True,
                                                       dtype="bfloat16", max_model_len=1024), colocated=True, seed=0)
    learner = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    prompts = _prompts(engine.tokenizer)
    settings = SamplingSettings(max_new_tokens=24, temperature=0.6, top_p=0.95, seed=1)

    before = engine.continue_sequences(prompts, settings)
    assert all(len(o.tokens) == 24 and o.finish == "length" for o in before)  # random weights never stop early
    same = _learner_gap(learner, prompts, before)
    assert same < 0.05, f"vLLM and the learner disagree on the same weights: mean |delta logp| {same:.4f}"

    # an "update": new weights in the learner, pushed in place while the engine sleeps
    torch.manual_seed(123)
    for param in learner.parameters():
        param.data.normal_(0.0, 0.05)
    free_awake = torch.cuda.mem_get_info()[0]
    engine.sleep()
    freed = torch.cuda.mem_get_info()[0] - free_awake
    assert freed > 0.1 * 0.15 * torch.cuda.mem_get_info()[1], f"sleep freed only {freed / 2**30:.2f} GiB"
    pushed = engine.load_weights(learner_weights(learner))
    assert pushed == len(list(learner.parameters())) and not engine.asleep
    after = engine.continue_sequences(prompts, settings)
    synced = _learner_gap(learner, prompts, after)
    assert synced < 0.05, f"after the sync vLLM samples from other weights: mean |delta logp| {synced:.4f}"
    assert [o.tokens for o in after] != [o.tokens for o in before]

    # and a stop string ends a row where it appears, kept, as the rollout protocol needs
    stop = engine.tokenizer.decode(after[0].tokens[3:5])
    stopped = engine.continue_sequences(prompts[:1], SamplingSettings(24, 0.6, 0.95, (stop,), seed=1))[0]
    assert stopped.finish == "stop" and stop in engine.tokenizer.decode(stopped.tokens), stopped
    assert all(math.isfinite(lp) for lp in stopped.logprobs)


def test_vllm_served_generator_answers_chats_and_stops_by_pid(model_dir, tmp_path):
    import os

    from s3core.generation.base import GenerationParams
    from s3core.generation.local_server import LocalServerPool
    from s3core.generation.openai_backend import OpenAIChatBackend

    pool = LocalServerPool()
    base_url = pool.base_url(model_dir, tmp_path, kind="vllm", gpu_share=0.1, timeout_s=600,
                             extra_args=("--enforce-eager", "--max-model-len", "1024"))
    assert base_url.startswith("http://127.0.0.1:")
    backend = OpenAIChatBackend(base_url=base_url, model=str(model_dir.resolve()), concurrency=8)
    chats = [[{"role": "user", "content": f"Doc: Paris is in France.\nQuestion {i}: where is Paris?"}]
             for i in range(16)]
    asyncio.run(backend.health())
    greedy = GenerationParams(max_new_tokens=8, temperature=0.0)
    answers = asyncio.run(backend.generate(chats, greedy))
    assert len(answers) == 16 and all(a and a.strip() for a in answers), answers
    assert asyncio.run(backend.generate(chats[:1], greedy)) == answers[:1]  # greedy: the same reply again
    (pid,) = pool.running()
    pool.stop_all()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
