"""A stage's code identity is derived from what its build function imports (s3core/store/code_identity.py).

The touch tests copy s3core/ to a temporary folder, edit one module there and compute the stage keys of
configs/tiny.yaml in a fresh interpreter (for fixed stand-in input manifests, so only the code differs):
editing the code a stage runs must change its key, editing anything else must not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from s3core.store.code_identity import code_files_of, module_closure

REPO = Path(__file__).resolve().parents[1]

KEYS_SCRIPT = '''
import json, sys
from s3core.agent.inference import s3_run
from s3core.agent.stage import contexts_spec
from s3core.config import load_config
from s3core.data.stage import corpus_spec, world_spec
from s3core.evaluation.stage import report_spec
from s3core.reward.stage import naive_rag_spec
from s3core.rl.stage import train_spec
from s3core.store import Manifest


def stand_in(stage, **stats):
    return Manifest(stage=stage, key=stage, kind="table", uri=f"/nowhere/{stage}", config_hash="-", code_hash="-",
                    content_hash=f"{stage}-content", stats=stats)


cfg = load_config(sys.argv[1])
corpus = [stand_in("corpus")]
questions = stand_in("questions", split="test", data_source="tiny")
specs = {
    "world": world_spec(cfg),
    "corpus": corpus_spec(cfg, cfg.corpus.parts[0], stand_in("world")),
    "naive_rag": naive_rag_spec(cfg, questions, corpus, stand_in("dense_index"), stand_in("bm25_index"),
                                stand_in("reader")),
    "train": train_spec(cfg, stand_in("training_pool"), [stand_in("naive_rag", split="train")], corpus,
                        stand_in("dense_index"), stand_in("bm25_index"), stand_in("warmstart")),
    "contexts": contexts_spec(cfg, s3_run(cfg), questions, corpus, stand_in("dense_index"), stand_in("bm25_index"),
                              stand_in("warmstart")),
    "report": report_spec(cfg, [stand_in("scores")]),
}
print(json.dumps({name: spec.key for name, spec in specs.items()}))
'''


@pytest.fixture(scope="module")
def copied_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("codeid")
    shutil.copytree(REPO / "s3core", root / "s3core", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "keys.py").write_text(KEYS_SCRIPT)
    return root


def _keys(root: Path) -> dict[str, str]:
    out = subprocess.run([sys.executable, str(root / "keys.py"), str(REPO / "configs" / "tiny.yaml")], cwd=root,
                         env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _touched(root: Path, module: str) -> dict[str, str]:
    """The keys with one line appended to `module` (relative to s3core/), then the file put back."""
    path = root / "s3core" / module
    original = path.read_bytes()
    path.write_bytes(original + b"\n# touched\n")
    try:
        return _keys(root)
    finally:
        path.write_bytes(original)


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_the_copied_tree_gives_the_checkouts_keys(copied_tree):
    """The copy is a faithful stand-in: same files, same keys as this checkout."""
    here = subprocess.run([sys.executable, str(copied_tree / "keys.py"), str(REPO / "configs" / "tiny.yaml")],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(here.stdout) == _keys(copied_tree)


def test_touching_the_reader_changes_naive_rag_and_touching_the_report_does_not(copied_tree):
    base = _keys(copied_tree)
    # configs/tiny.yaml's generator is the extractive reader: its model code is naive_rag's code
    assert "naive_rag" in _changed(base, _touched(copied_tree, "generation/extractive_reader.py"))
    assert _changed(base, _touched(copied_tree, "evaluation/report.py")) == {"report"}


@pytest.mark.parametrize(("module", "changes", "keeps"), [
    ("data/tiny_world.py", {"world"}, {"corpus", "naive_rag", "train", "report"}),
    ("data/ingest.py", {"corpus"}, {"world", "naive_rag", "train"}),
    ("rl/launch.py", {"train"}, {"naive_rag", "contexts", "report"}),  # the trainer subprocess's entry point
    ("rl/ppo.py", {"train"}, {"naive_rag", "contexts", "report"}),
    ("agent/protocol.py", {"contexts", "train"}, {"naive_rag", "world", "report"}),
    ("prompts/generator_system.txt", {"naive_rag", "train"}, {"world", "corpus", "report"}),
    ("reader/training.py", set(), {"naive_rag", "train", "contexts"}),  # reaches them through the reader artifact
])
def test_a_stage_key_follows_exactly_the_code_it_runs(copied_tree, module, changes, keeps):
    changed = _changed(_keys(copied_tree), _touched(copied_tree, module))
    assert changes <= changed and not (keeps & changed), (module, changed)


def test_code_files_follow_lazy_imports_and_skip_type_checking_blocks():
    from s3core.models.stage import tiny_models_spec
    from s3core.store import Manifest

    world = Manifest(stage="world", key="w", kind="dir", uri="/w", config_hash="-", code_hash="-", content_hash="w")
    from s3core.config import load_config

    files = tiny_models_spec(load_config(REPO / "configs" / "tiny.yaml"), world).code_files
    assert "models/tiny.py" in files  # imported inside the build function
    assert "models/stage.py" in files and "data/tiny_world.py" in files
    assert not any(f.startswith(("rl/", "evaluation/", "agent/")) for f in files)
    assert "config/schema.py" not in files  # config values enter the key through the config hash


def test_a_string_naming_a_module_counts_and_the_prompts_come_with_their_package():
    files = {str(p.relative_to(REPO / "s3core")) for p in module_closure(["s3core.prompts", "s3core.rl.stage"])}
    assert {"prompts/__init__.py", "prompts/judge.txt", "prompts/searcher_s3.txt"} <= files
    # rl/stage.py imports nothing of the trainer: it starts `python -m s3core.rl.launch`
    assert {"rl/launch.py", "rl/trainer.py", "rl/ppo.py"} <= files


def test_code_files_of_a_function_outside_s3core_are_the_s3core_modules_it_uses():
    def build(ctx):
        from s3core.data.answers import span_check  # noqa: F401

    files = code_files_of(build)
    assert "data/answers.py" in files and not any(f.startswith("tests") for f in files)
