"""The tree's layering rules, read from the source (no imports run):

- s3core never imports prefect (the library runs without it; tasks/ and flows/ wrap it);
- s3core's packages form layers: the graph of imports between them (module level or inside functions,
  `if TYPE_CHECKING:` blocks aside) has no cycle; top-level modules (paths.py, retry.py, ...) count as
  packages of their own;
- an import of s3core code inside a function says why on its line (the heavy optional dependency it
  defers: torch, FAISS, the JVM, ...);
- flows/ and tasks/ stay a thin layer over the stage graph: they make no StageSpec themselves.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
S3CORE = REPO / "s3core"


def _python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _runtime_imports(tree: ast.AST):
    """(import node, inside a function?) for every import outside `if TYPE_CHECKING:` blocks."""
    pending = [(tree, False)]
    while pending:
        node, in_function = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            pending.append((child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))))


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]


def _package_of(path: Path) -> str:
    """s3core/<pkg>/... -> <pkg>; a top-level module s3core/<mod>.py is its own package."""
    relative = path.relative_to(S3CORE).parts
    return relative[0] if len(relative) > 1 else Path(relative[0]).stem


def _package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> where (file:line), over every runtime import."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in _python_files(S3CORE):
        source = _package_of(path)
        for node, _ in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            for module in _imported_modules(node):
                parts = module.split(".")
                if parts[0] == "s3core" and len(parts) > 1 and parts[1] != source:
                    graph[source][parts[1]].append(f"{path.relative_to(REPO)}:{node.lineno}")
    return graph


def _find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_s3core_never_imports_prefect_tasks_flows_or_the_cli():
    above = {"prefect", "tasks", "flows", "s3cli"}
    offenders = [f"{path.relative_to(REPO)}:{node.lineno}"
                 for path in _python_files(S3CORE)
                 for node, _ in _runtime_imports(ast.parse(path.read_text(encoding="utf-8")))
                 if any(m.split(".")[0] in above for m in _imported_modules(node))]
    assert not offenders, f"s3core must not import prefect, tasks, flows or s3cli (they wrap it): {offenders}"


def test_importing_the_pipeline_loads_no_prefect_and_no_torch():
    code = ("import sys, s3core.pipeline, s3core.store, s3core.config; "
            "print('prefect' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False False"


def test_s3cores_packages_have_no_import_cycle():
    graph = _package_graph()
    cycle = _find_cycle(graph)
    if cycle:
        evidence = [f"{a} -> {b}: {', '.join(graph[a][b][:3])}" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("s3core packages import each other in a cycle:\n  " + "\n  ".join(evidence))


def test_the_cycle_finder_finds_a_cycle():
    """The check above can fail: a planted loop is found, with the packages in order."""
    graph = {"a": {"b": ["x:1"]}, "b": {"c": ["y:2"]}, "c": {"a": ["z:3"]}, "d": {"a": ["w:4"]}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b": []}, "b": {}}) is None


def test_lazy_imports_of_s3core_code_say_why():
    missing = []
    for path in _python_files(S3CORE):
        lines = path.read_text(encoding="utf-8").split("\n")
        for node, in_function in _runtime_imports(ast.parse("\n".join(lines))):
            if not in_function or not any(m.startswith("s3core") for m in _imported_modules(node)):
                continue
            span = lines[node.lineno - 1:node.end_lineno]
            if not any("#" in line for line in span):
                missing.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not missing, ("an s3core import inside a function needs a comment naming the heavy dependency it "
                         f"defers (or move it to the top of the module): {missing}")


def test_flows_and_tasks_make_no_stage_specs():
    """Flows pick slices of the one graph (s3core.pipeline.graph) and run them through tasks/; tasks run the
    spec they are given. Neither makes a spec, nor restates the stages' order by walking it themselves."""
    offenders = []
    for folder in ("flows", "tasks"):
        for path in _python_files(REPO / folder):
            text = path.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.ImportFrom) and any(a.name.endswith("_spec") for a in node.names):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} imports a *_spec")
            if folder == "flows" and ("_spec(" in text or ".run(" in text or "walk_pipeline" in text):
                offenders.append(f"{path.relative_to(REPO)} makes, runs or walks stages itself")
    assert not offenders, f"flows/ and tasks/ must stay a thin layer over the stage graph: {offenders}"
