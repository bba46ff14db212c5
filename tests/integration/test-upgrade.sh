#!/bin/bash
# `cutover upgrade` stages 1-7 against a real kubesim and real git repositories:
#
#  1. cluster1 (1.25) -> cluster2 (1.27): every stage done, Flux Ready on cluster2 at
#     the fleet repo's HEAD, cluster2 registered as candidate;
#  2. SIGKILL of the runner at several journaled points (create-cluster "creating",
#     before and while the provider call is in flight, "waiting-version",
#     bootstrap-flux "waiting", cluster-config "waiting", validate-cluster "checking",
#     tenant-namespaces "waiting", deploy-tenants "analysing" right after the canary
#     was stamped and 400 ms into its analysis), then `cutover resume`: the same end
#     state each time and exactly one new cluster in kubesim;
#  3. a tenant repo shipping policy/v1beta1 PodSecurityPolicy fails preflight for a
#     1.27 target with the blocking file named, before any cluster is created.
#
# Usage: test-upgrade.sh  (CUTOVER and KUBESIM name the binaries; KUBESIM_FLUX=1 says
# kubesim runs Flux's controllers). Exits 77 (skip) otherwise.
set -u

CUTOVER=${CUTOVER:?set CUTOVER to the cutover binary}
KUBESIM=${KUBESIM:-}
[ -n "$KUBESIM" ] && [ -x "$KUBESIM" ] || { echo "no kubesim in this build"; exit 77; }
[ "${KUBESIM_FLUX:-}" = 1 ] || { echo "kubesim in this build has no Flux controllers"; exit 77; }

T=$(mktemp -d /tmp/co-upgrade-it-XXXXXX)
export CUTOVER_STATE_DIR=$T/state
export CUTOVER_TIME_SCALE=${CUTOVER_TIME_SCALE:-0.01}
export HOME=$T
KPID=
FAILS=0

cleanup() {
	if [ -n "$KPID" ]; then
		kill "$KPID" 2>/dev/null
		wait "$KPID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FATAL: $*"; tail -20 "$T/kubesim.log" 2>/dev/null; exit 1; }

mkdir -p "$CUTOVER_STATE_DIR/kubesim"
"$KUBESIM" serve --state-dir "$CUTOVER_STATE_DIR/kubesim" --control 127.0.0.1:0 \
	--time-scale "$CUTOVER_TIME_SCALE" >"$T/kubesim.log" 2>&1 &
KPID=$!
for _ in $(seq 200); do
	[ -s "$CUTOVER_STATE_DIR/kubesim/kubesim.url" ] && break
	kill -0 "$KPID" 2>/dev/null || die "kubesim exited"
	sleep 0.05
done
URL=$(cat "$CUTOVER_STATE_DIR/kubesim/kubesim.url") || die "no kubesim.url"

sim_count() { # clusters named $1 in kubesim
	curl -sf "$URL/clusters" | python3 -c '
import json, sys
d = json.load(sys.stdin)
items = d.get("clusters", d) if isinstance(d, dict) else d
print(sum(1 for c in items if (c.get("name") if isinstance(c, dict) else c) == sys.argv[1]))
' "$1"
}

ALL7="preflight=done create-cluster=done bootstrap-flux=done cluster-config=done validate-cluster=done tenant-namespaces=done deploy-tenants=done"
stage_states() { # pipeline id -> "name=state ..."
	"$CUTOVER" status "$1" -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["state"], " ".join(s["name"] + "=" + s["state"] for s in d["stages"]))'
}

"$CUTOVER" cluster create cluster1 --image rancher/k3s:v1.25.10-k3s1 >"$T/create1.log" 2>&1 ||
	die "cluster create cluster1: $(tail -3 "$T/create1.log")"

# ---- 1. a clean run ----
start=$(date +%s.%N)
"$CUTOVER" upgrade cluster1 --to cluster2 --image rancher/k3s:v1.27.1-k3s1 \
	>"$T/up2.log" 2>&1
rc=$?
end=$(date +%s.%N)
if [ $rc -eq 0 ]; then
	ok "upgrade cluster1 -> cluster2 in $(python3 -c "print(round($end - $start, 2))")s"
else
	fail "upgrade exited $rc"; tail -20 "$T/up2.log"
fi
st=$(stage_states cluster1-to-cluster2)
[ "$st" = "succeeded $ALL7" ] &&
	ok "all seven stages done" || fail "status: $st"
