"""The layering rule of DESIGN.md section 3: s3core is usable alone and never imports prefect."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_s3core_source_never_imports_prefect_tasks_or_flows():
    offenders = {
        str(path.relative_to(REPO)): sorted(_imported_modules(path) & {"prefect", "tasks", "flows", "s3cli"})
        for path in (REPO / "s3core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_pipeline_loads_no_prefect():
    code = "import sys, s3core.pipeline, s3core.store, s3core.config; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_flows_only_wire_tasks():
    """flows/ wire tasks: they never make or run an s3core stage themselves (no *_spec(...), no .run(...))."""
    for path in (REPO / "flows").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "_spec(" not in text and ".run(" not in text and "s3core.data" not in text, f"{path} runs s3core stages directly"
