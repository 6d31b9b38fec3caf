#!/usr/bin/env bash
# The production stack on one machine, without Kubernetes, for development:
#   - an S3 endpoint: moto's HTTP server on 127.0.0.1 (stands in for AWS S3 / MinIO / Ceph),
#   - a Dask scheduler and worker processes (`dask scheduler`, `dask worker`),
#   - a Ray head (`ray start --head --block`), reachable as ray://127.0.0.1:<port>.
#
# Usage:
#   deploy/local_stack.sh up   [--run-dir DIR] [--workers N] [--threads N] [--ray-cpus N] [--bucket NAME]...
#   deploy/local_stack.sh down [--run-dir DIR]
#   deploy/local_stack.sh status|env [--run-dir DIR]
#
# `up` prints `export ...` lines (also in DIR/env.sh) for the driver:
#   eval "$(deploy/local_stack.sh up)"; insarcloud run area.yaml; deploy/local_stack.sh down
#
# Every process is started in its own session (setsid), its PID written to DIR/pids/, and tagged with
# INSARCLOUD_STACK_RUN_DIR=DIR in its environment. `down` stops each recorded process group by PID, then
# stops any process still carrying the tag (a child that left its group), so nothing is orphaned. It never
# stops processes by name: other people's Dask/Ray on the same machine are left alone.
# Ray runs with token authentication and a token of its own (DIR/ray_auth_token, mode 600); env.sh hands
# it to clients by path (RAY_AUTH_MODE/RAY_AUTH_TOKEN_PATH), never by value.
# Logs stay in DIR/logs/. Needs: python with insarcloud's deps (dask[distributed], ray, moto[server]).
set -Eeuo pipefail

CMD="${1:-}"
[[ -n "$CMD" ]] && shift || true
RUN_DIR="${INSARCLOUD_STACK_DIR:-${TMPDIR:-/tmp}/insarcloud-stack-$(id -u)}"
WORKERS=2
THREADS=1
RAY_CPUS=1
BUCKETS=()
PY="${PYTHON:-python}"
READY_TIMEOUT="${INSARCLOUD_STACK_TIMEOUT:-90}"
GRACE="${INSARCLOUD_STACK_GRACE:-3}"   # seconds a service gets to exit on SIGTERM

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "local_stack: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --run-dir) RUN_DIR="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --ray-cpus) RAY_CPUS="$2"; shift 2 ;;
    --bucket) BUCKETS+=("$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[[ "$WORKERS" =~ ^[0-9]+$ && "$WORKERS" -ge 1 ]] || die "--workers must be a positive integer, got '$WORKERS'"
[[ "$THREADS" =~ ^[0-9]+$ && "$THREADS" -ge 1 ]] || die "--threads must be a positive integer, got '$THREADS'"
[[ "$RAY_CPUS" =~ ^[0-9]+$ && "$RAY_CPUS" -ge 1 ]] || die "--ray-cpus must be a positive integer, got '$RAY_CPUS'"
case "$CMD" in
  up|down|status|env) ;;
  ""|-h|--help|help) usage; exit 0 ;;
  *) die "unknown command '$CMD' (up, down, status, env)" ;;
esac
# Only `up` creates the run dir; the canonical path is what tags the processes, so up and down agree.
[[ "$CMD" == up ]] && mkdir -p "$RUN_DIR"
RUN_DIR="$(realpath -m "$RUN_DIR")"
PID_DIR="$RUN_DIR/pids"
LOG_DIR="$RUN_DIR/logs"
TAG="INSARCLOUD_STACK_RUN_DIR=$RUN_DIR"
# Start order; `down` stops in reverse.
SERVICES=(s3 dask-scheduler dask-worker ray-head)

# Alive and not a zombie (an exited process whose parent, e.g. a container's init, has not reaped it yet).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# PIDs of live processes whose environment carries this run dir's tag (readable only for our own).
tagged_pids() {
  local d
  for d in /proc/[0-9]*; do
    if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qxF "$TAG"; then
      echo "${d#/proc/}"
    fi
  done
}

# True when PID is one of ours (guards against PID reuse after a reboot or a long pause).
is_ours() { { tr '\0' '\n' <"/proc/$1/environ"; } 2>/dev/null | grep -qxF "$TAG"; }

# N distinct free ports, chosen in one go (all held open until every one is picked).
free_ports() {
  "$PY" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

wait_tcp() {  # host port name
  "$PY" - "$1" "$2" "$3" "$READY_TIMEOUT" <<'EOF' || return 1
import socket, sys, time
host, port, name, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"local_stack: {name} did not answer on {host}:{port} within {timeout:.0f} s")
EOF
}

start() {  # name cmd...
  local name="$1"; shift
  # setsid: own session and process group, so `down` can stop the whole group by its leader's PID.
  env "$TAG" setsid "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
}

