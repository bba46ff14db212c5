#!/bin/bash
# Integration test: kubesim driven by the real kubectl.
#
# Starts kubesim on a temporary state dir (ephemeral ports on 127.0.0.1), creates two
# clusters at different Kubernetes versions and runs kubectl against them with the
# generated kubeconfigs: version, get, create, server-side apply, watch, removed
# apiVersions, CRDs, bad input answered with Status errors, and a SIGKILL restart
# that must bring clusters, objects and kubeconfigs back. Every process started here
# is stopped on exit.
set -u

KUBESIM=${KUBESIM:?set KUBESIM to the kubesim binary}
KUBECTL=${KUBECTL:-kubectl}
T=$(mktemp -d /tmp/kubesim-it-XXXXXX)
STATE=$T/state
PID=
FAILS=0
export KUBECTL_EXTERNAL_DIFF= HOME=$T   # no user kubeconfig or cache leaks in

cleanup() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FATAL: $*"; [ -f "$T/kubesim.log" ] && tail -20 "$T/kubesim.log"; exit 1; }

start_kubesim() {
	rm -f "$STATE/kubesim.url"
	"$KUBESIM" serve --state-dir "$STATE" --control 127.0.0.1:0 --time-scale 0.1 \
		>>"$T/kubesim.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		[ -s "$STATE/kubesim.url" ] && break
		kill -0 "$PID" 2>/dev/null || die "kubesim exited"
		sleep 0.05
	done
	[ -s "$STATE/kubesim.url" ] || die "kubesim did not write kubesim.url"
	URL=$(cat "$STATE/kubesim.url")
}

wait_ready() { # name
	for _ in $(seq 100); do
		curl -sf "$URL/clusters/$1" | grep -q '"ready": *true' && return 0
		sleep 0.05
	done
	die "cluster $1 not ready"
}

k() { # cluster args...
	local c=$1
	shift
	"$KUBECTL" --kubeconfig "$STATE/$c/kubeconfig" --request-timeout=10s "$@"
}

token() { awk '/token:/ {print $2}' "$STATE/$1/kubeconfig"; }
api() { awk '/server:/ {print $2}' "$STATE/$1/kubeconfig"; }

# raw API call: cluster method path [curl args...]; prints "CODE BODY"
raw() {
	local c=$1 m=$2 p=$3
	shift 3
	curl -s -o "$T/raw.out" -w '%{http_code}' -X "$m" --cacert "$STATE/$c/tls.crt" \
		-H "Authorization: Bearer $(token "$c")" "$@" "$(api "$c")$p"
	echo -n " "
	cat "$T/raw.out"
}

start_kubesim

# ---- clusters ----
"$KUBESIM" create old --image rancher/k3s:v1.24.17-k3s1 --state-dir "$STATE" >/dev/null ||
	die "create old"
"$KUBESIM" create new --image kindest/node:v1.29.2 --state-dir "$STATE" >/dev/null ||
	die "create new"
"$KUBESIM" create new --image kindest/node:v1.29.2 --state-dir "$STATE" >/dev/null 2>&1 &&
	fail "duplicate cluster accepted"
"$KUBESIM" create Bad_Name --image kindest/node:v1.29.2 --state-dir "$STATE" \
	>/dev/null 2>&1 && fail "invalid cluster name accepted"
"$KUBESIM" list --state-dir "$STATE" | grep -q '"name": "old"' || fail "list lacks old"
[ "$(stat -c %a "$STATE/new/kubeconfig")" = 600 ] || fail "kubeconfig mode"
grep -q 'current-context: kubesim-new' "$STATE/new/kubeconfig" || fail "kubeconfig context"
wait_ready old
wait_ready new

