"""`s3-evaluate`: score a searcher checkpoint or a baseline on the evaluation QA sets, and report it next to
everything this setting has scored before (DESIGN.md section 3 "Prefect deployments").

The graph's "evaluate" slice (s3core/pipeline/graph.py): every stage the contexts need (world, models,
indexes, reader, warm start), then contexts, scores and the report, with the runs given here instead of
the config's. Deployments (prefect.yaml): `s3-evaluate/on-checkpoint` runs on every `s3.checkpoint.saved`
event with the event's checkpoint; `s3-evaluate/nightly` re-evaluates the newest checkpoint on a cron
schedule. Every stage is cached: a checkpoint or baseline already scored is not scored again, only the
report is refreshed.
"""

from __future__ import annotations

from prefect import flow

from flows.params import BaselineName, CheckpointPath, OptionalConfigPath, StoreRoot, TrainKey, TrainStep
from s3core.agent.inference import baseline_run, s3_run
from s3core.config import load_config
from s3core.evaluation.report import read_report_tables
from s3core.evaluation.summary import comparison_rows
from s3core.pipeline import slice_plan
from s3core.rl.checkpoints import checkpoint_metrics, checkpoint_to_evaluate
from tasks.stage import run_plan


@flow(name="s3-evaluate", log_prints=True)
def s3_evaluate(config_path: OptionalConfigPath = None, checkpoint: CheckpointPath = None,
                baseline: BaselineName = None, train_key: TrainKey = None, step: TrainStep = None,
                store_root: StoreRoot = None) -> list[dict]:
    """Evaluate one checkpoint (a folder, or "latest") and/or one baseline; returns the comparison table."""
    if checkpoint is None and baseline is None:
        raise ValueError('nothing to evaluate: pass checkpoint (a step-NNNNNN folder, or "latest") and/or baseline '
                         '(a name from the config\'s inference.baselines, or "all")')
    cfg = load_config(config_path) if config_path else None
    runs, curve = [], None
    if checkpoint is not None:
        found, cfg = checkpoint_to_evaluate(checkpoint, cfg, store_root, train_key, step)
        runs.append(s3_run(cfg, found))
        curve = tuple(checkpoint_metrics(found))
        print(f"evaluating {found.label} of {cfg.name!r} from {found.folder}")
    if cfg is None:
        raise ValueError("a baseline needs a config_path: which setting's baselines?")
    if baseline is not None:
        runs += [baseline_run(cfg, b) for b in selected_baselines(cfg, baseline)]
    names = ", ".join(r.name for r in runs)
    plan = slice_plan(cfg, "evaluate", runs=tuple(runs), with_history=True, reward_curve=curve,
                      report_title=f"s3-evaluate: {names} ({cfg.name})")
    state = run_plan(plan)
    if state.report is None:  # nothing was scored: no evaluation QA set
        return []
    per_set, _ = read_report_tables(plan.store.local_dir(state.report))
    return comparison_rows(per_set)


def selected_baselines(cfg, name: str):
    if name == "all":
        return list(cfg.inference.baselines)
    chosen = [b for b in cfg.inference.baselines if b.name == name]
    if not chosen:
        known = ", ".join(b.name for b in cfg.inference.baselines) or "none"
        raise ValueError(f"no baseline {name!r} in {cfg.name}'s inference.baselines (known: {known}; or 'all')")
    return chosen
