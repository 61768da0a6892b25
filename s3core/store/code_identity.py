"""Which s3core source files a stage runs, derived from its code (DESIGN.md section 3, "cache keys").

A stage's key hashes the source of the code it runs, so that editing that code rebuilds the stage and
editing anything else keeps its cache. The files are found by reading the code, not listed by hand:

- the root is the function that made the stage's build function (`corpus_spec` for the closure
  `corpus_spec.<locals>.build`); the names it uses (and the same-module helpers those use, recursively)
  are resolved against its module's imports, and the imports written inside those functions count too;
- every s3core module reached that way is taken whole, with everything it imports (at module level or
  inside a function, but not under `if TYPE_CHECKING:`), transitively, and the `__init__.py` of every
  package on the way;
- a string that names an s3core module (`"s3core.rl.launch"` in a `python -m` command) counts as an import:
  subprocess entry points are code the stage runs;
- a package's data files (the prompt templates of `s3core/prompts/`) come with its `__init__.py`;
- the run config's schema (config/schema.py, loader.py) is not followed: a stage's config values enter its
  key through the config hash, so adding a field or rewording a help text does not rebuild every stage
  of every setting. The one edit this misses is a derived property of a section (`searcher.turn_budget`)
  that changes behaviour without changing any value: change a value with it. Config modules that hold
  logic a stage runs (config/tiny_world.py's question counts, config/tiny_models.py's special tokens) are
  followed where a stage's code imports them directly.

The root's own module is hashed whole, so two specs in one `stage.py` share its edits; what they import
is followed per function, so a stage never depends on the code of a neighbour's build.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path

S3CORE_DIR = Path(__file__).resolve().parents[1]
PACKAGE = S3CORE_DIR.name  # "s3core"
DATA_SUFFIXES = (".txt", ".jinja", ".json", ".yaml")
# values, hashed as the stage's config (see the module docstring)
NOT_FOLLOWED = frozenset({f"{PACKAGE}.config", f"{PACKAGE}.config.schema", f"{PACKAGE}.config.loader"})


def code_files_of(build: Callable) -> tuple[str, ...]:
    """The s3core files (relative to s3core/, sorted) that `build` runs; see the module docstring."""
    module = getattr(build, "__module__", None)
    qualname = getattr(build, "__qualname__", "")
    if not module:
        raise ValueError(f"cannot find the code of {build!r}: give the StageSpec a function defined in a module")
    return _code_files(module, qualname.split(".")[0])


@functools.lru_cache(maxsize=None)
def _code_files(module: str, root: str) -> tuple[str, ...]:
    source = _module_source(module)
    if source is None:
        raise ValueError(f"cannot read the source of module {module!r} to find what its stage runs")
    path, tree = source
    modules = _root_references(module, tree, root)
    files = module_closure(modules)
    if _is_s3core(path):
        files.add(path)
    return tuple(sorted(str(f.relative_to(S3CORE_DIR)) for f in files))


def module_closure(modules: Iterable[str]) -> set[Path]:
    """Files of `modules` and of every s3core module they import, transitively (package `__init__`s and
    their data files included)."""
    files: set[Path] = set()
    pending = [m for m in modules if _is_s3core_name(m)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_parent_packages(name))
        path = module_path(name)
        if path is None:
            continue
        files.add(path)
        if path.name == "__init__.py":
            files.update(p for p in path.parent.iterdir() if p.suffix in DATA_SUFFIXES and p.is_file())
        pending.extend(_imports_of(name, _parse(path)))
    return files


def module_path(name: str) -> Path | None:
    """s3core/a/b.py or s3core/a/b/__init__.py for 's3core.a.b'; None if there is no such module."""
    if not _is_s3core_name(name):
        return None
    relative = Path(*name.split(".")[1:])
    for candidate in (S3CORE_DIR / relative.with_suffix(".py"), S3CORE_DIR / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _root_references(module: str, tree: ast.Module, root: str) -> set[str]:
    """s3core modules the top-level definition `root` of `module` uses (directly or through same-module
    helpers). Falls back to the whole module when `root` is not a top-level definition (a lambda)."""
    definitions = {node.name: node for node in tree.body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    definitions.update(_assigned_names(tree))
    bindings = _module_bindings(module, tree)
    if root not in definitions:
        return _imports_of(module, tree)
    modules: set[str] = set()
    pending, seen = [root], set()
    while pending:
        name = pending.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        node = definitions[name]
        modules |= _imports_of(module, node)
        for used in _names_used(node):
            if used in bindings:
                modules.add(bindings[used])
            elif used in definitions:
                pending.append(used)
    return modules


def _assigned_names(tree: ast.Module) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                names[target.id] = node
    return names


def _module_bindings(module: str, tree: ast.Module) -> dict[str, str]:
    """Module-level imported name -> the s3core module it comes from (the submodule when it is one)."""
    bindings: dict[str, str] = {}
    for node in _top_level_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bindings[alias.asname or alias.name.split(".")[0]] = alias.name
        else:
            base = _absolute(module, node)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                bindings[alias.asname or alias.name] = target if module_path(target) else base
    return {name: target for name, target in bindings.items() if _is_s3core_name(target)}


def _top_level_imports(tree: ast.Module) -> Iterable[ast.Import | ast.ImportFrom]:
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Try):
            yield from (n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)))


def _imports_of(module: str, node: ast.AST) -> set[str]:
    """Every s3core module imported anywhere under `node` (skipping `if TYPE_CHECKING:` blocks), and every
    string constant that names one."""
    found: set[str] = set()
    for child in _walk_runtime(node):
        if isinstance(child, ast.Import):
            found.update(alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            base = _absolute(module, child)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in child.names if module_path(f"{base}.{a.name}"))
        elif isinstance(child, ast.Constant) and isinstance(child.value, str) and module_path(child.value):
            found.add(child.value)
    return {name for name in found if _is_s3core_name(name)}


def _walk_runtime(node: ast.AST) -> Iterable[ast.AST]:
    """ast.walk without the bodies of `if TYPE_CHECKING:` (imports for type hints only run nothing)."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
                continue
            pending.append(child)


def _names_used(node: ast.AST) -> set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = (module_path(module) or Path()).name == "__init__.py"
    parts = module.split(".")
    base = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _parent_packages(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


def _is_s3core_name(name: str) -> bool:
    """An s3core module whose source is code identity (the run config's schema is not)."""
    if name in NOT_FOLLOWED:
        return False
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def _is_s3core(path: Path) -> bool:
    return path.resolve().is_relative_to(S3CORE_DIR)


def _module_source(module: str) -> tuple[Path, ast.Module] | None:
    path = module_path(module)
    if path is None:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        path = Path(spec.origin)
    return path, _parse(path)


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
