#!/usr/bin/env bash
# Stages 5-7 and the tenant scripts against a real kubesim and real git, at time
# scale 0.01, in a temporary state dir:
#
#  1. create-cluster-local.sh + deploy-tenant-local.sh: cluster1 with Flux Ready at the
#     fleet repo's HEAD and tenant core Ready at its repo's HEAD, canary Succeeded;
#  2. `cutover upgrade cluster1 --to cluster2`: stages 1-7 done (wall time and the
#     runner's peak RSS are printed);
#  3. a commit pushed with the git CLI to tenant-core.git once deploy-tenants runs
#     (plus a webhook to the runner's hosted /hooks/git) is rolled out on the new
#     cluster and analysed by its canary before the pipeline ends;
#  4. a release with FAULT_ERROR_RATE=0.5 pushed before an upgrade fails stage 7 with
#     the canary's reason (not retried); the new cluster is deleted, cluster1 untouched;
#  5. a fleet check that exits non-zero fails stage 5 with its name, exit code and last
#     stderr line.
#
# Usage: test-tenants.sh SOURCE_ROOT  (CUTOVER and KUBESIM name the binaries; exits 77
# when kubesim or kubectl is missing).
set -uo pipefail

root=${1:?source root}
CUTOVER=${CUTOVER:?set CUTOVER to the cutover binary}
[ -x "${KUBESIM:-}" ] || { echo "no kubesim in this build"; exit 77; }
command -v kubectl >/dev/null || { echo "kubectl missing"; exit 77; }
[ "${KUBESIM_FLUX:-}" = 1 ] || { echo "kubesim in this build has no Flux controllers"; exit 77; }

T=$(mktemp -d /tmp/co-tenants-it-XXXXXX)
export CUTOVER_STATE_DIR=$T/state CUTOVER_TIME_SCALE=0.01 HOME=$T CUTOVER KUBESIM
export CUTOVER_FLEET_SOURCE=$root
ksdir=$CUTOVER_STATE_DIR/kubesim
BG=
FAILS=0

cleanup() {
	[ -n "$BG" ] && kill "$BG" 2>/dev/null && wait "$BG" 2>/dev/null
	if [ -f "$ksdir/kubesim.pid" ]; then
		pid=$(cat "$ksdir/kubesim.pid")
		kill "$pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FATAL: $*"; tail -20 "$ksdir/kubesim.log" 2>/dev/null; exit 1; }

sim_count() { # clusters named $1 in kubesim
	curl -sf "$(head -n 1 "$ksdir/kubesim.url")/clusters" | python3 -c '
import json, sys
d = json.load(sys.stdin)
items = d.get("clusters", d) if isinstance(d, dict) else d
print(sum(1 for c in items if (c.get("name") if isinstance(c, dict) else c) == sys.argv[1]))
' "$1"
}
stage_states() {
	"$CUTOVER" status "$1" -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(d["state"], " ".join(s["name"] + "=" + s["state"] for s in d["stages"]))'
}
kc() { echo "$CUTOVER_STATE_DIR/clusters/$1/kubeconfig"; }
kget() { # cluster ns kind name jsonpath
	kubectl --kubeconfig "$(kc "$1")" -n "$2" get "$3" "$4" -o jsonpath="$5" 2>&1
}
tenant_head() { git --git-dir="$CUTOVER_STATE_DIR/repos/tenant-core.git" rev-parse main; }
ALL7="preflight=done create-cluster=done bootstrap-flux=done cluster-config=done validate-cluster=done tenant-namespaces=done deploy-tenants=done"

# ---- 1. the two scripts ----
cd "$T" || exit 1
"$root/create-cluster-local.sh" cluster1 rancher/k3s:v1.25.10-k3s1 staging northeurope 0 \
	>"$T/create.log" 2>&1 || die "create-cluster-local.sh: $(tail -3 "$T/create.log")"
start=$(date +%s%N)
"$root/deploy-tenant-local.sh" cluster1 core >"$T/deploy.log" 2>&1
rc=$?
echo "# deploy-tenant-local.sh: $(( ($(date +%s%N) - start) / 1000000 )) ms"
[ $rc -eq 0 ] && ok "deploy-tenant-local.sh cluster1 core" ||
	{ fail "deploy-tenant-local.sh exited $rc"; tail -15 "$T/deploy.log"; }
