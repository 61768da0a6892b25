"""The `train` stage: the s3 searcher trained by PPO, as a directory artifact (DESIGN.md section 3).

    train    step-NNNNNN/ checkpoints (the last `keep_last`), metrics.parquet (one row per step),
             train.log                                                                   dir, resumable

The stage starts the trainer as a subprocess (s3core.rl.launch): through the DeepSpeed launcher on CUDA
machines (`--num_gpus` = the visible GPUs, so one GPU and several GPUs of one host are the same code; a
hostfile for several nodes is not wired in yet, issue 23), and as a plain one-rank
`python -m s3core.rl.launch` on a CPU, where DeepSpeed sets up a one-rank gloo group itself.
The subprocess writes into the stage's staging folder, kept between attempts, so a killed run resumes from
its newest complete checkpoint. The trainer runs under
`s3core.supervise` (it and its ranks stop when this process dies, SIGKILL included) and writes its log
straight to `train.log`, which this stage follows: its `S3EVENT` lines become progress and
`s3.checkpoint.saved` events (payload: run, key, step, path, store); a non-zero exit fails the stage with the
tail of its log. A killed attempt's lines stay in the log, followed by the next attempt's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from s3core.config.schema import RunConfig
from s3core.generation.local_server import free_port
from s3core.models.resolve import in_model_set
from s3core.paths import vllm_python
from s3core.reward.precompute import answering_identity
from s3core.rl.checkpoints import complete_checkpoints
from s3core.store import Manifest, StageContext, StageResult, StageSpec
from s3core.supervise import stop_supervised, supervised

CHECKPOINT_EVENT = "s3.checkpoint.saved"
EVENT_PREFIX = "S3EVENT "  # rank 0 of the trainer prints one such line per event (rl/launch.py)
LOG_TAIL_CHARS = 4000
FOLLOW_POLL_S = 0.05  # how often the log is read for new lines while the trainer runs
# a parent that ran DeepSpeed itself (tests, notebooks) has these set; the trainer must get its own group
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                   "CROSS_RANK", "CROSS_SIZE")


def train_spec(cfg: RunConfig, training_pool: Manifest, naive_rag: Sequence[Manifest], corpus: Sequence[Manifest],
               dense_index: Manifest | None, bm25_index: Manifest | None, tiny_models: Manifest | None) -> StageSpec:
    name = cfg.retrieval.naive_retriever
    index = {"dense": dense_index, "bm25": bm25_index}[name]
    if index is None:
        raise ValueError(f"training searches the {name} index (retrieval.naive_retriever), which was not built")
    inputs = {"training_pool": training_pool, f"{name}_index": index,
              **{f"naive_rag/{i:03d}": m for i, m in enumerate(naive_rag) if m.stats.get("split") == "train"},
              **{f"corpus/{i:03d}": m for i, m in enumerate(corpus)}}
    models = [cfg.searcher.model, cfg.generator.model] + ([cfg.retrieval.dense.encoder] if name == "dense" else [])
    if any(in_model_set(m) for m in models):
        if tiny_models is None:
            raise ValueError("training uses a 'tiny:' model but the tiny models were not built")
        inputs["tiny_models"] = tiny_models
    def build(ctx: StageContext) -> StageResult:
        return build_train(ctx, cfg)

    return StageSpec("train", train_identity(cfg), inputs, build, kind="dir")


def train_identity(cfg: RunConfig) -> dict:
    """Everything that changes a trained searcher, besides the inputs and the code. The rollout batch size,
    the vLLM engine's memory share and start mode, TensorBoard and the sampler check change no sample."""
    return {"searcher": cfg.searcher.model_dump(mode="json", exclude={"rollout_batch_size", "vllm"}),
            "ppo": cfg.ppo.model_dump(mode="json", exclude={"tensorboard", "sampler_check_steps"}),
            "reward": cfg.reward.model_dump(mode="json"), **answering_identity(cfg), "seed": cfg.seed}


def trainer_python(cfg: RunConfig) -> str:
    """The interpreter the trainer runs under: the vLLM environment's when its rollouts come from vLLM."""
    return vllm_python() if cfg.searcher.policy_backend == "vllm" else sys.executable


