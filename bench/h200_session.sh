#!/usr/bin/env bash
# Issue 22's GPU runs on an offline H200 (docs/PERFORMANCE.md records what each printed). The machine has
# torch 2.11 + CUDA 13 and no network: vLLM 0.20.0 comes as the three parts of
# ../shared/offline-gpu/vllm-bundle.sh and the project's other wheels (Prefect, DeepSpeed, polars, faiss-cpu)
# as two folders, carried one per call and parked in /tmp, then unpacked onto PYTHONPATH:
#
#   bench/h200_session.sh park DIR...      move carried folders/files out of the checkout into /tmp/carry
#   bench/h200_session.sh unpack           vLLM tree -> /tmp/site, wheels -> /tmp/s3site (fastapi 0.150 for
#                                          Prefect shadows the tree's 0.165; vLLM accepts either)
#   bench/h200_session.sh tests            the gpu-marked tests (vLLM engine + weight sync, vLLM server)
#   bench/h200_session.sh run1 [--kill-after-checkpoint]
#                                          configs/tiny-gpu.yaml's s3-train under Prefect (ephemeral);
#                                          with the flag, SIGKILL the flow once the first checkpoint is done
#   bench/h200_session.sh run2-rollout     vLLM vs transformers rollouts, 0.5B and 1.5B shapes, batch 120 and 512
#   bench/h200_session.sh run2-precompute  naive-RAG precompute through vLLM's server vs one request at a time
#   bench/h200_session.sh run3             one PPO (GRPO) step at the 7B shape (configs/paper-shape-gpu.yaml)
#
# Every command writes its log under $OUT (the device tool brings it back) and prints its wall time.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OPENAI_API_KEY=dummy TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # never NVLink multicast
export PYTHONPATH=/tmp/s3site:/tmp/site:$PWD S3_CACHE_DIR=/tmp/s3cache
PY=python3
S3=("$PY" -m s3cli.main)

stamp() { echo "[$(date +%T)] $*"; }

park() {
  mkdir -p /tmp/carry
  for item in "$@"; do [ -e "$item" ] && mv "$item" /tmp/carry/ && stamp "parked $item"; done
  ls -la /tmp/carry
}

unpack() {
  local start=$SECONDS
  cat /tmp/carry/vllm-site.part.* > /tmp/v.tgz
  [ "$(sha256sum < /tmp/v.tgz | cut -d' ' -f1)" = "$(cat /tmp/carry/SHA256)" ] || { echo "vLLM parts: bad sha256"; exit 1; }
  mkdir -p /tmp/site && tar -xzf /tmp/v.tgz -C /tmp/site && rm /tmp/v.tgz
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/s3site \
    /tmp/carry/.s3wa/*.whl /tmp/carry/.s3wb/*.whl 2>&1 | grep -v WARNING
  stamp "unpacked in $((SECONDS - start)) s"
  $PY - <<'EOF'
import importlib
for name in ("vllm", "prefect", "deepspeed", "polars", "faiss", "fastapi", "transformers", "torch"):
    try:
        module = importlib.import_module(name)
        print(f"{name:12s} {getattr(module, '__version__', '?')}")
    except Exception as exc:  # report every missing piece at once
        print(f"{name:12s} FAILED: {type(exc).__name__}: {exc}")
EOF
  nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader
}

tests() {
  local start=$SECONDS
  $PY -m pytest -q -m gpu tests/test_vllm_gpu.py -p no:cacheprovider -o addopts="" --timeout 900 2>&1 | tee "$OUT/gpu-tests.log" | tail -30
  stamp "gpu tests: $((SECONDS - start)) s"
}

run1() {
  local start=$SECONDS log="$OUT/run1.log"
  if [ "${1:-}" = "--kill-after-checkpoint" ]; then
    setsid "${S3[@]}" run --config configs/tiny-gpu.yaml > "$log" 2>&1 < /dev/null &
    local pid=$!
    until ls artifacts/.staging/train/*/step-000001/done > /dev/null 2>&1 || ! kill -0 $pid 2> /dev/null; do sleep 2; done
    stamp "first checkpoint after $((SECONDS - start)) s: SIGKILL of the flow's process group"
    kill -9 -- -$pid 2> /dev/null
    sleep 3
    pgrep -af "s3core|vllm|prefect" | grep -v pgrep || echo "nothing of it left running"
    grep -E "S3EVENT|step [0-9]+/" "$log" | tail -5
  else
    "${S3[@]}" run --config configs/tiny-gpu.yaml >> "$log" 2>&1
    stamp "run1 exit $? after $((SECONDS - start)) s"
    grep -E "resumed from|Finished in state|complete artifact" "$log" | tail -40
    find artifacts/report -name "report.md" -newer "$log" -o -name report.md | head -1 | xargs -r cat | head -60
  fi
}

run2_rollout() {
  local start=$SECONDS
  $PY bench/rollout.py --world-dir bench/out/world --device cuda --compare 0.5b,1.5b --batches 120,512 \
    --max-new-tokens 64 --out "$OUT/rollout.json" 2>&1 | grep -v "it/s\]" | tee "$OUT/run2-rollout.log"
  stamp "run2 rollout: $((SECONDS - start)) s"
}

run2_precompute() {
  local start=$SECONDS
  $PY bench/precompute.py --config configs/tiny-gpu.yaml --serve vllm --generator-shape 0.5b --split train \
    --max-new-tokens 32 --concurrency 64 --gpu-share 0.3 --serve-arg=--enforce-eager 2>&1 | grep -v "it/s\]" | tee "$OUT/run2-precompute.log"
  stamp "run2 precompute: $((SECONDS - start)) s"
}

run3() {
  local start=$SECONDS
  $PY -c "
from s3core.models.shapes import write_model_folder as w
w('7b', 'bench/out/searcher-7b', device='cuda'); w('7b', 'bench/out/generator-7b', weights=False)"
  stamp "7B folders written after $((SECONDS - start)) s"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader
  "${S3[@]}" stage train --config configs/paper-shape-gpu.yaml > "$OUT/run3.log" 2>&1
  stamp "run3 exit $? after $((SECONDS - start)) s"
  grep -E "rollout_s|step 1/1|Error|error|Traceback" "$OUT/run3.log" | tail -20
  find artifacts/train -name trainer_state.json -newer bench/out/searcher-7b/config.json | head -1 | xargs -r cat | head -c 3000
}

command=${1:?usage: h200_session.sh park|unpack|tests|run1|run2-rollout|run2-precompute|run3}
shift
case $command in
  park) park "$@" ;;
  unpack) unpack ;;
  tests) tests ;;
  run1) run1 "$@" ;;
  run2-rollout) run2_rollout ;;
  run2-precompute) run2_precompute ;;
  run3) run3 ;;
  *) echo "unknown command $command"; exit 2 ;;
esac
