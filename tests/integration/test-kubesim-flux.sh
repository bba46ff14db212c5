#!/bin/bash
# Integration test: Flux behaviour of kubesim with real git and kubectl kustomize.
#
# A bare fleet repo gets commits pushed with the git CLI; the flux-system bootstrap
# objects (namespace, GitRepository, Kustomizations) are applied server-side to a
# kubesim cluster at --time-scale 0.01, and the test checks what Flux users rely on:
# artifact revisions, a new commit reaching lastAppliedRevision within the interval,
# the requestedAt annotation reconciling at once, dependsOn, kubectl kustomize builds,
# postBuild substitution (inline and from a ConfigMap), pruning, the inventory,
# Deployments becoming ready and answering through the ingress by Host, a removed
# apiVersion failing the reconcile as the API server rejects it, a bad URL, and
# HelmRelease acceptance. Every process started here is stopped on exit.
. "$(dirname "$0")/kubesim-lib.sh"

start_kubesim
create_cluster c1 rancher/k3s:v1.27.1-k3s1
ING=$(ingress_port c1)

# ---- the fleet repo ----
git init -q --bare -b main "$T/fleet.git"
git init -q -b main "$T/work"
W=$T/work
git -C "$W" config user.email t@t
git -C "$W" config user.name t
mkdir -p "$W/infra" "$W/apps/web"
cat >"$W/infra/kustomization.yaml" <<'Y'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- vars.yaml
Y
cat >"$W/infra/vars.yaml" <<'Y'
apiVersion: v1
kind: ConfigMap
metadata:
  name: cluster-vars
  namespace: flux-system
data:
  CLUSTER: c1
Y
cat >"$W/apps/ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata:
  name: web
Y
write_deploy() { # image tag
	cat >"$W/apps/web/deploy.yaml" <<Y
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
spec:
  replicas: \${REPLICAS}
  selector:
    matchLabels: {app: podinfo}
  template:
    metadata:
      labels: {app: podinfo}
    spec:
      containers:
      - name: podinfo
        image: ghcr.io/stefanprodan/podinfo:$1
        env:
        - name: PODINFO_UI_MESSAGE
          value: "hello \${CLUSTER} from \${REGION:=westeurope} \$\${KEEP} \${TIER:-none}"
Y
}
write_deploy 6.5.0
cat >"$W/apps/web/svc.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata:
  name: podinfo
spec:
  selector: {app: podinfo}
  ports: [{port: 80, targetPort: 9898}]
---
apiVersion: v1
kind: Service
metadata:
  name: extra
spec:
  selector: {app: podinfo}
  ports: [{port: 80}]
Y
echo "not: a kubernetes object" >"$W/apps/notes.yaml"
commit() { git -C "$W" add -A && git -C "$W" commit -qm "$1" && git -C "$W" push -q "$T/fleet.git" main; }
commit init
HEAD1=$(git -C "$W" rev-parse HEAD)

# ---- bootstrap objects ----
mkdir -p "$T/b"
cat >"$T/b/ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata:
  name: flux-system
Y
cat >"$T/b/repo.yaml" <<Y
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: flux-system
spec:
  interval: 1m
  url: file://$T/fleet.git
  ref:
    branch: main
Y
cat >"$T/b/secret.yaml" <<'Y'
apiVersion: v1
kind: Secret
metadata:
  name: cluster-secrets
  namespace: flux-system
data:
  TIER: Z29sZA==
Y
# infra uses an older served version of the kind
cat >"$T/b/infra.yaml" <<'Y'
apiVersion: kustomize.toolkit.fluxcd.io/v1beta2
kind: Kustomization
metadata:
  name: infra
  namespace: flux-system
spec:
  interval: 1m
  path: ./infra
  prune: true
  sourceRef:
    kind: GitRepository
    name: flux-system