grep -q "tenant 'core' deployed on cluster 'cluster1'" "$T/deploy.log" || fail "no deployed line"
FLEET=$(git --git-dir="$CUTOVER_STATE_DIR/repos/fleet.git" rev-parse main)
r=$(kget cluster1 flux-system kustomizations.kustomize.toolkit.fluxcd.io flux-system \
	'{.status.lastAppliedRevision} {.status.conditions[?(@.type=="Ready")].status}')
[ "$r" = "main@sha1:$FLEET True" ] && ok "cluster1: Flux Ready at the fleet HEAD" || fail "flux-system: '$r'"
H1=$(tenant_head)
r=$(kget cluster1 core kustomizations.kustomize.toolkit.fluxcd.io core \
	'{.status.lastAppliedRevision} {.status.conditions[?(@.type=="Ready")].status}')
[ "$r" = "main@sha1:$H1 True" ] && ok "cluster1: tenant core Ready at its HEAD" || fail "core: '$r'"
r=$(kget cluster1 core canaries.flagger.app podinfo '{.status.phase}')
[ "$r" = Succeeded ] && ok "cluster1: canary core/podinfo Succeeded" || fail "canary phase '$r'"
for obj in "namespace core" "serviceaccount core" "rolebinding core-reconciler"; do
	kubectl --kubeconfig "$(kc cluster1)" -n core get $obj >/dev/null 2>&1 ||
		fail "cluster1 has no $obj"
done
"$root/deploy-tenant-local.sh" cluster1 >/dev/null 2>&1; [ $? = 2 ] || fail "usage exit code"
# a tenant with no sample repo to seed from is refused before anything changes
"$root/deploy-tenant-local.sh" cluster1 nosuch >"$T/nosuch.log" 2>&1 &&
	fail "deploy of a tenant without a repo succeeded" ||
	grep -q "no sample tenant" "$T/nosuch.log" && ok "unknown tenant refused" ||
	fail "unknown tenant: $(tail -2 "$T/nosuch.log")"

# ---- 2. upgrade, stages 1-7 ----
/usr/bin/time -f "%e %M" -o "$T/time2" "$CUTOVER" --time-scale 0.01 upgrade cluster1 \
	--to cluster2 --image rancher/k3s:v1.27.1-k3s1 >"$T/up2.log" 2>"$T/up2.err"
rc=$?
read -r wall rss <"$T/time2"
echo "# cutover upgrade stages 1-7: wall ${wall}s, peak RSS ${rss} KiB"
[ $rc -eq 0 ] && ok "upgrade cluster1 -> cluster2" || { fail "upgrade exited $rc"; tail -15 "$T/up2.err"; }
st=$(stage_states cluster1-to-cluster2)
[ "$st" = "succeeded $ALL7" ] && ok "stages 1-7 done" || fail "status: $st"
grep -q "check 'ingress-health' passed" "$T/up2.err" && ok "fleet check ran" || fail "no check log"
r=$(kget cluster2 core canaries.flagger.app podinfo '{.status.phase}')
[ "$r" = Succeeded ] && ok "cluster2: canary Succeeded" || fail "cluster2 canary '$r'"
gate=$(kget cluster2 flux-system configmap cluster-vars '{.data.CUTOVER_GATE_URL}')
grep -q "webhooks at $gate " "$T/up2.err" && ok "cluster-vars names the runner's gate ($gate)" ||
	fail "gate URL '$gate' is not the runner's"

# ---- SIGTERM while deploy-tenants waits: exit 143, resumable, one cluster ----
"$CUTOVER" upgrade cluster1 --to cluster6 --image rancher/k3s:v1.27.1-k3s1 \
	>"$T/up6.log" 2>"$T/up6.err" &
BG=$!
for _ in $(seq 600); do
	grep -q '"stage":"deploy-tenants","state":"waiting"' "$T/up6.log" && break
	sleep 0.02
done
kill -TERM $BG
wait $BG
rc=$?
BG=
"$CUTOVER" resume cluster1-to-cluster6 >"$T/resume6.log" 2>&1
rc2=$?
st=$(stage_states cluster1-to-cluster6)
[ $rc -eq 143 ] && [ $rc2 -eq 0 ] && [ "$st" = "succeeded $ALL7" ] && [ "$(sim_count cluster6)" = 1 ] &&
	ok "SIGTERM in deploy-tenants: exit 143, resumed to the end" ||
	{ fail "SIGTERM in deploy-tenants: rc $rc, resume rc $rc2, '$st'"; tail -5 "$T/resume6.log"; }
