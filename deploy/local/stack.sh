#!/usr/bin/env bash
# deploy/local/stack.sh - run the project's local infrastructure WITHOUT Docker:
# a real Apache Kafka (single node, KRaft, broker+controller) and a real,
# project-local PostgreSQL cluster, as plain background processes on loopback.
#
# Everything it creates (data, logs, PID files, jar cache) lives under $TT_RUN_DIR
# (default: <repo root>/.run, git-ignored). It installs what is missing itself
# (Java 17+, Maven, PostgreSQL via apt-get when run as root), so it works on a
# fresh machine / in CI with no stdin.
#
# Usage: deploy/local/stack.sh <command>
#   up             install what is missing, start Kafka and Postgres unless already
#                  running, wait until both answer (idempotent, fast when already up)
#   down           stop service processes with PID files in $TT_RUN_DIR/pids/ (<name>.pid),
#                  then Kafka, then Postgres; remove the PID files
#   status         show what runs; exit 0 if Kafka and Postgres are both up, 1 otherwise
#   kafka-restart  stop and start Kafka, wait until it answers
#   kafka-stop     stop Kafka only (data kept); kafka-start starts it again and waits
#   pg-restart     stop and start Postgres, wait until it answers
#   reset          down, then delete the Kafka and Postgres data (keeps the jar cache)
#   env            print `export` lines for TT_KAFKA_BOOTSTRAP and TT_DATABASE_URL
#   smoke          (extra) run the aiokafka round-trip check against the running broker
#
# Environment overrides (defaults in brackets):
#   TT_KAFKA_HOST             [127.0.0.1]  address Kafka listens on and advertises
#   TT_KAFKA_PORT             [9092]       Kafka client port (SASL/SCRAM-SHA-512 over TLS)
#   TT_KAFKA_CONTROLLER_PORT  [9093]       KRaft controller port
#   TT_PG_HOST                [127.0.0.1]  address Postgres listens on
#   TT_PG_PORT                [55432]      Postgres port
#   TT_RUN_DIR                [<repo>/.run] where all state goes
#   TT_STACK_TIMEOUT          [90]         seconds to wait for each component to come up
#   KAFKA_HOME                [unset]      use this Kafka installation's libs/*.jar instead
#                                          of fetching the jars from Maven Central
#   KAFKA_HEAP_OPTS           [-Xms256m -Xmx1g]
#   JAVA_HOME                 [unset]      use $JAVA_HOME/bin/java (must be 17+)
#   PYTHON                    [<repo>/.venv/bin/python, else python3] interpreter for
#                                          wait_kafka.py (needs aiokafka; without it the
#                                          Kafka readiness check falls back to port+log)
#
# Postgres: database `tt` at postgresql://$TT_PG_HOST:$TT_PG_PORT/tt, passwords only:
# initdb --auth=scram-sha-256, password_encryption=scram-sha-256, and a pg_hba.conf that
# accepts SCRAM-SHA-256 over TCP from 127.0.0.1 and refuses everything else (the Unix
# socket included). The bootstrap superuser `postgres` gets a random password, written to
# the libpq passfile $TT_RUN_DIR/pg/superuser.pgpass (0600, deleted with the cluster by
# `reset`, never printed); only this script and the role set-up use it. The platform's own
# roles (one per party, none superuser), their schemas and their passfiles under
# $TT_RUN_DIR/credentials/<party>/ are made by `python -m services.common.pgroles apply`,
# which `make up` runs next (docs/postgres-roles.md). A cluster from before passwords (it
# trusted every connection) is refused with a request to run `make reset`.
# As root, initdb/pg_ctl run as the `postgres` system user (they refuse to run as root).
# The system's default cluster is never used or touched.
#
# Layout under $TT_RUN_DIR:
#   cache/kafka-<ver>/libs/   Kafka jars (+ .complete marker)    logs/   kafka.log kafka.out postgres.log ...
#   kafka/server.properties   kafka/cluster.id  kafka/data/      pids/   kafka.pid postgres.pid <service>.pid
#   pg/data/  pg/socket/  pg/superuser.pgpass                   credentials/<party>/postgres.pgpass
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

TT_KAFKA_HOST="${TT_KAFKA_HOST:-127.0.0.1}"
TT_KAFKA_PORT="${TT_KAFKA_PORT:-9092}"
TT_KAFKA_CONTROLLER_PORT="${TT_KAFKA_CONTROLLER_PORT:-9093}"
TT_PG_HOST="${TT_PG_HOST:-127.0.0.1}"
TT_PG_PORT="${TT_PG_PORT:-55432}"
TT_RUN_DIR="${TT_RUN_DIR:-$REPO_ROOT/.run}"
TT_STACK_TIMEOUT="${TT_STACK_TIMEOUT:-90}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"
STOP_TIMEOUT=20