stop_all() {
  local i name pid pids left t
  for ((i=${#SERVICES[@]}-1; i>=0; i--)); do
    name="${SERVICES[$i]}"
    [[ -f "$PID_DIR/$name.pid" ]] || continue
    pid="$(cat "$PID_DIR/$name.pid")"
    if alive "$pid" && is_ours "$pid"; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      # A grace period, then SIGKILL for the group (Ray's head drains for up to 30 s on SIGTERM; a dev
      # stack has nothing to drain). The group kill also catches children that outlived the leader.
      for ((t=0; t<10*GRACE; t++)); do alive "$pid" || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PID_DIR/$name.pid"
  done
  # Anything still tagged left its process group (e.g. a daemonised helper): stop it by PID.
  for t in 1 2 3; do
    pids="$(tagged_pids | tr '\n' ' ')"
    [[ -z "${pids// /}" ]] && break
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    sleep 1
  done
  left="$(tagged_pids | tr '\n' ' ')"
  if [[ -n "${left// /}" ]]; then
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.5
  fi
  left="$(tagged_pids | tr '\n' ' ')"
  [[ -z "${left// /}" ]] || die "processes still running after down: $left"
  rm -f "$RUN_DIR/env.sh" "$RUN_DIR/ray_auth_token"
}

print_env() { cat "$RUN_DIR/env.sh"; }

cmd_up() {
  mkdir -p "$PID_DIR" "$LOG_DIR"
  local f
  for f in "$PID_DIR"/*.pid; do
    [[ -e "$f" ]] || continue
    if alive "$(cat "$f")" && is_ours "$(cat "$f")"; then
      die "a stack is already up in $RUN_DIR (run: $0 down --run-dir $RUN_DIR)"
    fi
  done
  trap 'echo "local_stack: start failed; stopping what was started (logs: $LOG_DIR)" >&2; stop_all; exit 1' ERR

  local s3_port sched_port dash_port gcs_port client_port p1 p2 p3 p4 p5 p6 p7
  read -r s3_port sched_port dash_port gcs_port client_port p1 p2 p3 p4 p5 p6 p7 < <(free_ports 12)
  [[ -n "$p7" ]] || die "could not pick free ports (is $PY a working python?)"

  # 1. S3 endpoint (moto's server: real HTTP, in-memory buckets). Dummy keys: moto accepts any.
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port"
  start s3 "$PY" -m moto.server -H 127.0.0.1 -p "$s3_port"
  wait_tcp 127.0.0.1 "$s3_port" "moto S3 server"
  for f in "${BUCKETS[@]}"; do
    "$PY" -c 'import sys, boto3; boto3.client("s3").create_bucket(Bucket=sys.argv[1])' "$f"
  done

  # Ray token authentication, made explicit and private to this stack: Ray >= 2.5x switches token auth on
  # by itself whenever ~/.ray/auth_token exists (any local ray.init() may create it), and then a ray://
  # client without RAY_AUTH_MODE=token is refused. The stack's own token (mode 600, never printed) is
  # handed to clients by path through env.sh.
  ( umask 077; "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$RUN_DIR/ray_auth_token" )
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RUN_DIR/ray_auth_token"
  unset RAY_AUTH_TOKEN

  # 2. Ray head, started before Dask because it is the slowest to come up (its readiness is checked last).
  #    --block keeps `ray start` in the foreground of its own session, so its PID owns every Ray process.
  #    Every port is chosen free, so other Ray instances on the machine do not collide with it.
  start ray-head ray start --head --block --disable-usage-stats --node-ip-address 127.0.0.1 \
    --port "$gcs_port" --ray-client-server-port "$client_port" --num-cpus "$RAY_CPUS" --num-gpus 0 \
    --include-dashboard false --dashboard-port "$p1" --object-store-memory 100000000 \
    --temp-dir "$RUN_DIR/ray" --dashboard-agent-listen-port "$p2" --dashboard-agent-grpc-port "$p3" \
    --runtime-env-agent-port "$p4" --metrics-export-port "$p5" --node-manager-port "$p6" \
    --object-manager-port "$p7"

  # 3. Dask scheduler + worker processes (a nanny per worker process).
  start dask-scheduler dask scheduler --host 127.0.0.1 --port "$sched_port" \
    --dashboard-address "127.0.0.1:$dash_port" --no-show
  wait_tcp 127.0.0.1 "$sched_port" "dask scheduler"
  start dask-worker dask worker "tcp://127.0.0.1:$sched_port" --nworkers "$WORKERS" --nthreads "$THREADS" \
    --host 127.0.0.1 --no-dashboard --local-directory "$RUN_DIR/dask-scratch" --death-timeout 60
  "$PY" - "tcp://127.0.0.1:$sched_port" "$WORKERS" "$READY_TIMEOUT" <<'EOF'
import sys
from distributed import Client
with Client(sys.argv[1], timeout=30) as c:
    c.wait_for_workers(int(sys.argv[2]), timeout=float(sys.argv[3]))
EOF

  wait_tcp 127.0.0.1 "$client_port" "ray client server"
  trap - ERR

  cat >"$RUN_DIR/env.sh" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_DEFAULT_REGION=us-east-1
export INSARCLOUD_DASK_SCHEDULER=tcp://127.0.0.1:$sched_port
export INSARCLOUD_RAY_ADDRESS=ray://127.0.0.1:$client_port
export INSARCLOUD_STACK_DIR=$RUN_DIR
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$RUN_DIR/ray_auth_token
# Ray clients wait 5 s before their first retry by default; a busy laptop needs longer to hand out a session.
export RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S=15
EOF
  print_env
  echo "# local stack up in $RUN_DIR (dask dashboard http://127.0.0.1:$dash_port); stop: $0 down --run-dir $RUN_DIR" >&2
}

cmd_status() {
  local name pid state rc=0
  for name in "${SERVICES[@]}"; do
    if [[ -f "$PID_DIR/$name.pid" ]]; then
      pid="$(cat "$PID_DIR/$name.pid")"
      if alive "$pid" && is_ours "$pid"; then state="running"; else state="dead"; rc=1; fi
      echo "$name pid=$pid $state"
    else
      echo "$name not started"; rc=1
    fi
  done
  return $rc
}

case "$CMD" in
  up) cmd_up ;;
  down) stop_all; echo "local_stack: down ($RUN_DIR)" >&2 ;;
  status) cmd_status ;;
  env) [[ -f "$RUN_DIR/env.sh" ]] || die "no stack up in $RUN_DIR"; print_env ;;
  ""|-h|--help|help) usage ;;
  *) die "unknown command '$CMD' (up, down, status, env)" ;;
esac
