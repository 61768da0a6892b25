"""The vLLM paths' plumbing that runs without vLLM or a GPU (issue 22): which interpreter runs vLLM, the
`vllm serve` command the pipeline starts, the configs that choose them, and the names the learner's weights
are pushed to a rollout engine under. The engine and the server themselves are covered by the `gpu` tests in
test_vllm_gpu.py (run through the device tool)."""

from __future__ import annotations

import json
import sys

import pytest
from pydantic import ValidationError

from s3core.agent.vllm_policy import finish_reason, learner_weights
from s3core.config.schema import GeneratorConfig, RunConfig
from s3core.generation.local_server import _serve_command
from s3core.paths import vllm_python
from s3core.rl.stage import launcher_command, train_identity, trainer_python


def test_vllm_runs_under_this_interpreter_unless_told_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv("S3_VLLM_PYTHON", raising=False)
    assert vllm_python() == sys.executable
    other = tmp_path / "python"
    other.write_text("#!/bin/sh\nexec python3 \"$@\"\n")
    other.chmod(0o755)
    monkeypatch.setenv("S3_VLLM_PYTHON", str(other))
    assert vllm_python() == str(other)
    monkeypatch.setenv("S3_VLLM_PYTHON", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="S3_VLLM_PYTHON=.*missing.*not an executable"):
        vllm_python()


def test_the_trainer_with_vllm_rollouts_runs_under_the_vllm_interpreter(monkeypatch, tmp_path):
    other = tmp_path / "vllm-python"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("S3_VLLM_PYTHON", str(other))
    plain = RunConfig.model_validate({"name": "t", "world": {}})
    vllm = RunConfig.model_validate({"name": "t", "world": {}, "searcher": {"policy_backend": "vllm"}})
    assert trainer_python(plain) == sys.executable and trainer_python(vllm) == str(other)
    assert launcher_command(tmp_path / "spec.json", trainer_python(vllm))[0] == str(other)


def _model_folder(path, architecture: str, chat_template: bool = True):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": [architecture]}))
    if chat_template:
        (path / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return path


def test_vllm_serve_command_binds_loopback_with_the_configured_gpu_share(monkeypatch, tmp_path):
    monkeypatch.delenv("S3_VLLM_PYTHON", raising=False)
    folder = _model_folder(tmp_path / "lm", "Qwen2ForCausalLM")
    command = _serve_command(folder, 8123, "cuda", ("--enforce-eager",), kind="vllm", gpu_share=0.15)
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags["--model"] == str(folder) and flags["--host"] == "127.0.0.1" and flags["--port"] == "8123"
    assert flags["--gpu-memory-utilization"] == "0.15" and flags["--generation-config"] == "vllm"
    assert command[-1] == "--enforce-eager"
    with pytest.raises(ValueError, match="unknown server kind 'sglang'"):
        _serve_command(folder, 8123, "cuda", kind="sglang")
    with pytest.raises(ValueError, match="no chat template"):
        _serve_command(_model_folder(tmp_path / "base", "Qwen2ForCausalLM", chat_template=False), 8123, "cuda",
                       kind="vllm")


def test_vllm_cannot_serve_the_extractive_reader(tmp_path):
    from s3core.generation.extractive_reader import READER_ARCHITECTURE_SUFFIX

    reader = _model_folder(tmp_path / "reader", "Bert" + READER_ARCHITECTURE_SUFFIX, chat_template=False)
    with pytest.raises(ValueError, match="extractive reader, which vLLM cannot serve"):
        _serve_command(reader, 8123, "cuda", kind="vllm")
    assert "s3core.generation.reader_server" in _serve_command(reader, 8123, "cuda")  # transformers: ours


def test_generator_serve_vllm_is_a_served_openai_endpoint():
    cfg = GeneratorConfig(serve="vllm", model="/models/qwen", serve_gpu_share=0.2)
    assert cfg.serve == "vllm" and cfg.serve_gpu_share == 0.2
    with pytest.raises(ValidationError, match="serve is 'vllm'.*backend: openai"):
        GeneratorConfig(serve="vllm", backend="anthropic")
    with pytest.raises(ValidationError, match="serve_gpu_share"):
        GeneratorConfig(serve="vllm", serve_gpu_share=1.5)


def test_the_engine_settings_do_not_change_the_train_key():
    """gpu_memory_utilization and eager mode change no sample, so a run re-tuned for memory reuses its train
    artifact; the backend itself is part of the key."""
    cfg = RunConfig.model_validate({"name": "t", "world": {}})

    def identity(searcher: dict) -> dict:
        return train_identity(cfg.model_copy(update={"searcher": cfg.searcher.model_copy(update=searcher)}))

    engine = cfg.searcher.vllm.model_copy(update={"gpu_memory_utilization": 0.5, "enforce_eager": False})
    assert identity({"vllm": engine}) == identity({})
    assert identity({"policy_backend": "vllm"}) != identity({})


def test_learner_weights_are_the_state_dict_by_name():
    """What a rollout engine's load_weights receives: every parameter under its Hugging Face state-dict name
    (vLLM's loaders map those names onto their fused layers), each tensor the parameter itself."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))
    pushed = dict(learner_weights(model))
    state = model.state_dict()
    assert set(pushed) == {name for name, _ in model.named_parameters()} <= set(state)
    assert "model.layers.1.self_attn.q_proj.weight" in pushed and "lm_head.weight" in pushed
    assert all(pushed[name].data_ptr() == state[name].data_ptr() for name in pushed)  # no copies on the way
    tied = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    names = [name for name, _ in learner_weights(tied)]
    assert names == [name for name, _ in tied.named_parameters()] and "lm_head.weight" not in names


def test_vllm_finish_reasons_map_to_ours():
    assert finish_reason("stop", "</query>") == "stop"  # a stop string matched
    assert finish_reason("stop", None) == "eos"
    assert finish_reason("stop", 151645) == "eos"  # a stop token id is the end of the sequence
    assert finish_reason("length", None) == "length"