# Make TT_RUN_DIR absolute (the processes we start must not depend on the cwd).
case "$TT_RUN_DIR" in
  /*) ;;
  *) TT_RUN_DIR="$(pwd)/$TT_RUN_DIR" ;;
esac
TT_RUN_DIR="${TT_RUN_DIR%/}"

PIDS_DIR="$TT_RUN_DIR/pids"
LOGS_DIR="$TT_RUN_DIR/logs"
CACHE_DIR="$TT_RUN_DIR/cache"
KAFKA_DIR="$TT_RUN_DIR/kafka"
KAFKA_DATA_DIR="$KAFKA_DIR/data"
KAFKA_CONFIG="$KAFKA_DIR/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"
# Security material (docs/security.md): the broker's TLS key and certificate from a CA of
# the stack's own, the broker's and controller's passwords, and the operator's (admin)
# Kafka password, which the broker's storage is formatted with. All 0600.
KAFKA_TLS_DIR="$KAFKA_DIR/tls"
KAFKA_SECRETS_DIR="$KAFKA_DIR/secrets"
KAFKA_SECURITY_MARKER="$KAFKA_DIR/security.version"
CREDENTIALS_DIR="${TT_CREDENTIALS_DIR:-$TT_RUN_DIR/credentials}"
ADMIN_KAFKA_PASSWORD="$CREDENTIALS_DIR/admin/kafka.password"
KAFKA_CA_PUBLIC="$CREDENTIALS_DIR/kafka-ca.crt"
KAFKA_PID_FILE="$PIDS_DIR/kafka.pid"
KAFKA_LOG="$LOGS_DIR/kafka.log"
KAFKA_OUT="$LOGS_DIR/kafka.out"
KAFKA_POM="$SCRIPT_DIR/kafka/pom.xml"
KAFKA_TEMPLATE="$SCRIPT_DIR/kafka/server.properties.template"
KAFKA_LOG4J="$SCRIPT_DIR/kafka/log4j2.xml"
# When run as root, the server runs as the 'postgres' user, which must be able to reach its
# data folder. If a parent of TT_RUN_DIR is closed to it (a checkout under /root, mode 700),
# the cluster lives in a world-searchable folder named after TT_RUN_DIR instead, and
# $TT_RUN_DIR/pg is a symlink to it, so the data still sits "under .run" for the user.
pg_parents_blocked() { # pg_parents_blocked DIR -> true if 'postgres' cannot traverse to DIR
  [[ "$(id -u)" -eq 0 ]] || return 1
  id postgres >/dev/null 2>&1 || return 1
  local d="$1"
  while [[ "$d" != "/" && -n "$d" ]]; do
    if [[ -d "$d" ]] && ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      return 0
    fi
    d="$(dirname "$d")"
  done
  return 1
}
PG_DIR="$TT_RUN_DIR/pg"
PG_RELOCATED=""
if pg_parents_blocked "$TT_RUN_DIR"; then
  PG_RELOCATED="/var/tmp/1tt-pg-$(printf '%s' "$TT_RUN_DIR" | sha256sum | cut -c1-12)"
  PG_DIR="$PG_RELOCATED"
fi
PG_DATA="$PG_DIR/data"
PG_SOCKET_DIR="$PG_DIR/socket"
PG_PID_FILE="$PIDS_DIR/postgres.pid"
PG_LOG="$LOGS_DIR/postgres.log"
# The server writes its own log as 'postgres', so a relocated cluster keeps it beside itself.
if [[ -n "$PG_RELOCATED" ]]; then PG_LOG="$PG_DIR/postgres.log"; fi
PG_SUPERUSER=postgres
PG_SUPERUSER_PASSFILE="$PG_DIR/superuser.pgpass"
PG_DB=tt

KAFKA_BOOTSTRAP="$TT_KAFKA_HOST:$TT_KAFKA_PORT"
# Where the database is; each party adds its own role and passfile (services/common/config.py).
DATABASE_URL="postgresql://$TT_PG_HOST:$TT_PG_PORT/$PG_DB"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
  else
    PYTHON="python3"
  fi
fi

# ----------------------------------------------------------------------------- helpers

log() { printf '[stack] %s\n' "$*" >&2; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[stack] ERROR: %s\n' "$*" >&2
  exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

START_MARKER='===== stack.sh: starting'

# Append a start marker to log files (so failures show only the current attempt).
mark_logs() {
  local f stamp
  stamp="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for f in "$@"; do
    printf '\n%s %s =====\n' "$START_MARKER" "$stamp" >>"$f"
  done
}

# Print the last 30 lines of each given log (only what follows its last start
# marker), skipping files that are missing or have nothing to show.
show_logs() {
  local f text
  for f in "$@"; do
    [[ -s "$f" ]] || continue
    text="$(awk -v m="$START_MARKER" 'index($0, m) == 1 { n = 0; delete l; next } { l[++n] = $0 }
      END { for (i = (n > 30 ? n - 29 : 1); i <= n; i++) print l[i] }' "$f")"
    [[ -n "${text//[[:space:]]/}" ]] || continue
    printf '[stack] ---- last 30 lines of %s ----\n%s\n[stack] ---- end of %s ----\n' "$f" "$text" "$f" >&2
  done
}

# Is PID a live process? (A zombie, i.e. exited but not yet reaped, counts as dead.)
pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1 || true)"
  [[ "$state" != "Z" ]]
}

read_pid() { # read_pid FILE -> prints the PID (first line) or nothing
  local f="$1" pid=""
  if [[ -f "$f" ]]; then
    pid="$(head -n 1 "$f" 2>/dev/null | tr -dc '0-9')" || true
  fi
  printf '%s' "$pid"
}

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# Is something accepting TCP connections on HOST PORT?
port_open() { timeout 2 bash -c ": >/dev/tcp/$1/$2" 2>/dev/null; }

# Describe who listens on PORT (best effort, for error messages).
port_owner() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$port" 2>/dev/null | sed -e 's/^/    /' || true
  fi
}

# Fail clearly if HOST:PORT is already taken (by something that is not ours).
ensure_port_free() { # ensure_port_free HOST PORT WHAT VARIABLE
  local host="$1" port="$2" what="$3" var="$4"
  if port_open "$host" "$port"; then
    local owner
    owner="$(port_owner "$port")"
    die "port $host:$port (for $what) is already in use by a process that is NOT this stack's (no live PID file under $PIDS_DIR). Stop it, or choose another port with $var=<port>.${owner:+
  listening:
$owner}"
  fi
}

APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    die "need to install: $* - but apt-get is not available; install it by hand"
  fi
  local sudo=()
  if ! is_root; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "need to install: $* - run as root (or with passwordless sudo), or install it by hand"
    fi
  fi
  log "installing with apt-get: $*"
  if [[ "$APT_UPDATED" -eq 0 ]]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 ||
      die "apt-get update failed"
    APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    die "apt-get install $* failed"
}

ensure_dirs() {
  mkdir -p "$PIDS_DIR" "$LOGS_DIR" "$CACHE_DIR"
}

# Serialize commands that change state (two concurrent `up`s must not race).
take_lock() {
  ensure_dirs
  exec 9>"$TT_RUN_DIR/.stack.lock"
  if ! flock -w 300 9; then
    die "another stack.sh is still running on $TT_RUN_DIR (lock $TT_RUN_DIR/.stack.lock held for 300 s)"
  fi
}

leads_group() { [[ "$(ps -o pgid= -p "$1" 2>/dev/null | tr -d ' ' || true)" == "$1" ]]; }

# Send SIGTERM to PID (to its process group if it leads one, e.g. started with setsid).
send_term() {
  if leads_group "$1"; then
    kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null || true
  else
    kill -TERM "$1" 2>/dev/null || true
  fi
}

# Send SIGTERM to PID, wait up to STOP_TIMEOUT seconds, then SIGKILL.
# Returns 0 once the process is gone.
terminate_pid() { # terminate_pid PID NAME
  pid_alive "$1" || return 0
  send_term "$1"
  wait_gone "$1" "$2"
}

# Wait up to STOP_TIMEOUT seconds for PID to exit (after SIGTERM), then SIGKILL it.
wait_gone() { # wait_gone PID NAME
  local pid="$1" name="$2" i pgid=""
  leads_group "$pid" && pgid="$pid"
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  warn "$name (pid $pid) did not stop within ${STOP_TIMEOUT}s after SIGTERM: sending SIGKILL"
  if [[ -n "$pgid" ]]; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.1
  done
  warn "$name (pid $pid) is still alive after SIGKILL"
  return 1
}

# ----------------------------------------------------------------------------- java / maven

JAVA_BIN=""
java_major() { # java_major JAVA -> prints the major version (e.g. 17)
  "$1" -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

ensure_java() {
  [[ -n "$JAVA_BIN" ]] && return 0
  local candidate="" major
  if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
    candidate="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    candidate="$(command -v java)"
  fi
  if [[ -n "$candidate" ]]; then
    major="$(java_major "$candidate")"
    if [[ "${major:-0}" -ge 17 ]]; then
      JAVA_BIN="$candidate"
      return 0
    fi
    warn "$candidate is Java ${major:-?}; Kafka 4.x needs Java 17+"
  fi
  apt_install openjdk-17-jre-headless
  local j
  for j in /usr/lib/jvm/java-17-openjdk-*/bin/java "$(command -v java || true)"; do
    if [[ -x "$j" ]] && [[ "$(java_major "$j")" -ge 17 ]]; then
      JAVA_BIN="$j"
      return 0
    fi
  done
  die "could not find a Java 17+ runtime after installing openjdk-17-jre-headless"
}