def launcher_command(spec_path: Path, python: str = sys.executable) -> list[str]:
    """DeepSpeed's launcher over the visible GPUs, or one plain rank on a CPU."""
    import torch

    module = ["-m", "s3core.rl.launch", "--spec", str(spec_path)]
    gpus = torch.cuda.device_count()
    if gpus == 0:
        return [python, *module]
    return [python, "-m", "deepspeed.launcher.runner", "--num_gpus", str(gpus), "--master_port",
            str(free_port()), "--module", *module[1:]]


def trainer_environment() -> dict[str, str]:
    """This process's environment without its own distributed-group variables (the launcher sets fresh ones)."""
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    return {**env, "PYTHONUNBUFFERED": "1"}


def build_train(ctx: StageContext, cfg: RunConfig) -> StageResult:
    run_dir = ctx.staging_dir(resume=True)  # kept between attempts: the checkpoints are the resume state
    spec_path = run_dir / "spec.json"
    spec = {"config": cfg.model_dump(mode="json"), "store_root": str(ctx.store.root), "run_dir": str(run_dir),
            "inputs": {key: m.to_json() for key, m in ctx.inputs.items()}}
    spec_path.write_text(json.dumps(spec))
    log_path = run_dir / "train.log"
    code = run_trainer(launcher_command(spec_path, trainer_python(cfg)), log_path, lambda event: _dispatch(ctx, cfg, event))
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
        raise RuntimeError(f"the trainer exited with code {code}; its log {log_path} ends with:\n{tail}")
    state = _final_state(run_dir)
    pq.write_table(pa.Table.from_pylist(state["metrics"]), run_dir / "metrics.parquet")
    spec_path.unlink()
    last = state["metrics"][-1] if state["metrics"] else {}
    return StageResult(stats={"run": cfg.name, "steps": state["step"], "final_reward_mean": last.get("reward_mean"),
                              "final_genacc_s3": last.get("genacc_s3"), "checkpoint": f"step-{state['step']:06d}"},
                       staging_dir=run_dir)


def run_trainer(command: list[str], log_path: Path, on_event) -> int:
    """Run the trainer under a supervisor (it dies with this process) writing straight into `log_path`, so
    every line survives a kill of this process; follow the log for `S3EVENT` lines; return the exit code."""
    with open(log_path, "ab") as log, open(log_path, "rb") as follower:
        follower.seek(0, os.SEEK_END)  # an earlier attempt's lines (and events) stay where they are
        proc = subprocess.Popen(supervised(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=trainer_environment(), start_new_session=True)
        try:
            pending = b""
            while True:
                finished = proc.poll() is not None
                fresh = follower.read()
                pending += fresh
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", errors="replace")
                    if EVENT_PREFIX in text:
                        on_event(json.loads(text.split(EVENT_PREFIX, 1)[1]))
                if finished:
                    return proc.returncode
                if not fresh:
                    time.sleep(FOLLOW_POLL_S)
        finally:  # this process is failing or being stopped: take the trainer (and its ranks) down with it
            stop_supervised(proc)


def _dispatch(ctx: StageContext, cfg: RunConfig, event: dict) -> None:
    if event["kind"] == "progress":
        ctx.progress(event["done"], event["total"], event["message"])
    elif event["kind"] == "checkpoint":
        ctx.events(CHECKPOINT_EVENT, {"run": cfg.name, "key": ctx.key, "step": event["step"], "path": event["path"],
                                      "store": ctx.store.root if ctx.store.is_local else ctx.store.root_uri})


def _final_state(run_dir: Path) -> dict:
    done = complete_checkpoints(run_dir)
    if not done:
        raise RuntimeError(f"the trainer finished but left no complete checkpoint in {run_dir}")
    return json.loads((done[-1] / "trainer_state.json").read_text())


def final_policy_dir(local_dir: Path) -> Path:
    """The newest checkpoint's Hugging Face folder inside a train artifact."""

    return complete_checkpoints(Path(local_dir))[-1] / "actor"
