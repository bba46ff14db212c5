#!/bin/bash
# Integration test: Flagger behaviour of kubesim.
#
# A podinfo Deployment with a Canary (stepWeight 10 up to 30, threshold 2, the
# built-in request-success-rate and request-duration checks, and every webhook type
# pointing at a small receiver started here) runs under real load from `hey` through
# the cluster's ingress. A good release must end Succeeded with the primary promoted;
# a release answering half its requests with 500 (FAULT_ERROR_RATE=0.5) must end
# Failed with the primary untouched; webhooks must arrive in Flagger's order with its
# payload; a rollout webhook answering 500 must fail the checks. Every process started
# here is stopped on exit.
SCALE=0.05
. "$(dirname "$0")/kubesim-lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

start_kubesim
create_cluster c1 kindest/node:v1.29.2
ING=$(ingress_port c1)

python3 "$HERE/webhook-receiver.py" "$T/wh.port" "$T/wh.log" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/wh.port" ] && break; sleep 0.05; done
WH=http://127.0.0.1:$(cat "$T/wh.port")

cat >"$T/ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata:
  name: test
Y
deploy() { # tag [error rate]
	cat >"$T/deploy.yaml" <<Y
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
spec:
  replicas: 2
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
        - name: FAULT_ERROR_RATE
          value: "${2:-0}"
Y
	apply c1 "$T/deploy.yaml"
}
canary() { # rollout hook path
	cat >"$T/canary.yaml" <<Y
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 80
    targetPort: 9898
  analysis:
    interval: 20s
    threshold: 2
    maxWeight: 30
    stepWeight: 10
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
      interval: 1m
    - name: request-duration
      thresholdRange: {max: 500}
      interval: 1m
    webhooks:
    - name: gate
      type: confirm-rollout
      url: $WH/confirm-rollout
    - name: smoke
      type: pre-rollout
      url: $WH/pre-rollout
      metadata: {cmd: "curl -s http://podinfo-canary.test/healthz"}
    - name: load
      type: rollout
      url: $WH/$1
      metadata: {cmd: "hey -z 1m -q 10 -c 2 http://podinfo-canary.test/"}
    - name: promote-gate
      type: confirm-promotion
      url: $WH/confirm-promotion
    - name: notify
      type: post-rollout
      url: $WH/post-rollout
    - name: abort
      type: rollback
      url: $WH/rollback/404
Y
	apply c1 "$T/canary.yaml"
}
CAPI=/apis/flagger.app/v1beta1/namespaces/test/canaries/podinfo
DAPI=/apis/apps/v1/namespaces/test/deployments
phase() { field c1 $CAPI "o.get('status', {}).get('phase')"; }
wait_phase() { # phase seconds
	for _ in $(seq $(($2 * 20))); do
		[ "$(phase)" = "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
spec() { field c1 $CAPI "o.get('status', {}).get('lastAppliedSpec')"; }
# wait until the analysis has started for a new pod template (lastAppliedSpec moved)
wait_new_revision() { # previous lastAppliedSpec
	for _ in $(seq 200); do
		[ "$(spec)" != "$1" ] && return 0
		sleep 0.05
	done
	return 1
}
image() { field c1 "$DAPI/$1" "o['spec']['template']['spec']['containers'][0]['image'].split(':')[-1]"; }

apply c1 "$T/ns.yaml" || die "namespace"
deploy 6.5.0 || die "deployment"
canary rollout || die "canary"
wait_phase Initialized 10 && ok "canary Initialized" || fail "not initialized: $(phase)"
c=$(cond c1 $CAPI Promoted)
[ "$c" = "True Initialized Deployment initialization completed." ] && ok "Promoted: $c" ||
	fail "Promoted: $c"
[ "$(image podinfo-primary)" = 6.5.0 ] && ok "primary created from the target" ||
	fail "primary image: $(image podinfo-primary)"
r=$(field c1 $DAPI/podinfo "o['spec']['replicas']")
[ "$r" = 0 ] && ok "target scaled to zero" || fail "target replicas: $r"
for s in podinfo podinfo-primary podinfo-canary; do
	sel=$(field c1 /api/v1/namespaces/test/services/$s "o['spec']['selector']['app']")
	case "$s:$sel" in
	podinfo:podinfo-primary | podinfo-primary:podinfo-primary | podinfo-canary:podinfo) ok "service $s -> $sel" ;;
	*) fail "service $s selector: $sel" ;;
	esac
