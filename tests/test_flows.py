"""Flow tests, all under the one shared Prefect test harness (conftest.prefect_harness)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.usefixtures("prefect_harness")

TINY_MODELS = {"seed": 0, "vocab_size": 400, "causal_lm": {"hidden_size": 32, "num_heads": 2, "num_kv_heads": 1,
               "intermediate_size": 64}, "encoder": {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64}}


def _small_config(tmp_path: Path) -> Path:
    world_file = {"kind": "tiny_world"}
    data = {
        "name": "flowtest",
        "store": {"root": str(tmp_path / "store")},
        "world": {"seed": 5, "n_questions": 200},
        "tiny_models": TINY_MODELS,
        "corpus": {"parts": [{"name": "tiny", "source": {**world_file, "file": "corpus.jsonl"}}], "shard_rows": 700},
        "retrieval": {"dense": {"encoder": "tiny:encoder", "dtype": "float32", "batch_size": 64, "embed_shard_rows": 1000},
                      "bm25": {"threads": 1}},
        # the random tied tiny generator answers blank lines (tests/test_generation.py): accept empty answers
        "generator": {"backend": "openai", "serve": "transformers", "model": "tiny:generator", "max_new_tokens": 8,
                      "max_empty_share": 1.0},
        "reward": {"use_judge": False},
        "searcher": {"model": "tiny:searcher"},
        "ppo": {"max_new_tokens_per_turn": 16, "train_batch_size": 4, "mini_batch_size": 2, "total_steps": 1},
        "inference": {"baselines": [{"name": "rag-bm25", "strategy": "naive", "retriever": "bm25"},
                                    {"name": "search-r1", "strategy": "search_r1", "model": "tiny:searcher",
                                     "max_new_tokens_per_turn": 16, "max_searches": 1}]},
        "questions": {
            "shard_rows": 100,
            "sets": [{"name": "tiny", "split": s, "source": {**world_file, "file": f"{s}.jsonl"}} for s in ("train", "test")],
        },
    }
    path = tmp_path / "flowtest.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _task_states(flow_state) -> dict[str, str]:
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    # task-run states reach the API asynchronously (as events): wait until every task run has its final one
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_state.state_details.flow_run_id])))
        if all(run.state is not None and run.state.is_final() for run in runs) or time.monotonic() > deadline:
            return {run.name: run.state.name if run.state else "unknown" for run in runs}
        time.sleep(0.5)


@pytest.fixture(scope="module")
def flow_config(tmp_path_factory) -> Path:
    return _small_config(tmp_path_factory.mktemp("flows"))


def test_s3_train_runs_caches_and_recovers_a_deleted_artifact(flow_config):
    from flows.train import s3_train
    from s3core.config import load_config
    from s3core.generation.local_server import LOCAL_SERVERS
    from s3core.pipeline import open_store

    config = flow_config
    first = s3_train(config_path=str(config), return_state=True)
    outputs = first.result()
    assert first.is_completed()
    stages = sorted(k.split("/")[0] for k in outputs)
    assert stages == ["bm25_index", "contexts", "contexts", "contexts", "corpus", "dense_index", "embeddings", "naive_rag",
                      "naive_rag", "questions", "questions", "report", "retrieval_eval", "scores", "scores", "scores",
                      "tiny_models", "train", "training_pool", "world"]
    assert not LOCAL_SERVERS.running()  # the flow stopped the generator server it started
    store = open_store(load_config(config))
    manifests = {m.stage + "/" + m.key: m for m in store.list_manifests()}
    assert set(manifests) == set(outputs)
    # the walker `s3agent run` asks before booting Prefect finds every stage the flow made (same keys)
    from s3core.pipeline import finished_pipeline

    walked = finished_pipeline(load_config(config))
    assert walked is not None and {f"{m.stage}/{m.key}" for m in walked.all()} == set(outputs)
    assert manifests[next(k for k in outputs if k.startswith("questions"))].row_count in (160, 20)

    # the report's breakdowns and paired differences, from the per-question scores (issue 24)
    report = Path(outputs[next(k for k in outputs if k.startswith("report"))])
    with open(report / "files" / "breakdown.csv", newline="") as handle:
        breakdown = list(csv.DictReader(handle))
    by_type = {(r["run"], r["group"]): int(r["questions"]) for r in breakdown if r["by"] == "question type"}
    assert by_type == {(run, t): n for run in ("rag-bm25", "s3@step-1", "search-r1")
                       for t, n in (("single_hop", 8), ("two_hop", 8), ("comparison", 4))}
    outcomes = [r for r in breakdown if r["by"] == "outcome vs rag-bm25"]
    assert {r["run"] for r in outcomes} == {"s3@step-1", "search-r1"}
    assert all(sum(int(r["questions"]) for r in outcomes if r["run"] == run) == 20 for run in ("s3@step-1", "search-r1"))
    with open(report / "files" / "paired.csv", newline="") as handle:
        paired = [r for r in csv.DictReader(handle) if r["metric"] == "genacc" and r["data_source"] == "tiny"]
    assert {(r["run"], r["reference"], r["questions"]) for r in paired} == {("s3@step-1", "rag-bm25", "20"),
                                                                           ("search-r1", "rag-bm25", "20")}
    assert all(float(r["lo"]) <= float(r["diff"]) <= float(r["hi"]) for r in paired)
    assert "## Paired differences" in (report / "files" / "report.md").read_text()

    second = s3_train(config_path=str(config), return_state=True)  # artifacts complete: tasks skip, results persisted
    assert second.result() == outputs
    third = s3_train(config_path=str(config), return_state=True)  # now Prefect's own cache answers
    states = _task_states(third)
    summaries = ("report-artifacts", "summary-")  # UI posts: run every time
    stage_runs = {name: state for name, state in states.items() if not name.startswith(summaries)}
    assert stage_runs and set(stage_runs.values()) == {"Cached"}, states

    corpus_dir = Path(outputs[next(k for k in outputs if k.startswith("corpus"))])
    shutil.rmtree(corpus_dir)
    fourth = s3_train(config_path=str(config), return_state=True)
    states = _task_states(fourth)
    assert states["corpus-tiny"] == "Completed" and (corpus_dir / "manifest.json").exists()
    assert fourth.result() == outputs  # same content, same keys


def test_s3_evaluate_skips_what_is_scored_and_reports_it_beside_history(flow_config):
    """After s3-train: the newest checkpoint and a baseline are already scored (cached, not run again);
    a checkpoint folder alone brings its own config; the table holds every run the setting has scored."""
    from flows.evaluate import s3_evaluate
    from s3core.config import load_config
    from s3core.pipeline import open_store
    from s3core.rl.checkpoints import latest_checkpoint

    state = s3_evaluate(config_path=str(flow_config), checkpoint="latest", baseline="rag-bm25", return_state=True)
    table = state.result()
    assert [row["run"] for row in table] == ["s3@step-1", "rag-bm25", "search-r1"]  # search-r1: from history
    states = _task_states(state)
    assert {states[n] for n in states if n.startswith(("contexts-", "scores-"))} == {"Cached"}, states

    cfg = load_config(flow_config)
    folder = latest_checkpoint(open_store(cfg), cfg.name).folder
    table = s3_evaluate(checkpoint=str(folder / "actor"))  # no config_path: the checkpoint's run_config.json
    assert table[0]["run"] == "s3@step-1"
    with pytest.raises(ValueError, match="nothing to evaluate"):
        s3_evaluate(config_path=str(flow_config))
    with pytest.raises(ValueError, match="no baseline 'nope'"):
        s3_evaluate(config_path=str(flow_config), baseline="nope")


def test_s3_prepare_reports_a_bad_config_clearly(tmp_path):
    from flows.prepare import s3_prepare
    from s3core.config import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nppo: {mini_batch_size: 7}\n")
    with pytest.raises(ConfigError, match="mini_batch_size"):
        s3_prepare(config_path=str(bad))
