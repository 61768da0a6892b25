"""The `s3agent` command line: config checks, single stages, store listing and verification."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from s3cli.main import app

runner = CliRunner()


def test_config_check_accepts_shipped_configs_and_rejects_bad_ones(tmp_path, repo_root):
    shipped = sorted((repo_root / "configs").glob("*.yaml"))
    ok = runner.invoke(app, ["config", "check", *[str(p) for p in shipped]])
    assert ok.exit_code == 0 and ok.output.count("ok ") == len(shipped) >= 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nworld: {}\nretrieval: {naive_topk: 0}\n")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2 and "retrieval.naive_topk" in result.output


def test_stage_ls_and_verify(tmp_path, shared_data):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "cli", "store": {"root": str(tmp_path / "store")},
        "corpus": {"parts": [{"name": "w", "source": {"kind": "file", "path": str(shared_data / "wiki18-sample.jsonl")}}], "shard_rows": 400},
        "questions": {"sets": [{"name": "nq", "split": "test", "source": {"kind": "file", "path": str(shared_data / "nq-sample.jsonl")}}]},
    }))
    assert runner.invoke(app, ["stage", "corpus", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["stage", "questions", "--config", str(config)]).exit_code == 0
    listing = runner.invoke(app, ["store", "ls", "--config", str(config)])
    assert "corpus" in listing.output and "1000 rows" in listing.output and "17 rows" in listing.output
    assert runner.invoke(app, ["store", "verify", "--config", str(config)]).exit_code == 0

    shard = next(Path(tmp_path / "store" / "corpus").rglob("part-00001.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    result = runner.invoke(app, ["store", "verify", "--config", str(config)])
    assert result.exit_code == 1 and "CORRUPT" in result.output and "part-00001.parquet" in result.output


def test_unknown_stage_is_refused(repo_root):
    result = runner.invoke(app, ["stage", "indexx", "--config", str(repo_root / "configs" / "tiny.yaml")])
    assert result.exit_code == 2 and "unknown stage 'indexx'" in result.output


def test_store_pack_copies_what_a_stage_needs_into_a_store_that_finds_it(tmp_path, shared_data):
    def config(root: Path) -> Path:
        path = root.parent / f"{root.name}.yaml"
        path.write_text(yaml.safe_dump({
            "name": "pack", "store": {"root": str(root)},
            "corpus": {"parts": [{"name": "w", "source": {"kind": "file", "path": str(shared_data / "wiki18-sample.jsonl")}}]},
            "questions": {"sets": [{"name": "nq", "split": "test", "source": {"kind": "file", "path": str(shared_data / "nq-sample.jsonl")}}]},
        }))
        return path

    here, there = config(tmp_path / "store"), config(tmp_path / "packed")
    assert runner.invoke(app, ["stage", "corpus", "--config", str(here)]).exit_code == 0
    missing = runner.invoke(app, ["store", "pack", "index", "--out", str(tmp_path / "packed"), "--config", str(here)])
    assert missing.exit_code == 1 and "stage questions" in missing.output

    assert runner.invoke(app, ["stage", "questions", "--config", str(here)]).exit_code == 0
    packed = runner.invoke(app, ["store", "pack", "index", "--out", str(tmp_path / "packed"), "--config", str(here)])
    assert packed.exit_code == 0 and "2 artifacts" in packed.output
    assert not list((tmp_path / "packed").rglob("*.partial"))
    # the packed folder is a store in which both stages are found under their keys, with intact files
    manifests = {p: p.read_text() for p in (tmp_path / "packed").rglob("manifest.json")}
    rerun = runner.invoke(app, ["stage", "questions", "--config", str(there)])
    assert rerun.exit_code == 0 and "17 rows" in rerun.output
    assert {p: p.read_text() for p in (tmp_path / "packed").rglob("manifest.json")} == manifests  # found, not rebuilt
    assert runner.invoke(app, ["store", "verify", "--config", str(there)]).exit_code == 0
    assert {p.parent.parent.name for p in (tmp_path / "packed").rglob("manifest.json")} == {"corpus", "questions"}