# ---- version, namespaces ----
v=$(k old version -o json 2>/dev/null | grep -A3 serverVersion | grep gitVersion)
echo "$v" | grep -q 'v1.24.17+k3s1' && ok "old version" || fail "old version: $v"
v=$(k new version -o json 2>/dev/null | grep -A3 serverVersion | grep gitVersion)
echo "$v" | grep -q '"v1.29.2"' && ok "new version" || fail "new version: $v"
k new get ns | grep -q '^default ' && ok "get ns" || fail "get ns"
k new create ns x >/dev/null && ok "create ns" || fail "create ns"
k new create ns x >/dev/null 2>&1 && fail "create ns twice" 
k new create ns x 2>&1 | grep -q 'AlreadyExists' && ok "AlreadyExists" ||
	fail "AlreadyExists message"

# ---- server-side apply ----
cat >"$T/app.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: x
data:
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: x
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: ghcr.io/stefanprodan/podinfo:6.5.0
        ports:
        - containerPort: 9898
          name: http
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: x
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
YAML
out=$(k new apply --server-side -f "$T/app.yaml" 2>&1)
echo "$out" | grep -q 'deployment.apps/web serverside-applied' && ok "apply --server-side" ||
	fail "apply --server-side: $out"
k new get -A deployments | grep -q '^x  *web ' && ok "get -A deployments" ||
	fail "get -A deployments: $(k new get -A deployments 2>&1)"
y=$(k new get deploy -n x web -o yaml --show-managed-fields 2>&1)
echo "$y" | grep -q 'replicas: 2' && echo "$y" | grep -q 'generation: 1' &&
	echo "$y" | grep -q 'manager: kubectl' && ok "get -o yaml" || fail "get -o yaml: $y"
sed -i 's/replicas: 2/replicas: 3/' "$T/app.yaml"
k new apply --server-side -f "$T/app.yaml" >/dev/null 2>&1 || fail "re-apply"
g=$(k new get deploy -n x web -o jsonpath='{.metadata.generation} {.spec.replicas}')
[ "$g" = "2 3" ] && ok "generation bump" || fail "generation after re-apply: $g"
k new get cm -n x -l app=none 2>&1 | grep -q 'No resources found' && ok "label selector" ||
	fail "label selector"
k new get svc -n x --field-selector metadata.name=web | grep -q '^web ' &&
	ok "field selector" || fail "field selector"
k new delete cm -n x web-config >/dev/null && ok "delete" || fail "delete"
k new get cm -n x web-config >/dev/null 2>&1 && fail "deleted configmap still there"

# ---- watch ----
(timeout 4 "$KUBECTL" --kubeconfig "$STATE/new/kubeconfig" get canary -n x -w \
	>"$T/watch.out" 2>&1) &
WPID=$!
sleep 1
cat <<'YAML' | k new apply --server-side -f - >/dev/null 2>&1 || fail "apply canary"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: web
  namespace: x
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
YAML
wait "$WPID" 2>/dev/null
grep -q '^web ' "$T/watch.out" && ok "get canary -w" || fail "watch: $(cat "$T/watch.out")"

# ---- removed apiVersions ----
cat >"$T/psp.yaml" <<'YAML'
apiVersion: policy/v1beta1
kind: PodSecurityPolicy
metadata:
  name: restricted
spec:
  privileged: false
  seLinux: {rule: RunAsAny}
  runAsUser: {rule: RunAsAny}
  supplementalGroups: {rule: RunAsAny}
  fsGroup: {rule: RunAsAny}
YAML
k old apply --server-side -f "$T/psp.yaml" >/dev/null 2>&1 && ok "psp on 1.24" ||
	fail "psp on 1.24: $(k old apply --server-side -f "$T/psp.yaml" 2>&1)"
out=$(k new apply --server-side -f "$T/psp.yaml" 2>&1) && fail "psp accepted on 1.29"
echo "$out" | grep -qi 'no matches for kind "PodSecurityPolicy"\|could not find' &&
	ok "psp rejected on 1.29" || fail "psp message on 1.29: $out"
r=$(raw new GET /apis/policy/v1beta1/podsecuritypolicies)
case "$r" in 404*NotFound*) ok "removed api 404" ;; *) fail "removed api: $r" ;; esac