done
v=$(curl -s -H 'Host: podinfo.test' "http://127.0.0.1:$ING/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
[ "$v" = 6.5.0 ] && ok "service podinfo answers from the primary" || fail "podinfo: $v"

# load through the ingress for the rest of the test
hey -z 60s -c 4 -q 100 -host podinfo.test "http://127.0.0.1:$ING/" >/dev/null 2>&1 &
PIDS+=($!)

# ---- a good release ----
: >"$T/wh.log"
deploy 6.5.1 || die "release 6.5.1"
wait_phase Progressing 5 && ok "new revision: Progressing" || fail "not progressing: $(phase)"
max_w=0
for _ in $(seq 400); do
	w=$(field c1 $CAPI "o['status']['canaryWeight']")
	[ "$w" -gt "$max_w" ] 2>/dev/null && max_w=$w
	p=$(phase)
	[ "$p" = Succeeded ] || [ "$p" = Failed ] && break
	sleep 0.05
done
[ "$(phase)" = Succeeded ] && ok "good release Succeeded" ||
	fail "good release: $(phase) $(field c1 $CAPI "o['status']")"
[ "$max_w" = 30 ] && ok "canary weight stepped up to maxWeight 30" || fail "max weight seen: $max_w"
st=$(field c1 $CAPI "'%s %s' % (o['status']['canaryWeight'], o['status']['failedChecks'])")
[ "$st" = "0 0" ] && ok "weight back to 0, no failed checks" || fail "status: $st"
c=$(cond c1 $CAPI Promoted)
[ "$c" = "True Succeeded Canary analysis completed successfully, promotion finished." ] &&
	ok "Promoted: $c" || fail "Promoted: $c"
[ "$(image podinfo-primary)" = 6.5.1 ] && ok "primary promoted to 6.5.1" ||
	fail "primary: $(image podinfo-primary)"
python3 - "$T/wh.log" <<'PY' && ok "webhooks in Flagger's order with its payload" || fail "webhooks: $(cat "$T/wh.log")"
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1])]
types = [c["path"].split("/")[1] for c in calls]
first = {t: types.index(t) for t in set(types)}
order = ["confirm-rollout", "pre-rollout", "rollout", "confirm-promotion", "post-rollout"]
assert all(t in first for t in order + ["rollback"]), types
assert [first[t] for t in order] == sorted(first[t] for t in order), types
assert types.count("pre-rollout") == 1 and types.count("post-rollout") == 1, types
assert types.count("rollout") >= 3, types
assert types[-1] == "post-rollout", types
for c in calls:
    b = c["body"]
    assert set(b) == {"name", "namespace", "phase", "checksum", "metadata"}, b
    assert b["name"] == "podinfo" and b["namespace"] == "test" and b["checksum"], b
ro = [c["body"] for c in calls if c["path"] == "/rollout"]
assert ro[0]["metadata"] == {"cmd": "hey -z 1m -q 10 -c 2 http://podinfo-canary.test/"}, ro[0]
assert ro[0]["phase"] == "Progressing", ro[0]
post = [c["body"] for c in calls if c["path"] == "/post-rollout"][0]
assert post["phase"] == "Succeeded", post
PY
m=$(curl -s "http://127.0.0.1:$ING/metrics")
echo "$m" | grep -q '^http_requests_total{namespace="test",app="podinfo",version="6.5.1",code="200"} [1-9]' &&
	ok "canary traffic in /metrics" || fail "no canary series in /metrics"
echo "$m" | grep -q '^flagger_canary_status{name="podinfo",namespace="test"} 1$' &&
	ok "flagger_canary_status 1 after success" || fail "flagger_canary_status: $(echo "$m" | grep flagger_canary_status)"

# ---- a bad release: half the requests fail ----
: >"$T/wh.log"
prev=$(spec)
deploy 6.5.2 0.5 || die "release 6.5.2"
wait_new_revision "$prev" || fail "bad release not detected"
wait_phase Failed 20 && ok "bad release Failed" ||
	fail "bad release: $(phase) $(field c1 $CAPI "o['status']")"
st=$(field c1 $CAPI "'%s %s' % (o['status']['canaryWeight'], o['status']['failedChecks'])")
[ "$st" = "0 2" ] && ok "weight 0, failedChecks 2 (threshold)" || fail "status: $st"
c=$(cond c1 $CAPI Promoted)
[ "$c" = "False Failed Canary analysis failed, Deployment scaled to zero." ] && ok "Promoted: $c" ||
	fail "Promoted: $c"
[ "$(image podinfo-primary)" = 6.5.1 ] && ok "primary untouched at 6.5.1" ||
	fail "primary: $(image podinfo-primary)"
r=$(field c1 $DAPI/podinfo "o['spec']['replicas']")
[ "$r" = 0 ] && ok "canary scaled to zero" || fail "canary replicas: $r"
grep -q '"path": "/confirm-promotion"' "$T/wh.log" && fail "confirm-promotion called on a failing canary" ||
	ok "no promotion gate on a failing canary"
python3 -c '
import json, sys
calls = [json.loads(l) for l in open(sys.argv[1])]
assert calls[-1]["path"] == "/post-rollout" and calls[-1]["body"]["phase"] == "Failed", calls[-1]
' "$T/wh.log" && ok "post-rollout after rollback with phase Failed" || fail "post-rollout: $(tail -1 "$T/wh.log")"
v=$(curl -s -H 'Host: podinfo.test' "http://127.0.0.1:$ING/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
[ "$v" = 6.5.1 ] && ok "users still served by 6.5.1" || fail "served: $v"
echo "$(curl -s "http://127.0.0.1:$ING/metrics")" | grep -q '^flagger_canary_status{name="podinfo",namespace="test"} 2$' &&
	ok "flagger_canary_status 2 after failure" || fail "flagger_canary_status after failure"

# ---- a rollout webhook answering 500 fails the checks ----
: >"$T/wh.log"
canary rollout/500 || die "canary with failing hook"
prev=$(spec)
deploy 6.5.3 || die "release 6.5.3"
wait_new_revision "$prev" || fail "6.5.3 not detected"
wait_phase Failed 20 && ok "failing rollout webhook: Failed" ||
	fail "failing webhook: $(phase) $(field c1 $CAPI "o['status']")"
n=$(grep -c '"path": "/rollout/500"' "$T/wh.log")
[ "$n" -ge 2 ] && ok "rollout webhook answered 500 $n times" || fail "rollout/500 calls: $n"
[ "$(image podinfo-primary)" = 6.5.1 ] && ok "primary still 6.5.1" || fail "primary: $(image podinfo-primary)"

kill -0 "$PID" 2>/dev/null && ok "kubesim still running" || fail "kubesim died"
finish