ensure_maven() {
  command -v mvn >/dev/null 2>&1 && return 0
  apt_install maven
  command -v mvn >/dev/null 2>&1 || die "mvn not found after installing maven"
}

# ----------------------------------------------------------------------------- kafka

kafka_version() {
  local v
  v="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM" | head -n 1)"
  [[ -n "$v" ]] || die "cannot read <kafka.version> from $KAFKA_POM"
  printf '%s' "$v"
}

KAFKA_LIBS=""
# Sets KAFKA_LIBS to a folder holding the broker's jars; fetches them if needed.
kafka_ensure_libs() {
  if [[ -n "${KAFKA_HOME:-}" ]]; then
    KAFKA_LIBS="$KAFKA_HOME/libs"
    compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null ||
      die "KAFKA_HOME=$KAFKA_HOME has no libs/kafka_2.13-*.jar"
    return 0
  fi
  local version dir marker tmp fetch_log t0
  version="$(kafka_version)"
  dir="$CACHE_DIR/kafka-$version/libs"
  marker="$CACHE_DIR/kafka-$version/.complete"
  KAFKA_LIBS="$dir"
  if [[ -f "$marker" ]] && compgen -G "$dir/kafka_2.13-$version.jar" >/dev/null; then
    return 0
  fi
  ensure_java
  ensure_maven
  t0="$(now)"
  log "fetching Kafka $version jars from Maven Central into $dir (one-off) ..."
  tmp="$CACHE_DIR/kafka-$version/libs.tmp.$$"
  fetch_log="$LOGS_DIR/kafka-fetch.log"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$fetch_log" 2>&1 </dev/null; then
    rm -rf "$tmp"
    show_logs "$fetch_log"
    die "fetching the Kafka jars with Maven failed (full output: $fetch_log)"
  fi
  compgen -G "$tmp/kafka_2.13-$version.jar" >/dev/null ||
    die "Maven succeeded but $tmp has no kafka_2.13-$version.jar (see $fetch_log)"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$marker"
  log "fetched $(find "$dir" -name '*.jar' | wc -l) jars in $(elapsed "$t0")s"
}

kafka_pid() { # prints the PID of our running broker, or nothing
  local pid
  pid="$(read_pid "$KAFKA_PID_FILE")"
  if pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *"kafka.Kafka $KAFKA_CONFIG"* ]]; then
    printf '%s' "$pid"
  fi
}

# A password of 32 letters and digits, written once to FILE (0600).
ensure_password() { # ensure_password FILE
  [[ -s "$1" ]] && return 0
  mkdir -p "$(dirname "$1")"
  chmod 700 "$(dirname "$1")"
  (umask 077 && head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32 >"$1.tmp.$$")
  mv "$1.tmp.$$" "$1"
}

kafka_secrets() {
  mkdir -p "$KAFKA_SECRETS_DIR" "$CREDENTIALS_DIR"
  chmod 700 "$KAFKA_SECRETS_DIR" "$CREDENTIALS_DIR"
  ensure_password "$KAFKA_SECRETS_DIR/broker.password"
  ensure_password "$KAFKA_SECRETS_DIR/controller.password"
  ensure_password "$ADMIN_KAFKA_PASSWORD"
}

