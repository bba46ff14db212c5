#!/usr/bin/env bash
# create-cluster-local.sh + cleanup-local.sh end to end in a temporary state dir at
# time scale 0.01: kubesim is started on demand, the cluster answers kubectl through
# the kubeconfig cutover wrote (0600), the registry and Prometheus targets have it, a
# second run is idempotent, a second cluster of the same env/location is a candidate,
# and cleanup deletes both clusters, stops kubesim and leaves the state dir.
#
#   scripts-local.sh SOURCE_ROOT     (env: KUBESIM, CUTOVER built binaries)
# Exit 77 (skipped) without kubectl or a kubesim binary.
set -uo pipefail

root=${1:?source root}
command -v kubectl >/dev/null || { echo "kubectl missing: skipped"; exit 77; }
[ -x "${KUBESIM:-}" ] || { echo "KUBESIM not set to a kubesim binary: skipped"; exit 77; }
[ -x "${CUTOVER:-}" ] || { echo "CUTOVER not set: failed"; exit 1; }

tmp=$(mktemp -d /tmp/co-scripts-XXXXXX)
export CUTOVER_STATE_DIR="$tmp/state" CUTOVER_TIME_SCALE=0.01
ksdir="$CUTOVER_STATE_DIR/kubesim"
cleanup() {
  if [ -f "$ksdir/kubesim.pid" ]; then kill "$(cat "$ksdir/kubesim.pid")" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$(( 20000 + RANDOM % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  return 1
}
port=$(free_port) || fail "no free port"

cd "$tmp" || exit 1   # the scripts work from any directory
start=$(date +%s%N)
"$root/create-cluster-local.sh" cluster1 rancher/k3s:v1.27.1-k3s1 staging northeurope "$port" ||
  fail "create-cluster-local.sh cluster1"
echo "# create-cluster-local.sh (kubesim start + create): $(( ($(date +%s%N) - start) / 1000000 )) ms"

kc="$CUTOVER_STATE_DIR/clusters/cluster1/kubeconfig"
[ "$(stat -c %a "$kc")" = 600 ] || fail "kubeconfig mode $(stat -c %a "$kc")"
kubectl --kubeconfig "$kc" get ns >"$tmp/ns.txt" 2>&1 || { cat "$tmp/ns.txt"; fail "kubectl get ns"; }
grep -q '^default ' "$tmp/ns.txt" || fail "no default namespace: $(cat "$tmp/ns.txt")"
kubectl --kubeconfig "$kc" version -o json 2>/dev/null | grep -q '"gitVersion": "v1.27.1+k3s1"' ||
  fail "server version"
kspid=$(cat "$ksdir/kubesim.pid") || fail "no kubesim pid file"
kill -0 "$kspid" || fail "kubesim not running"

"$CUTOVER" cluster list >"$tmp/list.txt" || fail "cluster list"
grep -Eq '^cluster1 +sim +staging +northeurope +v1.27.1\+k3s1 +active +ready +http://127.0.0.1:'"$port"'$' \
  "$tmp/list.txt" || { cat "$tmp/list.txt"; fail "registry row"; }
grep -q "\"127.0.0.1:$port\"" "$CUTOVER_STATE_DIR/prometheus/targets.json" || fail "targets"

# again: same cluster, same kubesim
"$root/create-cluster-local.sh" cluster1 rancher/k3s:v1.27.1-k3s1 staging northeurope "$port" \
  >/dev/null || fail "second create"
[ "$(cat "$ksdir/kubesim.pid")" = "$kspid" ] || fail "kubesim restarted"
[ "$(pgrep -c -f "kubesim serve --state-dir $ksdir" || true)" = 1 ] || fail "two kubesims"

# a second cluster with the defaults (but a free port) is a candidate
port2=$(free_port) || fail "no free port"
"$root/create-cluster-local.sh" cluster2 "" "" "" "$port2" >/dev/null || fail "create cluster2"
"$CUTOVER" cluster get cluster2 -o json >"$tmp/c2.json" || fail "get cluster2"
grep -q '"role": "candidate"' "$tmp/c2.json" || fail "cluster2 role: $(cat "$tmp/c2.json")"
grep -q '"version": "v1.25.10+k3s1"' "$tmp/c2.json" || fail "cluster2 default image"
grep -q '"live": "ready"' "$tmp/c2.json" || fail "cluster2 live state"

# bad usage is exit 2
"$root/create-cluster-local.sh" >/dev/null 2>&1; [ $? = 2 ] || fail "usage exit code"

"$root/cleanup-local.sh" || fail "cleanup-local.sh"
for _ in $(seq 1 50); do kill -0 "$kspid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$kspid" 2>/dev/null && fail "kubesim still running"
[ ! -f "$ksdir/kubesim.pid" ] || fail "pid file left"
"$CUTOVER" cluster list -o json | grep -q '"name"' && fail "clusters left in the registry"
[ -d "$CUTOVER_STATE_DIR" ] && [ -f "$ksdir/kubesim.log" ] || fail "cleanup removed files"
grep -q '"cluster1"' "$ksdir/kubesim.json" && fail "cluster1 left in kubesim's state"
grep -q '"cluster2"' "$ksdir/kubesim.json" && fail "cluster2 left in kubesim's state"
# idempotent
"$root/cleanup-local.sh" >/dev/null || fail "second cleanup"
echo "ok"