Y
cat >"$T/b/apps.yaml" <<'Y'
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 1m
  retryInterval: 1m
  dependsOn:
  - name: infra
  path: ./apps
  prune: true
  wait: true
  timeout: 5m
  targetNamespace: web
  sourceRef:
    kind: GitRepository
    name: flux-system
  postBuild:
    substitute:
      REPLICAS: "2"
    substituteFrom:
    - kind: ConfigMap
      name: cluster-vars
    - kind: Secret
      name: missing-but-optional
      optional: true
    - kind: Secret
      name: cluster-secrets
Y
# the bootstrap goes in with the real kubectl, apps first: it must wait for infra
# (DependencyNotReady), then converge
kc() { kubectl --kubeconfig "$STATE/c1/kubeconfig" --request-timeout=10s "$@"; }
for f in ns secret repo apps; do
	kc apply --server-side -f "$T/b/$f.yaml" >/dev/null || die "kubectl apply $f"
done
KAPI=/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations
GAPI=/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories
ready_rev() { # path rev
	[ "$(field c1 "$1" "o['status'].get('lastAppliedRevision')")" = "$2" ] &&
		cond c1 "$1" Ready | grep -q '^True ReconciliationSucceeded'
}
wait_for deps 5 sh -c "true" # let the first reconcile run
wait_for "dependency wait" 5 sh -c "$(declare -f field get token api cond kcurl); T=$T STATE=$STATE; cond c1 $KAPI/apps Ready | grep -q '^False DependencyNotReady .*flux-system/infra'" &&
	ok "apps waits for infra: DependencyNotReady" ||
	fail "no DependencyNotReady: $(cond c1 $KAPI/apps Ready)"
kc apply --server-side -f "$T/b/infra.yaml" >/dev/null || die "kubectl apply infra"
kc -n flux-system wait --for=condition=ready kustomization/apps --timeout=20s >/dev/null &&
	ok "kubectl wait --for=condition=ready kustomization/apps" ||
	fail "kubectl wait: $(cond c1 /apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps Ready)"

wait_for "source ready" 10 sh -c "$(declare -f field get token api cond kcurl); T=$T STATE=$STATE; cond c1 $GAPI/flux-system Ready | grep -q '^True Succeeded'"
c=$(cond c1 $GAPI/flux-system Ready)
[ "$c" = "True Succeeded stored artifact for revision 'main@sha1:$HEAD1'" ] &&
	ok "GitRepository Ready: $c" || fail "GitRepository Ready: '$c'"
art=$(field c1 $GAPI/flux-system "o['status']['artifact']['revision'] + ' ' + o['status']['artifact']['digest'][:7] + ' ' + o['status']['artifact']['path'] + ' ' + str(o['status']['observedGeneration'])")
[ "$art" = "main@sha1:$HEAD1 sha256: gitrepository/flux-system/flux-system/$HEAD1.tar.gz 1" ] &&
	ok "artifact fields" || fail "artifact: $art"

if wait_for "apps applied" 10 ready_rev $KAPI/apps "main@sha1:$HEAD1"; then
	ok "apps Ready at main@sha1:$HEAD1 after its dependency"
else
	fail "apps not ready: $(cond c1 $KAPI/apps Ready)"
fi
c=$(cond c1 $KAPI/apps Ready)
[ "$c" = "True ReconciliationSucceeded Applied revision: main@sha1:$HEAD1" ] &&
	ok "Ready message" || fail "Ready: $c"
inv=$(field c1 $KAPI/apps "' '.join(sorted(e['id'] + '@' + e['v'] for e in o['status']['inventory']['entries']))")
[ "$inv" = "_web__Namespace@v1 web_extra__Service@v1 web_podinfo__Service@v1 web_podinfo_apps_Deployment@v1" ] &&
	ok "inventory: $inv" || fail "inventory: $inv"
