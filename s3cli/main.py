"""`s3agent`: run the pipeline, run one stage alone, check configs, inspect the artifact store.

    s3agent run --config configs/tiny.yaml        the s3-train flow (ephemeral Prefect, no server needed)
    s3agent prepare --config configs/tiny.yaml    the s3-prepare flow
    s3agent stage corpus --config ...             one stage alone, without Prefect
    s3agent stages                                the stage graph's stages, in order
    s3agent config check configs/*.yaml           validate config files
    s3agent store ls / verify / gc --config ...   list, verify (everything, every problem) or clean the store
    s3agent store pack warmstart --out DIR ...    copy what a stage needs, to run it on another machine
    s3agent serve retriever --config ...          the /retrieve API over the config's indexes (127.0.0.1)
    s3agent world --out DIR                       write a tiny world to a folder
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from s3core.paths import configure_environment

configure_environment()

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
config_app = typer.Typer(no_args_is_help=True, help="Validate and show run configs.")
store_app = typer.Typer(no_args_is_help=True, help="Inspect the artifact store.")
app.add_typer(config_app, name="config")
app.add_typer(store_app, name="store")
serve_app = typer.Typer(no_args_is_help=True, help="Start the project's servers.")
app.add_typer(serve_app, name="serve")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="run config YAML")]


def _stages_named(name: str) -> tuple[str, ...]:
    """The graph's stages a CLI name means (exit 2 with the valid names if none)."""
    from s3core.pipeline.graph import stage_names

    try:
        return stage_names(name)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


def _load(path: Path):
    from s3core.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None


def _print_outputs(outputs: dict[str, str], seconds: float) -> None:
    typer.echo(f"\nfinished in {seconds:.1f} s; artifacts:")
    for name, uri in outputs.items():
        typer.echo(f"  {name:40s} {uri}")
    reports = [uri for name, uri in outputs.items() if name.startswith("report/")]
    if reports:
        typer.echo(f"\nevaluation report: {reports[-1]}/files/report.md")


@app.command()
def run(
    config: ConfigOpt = Path("configs/tiny.yaml"),
    force_flow: Annotated[bool, typer.Option("--force-flow", help="start the flow even if every stage is complete")] = False,
) -> None:
    """Run the whole s3-train pipeline for CONFIG (finished stages are skipped)."""
    from s3core.pipeline import finished_pipeline

    cfg = _load(config)  # fail fast, before Prefect starts, on a bad config
    start = time.perf_counter()
    if not force_flow and (done := finished_pipeline(cfg)):
        typer.echo(f"every stage of '{cfg.name}' is already complete; nothing to run (--force-flow runs the flow anyway)")
        _print_outputs({f"{m.stage}/{m.key}": m.uri for m in done.all()}, time.perf_counter() - start)
        return
    from flows.train import s3_train

    outputs = s3_train(config_path=str(config))
    _print_outputs(outputs, time.perf_counter() - start)


@app.command()
def experiment(
    config: ConfigOpt = Path("configs/tiny-experiment.yaml"),
    seeds: Annotated[str, typer.Option(help="comma-separated training seeds, e.g. 1,2,3")] = "1,2,3",
    out: Annotated[Path, typer.Option(help="folder for results.md, results.json and the plots")] = Path("docs/results"),
) -> None:
    """Run the setting once per seed (shared stages come from the store) and write mean ± spread over seeds."""
    from s3core.pipeline.experiment import run_experiment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cfg = _load(config)
    try:
        chosen = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        typer.echo(f"--seeds must be comma-separated integers like 1,2,3 (got {seeds!r})", err=True)
        raise typer.Exit(2) from None
    start = time.perf_counter()
    path = run_experiment(cfg, chosen, out)
    typer.echo(f"\nexperiment finished in {time.perf_counter() - start:.1f} s: {path}")


