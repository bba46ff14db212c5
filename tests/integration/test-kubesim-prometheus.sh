#!/bin/bash
# Integration test: real Prometheus scraping two kubesim clusters.
#
# Clusters "a" (k3s 1.27) and "b" (kind 1.29) run the same podinfo Deployment, b with
# FAULT_ERROR_RATE=0.2, FAULT_LATENCY_MS=300 and a version overhead of 1.5. Debian's
# prometheus is started on 127.0.0.1 with a generated config that scrapes both
# clusters' ingress /metrics with a "cluster" label; `hey` puts a known load on each.
# PromQL error ratio and p99 by cluster must have the expected shape (one series per
# cluster) and values within tolerance, and the cost-model series must reflect the
# overhead. The ingress-down fault is checked at the end. Every process started here
# is stopped on exit.
. "$(dirname "$0")/kubesim-lib.sh"

start_kubesim
create_cluster a rancher/k3s:v1.27.1-k3s1
create_cluster b kindest/node:v1.29.2
IA=$(ingress_port a)
IB=$(ingress_port b)

app() { # cluster error-rate latency-ms
	cat >"$T/ns.yaml" <<'Y'
apiVersion: v1
kind: Namespace
metadata:
  name: web
Y
	cat >"$T/deploy.yaml" <<Y
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: web
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
        image: ghcr.io/stefanprodan/podinfo:6.5.0
        env:
        - {name: FAULT_ERROR_RATE, value: "$2"}
        - {name: FAULT_LATENCY_MS, value: "$3"}
        - {name: CPU_COST_MS, value: "5"}
        - {name: MEMORY_MB, value: "64"}
Y
	cat >"$T/svc.yaml" <<'Y'
apiVersion: v1
kind: Service
metadata:
  name: podinfo
  namespace: web
spec:
  selector: {app: podinfo}
  ports: [{port: 80}]
Y
	apply "$1" "$T/ns.yaml" && apply "$1" "$T/deploy.yaml" && apply "$1" "$T/svc.yaml"
}
app a 0 0 || die "app on a"
app b 0.2 300 || die "app on b"
curl -sf -X POST -d '{"versionOverhead": 1.5}' "$URL/clusters/b/faults" >/dev/null ||
	fail "set versionOverhead"
for c in $IA $IB; do
	wait_for "app on $c" 5 curl -sf -H 'Host: podinfo.web' "http://127.0.0.1:$c/healthz" ||
		die "app on ingress $c not serving"
done

# ---- prometheus ----
PP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/prometheus.yml" <<Y
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: kubesim
  static_configs:
  - targets: ['127.0.0.1:$IA']
    labels: {cluster: a}
  - targets: ['127.0.0.1:$IB']
    labels: {cluster: b}
Y
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
	--web.listen-address="127.0.0.1:$PP" --log.level=warn >"$T/prometheus.log" 2>&1 &
PIDS+=($!)
wait_for prometheus 20 curl -sf "http://127.0.0.1:$PP/-/ready" || die "prometheus not ready: $(tail -5 "$T/prometheus.log")"
ok "prometheus ready on 127.0.0.1:$PP"

# ---- known load: ~100 req/s on a, ~30 req/s on b (300 ms each, 10 workers) ----
hey -z 8s -c 2 -q 50 -host podinfo.web "http://127.0.0.1:$IA/" >"$T/hey-a.txt" 2>&1 &
HA=$!
hey -z 8s -c 10 -host podinfo.web "http://127.0.0.1:$IB/" >"$T/hey-b.txt" 2>&1 &
HB=$!
PIDS+=($HA $HB)
wait $HA $HB
sleep 2.5 # two more scrapes

q() { # promql -> JSON result
	curl -s --data-urlencode "query=$1" "http://127.0.0.1:$PP/api/v1/query"
}
ERR='(sum by (cluster) (rate(http_requests_total{code=~"5.."}[30s])) or sum by (cluster) (rate(http_requests_total[30s])) * 0) / sum by (cluster) (rate(http_requests_total[30s]))'
P99='histogram_quantile(0.99, sum by (cluster, le) (rate(http_request_duration_seconds_bucket[30s])))'
check() { # name promql python-assertions-on-v(dict cluster->value)
	q "$2" | python3 -c "
import json, sys
r = json.load(sys.stdin)
assert r['status'] == 'success', r
d = r['data']
assert d['resultType'] == 'vector', d
v = {s['metric']['cluster']: float(s['value'][1]) for s in d['result']}
assert sorted(v) == ['a', 'b'], v
$3
print(' '.join('%s=%.4f' % kv for kv in sorted(v.items())))
" >"$T/check.out" 2>&1 && ok "$1: $(cat "$T/check.out")" || fail "$1: $(tail -3 "$T/check.out")"
}
check "error ratio by cluster" "$ERR" "assert v['a'] == 0, v
assert 0.12 <= v['b'] <= 0.28, v"
check "p99 by cluster (seconds)" "$P99" "assert v['a'] < 0.025, v
assert 0.25 < v['b'] <= 0.5, v"
check "request rate by cluster" 'sum by (cluster) (rate(http_requests_total[30s]))' "assert v['a'] > 5 and v['b'] > 1, v"
check "version overhead" 'kubesim_version_overhead' "assert v == {'a': 1.0, 'b': 1.5}, v"
check "memory by cluster" 'sum by (cluster) (container_memory_working_set_bytes{namespace="web"})' "assert abs(v['b'] / v['a'] - 1.5) < 0.01, v
assert abs(v['a'] - 2 * 80 * 1048576) < 1, v"
check "cpu by cluster" 'sum by (cluster) (container_cpu_usage_seconds_total{namespace="web"})' "assert v['a'] > 0 and v['b'] > 0, v"
# the app label and version come from the pod template
q 'count by (app, version, code) (http_requests_total{cluster="b"})' | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
got = sorted((s["metric"]["app"], s["metric"]["version"], s["metric"]["code"]) for s in r)
assert got == [("podinfo", "6.5.0", "200"), ("podinfo", "6.5.0", "500")], got
' && ok "labels namespace/app/version/code" || fail "labels: $(q 'http_requests_total{cluster="b"}')"

# ---- ingress down ----
curl -sf -X POST -d '{"ingressDown": true}' "$URL/clusters/a/faults" >/dev/null || fail "set ingressDown"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: podinfo.web' "http://127.0.0.1:$IA/")
[ "$code" = 503 ] && ok "ingress down: 503" || fail "ingress down: $code"
curl -sf -X POST -d '{"ingressDown": false}' "$URL/clusters/a/faults" >/dev/null
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: podinfo.web' "http://127.0.0.1:$IA/")
[ "$code" = 200 ] && ok "ingress back: 200" || fail "ingress back: $code"

kill -0 "$PID" 2>/dev/null && ok "kubesim still running" || fail "kubesim died"
finish
