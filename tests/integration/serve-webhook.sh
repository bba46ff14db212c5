#!/bin/sh
# A signed git push reaches `cutover serve`, which asks Flux on every registered
# cluster to reconcile the GitRepositories that follow the pushed repository:
# real kubesim, clusters created with the local script, objects applied with the real
# kubectl, the push signed with the openssl CLI, the result read back with kubectl.
# Skips (77) without kubectl.
set -eu
root=${1:?usage: serve-webhook.sh SOURCE_ROOT}
command -v kubectl >/dev/null 2>&1 || { echo "kubectl not found: skipping"; exit 77; }
tmp=$(mktemp -d /tmp/co-serve-hook-XXXXXX)
export CUTOVER_STATE_DIR="$tmp/state" CUTOVER_TIME_SCALE=0.01
cutover=${CUTOVER:?} ; export CUTOVER KUBESIM
serve_pid=
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
  "$root/cleanup-local.sh" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/serve.log" ] && tail -n 20 "$tmp/serve.log"; exit 1; }

"$root/create-cluster-local.sh" hook1 rancher/k3s:v1.27.1-k3s1 staging northeurope 0 >/dev/null || fail "create hook1"
"$root/create-cluster-local.sh" hook2 rancher/k3s:v1.29.2-k3s1 staging northeurope 0 >/dev/null || fail "create hook2"
git init -q --bare "$tmp/tenant-core.git"
git init -q --bare "$tmp/other.git"
for c in hook1 hook2; do
  kc="$CUTOVER_STATE_DIR/clusters/$c/kubeconfig"
  kubectl --kubeconfig "$kc" create ns flux-system >/dev/null
  cat <<YAML | kubectl --kubeconfig "$kc" apply --server-side -f - >/dev/null || fail "apply on $c"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: core, namespace: flux-system}
spec: {url: "file://$tmp/tenant-core.git", interval: 1h, ref: {branch: main}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: other, namespace: flux-system}
spec: {url: "file://$tmp/other.git", interval: 1h, ref: {branch: main}}
YAML
done

secret=webhook-test-secret
CUTOVER_WEBHOOK_SECRET=$secret "$cutover" serve --listen 127.0.0.1:0 \
  >"$tmp/serve.out" 2>"$tmp/serve.log" &
serve_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/serve.out" ] && break; sleep 0.05; done
url=$(head -n 1 "$tmp/serve.out")
[ -n "$url" ] || fail "serve printed no URL"
curl -fsS "$url/healthz" | grep -q ok || fail "healthz"

body="{\"ref\":\"refs/heads/main\",\"repository\":{\"clone_url\":\"$tmp/tenant-core.git\"}}"
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Hub-Signature-256: sha256=$sig" \
  -H 'X-GitHub-Event: push' --data-binary "$body" "$url/hooks/git")
[ "$code" = 202 ] || fail "signed push answered $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary "$body" "$url/hooks/git")
[ "$code" = 401 ] || fail "unsigned push answered $code"

for c in hook1 hook2; do
  kc="$CUTOVER_STATE_DIR/clusters/$c/kubeconfig"
  got=
  for _ in $(seq 1 100); do
    got=$(kubectl --kubeconfig "$kc" -n flux-system get gitrepository core \
      -o jsonpath='{.metadata.annotations.reconcile\.fluxcd\.io/requestedAt}')
    [ -n "$got" ] && break
    sleep 0.05
  done
  [ -n "$got" ] || fail "$c: no requestedAt on flux-system/core"
  other=$(kubectl --kubeconfig "$kc" -n flux-system get gitrepository other \
    -o jsonpath='{.metadata.annotations}')
  [ -z "$other" ] || fail "$c: flux-system/other was annotated too: $other"
  echo "ok   $c: flux-system/core requestedAt=$got"
done
curl -fsS "$url/metrics" | grep -q 'cutover_reconcile_requests_total{cluster="hook1",result="succeeded"} 1' ||
  fail "metrics"
kill -TERM "$serve_pid"
wait "$serve_pid" || fail "serve exited $?"
serve_pid=
grep -q "shutting down" "$tmp/serve.log" || fail "no graceful shutdown"
echo ok