# The broker's TLS: a CA of this stack's own (its key never leaves $KAFKA_TLS_DIR) and a
# server certificate for TT_KAFKA_HOST. Clients trust the CA's certificate, which is public.
kafka_tls() {
  if [[ -s "$KAFKA_TLS_DIR/broker.pem" && -s "$KAFKA_TLS_DIR/ca.crt" ]]; then
    cp "$KAFKA_TLS_DIR/ca.crt" "$KAFKA_CA_PUBLIC"
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  local dir="$KAFKA_TLS_DIR" san tls_log="$LOGS_DIR/kafka-tls.log"
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [[ "$TT_KAFKA_HOST" =~ ^[0-9.]+$ || "$TT_KAFKA_HOST" == *:* ]]; then
    san="IP:$TT_KAFKA_HOST,DNS:localhost"
  else
    san="DNS:$TT_KAFKA_HOST,DNS:localhost"
  fi
  log "kafka: creating the stack's CA and the broker's TLS certificate ($san)"
  if ! (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
      -subj "/CN=1TT local Kafka CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$TT_KAFKA_HOST" \
        -keyout "$dir/broker.key" -out "$dir/broker.csr" &&
      openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 825 -out "$dir/broker.crt" \
        -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") &&
      cat "$dir/broker.key" "$dir/broker.crt" >"$dir/broker.pem"
  ) >"$tls_log" 2>&1; then
    show_logs "$tls_log"
    die "kafka: creating the TLS certificates with openssl failed (see $tls_log)"
  fi
  rm -f "$dir/broker.csr"
  cp "$dir/ca.crt" "$KAFKA_CA_PUBLIC"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DATA_DIR"
  kafka_secrets
  kafka_tls
  local tmp="$KAFKA_CONFIG.tmp.$$"
  (umask 077 && sed -e "s#@KAFKA_HOST@#$TT_KAFKA_HOST#g" \
    -e "s#@KAFKA_PORT@#$TT_KAFKA_PORT#g" \
    -e "s#@KAFKA_CONTROLLER_PORT@#$TT_KAFKA_CONTROLLER_PORT#g" \
    -e "s#@KAFKA_DATA_DIR@#$KAFKA_DATA_DIR#g" \
    -e "s#@KAFKA_TLS_DIR@#$KAFKA_TLS_DIR#g" \
    -e "s#@BROKER_PASSWORD@#$(cat "$KAFKA_SECRETS_DIR/broker.password")#g" \
    -e "s#@CONTROLLER_PASSWORD@#$(cat "$KAFKA_SECRETS_DIR/controller.password")#g" \
    "$KAFKA_TEMPLATE" >"$tmp")
  mv "$tmp" "$KAFKA_CONFIG"
}

# Arguments that make wait_kafka.py authenticate as the operator (a super user).
kafka_admin_args() {
  printf '%s\n' --username admin --password-file "$ADMIN_KAFKA_PASSWORD" --cafile "$KAFKA_CA_PUBLIC"
}

kafka_java() { # kafka_java LOGFILE ARGS... - run a Kafka class in the foreground
  local logfile="$1"
  shift
  "$JAVA_BIN" -cp "$KAFKA_LIBS/*" \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dtt.kafka.logfile="$logfile" "$@"
}

kafka_format() {
  if [[ -f "$KAFKA_DATA_DIR/meta.properties" ]]; then
    [[ -f "$KAFKA_SECURITY_MARKER" ]] ||
      die "kafka: the data in $KAFKA_DATA_DIR was created before the broker required authentication, so it has no users. Run 'make reset' (deletes the local Kafka and PostgreSQL data), then 'make up'."
    return 0
  fi
  local cluster_id fmt_log="$LOGS_DIR/kafka-format.log" fmt_out="$LOGS_DIR/kafka-format.out"
  if [[ -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    cluster_id="$(cat "$KAFKA_CLUSTER_ID_FILE")"
  else
    if ! cluster_id="$(kafka_java "$fmt_log" kafka.tools.StorageTool random-uuid 2>>"$fmt_out" </dev/null)" ||
      [[ -z "$cluster_id" ]]; then
      show_logs "$fmt_out" "$fmt_log"
      die "kafka: 'StorageTool random-uuid' failed"
    fi
    printf '%s\n' "$cluster_id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  log "kafka: formatting storage in $KAFKA_DATA_DIR (cluster id $cluster_id)"
  # The broker's and the operator's SCRAM users go in with the storage: every other user
  # is created by the operator's tool over the authenticated listener.
  if ! kafka_java "$fmt_log" kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_CONFIG" \
    --standalone --ignore-formatted \
    --add-scram "SCRAM-SHA-512=[name=broker,password=$(cat "$KAFKA_SECRETS_DIR/broker.password")]" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$ADMIN_KAFKA_PASSWORD")]" \
    >>"$fmt_out" 2>&1 </dev/null; then
    show_logs "$fmt_out" "$fmt_log"
    die "kafka: formatting storage failed (see $fmt_out and $fmt_log)"
  fi
  echo 1 >"$KAFKA_SECURITY_MARKER"
}

kafka_check_ports() {
  ensure_port_free "$TT_KAFKA_HOST" "$TT_KAFKA_PORT" "Kafka" TT_KAFKA_PORT
  ensure_port_free "$TT_KAFKA_HOST" "$TT_KAFKA_CONTROLLER_PORT" "the Kafka controller" TT_KAFKA_CONTROLLER_PORT
}

