"""Shared fixtures. Every test runs with the project caches in a temporary folder and the hub offline."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="s3-test-cache-"))
os.environ["S3_CACHE_DIR"] = str(_SESSION_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["PREFECT_HOME"] = str(_SESSION_CACHE / "prefect")
os.environ.pop("PREFECT_API_URL", None)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if not SHARED_DATA.exists():  # CI checks out main with shared/ beside it; a copy inside works too
    SHARED_DATA = REPO / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "wiki18-sample.jsonl").exists():
        pytest.fail(f"real-format samples not found at {SHARED_DATA}: the checkout needs ../shared/data beside it")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def prefect_harness():
    """The one shared Prefect test harness (a temporary API + database) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def python_exe() -> str:
    return sys.executable