"$CUTOVER" cluster delete cluster6 >/dev/null 2>&1 || fail "delete cluster6"

# ---- 3. a push while deploy-tenants runs ----
git clone -q "$CUTOVER_STATE_DIR/repos/tenant-core.git" "$T/tenant" || die "clone tenant-core"
git -C "$T/tenant" config user.name tester
git -C "$T/tenant" config user.email tester@example.com
"$CUTOVER" upgrade cluster1 --to cluster3 --image rancher/k3s:v1.27.1-k3s1 \
	>"$T/up3.log" 2>"$T/up3.err" &
BG=$!
seen=
for _ in $(seq 600); do
	s=$("$CUTOVER" status cluster1-to-cluster3 -o json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next((s["state"] for s in d["stages"] if s["name"] == "deploy-tenants"), ""))' 2>/dev/null)
	case "$s" in pending|"") ;; *) seen=$s; break ;; esac
	kill -0 $BG 2>/dev/null || break
	sleep 0.05
done
[ -n "$seen" ] || fail "deploy-tenants never started"
sed -i 's/value: "core on ${CLUSTER_NAME}"/value: "core v2 on ${CLUSTER_NAME}"/' \
	"$T/tenant/deploy/base/deployment.yaml"
git -C "$T/tenant" commit -qam "podinfo: v2 message" && git -C "$T/tenant" push -q origin HEAD:main ||
	fail "push v2"
H2=$(tenant_head)
url=$(grep -o 'webhooks at http://127.0.0.1:[0-9]*' "$T/up3.err" | head -1 | sed 's/webhooks at //')
body="{\"ref\":\"refs/heads/main\",\"after\":\"$H2\",\"repository\":{\"clone_url\":\"file://$CUTOVER_STATE_DIR/repos/tenant-core.git\"}}"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-GitHub-Event: push' --data-binary "$body" \
	"$url/hooks/git")
[ "$code" = 202 ] && ok "runner accepted the push webhook (deploy-tenants was '$seen')" ||
	fail "webhook answered '$code' at '$url'"
wait $BG
rc=$?
BG=
[ $rc -eq 0 ] && ok "upgrade cluster1 -> cluster3 with a push meanwhile" ||
	{ fail "upgrade 3 exited $rc"; tail -15 "$T/up3.err"; }
r=$(kget cluster3 core kustomizations.kustomize.toolkit.fluxcd.io core '{.status.lastAppliedRevision}')
[ "$r" = "main@sha1:$H2" ] && ok "cluster3: tenant at the pushed commit" || fail "cluster3 core at '$r', want $H2"
r=$(kget cluster3 core deployment podinfo '{.spec.template.spec.containers[0].env[0].value}')
[ "$r" = "core v2 on cluster3" ] && ok "cluster3: pod template carries the pushed change" ||
	fail "cluster3 template env '$r'"
r=$(kget cluster3 core deployment podinfo '{.spec.template.metadata.annotations.cutover\.io/revision}')
[ "$r" = "main@sha1:$H2" ] && ok "cluster3: canary analysed the pushed revision" ||
	fail "stamp '$r'"
python3 -c '
import json, sys
want = "main@sha1:" + sys.argv[2]
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("to") == "tenant-ready" and (e.get("details") or {}).get("revision") == want:
        sys.exit(0)
sys.exit(1)' "$CUTOVER_STATE_DIR/pipelines/cluster1-to-cluster3/journal.jsonl" "$H2" &&
	ok "journal: tenant ready at the pushed revision" || fail "journal lacks tenant-ready at $H2"
grep -q "push to '.*tenant-core.git'" "$T/up3.err" && ok "runner logged the push" ||
	fail "push not logged"
[ -s "$CUTOVER_STATE_DIR/events/git-push.jsonl" ] && ok "push appended to events/git-push.jsonl" ||
	fail "no push event line"

# ---- 4. a failing release fails stage 7; the new cluster goes, cluster1 stays ----
"$CUTOVER" cluster delete cluster3 >/dev/null 2>&1 || fail "delete cluster3"
python3 - "$T/tenant/deploy/base/deployment.yaml" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("            - name: CPU_COST_MS\n",
              "            - name: FAULT_ERROR_RATE\n              value: \"0.5\"\n"
              "            - name: CPU_COST_MS\n", 1)