kafka_start() {
  if [[ -n "$(kafka_pid)" ]]; then
    log "kafka: already running (pid $(kafka_pid)) on $KAFKA_BOOTSTRAP"
    return 0
  fi
  rm -f "$KAFKA_PID_FILE"
  kafka_check_ports
  ensure_java
  kafka_ensure_libs
  kafka_write_config
  kafka_format
  mark_logs "$KAFKA_OUT" "$KAFKA_LOG"
  # The subshell is not a process-group leader (no job control in a script), so
  # setsid does not fork and every exec keeps its PID: $! is the java process.
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  # fd 9 is the stack lock: the broker must not inherit it.
  (
    cd "$KAFKA_DIR"
    exec 9>&-
    exec nohup setsid "$JAVA_BIN" $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
      -cp "$KAFKA_LIBS/*" \
      -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dtt.kafka.logfile="$KAFKA_LOG" \
      kafka.Kafka "$KAFKA_CONFIG"
  ) </dev/null >>"$KAFKA_OUT" 2>&1 &
  local pid=$!
  printf '%s\n' "$pid" >"$KAFKA_PID_FILE"
  log "kafka: started pid $pid ($KAFKA_BOOTSTRAP, controller $TT_KAFKA_HOST:$TT_KAFKA_CONTROLLER_PORT, log $KAFKA_LOG)"
}

# Wait until the broker answers a metadata request (wait_kafka.py, aiokafka).
kafka_wait() {
  local t0 deadline pid waiter rc=0
  t0="$(now)"
  pid="$(read_pid "$KAFKA_PID_FILE")"
  deadline=$((SECONDS + TT_STACK_TIMEOUT))
  if command -v "$PYTHON" >/dev/null 2>&1; then
    local -a auth
    mapfile -t auth < <(kafka_admin_args)
    "$PYTHON" "$SCRIPT_DIR/wait_kafka.py" --bootstrap "$KAFKA_BOOTSTRAP" --timeout "$TT_STACK_TIMEOUT" "${auth[@]}" 9>&- &
    waiter=$!
    while pid_alive "$waiter"; do
      if ! pid_alive "$pid"; then
        kill "$waiter" 2>/dev/null || true
        wait "$waiter" 2>/dev/null || true
        show_logs "$KAFKA_LOG" "$KAFKA_OUT"
        die "kafka: the broker process (pid ${pid:-?}) exited during startup (logs above)"
      fi
      sleep 0.2
    done
    wait "$waiter" || rc=$?
  else
    warn "PYTHON=$PYTHON not found"
    rc=2
  fi
  if [[ "$rc" -eq 2 ]]; then
    # wait_kafka.py exits 2 when aiokafka cannot be imported.
    warn "$PYTHON cannot run wait_kafka.py with aiokafka: checking Kafka readiness by port + 'Kafka Server started' in the log instead (set PYTHON to the project's venv python for the real metadata check)"
    rc=1
    while ((SECONDS < deadline)); do
      pid_alive "$pid" || break
      if port_open "$TT_KAFKA_HOST" "$TT_KAFKA_PORT" &&
        grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null; then
        rc=0
        break
      fi
      sleep 0.5
    done
  fi
  if [[ "$rc" -ne 0 ]]; then
    show_logs "$KAFKA_LOG" "$KAFKA_OUT"
    if pid_alive "$pid"; then
      die "kafka: not ready within ${TT_STACK_TIMEOUT}s on $KAFKA_BOOTSTRAP (pid $pid still running; logs above)"
    fi
    die "kafka: the broker process (pid ${pid:-?}) is not running (logs above)"
  fi
  log "kafka: ready on $KAFKA_BOOTSTRAP ($(elapsed "$t0")s)"
}

kafka_stop() {
  local pid
  pid="$(kafka_pid)"
  if [[ -z "$pid" ]]; then
    local stale
    stale="$(read_pid "$KAFKA_PID_FILE")"
    if [[ -n "$stale" ]]; then
      log "kafka: not running (removing stale PID file, pid $stale)"
    fi
    rm -f "$KAFKA_PID_FILE"
    return 0
  fi
  log "kafka: stopping pid $pid ..."
  local t0
  t0="$(now)"
  terminate_pid "$pid" kafka || die "kafka: could not stop pid $pid"
  rm -f "$KAFKA_PID_FILE"
  log "kafka: stopped ($(elapsed "$t0")s)"
}

# ----------------------------------------------------------------------------- postgres

PG_BIN=""
find_pg_bin() {
  local d
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
  if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
    printf '%s' "$d"
  fi
}

ensure_pg_bin() {
  [[ -n "$PG_BIN" ]] && return 0
  PG_BIN="$(find_pg_bin)"
  if [[ -z "$PG_BIN" ]]; then
    apt_install postgresql
    PG_BIN="$(find_pg_bin)"
    [[ -n "$PG_BIN" ]] || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin after installing postgresql"
  fi
  if is_root; then
    id -u postgres >/dev/null 2>&1 ||
      die "running as root but there is no 'postgres' system user to run the server as (apt-get install postgresql creates it)"
  fi
}

# Run a Postgres binary as the right user (initdb/postgres refuse to run as root).
as_pg() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_tool() { # pg_tool NAME ARGS... - client tools as the current user, as the superuser
  local tool="$1"
  shift
  PGPASSFILE="$PG_SUPERUSER_PASSFILE" PGUSER="$PG_SUPERUSER" "$PG_BIN/$tool" -w "$@"
}

# A cluster made before the stack used passwords trusts every connection, and its
# superuser is the role the services used: it cannot be secured in place.
pg_refuse_trusting_cluster() {
  [[ -f "$PG_DATA/PG_VERSION" ]] || return 0
  local hba="$PG_DATA/pg_hba.conf"
  if grep -Eq '^[[:space:]]*[^#[:space:]].*[[:space:]]trust([[:space:]]|$)' "$hba" 2>/dev/null ||
    [[ ! -s "$PG_SUPERUSER_PASSFILE" ]]; then
    die "postgres: $PG_DATA was created before the local stack used passwords (it trusts connections without one, or has no $PG_SUPERUSER_PASSFILE). It cannot be secured in place: run 'make reset' (or '$0 reset'; it deletes the local Kafka and PostgreSQL data), then 'make up'."
  fi
}

# A random password in URL-safe base64 (no ':' or backslash, so no passfile escaping).
pg_new_password() {
  head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='
}