@app.command("experiment-merge")
def experiment_merge(
    results: Annotated[list[Path], typer.Argument(help="results.json files of `s3agent experiment` runs, one or more seeds each")],
    out: Annotated[Path, typer.Option(help="folder for the merged results.md, results.json and plots")] = Path("docs/results"),
    title: Annotated[str, typer.Option(help="the report's title")] = "Seeded experiment",
    notes: Annotated[str, typer.Option(help="a paragraph appended to results.md (where the seeds ran, what differs)")] = "",
) -> None:
    """Merge seeds that ran apart (other machines or store roots) into one report with mean ± spread."""
    from s3core.pipeline.experiment import merge_experiments

    try:
        path = merge_experiments(results, out, title, notes)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"merged {len(results)} result file(s): {path}")


@app.command()
def prepare(config: ConfigOpt = Path("configs/tiny.yaml")) -> None:
    """Run the s3-prepare flow: corpus and QA ingest (and the tiny world)."""
    _load(config)
    from flows.prepare import s3_prepare

    start = time.perf_counter()
    outputs = s3_prepare(config_path=str(config))
    _print_outputs(outputs, time.perf_counter() - start)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help="a stage of the graph, or a group of stages (`s3agent stages` lists them)")],
    config: ConfigOpt = Path("configs/tiny.yaml"),
) -> None:
    """Run one stage alone, without Prefect; the stages it depends on are found (or made) in the store first."""
    from s3core import pipeline

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per generator request otherwise
    wanted = _stages_named(name)
    cfg = _load(config)
    # every stage up to (and including) the wanted one: later stages are not run
    state = pipeline.prepare(pipeline.open_store(cfg), cfg, until=wanted[-1])
    for manifest in state.all():
        if manifest.stage in wanted:
            typer.echo(manifest.summary())


@app.command()
def stages() -> None:
    """List the stages of the graph in order (the names `stage` and `store pack` take), and the groups."""
    from s3core.pipeline.graph import STAGE_GROUPS, STAGES

    for node in STAGES:
        typer.echo(f"  {node.task_name:16s} {node.help}")
    for group, members in STAGE_GROUPS.items():
        typer.echo(f"  {group:16s} = {' + '.join(m.replace('_', '-') for m in members)}")


@serve_app.command("retriever")
def serve_retriever(
    config: ConfigOpt = Path("configs/tiny.yaml"),
    host: Annotated[str | None, typer.Option(help="bind address (default: retrieval.host, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: retrieval.port)")] = None,
    index: Annotated[list[str] | None, typer.Option(help="index to serve (repeat); default: retrieval.serve")] = None,
) -> None:
    """Serve the config's dense and/or BM25 index over the s3 /retrieve API (indexes are built first if missing)."""
    import os

    import uvicorn

    from s3core import pipeline
    from s3core.retrieval.indexes import open_retrievers
    from s3core.retrieval.server import ServerLimits, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per generator request otherwise
    cfg = _load(config)
    store = pipeline.open_store(cfg)
    state = pipeline.prepare(store, cfg, until="bm25_index")  # only the indexes it serves
    retrievers, docs = open_retrievers(store, cfg, state.corpus, state.dense_index, state.bm25_index, state.base_models, index)
    r = cfg.retrieval
    token = os.environ.get(r.token_env) if r.token_env else None
    if r.token_env and not token:
        typer.echo(f"retrieval.token_env names {r.token_env}, which is not set: export it or drop token_env", err=True)
        raise typer.Exit(2)
    limits = ServerLimits(r.max_queries_per_request, r.max_topk, r.max_query_chars, r.batch_wait_ms, r.max_batch_queries, token)
    typer.echo(f"serving {list(retrievers)} over {len(docs):,} passages on http://{host or r.host}:{port or r.port}")
    uvicorn.run(create_app(retrievers, docs, limits), host=host or r.host, port=port or r.port, log_level="warning")


@config_app.command("check")
def config_check(paths: Annotated[list[Path], typer.Argument(help="config files")]) -> None:
    """Validate config files; exit 2 if any is invalid."""
    from s3core.config import ConfigError, load_config

    bad = 0
    for path in paths:
        try:
            load_config(path)
            typer.echo(f"ok       {path}")
        except ConfigError as err:
            bad += 1
            typer.echo(f"INVALID  {err}", err=True)
    raise typer.Exit(2 if bad else 0)