open(p, "w").write(s)
PY
git -C "$T/tenant" commit -qam "podinfo: a bad release" && git -C "$T/tenant" push -q origin HEAD:main ||
	fail "push the bad release"
c1_before=$(kubectl --kubeconfig "$(kc cluster1)" get ns -o name 2>&1 | sort | tr '\n' ' ')
"$CUTOVER" upgrade cluster1 --to cluster4 --image rancher/k3s:v1.27.1-k3s1 \
	>"$T/up4.log" 2>"$T/up4.err"
rc=$?
[ $rc -eq 1 ] && ok "bad release: upgrade exits 1" || { fail "bad release exited $rc"; tail -10 "$T/up4.err"; }
grep -q "stage 'deploy-tenants'.*canary core/podinfo failed at main@sha1:$(tenant_head): Failed: Canary analysis failed" \
	"$T/up4.err" && ok "failure names the canary and its reason" ||
	{ fail "no canary reason"; grep -i "fail" "$T/up4.err" | tail -5; }
n=$(python3 -c '
import json, sys
print(sum(1 for l in open(sys.argv[1]) if (lambda e: e.get("stage") == "deploy-tenants" and
      e.get("to") == "retry")(json.loads(l))))' \
	"$CUTOVER_STATE_DIR/pipelines/cluster1-to-cluster4/journal.jsonl")
[ "$n" = 0 ] && ok "a failed canary is a verdict, not retried" || fail "$n retries of a failed canary"
grep -q "cluster 'cluster4' deleted; the old cluster and the load balancer are untouched" "$T/up4.err" &&
	ok "report says cluster4 deleted" || fail "no cleanup report"
[ "$(sim_count cluster4)" = 0 ] && ok "kubesim no longer holds cluster4" || fail "cluster4 still in kubesim"
[ "$(sim_count cluster1)" = 1 ] && ok "cluster1 still in kubesim" || fail "cluster1 gone"
"$CUTOVER" cluster get cluster1 -o json | grep -q '"role": *"active"' && ok "cluster1 still active" ||
	fail "cluster1 role changed"
c1_after=$(kubectl --kubeconfig "$(kc cluster1)" get ns -o name 2>&1 | sort | tr '\n' ' ')
[ "$c1_before" = "$c1_after" ] && ok "cluster1 answers with the same namespaces" ||
	fail "cluster1 namespaces: '$c1_before' -> '$c1_after'"

# ---- 5. a failing fleet check fails stage 5 with its name, exit code and stderr ----
git clone -q "$CUTOVER_STATE_DIR/repos/fleet.git" "$T/fleet" || die "clone fleet"
printf '#!/bin/sh\necho "checking $CLUSTER" \necho "quota exceeded on $CLUSTER" >&2\nexit 3\n' \
	>"$T/fleet/clusters/staging/northeurope/checks/zz-quota"
chmod +x "$T/fleet/clusters/staging/northeurope/checks/zz-quota"
git -C "$T/fleet" add -A && git -C "$T/fleet" -c user.name=t -c user.email=t@t commit -qm "A failing check" &&
	git -C "$T/fleet" push -q origin HEAD:main || fail "push the check"
"$CUTOVER" upgrade cluster1 --to cluster5 --image rancher/k3s:v1.27.1-k3s1 \
	>"$T/up5.log" 2>"$T/up5.err"
rc=$?
[ $rc -eq 1 ] && grep -q "stage 'validate-cluster'.*check 'zz-quota' failed with exit code 3: quota exceeded on cluster5" \
	"$T/up5.err" && ok "failing check fails validate-cluster with its stderr" ||
	{ fail "check failure: rc $rc"; grep -i fail "$T/up5.err" | tail -3; }
[ "$(sim_count cluster5)" = 0 ] && ok "cluster5 deleted after the failed check" || fail "cluster5 left"

kill -0 "$(cat "$ksdir/kubesim.pid")" 2>/dev/null || fail "kubesim died"
"$root/cleanup-local.sh" >/dev/null 2>&1 || fail "cleanup-local.sh"
if [ $FAILS -gt 0 ]; then
	echo "$FAILS check(s) failed"
	tail -20 "$ksdir/kubesim.log"
	exit 1
fi
echo "all checks passed"
