#!/bin/bash
# How many clusters one kubesim process holds: creates N clusters (default 200), gives
# each T tenants (default 5: a namespace with a 2-replica podinfo Deployment and its
# Service, applied server-side), checks every tenant answers through its cluster's
# ingress, and prints the process's resident memory before and after, per cluster.
#
#   scripts/bench/kubesim-fleet.sh build/kubesim [CLUSTERS] [TENANTS]
set -u
KUBESIM=${1:?usage: kubesim-fleet.sh KUBESIM [CLUSTERS] [TENANTS]}
N=${2:-200}
TEN=${3:-5}
T=$(mktemp -d /tmp/kubesim-fleet-XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null

"$KUBESIM" serve --state-dir "$T/state" --control 127.0.0.1:0 --time-scale 0.01 \
	>"$T/log" 2>&1 &
PID=$!
for _ in $(seq 200); do [ -s "$T/state/kubesim.url" ] && break; sleep 0.05; done
URL=$(cat "$T/state/kubesim.url")
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
R0=$(rss)
start=$(date +%s.%N)
for i in $(seq "$N"); do
	curl -sf -X POST -d "{\"name\":\"c$i\",\"image\":\"rancher/k3s:v1.27.1-k3s1\"}" \
		"$URL/clusters" >/dev/null || { echo "create c$i failed"; exit 1; }
done
R1=$(rss)
sleep 0.3
fails=0
for i in $(seq "$N"); do
	kc=$T/state/c$i/kubeconfig
	tok=$(awk '/token:/ {print $2}' "$kc")
	srv=$(awk '/server:/ {print $2}' "$kc")
	for j in $(seq "$TEN"); do
		ns=tenant$j
		printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$ns" >"$T/ns.yaml"
		cat >"$T/d.yaml" <<Y
apiVersion: apps/v1
kind: Deployment
metadata: {name: podinfo, namespace: $ns}
spec:
  replicas: 2
  selector: {matchLabels: {app: podinfo}}
  template:
    metadata: {labels: {app: podinfo}}
    spec:
      containers:
      - {name: podinfo, image: "ghcr.io/stefanprodan/podinfo:6.5.0",
         env: [{name: MEMORY_MB, value: "32"}]}
---
Y
		cat >"$T/s.yaml" <<Y
apiVersion: v1
kind: Service
metadata: {name: podinfo, namespace: $ns}
spec: {selector: {app: podinfo}, ports: [{port: 80}]}
Y
		for pair in "ns.yaml /api/v1/namespaces/$ns" \
			"d.yaml /apis/apps/v1/namespaces/$ns/deployments/podinfo" \
			"s.yaml /api/v1/namespaces/$ns/services/podinfo"; do
			set -- $pair
			curl -sf -o /dev/null -X PATCH --cacert "$T/state/c$i/tls.crt" \
				-H "Authorization: Bearer $tok" \
				-H 'Content-Type: application/apply-patch+yaml' \
				--data-binary @"$T/$1" "$srv$2?fieldManager=bench&force=true" ||
				fails=$((fails + 1))
		done
	done
done
sleep 0.5
served=0
for i in $(seq "$N"); do
	ing=$(curl -sf "$URL/clusters/c$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ingressPort"])')
	for j in $(seq "$TEN"); do
		curl -sf -o /dev/null -H "Host: podinfo.tenant$j" "http://127.0.0.1:$ing/" &&
			served=$((served + 1))
	done
done
R2=$(rss)
end=$(date +%s.%N)
awk -v n="$N" -v t="$TEN" -v r0="$R0" -v r1="$R1" -v r2="$R2" -v s="$served" \
	-v f="$fails" -v secs="$(echo "$end - $start" | bc)" 'BEGIN {
	printf "clusters %d, tenants per cluster %d, apply failures %d, tenants answering %d/%d\n",
		n, t, f, s, n * t
	printf "rss: start %.1f MiB, %d empty clusters %.1f MiB, with tenants %.1f MiB\n",
		r0 / 1024, n, r1 / 1024, r2 / 1024
	printf "per cluster: %.1f KiB empty, %.1f KiB with %d tenants (%d pods)\n",
		(r1 - r0) / n, (r2 - r0) / n, t, 2 * t
	printf "wall time %.1f s\n", secs
}'
