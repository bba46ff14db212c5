#!/usr/bin/env bash
# Create a local cluster on the embedded fleet (kubesim), with the argument order and
# defaults of the original lab script:
#
#   ./create-cluster-local.sh NAME [IMAGE] [ENV] [LOCATION] [PORT]
#       IMAGE     rancher/k3s:v1.25.10-k3s1
#       ENV       staging
#       LOCATION  northeurope
#       PORT      8080 (the cluster's ingress port on 127.0.0.1)
#
# Starts kubesim in the background when it is not running (state and log under
# $CUTOVER_STATE_DIR/kubesim), builds the project when build/cutover is missing, then
# runs `cutover cluster create`, which registers the cluster, writes its kubeconfig
# (0600) and adds it to Prometheus' targets. Environment: CUTOVER_STATE_DIR (default
# ./.cutover), CUTOVER_TIME_SCALE (default 1; handed to kubesim's --time-scale),
# CUTOVER (cutover binary), KUBESIM (kubesim binary). Stop everything with
# ./cleanup-local.sh.
set -euo pipefail

usage() {
  echo "usage: $0 NAME [IMAGE] [ENV] [LOCATION] [PORT]" >&2
  exit 2
}
case "${1:-}" in
-h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
''|-*) usage ;;
esac
[ $# -le 5 ] || usage

name=$1
image=${2:-rancher/k3s:v1.25.10-k3s1}
env=${3:-staging}
location=${4:-northeurope}
port=${5:-8080}

root="$(cd "$(dirname "$0")" && pwd)"
state="${CUTOVER_STATE_DIR:-./.cutover}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
export CUTOVER_STATE_DIR="$state"
export CUTOVER_TIME_SCALE="${CUTOVER_TIME_SCALE:-1}"

cutover="${CUTOVER:-$root/build/cutover}"
kubesim="${KUBESIM:-$root/build/kubesim}"
if [ ! -x "$cutover" ] || [ ! -x "$kubesim" ]; then
  echo "create-cluster-local: building cutover and kubesim in $root/build"
  if [ ! -d "$root/build/meson-private" ]; then
    meson setup "$root/build" "$root" >/dev/null
  fi
  ninja -C "$root/build"
fi

ksdir="$state/kubesim"
url_file="$ksdir/kubesim.url"
pid_file="$ksdir/kubesim.pid"

kubesim_up() {
  [ -s "$url_file" ] && curl -fsS -m 2 "$(head -n 1 "$url_file")/healthz" >/dev/null 2>&1
}

if ! kubesim_up; then
  mkdir -p "$ksdir"
  rm -f "$url_file"
  nohup "$kubesim" serve --state-dir "$ksdir" --control 127.0.0.1:0 \
    --time-scale "$CUTOVER_TIME_SCALE" >>"$ksdir/kubesim.log" 2>&1 </dev/null &
  echo $! >"$pid_file"
  for _ in $(seq 1 200); do
    kubesim_up && break
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      echo "create-cluster-local: kubesim exited, see $ksdir/kubesim.log" >&2
      tail -n 5 "$ksdir/kubesim.log" >&2 || true
      rm -f "$pid_file"
      exit 1
    fi
    sleep 0.05
  done
  kubesim_up || { echo "create-cluster-local: kubesim did not start" >&2; exit 1; }
  echo "create-cluster-local: kubesim running (pid $(cat "$pid_file")) at $(head -n 1 "$url_file")"
fi

exec "$cutover" cluster create "$name" --image "$image" --env "$env" \
  --location "$location" --port "$port" --provider sim