d=$(field c1 /apis/apps/v1/namespaces/web/deployments/podinfo "'%s %s %s %s' % (o['spec']['replicas'], o['status']['readyReplicas'], o['metadata']['labels']['kustomize.toolkit.fluxcd.io/name'], o['spec']['template']['spec']['containers'][0]['env'][0]['value'])")
[ "$d" = 'ready 2 2 apps hello c1 from westeurope ${KEEP} gold' ] || [ "$d" = '2 2 apps hello c1 from westeurope ${KEEP} gold' ] &&
	ok "deployment: replicas, readiness, labels, substitution" || fail "deployment: $d"
a=$(cond c1 /apis/apps/v1/namespaces/web/deployments/podinfo Available)
[ "$a" = "True MinimumReplicasAvailable Deployment has minimum availability." ] &&
	ok "Deployment Available" || fail "Available: $a"

# ---- the app through the ingress, routed by Host ----
r=$(curl -s -H 'Host: podinfo.web' "http://127.0.0.1:$ING/")
echo "$r" | python3 -c '
import json, sys
o = json.load(sys.stdin)
assert o["version"] == "6.5.0", o
assert o["hostname"].startswith("podinfo-"), o
assert o["message"] == "hello c1 from westeurope ${KEEP} gold", o
' && ok "app answers through the ingress: $r" || fail "app: $r"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: podinfo.web:8080' "http://127.0.0.1:$ING/status/418")
[ "$code" = 418 ] && ok "/status/418 with Host port" || fail "/status: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: nothing.web' "http://127.0.0.1:$ING/")
[ "$code" = 404 ] && ok "unknown service: 404" || fail "unknown service: $code"
t0=$(date +%s%N)
curl -s -H 'Host: podinfo.web' "http://127.0.0.1:$ING/delay/0.3" >/dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$ms" -ge 290 ] && ok "/delay/0.3 took ${ms}ms" || fail "/delay took ${ms}ms"

# ---- Ingress objects route by host and path prefix ----
cat >"$T/ing.yaml" <<'Y'
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: podinfo
  namespace: web
spec:
  rules:
  - host: podinfo.example.com
    http:
      paths:
      - path: /api
        pathType: Prefix
        backend:
          service: {name: podinfo, port: {number: 80}}
Y
apply c1 "$T/ing.yaml" || fail "apply ingress"
r=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: podinfo.example.com' "http://127.0.0.1:$ING/api/info")
r2=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: podinfo.example.com' "http://127.0.0.1:$ING/apix")
r3=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: other.example.com' "http://127.0.0.1:$ING/api/info")
[ "$r $r2 $r3" = "200 404 404" ] && ok "Ingress host + Prefix path routing" ||
	fail "Ingress routing: /api/info $r, /apix $r2, other host $r3"

# ---- a new commit reaches lastAppliedRevision within the interval (0.6 s) ----
write_deploy 6.5.1
git -C "$W" rm -q apps/web/svc.yaml
cat >"$W/apps/web/svc.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata:
  name: podinfo
spec:
  selector: {app: podinfo}
  ports: [{port: 80, targetPort: 9898}]
Y
commit "podinfo 6.5.1, drop the extra service"
HEAD2=$(git -C "$W" rev-parse HEAD)
t0=$(date +%s%N)
if wait_for "new commit" 5 ready_rev $KAPI/apps "main@sha1:$HEAD2"; then
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	# the source polls every 0.6 s; fetch, checkout, build and apply follow
	[ "$ms" -le 2000 ] && ok "new commit applied in ${ms}ms (interval 0.6s)" ||
		fail "new commit took ${ms}ms"
else
	fail "new commit not applied: $(cond c1 $KAPI/apps Ready)"
fi
code=$(kcurl c1 -s -o /dev/null -w '%{http_code}' "$(api c1)/api/v1/namespaces/web/services/extra")
[ "$code" = 404 ] && ok "pruned the service that left the repo" || fail "extra service: $code"
wait_for "6.5.1 serving" 5 sh -c "curl -s -H 'Host: podinfo.web' http://127.0.0.1:$ING/ | grep -q '\"version\":\"6.5.1\"'" &&
	ok "rollout: 6.5.1 serves" || fail "rollout did not reach the ingress"

