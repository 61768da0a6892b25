#!/usr/bin/env bash
# Start / stop a local Prefect server and process worker on 127.0.0.1, and register the deployments.
#   scripts/ui.sh start    (make ui)       scripts/ui.sh stop    (make ui-stop)
# State (PREFECT_HOME, logs, PID files) lives in .cache/; `stop` kills exactly the process groups it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=$ROOT/.venv
RUN=${S3_UI_STATE:-$ROOT/.cache/ui}
PORT=${S3_UI_PORT:-4200}
GPU_SLOTS=${S3_GPU_SLOTS:-1}
export S3_PROJECT_ROOT=$ROOT
export PREFECT_HOME=${PREFECT_HOME:-$ROOT/.cache/prefect-server}
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
export PREFECT_UI_API_URL=$PREFECT_API_URL
export PREFECT_SERVER_API_HOST=127.0.0.1
export PREFECT_SERVER_API_PORT=$PORT
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_LOCAL_STORAGE_PATH=$ROOT/.cache/prefect/storage
export PREFECT_RESULTS_PERSIST_BY_DEFAULT=true
mkdir -p "$RUN"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_server() {
  if alive "$RUN/server.pid"; then echo "[ui] server already running (pid $(cat "$RUN/server.pid"))"; return; fi
  setsid "$VENV/bin/prefect" server start --host 127.0.0.1 --port "$PORT" >"$RUN/server.log" 2>&1 &
  echo $! >"$RUN/server.pid"
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1; then return; fi
    alive "$RUN/server.pid" || { echo "[ui] server exited; see $RUN/server.log"; tail -20 "$RUN/server.log"; exit 1; }
    sleep 1
  done
  echo "[ui] server did not answer on port $PORT within 120 s; see $RUN/server.log"; exit 1
}

start_worker() {
  "$VENV/bin/prefect" work-pool inspect s3-local >/dev/null 2>&1 ||
    "$VENV/bin/prefect" work-pool create s3-local --type process >/dev/null
  # training and evaluation share this queue: at most GPU_SLOTS of them run at once
  "$VENV/bin/prefect" work-queue inspect gpu --pool s3-local >/dev/null 2>&1 ||
    "$VENV/bin/prefect" work-queue create gpu --pool s3-local --limit "$GPU_SLOTS" >/dev/null
  if alive "$RUN/worker.pid"; then echo "[ui] worker already running (pid $(cat "$RUN/worker.pid"))"; return; fi
  setsid "$VENV/bin/prefect" worker start --pool s3-local >"$RUN/worker.log" 2>&1 &
  echo $! >"$RUN/worker.pid"
}

stop_one() {
  local pidfile=$RUN/$1.pid
  if alive "$pidfile"; then
    kill -TERM -- "-$(cat "$pidfile")" 2>/dev/null || kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 20); do alive "$pidfile" || break; sleep 0.5; done
    alive "$pidfile" && kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null
    echo "[ui] stopped $1"
  fi
  rm -f "$pidfile"
}

case "${1:-start}" in
  start)
    start_server
    start_worker
    "$VENV/bin/prefect" --no-prompt deploy --all >"$RUN/deploy.log" 2>&1 || { cat "$RUN/deploy.log"; exit 1; }
    echo "[ui] Prefect UI:   http://127.0.0.1:$PORT"
    echo "[ui] deployments:  $(grep -c 'Deployment .* created\|successfully created' "$RUN/deploy.log" || true) registered (log: $RUN/deploy.log)"
    echo "[ui] run one:      PREFECT_API_URL=$PREFECT_API_URL $VENV/bin/prefect deployment run s3-train/tiny"
    echo "[ui] stop:         make ui-stop"
    ;;
  stop)
    stop_one worker
    stop_one server
    ;;
  *) echo "usage: $0 start|stop"; exit 2 ;;
esac