# pg_hba.conf: SCRAM-SHA-256 over TCP from 127.0.0.1, nothing else.
pg_write_hba() {
  local tmp="$PG_DATA/pg_hba.conf.tmp.$$"
  cat >"$tmp" <<'HBA'
# Written by deploy/local/stack.sh. Every connection proves a password with SCRAM-SHA-256,
# over TCP from 127.0.0.1; the Unix socket and every other address are refused.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 reject
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   all           reject
HBA
  chmod 600 "$tmp"
  if is_root; then chown postgres:postgres "$tmp"; fi
  mv "$tmp" "$PG_DATA/pg_hba.conf"
}

# The postgres user must be able to reach $PG_DIR: every parent needs search
# permission for it (o+x, e.g. 755; a 700 parent like /root blocks it).
pg_check_parents() {
  is_root || return 0
  local d="$PG_DIR" blocked=""
  while [[ "$d" != "/" && -n "$d" ]]; do
    d="$(dirname "$d")"
    if [[ -d "$d" ]] && ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      blocked="$d"
    fi
  done
  if [[ -n "$blocked" ]]; then
    die "the 'postgres' system user (which runs the server, since initdb/postgres refuse root) cannot traverse $blocked ($(stat -c '%A %U:%G' "$blocked")), so it cannot reach $PG_DATA. Run from a checkout whose parent folders are world-searchable (e.g. chmod o+x $blocked), or set TT_RUN_DIR to such a folder (e.g. TT_RUN_DIR=/tmp/tt-run)."
  fi
}

pg_check_traversal() {
  is_root || return 0
  pg_check_parents
  runuser -u postgres -- test -w "$PG_DATA" 2>/dev/null ||
    die "the 'postgres' user cannot write to $PG_DATA ($(stat -c '%A %U:%G' "$PG_DATA")); check ownership/permissions"
}