# ---- CRD adds a kind to discovery ----
cat <<'YAML' | k new apply --server-side -f - >/dev/null 2>&1 || fail "apply crd"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
YAML
cat <<'YAML' | k new apply --server-side -f - >/dev/null 2>&1 || fail "apply widget"
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1, namespace: x}
spec: {size: 3}
YAML
k new get wd -n x | grep -q '^w1 ' && ok "crd kind served" || fail "crd kind"

# ---- bad input: Status errors, still serving ----
r=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$STATE/new/tls.crt" \
	"$(api new)/api/v1/namespaces")
[ "$r" = 401 ] && ok "401 without token" || fail "no token: $r"
r=$(raw new POST /api/v1/namespaces/x/configmaps -H 'Content-Type: application/json' \
	--data '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":')
case "$r" in 400*'"kind":"Status"'*) ok "malformed json 400" ;; *) fail "malformed: $r" ;; esac
r=$(raw new POST /api/v1/namespaces/x/configmaps -H 'Content-Type: application/json' \
	--data '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}')
case "$r" in 422*Invalid*) ok "invalid name 422" ;; *) fail "invalid name: $r" ;; esac
r=$(raw new PATCH '/api/v1/namespaces/x/configmaps/c?fieldManager=t' \
	-H 'Content-Type: application/apply-patch+yaml' --data-binary $'a: [\n  b: {')
case "$r" in 400*BadRequest*) ok "malformed yaml 400" ;; *) fail "malformed yaml: $r" ;; esac
head -c 3200000 /dev/zero | tr '\0' a >"$T/big"
r=$(raw new POST /api/v1/namespaces/x/configmaps -H 'Content-Type: application/json' \
	--data-binary @"$T/big")
case "$r" in 413*RequestEntityTooLarge*) ok "oversized 413" ;; *) fail "oversized: ${r:0:200}" ;; esac
r=$(raw new PUT /apis/apps/v1/namespaces/x/deployments/web -H 'Content-Type: application/json' \
	--data '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","resourceVersion":"1"},"spec":{}}')
case "$r" in 409*Conflict*) ok "stale update 409" ;; *) fail "stale update: $r" ;; esac
r=$(raw new DELETE /api/v1/namespaces/x/configmaps)
case "$r" in 200*ConfigMapList*) ok "deletecollection" ;; *) fail "deletecollection: $r" ;; esac
k new get deploy -n x web >/dev/null 2>&1 && ok "still serving" ||
	fail "not serving after bad input"

# re-create a namespace with objects for the restart test
k new create ns keep >/dev/null 2>&1
k new create configmap -n keep kept --from-literal=a=1 >/dev/null 2>&1 || fail "create cm"
sleep 0.5 # past the store's snapshot debounce

# ---- restart after SIGKILL ----
OLD_TOKEN=$(token new)
OLD_PORT=$(api new)
kill -9 "$PID"
wait "$PID" 2>/dev/null
PID=
start_kubesim
[ "$(token new)" = "$OLD_TOKEN" ] && [ "$(api new)" = "$OLD_PORT" ] &&
	ok "kubeconfig back" || fail "kubeconfig changed after restart"
wait_ready new
k new get cm -n keep kept -o jsonpath='{.data.a}' | grep -qx 1 && ok "objects back" ||
	fail "objects after restart"
k old get psp restricted >/dev/null 2>&1 && ok "old cluster back" || fail "old after restart"
k new get wd -n x w1 >/dev/null 2>&1 && ok "crd kinds back" ||
	fail "crd after restart: $(k new get wd -n x w1 2>&1)"

# ---- delete a cluster ----
"$KUBESIM" delete old --state-dir "$STATE" >/dev/null || fail "delete cluster"
[ -e "$STATE/old/kubeconfig" ] && fail "kubeconfig left after delete"
"$KUBESIM" list --state-dir "$STATE" | grep -q '"name": "old"' && fail "old still listed"

echo "failures: $FAILS"
[ "$FAILS" -eq 0 ]
