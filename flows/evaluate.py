"""`s3-evaluate`: score a searcher checkpoint or a baseline on the evaluation QA sets, and report it next to
everything this setting has scored before (DESIGN.md section 3 "Prefect deployments").

Deployments (prefect.yaml): `s3-evaluate/on-checkpoint` runs on every `s3.checkpoint.saved` event with the
event's checkpoint; `s3-evaluate/nightly` re-evaluates the newest checkpoint on a cron schedule. Every stage
is cached: a checkpoint or baseline already scored is not scored again, only the report is refreshed.
"""

from __future__ import annotations

from prefect import flow

from flows.index import index_stages
from flows.params import BaselineName, CheckpointPath, OptionalConfigPath, StoreRoot, TrainKey, TrainStep
from flows.precompute import model_stages
from flows.prepare import prepare_stages
from s3core.agent.inference import baseline_run, eval_question_sets, s3_run
from s3core.config import load_config
from s3core.evaluation.checkpoints import checkpoint_metrics, checkpoint_to_evaluate
from s3core.evaluation.summary import scored_before
from s3core.pipeline import open_store
from tasks.evaluate import evaluation_summary_task, report_task, scores_task
from tasks.inference import contexts_task
from tasks.precompute import stop_local_generators


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
        curve = checkpoint_metrics(found)
        print(f"evaluating {found.label} of {cfg.name!r} from {found.folder}")
    if cfg is None:
        raise ValueError("a baseline needs a config_path: which setting's baselines?")
    if baseline is not None:
        runs += [baseline_run(cfg, b) for b in selected_baselines(cfg, baseline)]
    try:
        state = model_stages(cfg, index_stages(cfg, prepare_stages(cfg)))
        contexts = [contexts_task(cfg, run, questions, state.corpus, state.dense_index, state.bm25_index,
                                  state.models)
                    for questions in eval_question_sets(cfg, state.questions) for run in runs]
        scores = [scores_task(cfg, c, state.generator_models) for c in contexts]
    finally:
        stop_local_generators()
    sets = sorted({(m.stats["data_source"], m.stats["split"]) for m in scores})
    history = scored_before(open_store(cfg), cfg.name, cfg.generator.model, sets, runs_to_skip=[r.name for r in runs])
    everything = scores + history
    names = ", ".join(r.name for r in runs)
    report = report_task(cfg, everything, reward_curve=curve, title=f"s3-evaluate: {names} ({cfg.name})")
    return evaluation_summary_task(cfg, everything, report)


def selected_baselines(cfg, name: str):
    if name == "all":
        return list(cfg.inference.baselines)
    chosen = [b for b in cfg.inference.baselines if b.name == name]
    if not chosen:
        known = ", ".join(b.name for b in cfg.inference.baselines) or "none"
        raise ValueError(f"no baseline {name!r} in {cfg.name}'s inference.baselines (known: {known}; or 'all')")
    return chosen