pg_running() { # is our cluster running? (pg_ctl status)
  [[ -f "$PG_DATA/postmaster.pid" ]] || return 1
  as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_pid() {
  if [[ -f "$PG_DATA/postmaster.pid" ]] && pg_running; then
    read_pid "$PG_DATA/postmaster.pid"
  fi
}

pg_socket_dir() {
  # Unix socket paths are limited to 107 bytes; fall back to a short /tmp folder
  # for very deep checkouts (clients here use TCP anyway).
  local sock="$PG_SOCKET_DIR/.s.PGSQL.$TT_PG_PORT"
  if ((${#sock} > 100)); then
    local alt
    alt="/tmp/tt-pg-sock-$(printf '%s' "$PG_SOCKET_DIR" | md5sum | cut -c1-12)"
    mkdir -p "$alt"
    if is_root; then chown postgres:postgres "$alt"; fi
    printf '%s' "$alt"
  else
    printf '%s' "$PG_SOCKET_DIR"
  fi
}

pg_init() {
  mkdir -p "$PG_DIR" "$PG_SOCKET_DIR"
  if [[ -n "$PG_RELOCATED" ]]; then
    chmod 755 "$PG_DIR"
    if [[ ! -e "$TT_RUN_DIR/pg" || -L "$TT_RUN_DIR/pg" ]]; then
      ln -sfn "$PG_DIR" "$TT_RUN_DIR/pg"
    fi
    ln -sfn "$PG_LOG" "$LOGS_DIR/postgres.log"
    log "postgres: the 'postgres' user cannot traverse to $TT_RUN_DIR, so the cluster lives in $PG_DIR ($TT_RUN_DIR/pg links to it)"
  fi
  if [[ -f "$PG_DATA/PG_VERSION" ]]; then
    local have want
    have="$(cat "$PG_DATA/PG_VERSION")"
    want="$(basename "$(dirname "$PG_BIN")")"
    if [[ "$have" != "$want" ]]; then
      die "$PG_DATA was created by PostgreSQL $have but the binaries found are $want ($PG_BIN). Run '$0 reset' to recreate it (deletes the local data)."
    fi
    if is_root; then chown -R postgres:postgres "$PG_DIR"; fi
    pg_check_traversal
    return 0
  fi
  mkdir -p "$PG_DATA"
  chmod 700 "$PG_DATA"
  if is_root; then chown -R postgres:postgres "$PG_DIR"; fi
  pg_check_traversal
  log "postgres: initdb $PG_DATA (superuser $PG_SUPERUSER, auth=scram-sha-256, password in $PG_SUPERUSER_PASSFILE)"
  local init_log="$LOGS_DIR/postgres-initdb.log" password pwfile="$PG_DIR/.initdb-password"
  password="$(pg_new_password)"
  # initdb reads the password from a file; the server runs as 'postgres' when we are root.
  (umask 077 && printf '%s\n' "$password" >"$pwfile")
  if is_root; then chown postgres:postgres "$pwfile"; fi
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" --auth=scram-sha-256 --pwfile="$pwfile" \
    --username="$PG_SUPERUSER" --encoding=UTF8 --locale=C >"$init_log" 2>&1 </dev/null; then
    rm -f "$pwfile"
    show_logs "$init_log"
    die "initdb failed (see $init_log)"
  fi
  rm -f "$pwfile"
  (umask 077 && printf '*:*:*:%s:%s\n' "$PG_SUPERUSER" "$password" >"$PG_SUPERUSER_PASSFILE")
  chmod 600 "$PG_SUPERUSER_PASSFILE"
  pg_write_hba
}

pg_start() {
  ensure_pg_bin
  pg_refuse_trusting_cluster
  if pg_running; then
    pg_pid >"$PG_PID_FILE"
    log "postgres: already running (pid $(pg_pid)) on $TT_PG_HOST:$TT_PG_PORT"
    return 0
  fi
  rm -f "$PG_PID_FILE"
  ensure_port_free "$TT_PG_HOST" "$TT_PG_PORT" "PostgreSQL" TT_PG_PORT
  pg_init
  local sock t0
  sock="$(pg_socket_dir)"
  mark_logs "$PG_LOG"
  if is_root; then chown postgres:postgres "$PG_LOG"; fi
  t0="$(now)"
  # pg_ctl -w waits until the server accepts connections.
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$TT_STACK_TIMEOUT" \
    -o "-p $TT_PG_PORT -k $sock -c listen_addresses=$TT_PG_HOST -c fsync=on -c max_connections=200 -c password_encryption=scram-sha-256" \
    start >"$LOGS_DIR/pg_ctl.out" 2>&1 </dev/null 9>&-; then
    show_logs "$LOGS_DIR/pg_ctl.out" "$PG_LOG"
    die "postgres: pg_ctl start failed or timed out after ${TT_STACK_TIMEOUT}s (logs above)"
  fi
  pg_pid >"$PG_PID_FILE"
  log "postgres: started pid $(read_pid "$PG_PID_FILE") on $TT_PG_HOST:$TT_PG_PORT ($(elapsed "$t0")s, log $PG_LOG)"
}

pg_wait() {
  ensure_pg_bin
  local t0 deadline
  t0="$(now)"
  deadline=$((SECONDS + TT_STACK_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h "$TT_PG_HOST" -p "$TT_PG_PORT" -d postgres -U "$PG_SUPERUSER"; do
    if ((SECONDS >= deadline)); then
      show_logs "$PG_LOG"
      die "postgres: not accepting connections on $TT_PG_HOST:$TT_PG_PORT within ${TT_STACK_TIMEOUT}s (log above)"
    fi
    if ! pg_running; then
      show_logs "$PG_LOG"
      die "postgres: the server is not running (log above)"
    fi
    sleep 0.3
  done
  local out
  if ! out="$(pg_tool psql -X -q -h "$TT_PG_HOST" -p "$TT_PG_PORT" -d postgres \
    -v ON_ERROR_STOP=1 -tAc "SELECT 1 FROM pg_database WHERE datname='$PG_DB'" 2>&1)"; then
    show_logs "$PG_LOG"
    die "postgres: psql could not query the server: $out"
  fi
  if [[ "$out" != "1" ]]; then
    log "postgres: creating database $PG_DB"
    pg_tool createdb -h "$TT_PG_HOST" -p "$TT_PG_PORT" "$PG_DB" ||
      die "postgres: createdb $PG_DB failed"
  fi
  pg_tool psql -X -q -h "$TT_PG_HOST" -p "$TT_PG_PORT" -d "$PG_DB" \
    -v ON_ERROR_STOP=1 -tAc 'select 1' >/dev/null ||
    die "postgres: 'select 1' on database $PG_DB failed"
  log "postgres: ready at $DATABASE_URL ($(elapsed "$t0")s)"
}

pg_stop() {
  if [[ ! -f "$PG_DATA/postmaster.pid" ]]; then
    rm -f "$PG_PID_FILE"
    return 0
  fi
  ensure_pg_bin
  local pid t0
  pid="$(read_pid "$PG_DATA/postmaster.pid")"
  if ! pg_running; then
    log "postgres: not running"
    rm -f "$PG_PID_FILE"
    return 0
  fi
  t0="$(now)"
  log "postgres: stopping pid $pid (pg_ctl stop -m fast) ..."
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t "$STOP_TIMEOUT" >"$LOGS_DIR/pg_ctl.out" 2>&1; then
    warn "pg_ctl stop -m fast did not finish within ${STOP_TIMEOUT}s; trying -m immediate"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m immediate -w -t 10 >>"$LOGS_DIR/pg_ctl.out" 2>&1; then
      local children
      children="$(pgrep -P "$pid" || true)"
      warn "pg_ctl stop -m immediate failed: sending SIGKILL to the postmaster $pid and its children"
      # shellcheck disable=SC2086 # word-splitting the PID list is intended
      kill -KILL "$pid" $children 2>/dev/null || true
      sleep 1
      pid_alive "$pid" && die "postgres: could not stop pid $pid"
    fi
  fi
  rm -f "$PG_PID_FILE"
  log "postgres: stopped ($(elapsed "$t0")s)"
}

# ----------------------------------------------------------------------------- other services

# PID files of the project's own services: everything in pids/ but ours.
service_pid_files() {
  local f
  for f in "$PIDS_DIR"/*.pid; do
    [[ -e "$f" ]] || continue
    case "$(basename "$f")" in
      kafka.pid | postgres.pid) ;;
      *) printf '%s\n' "$f" ;;
    esac
  done
}

services_stop() {
  local files=() f pid name pids=() names=() i
  mapfile -t files < <(service_pid_files)
  [[ ${#files[@]} -gt 0 ]] || return 0
  # SIGTERM all first, then wait for all together (stops N services in <= STOP_TIMEOUT).
  for f in "${files[@]}"; do
    name="$(basename "$f" .pid)"
    pid="$(read_pid "$f")"
    if [[ -z "$pid" || "$pid" -le 1 || "$pid" -eq $$ ]] || ! pid_alive "$pid"; then
      log "service $name: not running${pid:+ (stale pid $pid)}; removing $f"
      rm -f "$f"
      continue
    fi
    log "service $name: stopping pid $pid ..."
    pids+=("$pid")
    names+=("$name")
    send_term "$pid"
  done
  for i in "${!pids[@]}"; do
    wait_gone "${pids[$i]}" "service ${names[$i]}" || die "could not stop service ${names[$i]} (pid ${pids[$i]})"
  done
  for f in "${files[@]}"; do rm -f "$f"; done
}

# ----------------------------------------------------------------------------- commands

cmd_up() {
  local t0
  t0="$(now)"
  take_lock
  log "up: run dir $TT_RUN_DIR"
  # Check every port we will need before starting anything.
  [[ -n "$(kafka_pid)" ]] || kafka_check_ports
  PG_BIN="$(find_pg_bin)"
  if [[ -z "$PG_BIN" ]] || ! pg_running; then
    ensure_port_free "$TT_PG_HOST" "$TT_PG_PORT" "PostgreSQL" TT_PG_PORT
    if id -u postgres >/dev/null 2>&1; then pg_check_parents; fi
  fi
  # Start both before waiting, so Kafka's JVM boot overlaps Postgres' start.
  kafka_start
  pg_start
  kafka_wait
  pg_wait
  log "up: Kafka $KAFKA_BOOTSTRAP and Postgres $DATABASE_URL are up (took $(elapsed "$t0")s)"
}

cmd_down() {
  local t0
  t0="$(now)"
  take_lock
  services_stop
  kafka_stop
  if [[ -f "$PG_DATA/postmaster.pid" ]] || [[ -f "$PG_PID_FILE" ]]; then
    pg_stop
  fi
  log "down: everything stopped ($(elapsed "$t0")s)"
}

cmd_status() {
  local ok=0 pid f name
  pid="$(kafka_pid)"
  if [[ -n "$pid" ]] && port_open "$TT_KAFKA_HOST" "$TT_KAFKA_PORT"; then
    printf '%-12s %-8s %-8s %s\n' kafka up "$pid" "$KAFKA_BOOTSTRAP"
  elif [[ -n "$pid" ]]; then
    printf '%-12s %-8s %-8s %s\n' kafka starting "$pid" "$KAFKA_BOOTSTRAP (port not accepting yet)"
    ok=1
  else
    printf '%-12s %-8s %-8s %s\n' kafka down - "$KAFKA_BOOTSTRAP"
    ok=1
  fi
  pid=""
  if [[ -f "$PG_DATA/postmaster.pid" ]]; then
    PG_BIN="$(find_pg_bin)"
    [[ -n "$PG_BIN" ]] && pid="$(pg_pid)"
  fi
  if [[ -n "$pid" ]] && "$PG_BIN/pg_isready" -q -h "$TT_PG_HOST" -p "$TT_PG_PORT" -d postgres -U "$PG_SUPERUSER"; then
    printf '%-12s %-8s %-8s %s\n' postgres up "$pid" "$DATABASE_URL"
  elif [[ -n "$pid" ]]; then
    printf '%-12s %-8s %-8s %s\n' postgres starting "$pid" "$DATABASE_URL (not accepting connections)"
    ok=1
  else
    printf '%-12s %-8s %-8s %s\n' postgres down - "$DATABASE_URL"
    ok=1
  fi
  while IFS= read -r f; do
    name="$(basename "$f" .pid)"
    pid="$(read_pid "$f")"
    if pid_alive "$pid"; then
      printf '%-12s %-8s %-8s %s\n' "$name" up "$pid" "(service, $f)"
    else
      printf '%-12s %-8s %-8s %s\n' "$name" dead "${pid:--}" "(stale PID file $f)"
    fi
  done < <(service_pid_files)
  return "$ok"
}

cmd_kafka_restart() {
  local t0
  t0="$(now)"
  take_lock
  # Resolve Java and the jars first: a broken setup should not stop a working broker.
  ensure_java
  kafka_ensure_libs
  kafka_stop
  kafka_start
  kafka_wait
  log "kafka-restart: done ($(elapsed "$t0")s)"
}

# Fault tests take the broker away and bring it back, with the data kept.
cmd_kafka_stop() {
  take_lock
  kafka_stop
  log "kafka-stop: done"
}

cmd_kafka_start() {
  local t0
  t0="$(now)"
  take_lock
  ensure_java
  kafka_ensure_libs
  if [[ -z "$(kafka_pid)" ]]; then kafka_start; fi
  kafka_wait
  log "kafka-start: done ($(elapsed "$t0")s)"
}

cmd_pg_restart() {
  local t0
  t0="$(now)"
  take_lock
  ensure_pg_bin
  pg_stop
  pg_start
  pg_wait
  log "pg-restart: done ($(elapsed "$t0")s)"
}

cmd_reset() {
  cmd_down
  # The credentials (and the demo's principals) name users of the deleted broker, and
  # preprocess's state mirrors topics that no longer exist: they go with the data.
  log "reset: deleting $KAFKA_DIR, $PG_DIR, $CREDENTIALS_DIR, $TT_RUN_DIR/preprocess and $TT_RUN_DIR/demo (jar cache in $CACHE_DIR is kept)"
  rm -rf "$KAFKA_DIR" "$PG_DIR" "$TT_RUN_DIR/pg" "$CREDENTIALS_DIR" "$TT_RUN_DIR/preprocess" "$TT_RUN_DIR/demo"
  log "reset: done"
}

cmd_env() {
  printf 'export TT_KAFKA_BOOTSTRAP=%q\n' "$KAFKA_BOOTSTRAP"
  printf 'export TT_DATABASE_URL=%q\n' "$DATABASE_URL"
}

cmd_smoke() {
  [[ -n "$(kafka_pid)" ]] || die "kafka is not running (run '$0 up' first)"
  local -a auth
  mapfile -t auth < <(kafka_admin_args)
  "$PYTHON" "$SCRIPT_DIR/wait_kafka.py" --bootstrap "$KAFKA_BOOTSTRAP" --timeout "$TT_STACK_TIMEOUT" --smoke "${auth[@]}"
}

usage() {
  sed -n '2,/^set -euo pipefail/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    kafka-restart) cmd_kafka_restart ;;
    kafka-stop) cmd_kafka_stop ;;
    kafka-start) cmd_kafka_start ;;
    pg-restart) cmd_pg_restart ;;
    reset) cmd_reset ;;
    env) cmd_env ;;
    smoke) cmd_smoke ;;
    -h | --help | help) usage ;;
    "")
      usage >&2
      exit 2
      ;;
    *)
      log "unknown command: $cmd"
      usage >&2
      exit 2
      ;;
  esac
}

# Allow `source stack.sh` (for debugging single functions) without running a command.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