grep -q "stages 8-11 (load-test" "$T/up2.log" && ok "says which stages are not built" ||
	fail "no note about stages 8-11"
[ "$(sim_count cluster2)" = 1 ] && ok "kubesim holds cluster2" || fail "cluster2 count $(sim_count cluster2)"
"$CUTOVER" cluster get cluster2 -o json | grep -q '"role": *"candidate"' &&
	ok "cluster2 registered as candidate" || fail "cluster2 role"
HEAD=$(git --git-dir="$CUTOVER_STATE_DIR/repos/fleet.git" rev-parse main)
git --git-dir="$CUTOVER_STATE_DIR/repos/fleet.git" show \
	main:clusters/staging/northeurope/flux-system/gotk-sync.yaml >/dev/null 2>&1 &&
	ok "gotk-sync.yaml committed to the fleet repo" || fail "no gotk-sync.yaml in fleet repo"
KC=$CUTOVER_STATE_DIR/clusters/cluster2/kubeconfig
rev=$(kubectl --kubeconfig "$KC" -n flux-system get kustomizations.kustomize.toolkit.fluxcd.io \
	tenants -o jsonpath='{.status.lastAppliedRevision}' 2>&1)
[ "$rev" = "main@sha1:$HEAD" ] && ok "tenants Kustomization applied at HEAD (kubectl)" ||
	fail "tenants revision '$rev', want main@sha1:$HEAD"
vars=$(kubectl --kubeconfig "$KC" -n flux-system get configmap cluster-vars \
	-o jsonpath='{.data.CLUSTER_NAME} {.data.CLUSTER_ENV} {.data.GIT_BASE_URL}' 2>&1)
[ "$vars" = "cluster2 staging file://$CUTOVER_STATE_DIR/repos" ] && ok "cluster-vars written" ||
	fail "cluster-vars: $vars"
# a second run of the finished pipeline changes nothing
"$CUTOVER" upgrade cluster1 --to cluster2 --image rancher/k3s:v1.27.1-k3s1 >/dev/null 2>&1
[ "$(sim_count cluster2)" = 1 ] && ok "rerun keeps one cluster2" || fail "rerun made another cluster2"

# ---- 2. crashes and resume ----
n=3
for point in create-cluster:creating create-cluster:creating+5 create-cluster:waiting-version \
	bootstrap-flux:waiting+20 cluster-config:waiting validate-cluster:checking \
	tenant-namespaces:waiting deploy-tenants:analysing deploy-tenants:analysing+400; do
	name=cluster$n
	n=$((n + 1))
	CUTOVER_CRASH_AT=$point "$CUTOVER" upgrade cluster1 --to $name \
		--image rancher/k3s:v1.27.1-k3s1 >"$T/crash-$name.log" 2>&1
	rc=$?
	if [ $rc -ne 137 ]; then
		fail "$point: runner exited $rc, expected SIGKILL (137)"
		tail -5 "$T/crash-$name.log"
		continue
	fi
	"$CUTOVER" status cluster1-to-$name | grep -q "cutover resume" ||
		fail "$point: status does not offer resume"
	"$CUTOVER" resume >"$T/resume-$name.log" 2>&1
	rc=$?
	st=$(stage_states cluster1-to-$name)
	if [ $rc -eq 0 ] && [ "$st" = "succeeded $ALL7" ] &&
		[ "$(sim_count $name)" = 1 ]; then
		ok "SIGKILL at $point, resume: done with one $name"
	else
		fail "SIGKILL at $point: resume rc $rc, '$st', $name count $(sim_count $name)"
		tail -8 "$T/resume-$name.log"
	fi
	# keep kubesim small: the next round only needs cluster1
	"$CUTOVER" cluster delete $name >/dev/null 2>&1 || fail "delete $name"
done
creates=$(grep -c '"to":"creating"' "$CUTOVER_STATE_DIR"/pipelines/cluster1-to-cluster3/journal.jsonl)
[ "$creates" = 2 ] && ok "creating journaled once per run" || fail "creating entries: $creates"

