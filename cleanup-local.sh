#!/usr/bin/env bash
# Undo what the local scripts set up: delete the local clusters cutover created (the
# sim and k3d clusters in its registry), then stop kubesim if create-cluster-local.sh
# started it, and the load balancer and Prometheus if scripts/lb-local.sh and
# scripts/prometheus-local.sh started them. Nothing else is removed: the state dir,
# logs and git repositories stay. Clusters from an exec plugin (clouds) are listed,
# not deleted.
#
#   ./cleanup-local.sh
#
# Environment: CUTOVER_STATE_DIR (default ./.cutover), CUTOVER_TIME_SCALE, CUTOVER,
# KUBESIM.
set -uo pipefail

case "${1:-}" in
-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
'') ;;
*) echo "usage: $0" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "$0")" && pwd)"
state="${CUTOVER_STATE_DIR:-./.cutover}"
if [ ! -d "$state" ]; then
  echo "cleanup-local: nothing to do ($state does not exist)"
  exit 0
fi
state="$(cd "$state" && pwd)"
export CUTOVER_STATE_DIR="$state"
export CUTOVER_TIME_SCALE="${CUTOVER_TIME_SCALE:-1}"
cutover="${CUTOVER:-$root/build/cutover}"
kubesim="${KUBESIM:-$root/build/kubesim}"
ksdir="$state/kubesim"
url_file="$ksdir/kubesim.url"
pid_file="$ksdir/kubesim.pid"
status=0

kubesim_up() {
  [ -s "$url_file" ] && curl -fsS -m 2 "$(head -n 1 "$url_file")/healthz" >/dev/null 2>&1
}

stop_pid() { # pid-file what
  local pid
  [ -f "$1" ] || return 0
  pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    echo "cleanup-local: stopped $2 (pid $pid)"
  fi
  rm -f "$1"
}

clusters=()
if [ -f "$state/clusters.json" ] && [ -x "$cutover" ]; then
  # NAME PROVIDER from the table (no JSON tool needed)
  while read -r n p _; do
    [ -n "$n" ] && clusters+=("$n:$p")
  done < <("$cutover" cluster list | tail -n +2)
fi

started_kubesim=0
for c in "${clusters[@]}"; do
  n=${c%%:*} p=${c#*:}
  case "$p" in
  sim)
    # kubesim keeps clusters across restarts: bring it up to delete them for good
    if ! kubesim_up && [ -x "$kubesim" ] && [ "$started_kubesim" = 0 ]; then
      mkdir -p "$ksdir"
      rm -f "$url_file"
      nohup "$kubesim" serve --state-dir "$ksdir" --control 127.0.0.1:0 \
        --time-scale "$CUTOVER_TIME_SCALE" >>"$ksdir/kubesim.log" 2>&1 </dev/null &
      echo $! >"$pid_file"
      started_kubesim=1
      for _ in $(seq 1 200); do kubesim_up && break; sleep 0.05; done
    fi
    "$cutover" cluster delete "$n" || status=1
    ;;
  k3d)
    "$cutover" cluster delete "$n" || status=1
    ;;
  *)
    echo "cleanup-local: leaving '$n' (provider '$p' is not local); delete it with 'cutover cluster delete $n'"
    ;;
  esac
done

stop_pid "$pid_file" kubesim
if [ -f "$state/haproxy/haproxy.pid" ] && [ -x "$root/scripts/lb-local.sh" ]; then
  "$root/scripts/lb-local.sh" stop || status=1
fi
if [ -f "$state/prometheus/prometheus.pid" ] && [ -x "$root/scripts/prometheus-local.sh" ]; then
  "$root/scripts/prometheus-local.sh" stop || status=1
fi
exit $status
