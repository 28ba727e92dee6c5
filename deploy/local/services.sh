#!/usr/bin/env bash
# The platform's own services as background processes of the local stack.
#
# Usage: deploy/local/services.sh start|stop|restart|status [SERVICE...]
#   (every service by default; SERVICE is one of ingest, preprocess, ledger, payout)
#   start    start every service that is not running, each with a PID file in
#            $TT_RUN_DIR/pids/<name>.pid and a log in $TT_RUN_DIR/logs/<name>.log, and
#            wait until it reports SERVING (fails, showing the log's tail, if it does not)
#   stop     SIGTERM each service, SIGKILL after 20 s; remove the PID files
#   restart  stop, then start (after a code change)
#   status   one line per service; exit 1 if any is down
#
# Needs Kafka and PostgreSQL up (deploy/local/stack.sh up) and the keys created
# (1tt admin init-secrets). Uses $PYTHON (default: the project's .venv).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TT_RUN_DIR="${TT_RUN_DIR:-$REPO_ROOT/.run}"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
SERVICES=(ingest preprocess ledger payout)
READY_TIMEOUT_S="${TT_SERVICE_READY_TIMEOUT:-120}"

log() { printf '[services] %s\n' "$*" >&2; }

alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }
pid_of() {
  if [[ -f "$TT_RUN_DIR/pids/$1.pid" ]]; then head -n1 "$TT_RUN_DIR/pids/$1.pid"; fi
}

start_one() {
  local name="$1" pid
  pid="$(pid_of "$name")"
  if alive "$pid"; then
    log "$name: already running (pid $pid)"
    return 0
  fi
  mkdir -p "$TT_RUN_DIR/pids" "$TT_RUN_DIR/logs"
  # setsid: the service leads its own process group, so stop reaches its workers too.
  # TT_PARTY: each service acts with its own credentials (.run/credentials/<name>/).
  (cd "$REPO_ROOT" && TT_PARTY="$name" exec setsid "$PYTHON" -m "services.$name.main" \
    >>"$TT_RUN_DIR/logs/$name.log" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$TT_RUN_DIR/pids/$name.pid"
  if ! (cd "$REPO_ROOT" && "$PYTHON" -m services.cli.main admin health --service "$name" \
    --wait-s "$READY_TIMEOUT_S" >/dev/null); then
    log "$name: did not become ready within ${READY_TIMEOUT_S}s; last lines of its log:"
    tail -n 30 "$TT_RUN_DIR/logs/$name.log" >&2 || true
    stop_one "$name"
    return 1
  fi
  log "$name: serving (pid $pid, log $TT_RUN_DIR/logs/$name.log)"
}

stop_one() {
  local name="$1" pid waited=0
  pid="$(pid_of "$name")"
  if alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && ((waited < 200)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    if alive "$pid"; then
      log "$name: still running after 20 s; sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    log "$name: stopped"
  fi
  rm -f "$TT_RUN_DIR/pids/$name.pid"
}

command="${1:-}"
if (($# > 1)); then
  for name in "${@:2}"; do
    if [[ " ${SERVICES[*]} " != *" $name "* ]]; then
      log "unknown service '$name'; the services are: ${SERVICES[*]}"
      exit 2
    fi
  done
  SERVICES=("${@:2}")
fi

case "$command" in
  start) for name in "${SERVICES[@]}"; do start_one "$name"; done ;;
  stop) for name in "${SERVICES[@]}"; do stop_one "$name"; done ;;
  restart)
    for name in "${SERVICES[@]}"; do stop_one "$name"; done
    for name in "${SERVICES[@]}"; do start_one "$name"; done
    ;;
  status)
    down=0
    for name in "${SERVICES[@]}"; do
      pid="$(pid_of "$name")"
      if alive "$pid"; then echo "$name: running (pid $pid)"; else echo "$name: down"; down=1; fi
    done
    exit "$down"
    ;;
  *)
    sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