# ---- requestedAt reconciles at once ----
sed -i 's/interval: 1m/interval: 1h/' "$T/b/repo.yaml"
apply c1 "$T/b/repo.yaml" || fail "apply interval 1h"
sleep 0.3
echo "# touch" >>"$W/apps/ns.yaml"
commit "touch"
HEAD3=$(git -C "$W" rev-parse HEAD)
sleep 1
[ "$(field c1 $KAPI/apps "o['status']['lastAppliedRevision']")" = "main@sha1:$HEAD2" ] &&
	ok "interval 1h (36s scaled): commit not picked up on its own" ||
	fail "commit applied without a request"
request_reconcile c1 $GAPI/flux-system "2026-01-01T00:00:00.1" || fail "annotate"
if wait_for "requested" 3 ready_rev $KAPI/apps "main@sha1:$HEAD3"; then
	ok "requestedAt on the source: new revision applied at once"
else
	fail "requestedAt did not reconcile: $(field c1 $GAPI/flux-system "o['status']")"
fi
h=$(field c1 $GAPI/flux-system "o['status'].get('lastHandledReconcileAt')")
[ "$h" = "2026-01-01T00:00:00.1" ] && ok "lastHandledReconcileAt echoed" || fail "lastHandledReconcileAt: $h"
# on a Kustomization: reconciles (same revision) and echoes it
request_reconcile c1 /apis/kustomize.toolkit.fluxcd.io/v1beta2/namespaces/flux-system/kustomizations/infra "2026-01-01T00:00:01" || fail "annotate infra"
wait_for "infra handled" 3 sh -c "$(declare -f field get token api kcurl); T=$T STATE=$STATE; field c1 $KAPI/infra \"o['status'].get('lastHandledReconcileAt')\" | grep -q 2026-01-01T00:00:01" &&
	ok "Kustomization lastHandledReconcileAt echoed" ||
	fail "Kustomization requestedAt: $(field c1 $KAPI/infra "o['status']")"

# ---- a removed apiVersion fails the reconcile the way the API server rejects it ----
cat >"$W/apps/psp.yaml" <<'Y'
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata:
  name: restricted
spec: {}
Y
commit "psp"
HEAD4=$(git -C "$W" rev-parse HEAD)
request_reconcile c1 $GAPI/flux-system "2026-01-01T00:00:00.2" || fail "annotate 2"
wait_for "failure" 5 sh -c "$(declare -f field get token api cond kcurl); T=$T STATE=$STATE; cond c1 $KAPI/apps Ready | grep -q '^False ReconciliationFailed'"
c=$(cond c1 $KAPI/apps Ready)
case "$c" in
*'PodSecurityPolicy/restricted dry-run failed: no matches for kind "PodSecurityPolicy" in version "policy/v1beta1"'*)
	ok "removed apiVersion: $c" ;;
*) fail "removed apiVersion: $c" ;;
esac
revs=$(field c1 $KAPI/apps "o['status']['lastAppliedRevision'] + ' ' + o['status']['lastAttemptedRevision']")
[ "$revs" = "main@sha1:$HEAD3 main@sha1:$HEAD4" ] && ok "lastApplied stays, lastAttempted moves" ||
	fail "revisions: $revs"

# ---- a bad URL ----
cat >"$T/b/bad.yaml" <<Y
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: bad
  namespace: flux-system
spec:
  interval: 1m
  url: file://$T/does-not-exist.git
  ref:
    branch: main
Y
apply c1 "$T/b/bad.yaml" || fail "apply bad"
wait_for "bad url" 5 sh -c "$(declare -f field get token api cond kcurl); T=$T STATE=$STATE; cond c1 $GAPI/bad Ready | grep -q '^False GitOperationFailed'" &&
	ok "bad URL: $(cond c1 $GAPI/bad FetchFailed)" || fail "bad URL: $(cond c1 $GAPI/bad Ready)"

