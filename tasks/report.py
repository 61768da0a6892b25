"""A markdown summary of the artifacts a flow produced, for the Prefect UI and the terminal."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact

from s3core.config import RunConfig
from s3core.store import Manifest
from tasks.stage import artifact_key


def artifacts_markdown(title: str, manifests: list[Manifest]) -> str:
    lines = [f"# {title}", "", "| stage | key | size | seconds | location |", "|---|---|---|---|---|"]
    for m in manifests:
        size = f"{m.row_count:,} rows" if m.kind == "table" else f"{len(m.shards)} files"
        lines.append(f"| {m.stage} | `{m.key}` | {size} | {m.timings.get('total_s', 0):.1f} | `{m.uri}` |")
    return "\n".join(lines)


@task(name="report-artifacts")
def report_artifacts_task(cfg: RunConfig, manifests: list[Manifest], title: str) -> dict[str, str]:
    """Post the artifact table to the UI and return {stage[/name]: location}."""
    create_markdown_artifact(artifacts_markdown(title, manifests), key=artifact_key(cfg, "artifacts"))
    print(artifacts_markdown(title, manifests))
    return {f"{m.stage}/{m.key}": m.uri for m in manifests}
