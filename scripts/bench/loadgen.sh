#!/usr/bin/env bash
# Load generator benchmark: wrk, hey and `cutover loadtest` against the same nginx
# (one worker, a small static file, 127.0.0.1 on an ephemeral port, temporary prefix),
# three alternating rounds; prints each tool's median requests/s and p99 and the
# ratios cutover/wrk and cutover/hey.
#
#   scripts/bench/loadgen.sh [DURATION] [CONNECTIONS]     (default 10s 50)
#   CUTOVER=build/cutover ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")/../.."

dur=${1:-10s}
conns=${2:-50}
rounds=${ROUNDS:-3}
cutover=${CUTOVER:-build/cutover}
[ -x "$cutover" ] || { echo "build first: $cutover not found" >&2; exit 1; }
for t in nginx wrk hey python3; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || { echo "missing $t" >&2; exit 1; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

prefix=$(mktemp -d /tmp/cutover-bench-nginx.XXXXXX)
cleanup() {
  if [ -f "$prefix/nginx.pid" ]; then
    kill "$(cat "$prefix/nginx.pid")" 2>/dev/null || true
    for _ in $(seq 50); do [ -f "$prefix/nginx.pid" ] || break; sleep 0.1; done
  fi
  rm -rf "$prefix"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$prefix/html" "$prefix/logs"
printf 'hello from nginx, a small static file for the load generator benchmark\n' \
  > "$prefix/html/index.html"
cat > "$prefix/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $prefix/tmp;
  proxy_temp_path $prefix/tmp;
  fastcgi_temp_path $prefix/tmp;
  uwsgi_temp_path $prefix/tmp;
  scgi_temp_path $prefix/tmp;
  server {
    listen 127.0.0.1:$port;
    root $prefix/html;
    location / { }
  }
}
CONF
mkdir -p "$prefix/tmp"
"$nginx_bin" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
url="http://127.0.0.1:$port/index.html"
for _ in $(seq 50); do curl -fsS -o /dev/null "$url" 2>/dev/null && break; sleep 0.1; done

# Each tool prints "RPS P99_MS".
run_wrk() {
  wrk -t1 -c"$conns" -d"$dur" --latency "$url" | python3 -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)
m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", t)
v = float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)]
print(rps, round(v, 3))'
}
run_hey() {
  hey -c "$conns" -z "$dur" "$url" | python3 -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)
p99 = float(re.search(r"99%+ in ([\d.]+) secs", t).group(1)) * 1e3
print(rps, round(p99, 3))'
}
run_cutover() {
  "$cutover" loadtest -c "$conns" -z "$dur" -o json "$url" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(round(d["rps"], 2), round(d["latency_ms"]["p99"], 3))'
}

declare -A res
for r in $(seq "$rounds"); do
  for tool in wrk hey cutover; do
    out=$(run_$tool)
    echo "round $r $tool: $out rps/p99ms" >&2
    res[$tool]+="$out;"
  done
done

python3 - "${res[wrk]}" "${res[hey]}" "${res[cutover]}" "$dur" "$conns" <<'PY'
import statistics, sys
names = ["wrk", "hey", "cutover"]
med = {}
for name, raw in zip(names, sys.argv[1:4]):
    rows = [tuple(map(float, x.split())) for x in raw.split(";") if x.strip()]
    med[name] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
print(f"load generator benchmark: nginx 1 worker, -c {sys.argv[5]}, {sys.argv[4]}, "
      f"{len(rows)} rounds (medians)")
print(f"{'tool':<10}{'req/s':>12}{'p99 ms':>10}")
for name in names:
    print(f"{name:<10}{med[name][0]:>12.0f}{med[name][1]:>10.3f}")
print(f"cutover/wrk {med['cutover'][0] / med['wrk'][0]:.2f}  "
      f"cutover/hey {med['cutover'][0] / med['hey'][0]:.2f}")
PY