# ---- HelmRelease is accepted and marked simulated ----
cat >"$T/b/hr.yaml" <<'Y'
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: flagger
  namespace: flux-system
spec:
  interval: 1h
  chart:
    spec:
      chart: flagger
Y
apply c1 "$T/b/hr.yaml" || fail "apply helmrelease"
wait_for "helm" 3 sh -c "$(declare -f field get token api cond kcurl); T=$T STATE=$STATE; cond c1 /apis/helm.toolkit.fluxcd.io/v2/namespaces/flux-system/helmreleases/flagger Ready | grep -q '^True .*simulated'" &&
	ok "HelmRelease Ready (simulated)" || fail "HelmRelease: $(cond c1 /apis/helm.toolkit.fluxcd.io/v2/namespaces/flux-system/helmreleases/flagger Ready)"

# ---- SIGKILL and restart: controllers resume on the restored cluster ----
n=$(kc get deploy podinfo -n web -o jsonpath='{.status.readyReplicas}/{.spec.replicas}' 2>&1)
[ "$n" = 2/2 ] && ok "kubectl get deploy: podinfo 2/2" || fail "kubectl get deploy: $n"
pods=$(kc get pods -n web -l app=podinfo -o jsonpath='{range .items[*]}{.status.phase}/{.status.conditions[1].status}/{.spec.containers[0].image} {end}' 2>&1)
[ "$pods" = "Running/True/ghcr.io/stefanprodan/podinfo:6.5.1 Running/True/ghcr.io/stefanprodan/podinfo:6.5.1 " ] &&
	ok "kubectl get pods: two Running 6.5.1 pods" || fail "pods: '$pods'"
kill -9 "$PID"
wait "$PID" 2>/dev/null
PID=
git -C "$W" rm -q apps/psp.yaml
commit "drop psp"
HEAD5=$(git -C "$W" rev-parse HEAD)
start_kubesim
wait_for "restored app" 10 sh -c "curl -s -H 'Host: podinfo.web' http://127.0.0.1:$ING/ | grep -q '\"version\":\"6.5.1\"'" &&
	ok "after restart the app serves again" || fail "app after restart"
n=$(kc get pods -n web -o name 2>/dev/null | wc -l)
[ "$n" = 2 ] && ok "after restart: 2 pods (stale ones replaced)" || fail "pods after restart: $n"
# the source interval is 1h now: ask for the new commit
request_reconcile c1 $GAPI/flux-system "2026-01-01T00:00:00.3" || fail "annotate after restart"
wait_for "after restart" 5 ready_rev $KAPI/apps "main@sha1:$HEAD5" &&
	ok "after restart a new commit is applied" ||
	fail "after restart: $(cond c1 $KAPI/apps Ready)"

# ---- deleting a pruning Kustomization garbage-collects its objects ----
code=$(kcurl c1 -s -o /dev/null -w '%{http_code}' -X DELETE "$(api c1)$KAPI/apps")
[ "$code" = 200 ] || fail "delete kustomization: $code"
wait_for "gc" 3 sh -c "[ \"\$(curl -s --cacert $STATE/c1/tls.crt -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $(token c1)' $(api c1)/apis/apps/v1/namespaces/web/deployments/podinfo)\" = 404 ]" &&
	ok "deleting the Kustomization pruned its Deployment" ||
	fail "deployment left after the Kustomization was deleted"

# ---- deleting the cluster stops its controllers ----
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$URL/clusters/c1")
case "$code" in 200|202|204) ok "cluster deleted ($code)" ;; *) fail "delete: $code" ;; esac
sleep 0.5
kill -0 "$PID" 2>/dev/null && ok "kubesim still running" || fail "kubesim died"
finish