@config_app.command("show")
def config_show(path: Path) -> None:
    """Print a config with every default filled in."""
    import yaml

    typer.echo(yaml.safe_dump(_load(path).model_dump(mode="json"), sort_keys=False))


@store_app.command("ls")
def store_ls(config: ConfigOpt = Path("configs/tiny.yaml")) -> None:
    """List the finished artifacts in the config's store."""
    from s3core.pipeline import open_store

    for manifest in open_store(_load(config)).list_manifests():
        typer.echo(f"{manifest.created_at[:19]}  {manifest.summary()}")


@store_app.command("verify")
def store_verify(config: ConfigOpt = Path("configs/tiny.yaml")) -> None:
    """Check every artifact of the store (sizes, hashes, schemas, unreadable manifests, partial artifacts,
    stray and temporary files, unfinished staging folders) and report every problem; exit 1 if any."""
    from s3core.pipeline import open_store
    from s3core.store.audit import audit_store

    audit = audit_store(open_store(_load(config)))
    for manifest in audit.ok:
        typer.echo(f"ok         {manifest.summary()}")
    for problem in audit.problems:
        typer.echo(problem.line(), err=True)
    garbage = sum(p.garbage for p in audit.problems)
    typer.echo(f"{len(audit.ok)} artifacts ok, {len(audit.problems)} problems"
               + (f" ({garbage} left by failed runs: `s3agent store gc` removes them)" if garbage else ""))
    raise typer.Exit(1 if audit.problems else 0)


@store_app.command("gc")
def store_gc(
    config: ConfigOpt = Path("configs/tiny.yaml"),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be removed, remove nothing")] = False,
    corrupt: Annotated[bool, typer.Option("--corrupt", help="also remove artifacts that fail verification, so their stages rebuild them")] = False,
) -> None:
    """Remove what failed runs left in the store: partial artifacts, stray and temporary files, staging
    folders. They are also the resume state of interrupted runs: run gc when no pipeline is running."""
    from s3core.pipeline import open_store
    from s3core.store.audit import audit_store, collect_garbage

    store = open_store(_load(config))
    removed = collect_garbage(store, audit_store(store), corrupt=corrupt, dry_run=dry_run)
    for problem in removed:
        typer.echo(f"{'would remove' if dry_run else 'removed'} {problem.kind:10s} {problem.path}")
    typer.echo(f"{len(removed)} {'to remove' if dry_run else 'removed'}")


@store_app.command("pack")
def store_pack(
    name: Annotated[str, typer.Argument(help="the stage to run elsewhere (as `s3agent stage` names it)")],
    out: Annotated[Path, typer.Option(help="folder to write the artifacts into, laid out as a store root")],
    config: ConfigOpt = Path("configs/tiny.yaml"),
) -> None:
    """Copy the finished artifacts a stage needs into OUT, to run that stage on a machine without this store.

    There: use OUT as the checkout's store root (`artifacts/` for the shipped configs), run `s3agent stage NAME`,
    then copy `artifacts/<stage>/<key>` back into this store and check it with `s3agent store verify`.
    """
    from s3core.pipeline import pack_inputs

    first = _stages_named(name)[0]
    try:
        packed = pack_inputs(_load(config), first, out)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    for manifest in packed:
        typer.echo(f"packed   {manifest.stage} [{manifest.key}]")
    typer.echo(f"{len(packed)} artifacts in {out}")


@app.command()
def world(
    out: Annotated[Path, typer.Option(help="folder to write corpus.jsonl and train/dev/test.jsonl into")],
    seed: int = 13,
) -> None:
    """Write a tiny world (default sizes) to a folder, outside the store."""
    from s3core.data.tiny_world import TinyWorldConfig, generate_world, write_world

    counts = write_world(generate_world(TinyWorldConfig(seed=seed)), out)
    typer.echo(json.dumps(counts))


if __name__ == "__main__":
    app()
