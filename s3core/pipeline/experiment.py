"""A seeded experiment: the same setting trained with several seeds, summarised as mean and spread (issue 8).

Each seed is a complete s3-train run of the setting with `seed` (PPO: the critic's head, rollout sampling,
the data order) set to the seed and its own name (`<name>-seed<N>`), so its checkpoints, contexts and scores
are its own, while everything before RL (world, models, indexes, reader, the warm start, the naive-RAG
cache) is shared through the store: the seeds measure how much RL's outcome varies from one warm start.

From each finished seed this module reads, per run of the report (naive RAG, the warm start before RL, the
trained searcher `s3@step-N`, ...) and per question type (`metadata.type`; all questions if there is none):
GenAcc, turns and context documents per question, and the training reward curve. `write_experiment`
writes results.md (mean ± sample standard deviation over seeds, and every seed's numbers), results.json,
and two PNGs linked from results.md: GenAcc by run and question type, and the reward curve per seed.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s3core.config.schema import RunConfig
from s3core.data.formats import question_type
from s3core.evaluation.paired import AVERAGE, BootstrapSettings, paired_rows, scores_frame
from s3core.evaluation.report import _pyplot, save_figure, train_curve
from s3core.evaluation.stage import reference_runs
from s3core.pipeline import prepare
from s3core.store import open_store
from s3core.store.stage import log_progress

ALL = "all"


def seeded_config(cfg: RunConfig, seed: int) -> RunConfig:
    """The setting with RL's seed set to `seed` and its own run name (the stages before RL are shared)."""
    return cfg.model_copy(update={"seed": seed, "name": f"{cfg.name}-seed{seed}"})


@dataclass
class SeedResult:
    seed: int
    genacc: dict[str, dict[str, float]]            # run -> question type (and "all") -> GenAcc
    questions: dict[str, int]                      # question type (and "all") -> count
    turns: dict[str, float]                        # run -> mean policy turns per question
    context_docs: dict[str, float]                 # run -> mean documents in the generator's context
    reward_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, mean reward of the batch)
    steps: int = 0
    splits: list[str] = field(default_factory=list)  # the QA splits the scores are on (inference.splits)
    # "run - reference" -> [difference, low, high] of GenAcc, the paired bootstrap over this seed's questions
    # (unweighted over data sources; evaluation/paired.py): the question-sampling noise beside the seed spread
    paired: dict[str, list[float]] = field(default_factory=dict)


def seed_result(seed: int, scores: Sequence[dict[str, Any]], question_types: dict[str, str],
                train_metrics: Sequence[dict[str, Any]] = ()) -> SeedResult:
    """One seed's numbers from its score rows (every run) and its training metrics."""
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in scores:
        by_run[row["run"]].append(row)
    types = sorted(set(question_types.values()))
    genacc = {}
    for run, rows in by_run.items():
        genacc[run] = {ALL: _mean([r["genacc"] for r in rows])}
        for qtype in types:
            genacc[run][qtype] = _mean([r["genacc"] for r in rows if question_types.get(r["question_id"]) == qtype])
    any_run = next(iter(by_run.values()), [])
    counts = {ALL: len(any_run), **{t: sum(question_types.get(r["question_id"]) == t for r in any_run) for t in types}}
    curve = [(int(m["step"]), float(m["reward_mean"])) for m in train_metrics]
    return SeedResult(seed=seed, genacc=genacc, questions=counts,
                      turns={run: _mean([r["turns"] for r in rows]) for run, rows in by_run.items()},
                      context_docs={run: _mean([len(r["context_doc_ids"]) for r in rows]) for run, rows in by_run.items()},
                      reward_curve=curve, steps=curve[-1][0] if curve else 0,
                      splits=sorted({str(r.get("split", "")) for r in scores} - {""}))


def question_types(question_rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Rows of a questions table (id, ..., metadata) -> id -> metadata.type (the tiny world's single_hop /
    two_hop / comparison), or "all"."""
    return {row["id"]: question_type(row, ALL) for row in question_rows}


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single seed)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary_rows(results: Sequence[SeedResult], runs: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run: GenAcc mean/spread overall and per type, turns and context documents."""
    types = [ALL] + sorted({t for r in results for t in r.questions if t != ALL})
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run}
        for qtype in types:
            row[qtype] = mean_and_spread([r.genacc.get(run, {}).get(qtype, float("nan")) for r in results])
        row["turns"] = mean_and_spread([r.turns.get(run, float("nan")) for r in results])
        row["context_docs"] = mean_and_spread([r.context_docs.get(run, float("nan")) for r in results])
        rows.append(row)
    return rows


def gain_rows(results: Sequence[SeedResult], run: str, over: Sequence[str]) -> list[dict[str, Any]]:
    """Per-seed paired gain of `run` over each of `over`, as mean and spread over seeds, per question type."""
    types = [ALL] + sorted({t for r in results for t in r.questions if t != ALL})
    rows = []
    for other in over:
        row: dict[str, Any] = {"run": f"{run} - {other}"}
        for qtype in types:
            row[qtype] = mean_and_spread([r.genacc.get(run, {}).get(qtype, float("nan"))
                                          - r.genacc.get(other, {}).get(qtype, float("nan")) for r in results])
        rows.append(row)
    return rows