# ---- signals: the first SIGINT/SIGTERM stops gracefully (130/143), resumable ----
for sig in INT TERM; do
	name=cluster-sig-$(echo $sig | tr A-Z a-z)
	"$CUTOVER" upgrade cluster1 --to $name --image rancher/k3s:v1.27.1-k3s1 \
		>"$T/sig-$name.log" 2>&1 &
	pid=$!
	for _ in $(seq 400); do
		grep -q '"stage":"bootstrap-flux"' "$T/sig-$name.log" && break
		sleep 0.01
	done
	kill -$sig $pid
	wait $pid
	rc=$?
	want=130
	[ $sig = TERM ] && want=143
	st=$("$CUTOVER" status cluster1-to-$name -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
	if [ $rc -eq $want ] && [ "$st" = stopped ]; then
		ok "SIG$sig: exit $rc, pipeline stopped and resumable"
	else
		fail "SIG$sig: exit $rc (want $want), state '$st'"
		tail -5 "$T/sig-$name.log"
	fi
	"$CUTOVER" resume cluster1-to-$name >"$T/sig-resume-$name.log" 2>&1 &&
		[ "$(sim_count $name)" = 1 ] && ok "resumed after SIG$sig" ||
		fail "resume after SIG$sig"
	"$CUTOVER" cluster delete $name >/dev/null 2>&1
done

# ---- an unreachable Prometheus fails preflight ----
"$CUTOVER" upgrade cluster1 --to cluster30 --image rancher/k3s:v1.27.1-k3s1 \
	--prometheus-url http://127.0.0.1:1 >"$T/prom.log" 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "prometheus 'http://127.0.0.1:1/-/ready' does not answer" "$T/prom.log" &&
	[ "$(sim_count cluster30)" = 0 ] && ok "unreachable prometheus fails preflight" ||
	{ fail "prometheus check: rc $rc"; tail -3 "$T/prom.log"; }

# ---- 3. a removed API fails preflight before anything is created ----
git clone -q "$CUTOVER_STATE_DIR/repos/tenant-core.git" "$T/tenant" || die "clone tenant-core"
cat >"$T/tenant/deploy/base/psp.yaml" <<'YAML'
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata:
  name: restricted
spec:
  privileged: false
  seLinux: {rule: RunAsAny}
  runAsUser: {rule: MustRunAsNonRoot}
  supplementalGroups: {rule: RunAsAny}
  fsGroup: {rule: RunAsAny}
  volumes: [configMap, secret]
YAML
sed -i 's/^resources:/resources:\n  - psp.yaml/' "$T/tenant/deploy/base/kustomization.yaml"
(cd "$T/tenant" && git add -A && git -c user.name=t -c user.email=t@t commit -qm "Add a PSP" &&
	git push -q origin HEAD:main) || die "push to tenant-core"
"$CUTOVER" upgrade cluster1 --to cluster20 --image rancher/k3s:v1.27.1-k3s1 >"$T/psp.log" 2>&1
rc=$?
[ $rc -eq 1 ] && ok "preflight failure exits 1" || fail "psp upgrade exited $rc"
grep -q "tenant-core.git deploy/base/psp.yaml: policy/v1beta1 PodSecurityPolicy 'restricted' is removed in v1.25; use Pod Security Admission" "$T/psp.log" &&
	ok "report names the blocking object" || { fail "no blocking report"; tail -5 "$T/psp.log"; }
[ "$(sim_count cluster20)" = 0 ] && ok "no cluster created" || fail "cluster20 exists"
"$CUTOVER" cluster get cluster20 >/dev/null 2>&1 && fail "cluster20 registered" ||
	ok "cluster20 not registered"
"$CUTOVER" status cluster1-to-cluster20 | grep -q "failed" && ok "status says failed" ||
	fail "status of the failed pipeline"
# a target older than the old cluster (1.24 < 1.25) is refused as a downgrade, before
# any cluster is created (which version serves which API is the kube-apis unit test's)
"$CUTOVER" upgrade cluster1 --to cluster21 --image rancher/k3s:v1.24.17-k3s1 \
	>"$T/down.log" 2>&1 && fail "downgrade to 1.24 accepted" ||
	ok "downgrade refused"
grep -q "target v1.24.17+k3s1 is older than 'cluster1' (v1.25.10+k3s1)" "$T/down.log" &&
	ok "downgrade reason" || { fail "downgrade reason"; tail -5 "$T/down.log"; }
[ "$(sim_count cluster21)" = 0 ] && ok "no cluster created on downgrade" ||
	fail "cluster21 exists"

kill -0 "$KPID" 2>/dev/null || fail "kubesim died"
if [ $FAILS -gt 0 ]; then
	echo "$FAILS check(s) failed"
	tail -20 "$T/kubesim.log"
	exit 1
fi
echo "all checks passed"