def write_experiment(out_dir: Path, title: str, results: Sequence[SeedResult], runs: Sequence[str],
                     trained_run: str, baselines: Sequence[str], notes: str = "") -> Path:
    """results.md, results.json, genacc_by_type.png and reward_curve.png in `out_dir`; returns results.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summary_rows(results, runs)
    gains = gain_rows(results, trained_run, baselines)
    _write_atomic(out_dir / "results.json", json.dumps(
        {"title": title, "runs": list(runs), "seeds": [asdict(r) for r in results],
         "summary": summary, "gains": gains}, indent=1))
    plot_genacc_by_type(out_dir / "genacc_by_type.png", summary)
    plot_reward_curves(out_dir / "reward_curve.png", results)
    text = results_markdown(title, results, summary, gains, notes)
    _write_atomic(out_dir / "results.md", text)
    return out_dir / "results.md"


def results_markdown(title: str, results: Sequence[SeedResult], summary: list[dict[str, Any]],
                     gains: list[dict[str, Any]], notes: str = "") -> str:
    types = [ALL] + sorted({t for r in results for t in r.questions if t != ALL})
    counts = results[0].questions if results else {}
    seeds = ", ".join(str(r.seed) for r in results)
    head = "| run | " + " | ".join(f"{t} (n={counts.get(t, 0)})" for t in types) + " | turns | context docs |"
    lines = [f"# {title}", "", f"Seeds: {seeds}. Every cell: mean ± sample standard deviation over the seeds.", "",
             f"## GenAcc on the {'/'.join(sorted({s for r in results for s in r.splits})) or 'evaluated'} split", "", head, "|" + "---|" * (len(types) + 3)]
    for row in summary:
        cells = [_pm(row[t]) for t in types] + [_pm(row["turns"], 2), _pm(row["context_docs"], 2)]
        lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired gains (the same seed's runs subtracted, then mean ± spread)", "",
              "| gain | " + " | ".join(types) + " |", "|" + "---|" * (len(types) + 1)]
    for row in gains:
        lines.append(f"| {row['run']} | " + " | ".join(_pm(row[t]) for t in types) + " |")
    pairs = list(dict.fromkeys(k for r in results for k in r.paired))
    if pairs:
        lines += ["", "## Two sources of noise: seeds and questions", "",
                  "The spread over seeds (RL's noise, above) beside each seed's paired 95% bootstrap interval over its "
                  "questions (the evaluation's sampling noise; unweighted over data sources), GenAcc points.", "",
                  "| difference | mean ± seed spread | " + " | ".join(f"seed {r.seed}: diff [95% CI]" for r in results)
                  + " |", "|" + "---|" * (len(results) + 2)]
        for pair in pairs:
            got = [r.paired.get(pair) for r in results]
            spread = mean_and_spread([100 * g[0] for g in got if g])
            cells = [f"{100 * g[0]:+.1f} [{100 * g[1]:+.1f}, {100 * g[2]:+.1f}]" if g else "" for g in got]
            lines.append(f"| {pair} | {spread[0]:+.1f} ± {spread[1]:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "![GenAcc by run and question type](genacc_by_type.png)", "",
              "![Training reward per step, each seed](reward_curve.png)", "", "## Every seed", "",
              "| seed | run | " + " | ".join(types) + " | turns | context docs |", "|" + "---|" * (len(types) + 4)]
    for r in results:
        for run, values in r.genacc.items():
            lines.append(f"| {r.seed} | {run} | " + " | ".join(f"{values.get(t, float('nan')):.3f}" for t in types)
                         + f" | {r.turns[run]:.2f} | {r.context_docs[run]:.2f} |")
    lines += ["", "Reward (mean over the batch) at the first and last training steps:", ""]
    for r in results:
        if r.reward_curve:
            first, last = _window_means(r.reward_curve)
            lines.append(f"- seed {r.seed}: {r.steps} steps; mean reward of the first 10% of steps {first:.3f}, "
                         f"of the last 10% {last:.3f}")
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def plot_genacc_by_type(path: Path, summary: list[dict[str, Any]]) -> None:
    plt = _pyplot()

    types = [k for k in summary[0] if k not in ("run", "turns", "context_docs")] if summary else []
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(summary))
    for i, row in enumerate(summary):
        xs = [j + i * width for j in range(len(types))]
        ax.bar(xs, [row[t][0] for t in types], width, yerr=[row[t][1] for t in types], capsize=3, label=row["run"])
    ax.set_xticks([j + width * (len(summary) - 1) / 2 for j in range(len(types))], types)
    ax.set_ylabel("GenAcc (test)")
    ax.legend(fontsize=8)
    ax.set_title("GenAcc by question type (mean ± sd over seeds)")
    save_figure(fig, path, dpi=110)


def plot_reward_curves(path: Path, results: Sequence[SeedResult]) -> None:
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        if r.reward_curve:
            steps, rewards = zip(*r.reward_curve)
            ax.plot(steps, rewards, alpha=0.35, label=f"seed {r.seed}")
            smooth = _moving_average(rewards, max(1, len(rewards) // 10))
            ax.plot(steps, smooth, color=ax.lines[-1].get_color(), linewidth=2)
    ax.set_xlabel("PPO step")
    ax.set_ylabel("mean reward (GBR) of the batch")
    ax.legend(fontsize=8)
    ax.set_title("Training reward (thin: per step; thick: moving average)")
    save_figure(fig, path, dpi=110)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _moving_average(values: Sequence[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1): i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def _window_means(curve: Sequence[tuple[int, float]]) -> tuple[float, float]:
    k = max(1, len(curve) // 10)
    return statistics.fmean(v for _, v in curve[:k]), statistics.fmean(v for _, v in curve[-k:])


def _mean(values: Sequence[float]) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else float("nan")


def _pm(pair: tuple[float, float], digits: int = 3) -> str:
    mean, spread = pair
    return "—" if math.isnan(mean) else f"{mean:.{digits}f} ± {spread:.{digits}f}"


def result_from_store(seed: int, cfg: RunConfig, state) -> SeedResult:
    """A finished seed's SeedResult from its artifacts (the PipelineState `prepare` returned)."""
    store = open_store(cfg)
    scores = [row for m in state.scores for row in store.read_table(m).to_pylist()]
    evaluated = {(m.stats.get("data_source"), m.stats.get("split")) for m in state.scores}
    questions = [row for m in state.questions if (m.stats.get("data_source"), m.stats.get("split")) in evaluated
                 for row in store.read_table(m).to_pylist()]
    metrics = train_curve(store, state.train) if state.train is not None else []
    result = seed_result(seed, scores, question_types(questions), metrics)
    result.paired = seed_paired(cfg, store, state.scores)
    return result


def seed_paired(cfg: RunConfig, store, scores) -> dict[str, list[float]]:
    """GenAcc difference of every run to the config's reference runs, with its paired bootstrap interval."""
    frame = scores_frame(store, scores)
    present = set(frame.select("run").unique().collect()["run"].to_list())
    references = [r for r in reference_runs(cfg) if r in present]
    settings = BootstrapSettings(cfg.evaluation.bootstrap_resamples, cfg.evaluation.bootstrap_seed)
    return {f"{r['run']} - {r['reference']}": [r["diff"], r["lo"], r["hi"]]
            for r in (paired_rows(frame, references, settings) if references else [])
            if r["data_source"] == AVERAGE and r["metric"] == "genacc"}


def load_seed_results(path: Path) -> list[SeedResult]:
    """The SeedResults of a results.json that write_experiment wrote (one seed or several)."""
    try:
        data = json.loads(Path(path).read_text())
        return [SeedResult(**{**row, "reward_curve": [tuple(p) for p in row.get("reward_curve", [])]})
                for row in data["seeds"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a results.json written by `s3agent experiment` ({exc})") from exc


def merge_experiments(paths: Sequence[Path], out_dir: Path, title: str, notes: str = "") -> Path:
    """One report from seeds run apart (other machines, other store roots): results.json files in, the same
    results.md, results.json and plots as run_experiment out. Seeds must differ and share every run."""
    results = [r for path in paths for r in load_seed_results(path)]
    seeds = [r.seed for r in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the results to merge repeat a seed ({sorted(seeds)}): give each seed once")
    runs = runs_of(results)
    lacking = {r.seed: missing for r in results if (missing := sorted(set(runs) - set(r.genacc)))}
    if lacking:
        raise ValueError(f"seeds lack runs that others have ({lacking}): merge results of the same config")
    return _write_report(out_dir, title, sorted(results, key=lambda r: r.seed), notes)


def runs_of(results: Sequence[SeedResult]) -> list[str]:
    """Every run any seed has, in first-seen order."""
    return list(dict.fromkeys(run for r in results for run in r.genacc))


def _write_report(out_dir: Path, title: str, results: Sequence[SeedResult], notes: str = "") -> Path:
    """The trained run last (its newest checkpoint), gains of it over every other run."""
    runs = runs_of(results)
    trained = [run for run in runs if run.startswith("s3@")]
    if not trained:
        raise ValueError(f"the experiment's runs {list(runs)} have no trained searcher (s3@step-N): does the config train?")
    runs = [run for run in runs if run not in trained] + trained[-1:]
    return write_experiment(out_dir, title, results, runs, trained[-1], [r for r in runs if r != trained[-1]], notes)


def run_experiment(cfg: RunConfig, seeds: Sequence[int], out_dir: Path, progress=None) -> Path:
    """Every seed's full pipeline (finished stages come from the store), then results.md and the plots."""

    results = []
    for seed in seeds:
        seeded = seeded_config(cfg, seed)
        state = prepare(open_store(seeded), seeded, progress or log_progress)
        results.append(result_from_store(seed, seeded, state))
    return _write_report(out_dir, f"Seeded experiment: {cfg.name} ({len(seeds)} seeds)", results)
