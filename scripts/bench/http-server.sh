#!/usr/bin/env bash
# Benchmark the HTTP server against nginx on this machine.
#
# Starts scripts/bench/httpd-demo (co_http_server, GET / answers "ok") and an nginx
# with one worker serving a small static file, both on 127.0.0.1 ephemeral ports,
# then runs `hey -z DURATION -c 50` against the demo and `wrk -t1 -c50 -dDURATION`
# against both. Prints requests/s and the demo/nginx ratio; fails if hey reports any
# error or non-200 answer. Everything it starts is stopped on exit.
#
# usage: scripts/bench/http-server.sh [BUILD_DIR]   (default: build; DURATION=5s)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
duration=${DURATION:-5s}
demo_bin=$build/scripts/bench/httpd-demo

for tool in hey wrk nginx; do
	command -v "$tool" >/dev/null || { echo "http-server.sh: '$tool' not found" >&2; exit 2; }
done
if [ ! -x "$demo_bin" ]; then
	[ -d "$build" ] || meson setup "$build" "$root" >/dev/null
	ninja -C "$build" scripts/bench/httpd-demo >/dev/null
fi

tmp=$(mktemp -d)
chmod 755 "$tmp"   # nginx workers may run as another user
demo_pid=
nginx_pid=
cleanup() {
	[ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
	[ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# --- the demo: prints "port N" once listening
"$demo_bin" >"$tmp/demo.out" &
demo_pid=$!
for _ in $(seq 1 100); do
	grep -q '^port ' "$tmp/demo.out" 2>/dev/null && break
	sleep 0.05
done
demo_port=$(awk '/^port /{print $2}' "$tmp/demo.out")
[ -n "$demo_port" ] || { echo "http-server.sh: httpd-demo did not start" >&2; exit 1; }

# --- nginx: one worker, a temp prefix; retry on a taken port
mkdir -p "$tmp/nginx/logs" "$tmp/nginx/html"
printf 'ok' >"$tmp/nginx/html/index.html"
chmod -R a+rX "$tmp/nginx"
nginx_port=
for _ in 1 2 3 4 5; do
	port=$(( 20000 + RANDOM % 40000 ))
	cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$port;
		location / { root $tmp/nginx/html; }
	}
}
CONF
	nginx -p "$tmp/nginx" -e "$tmp/nginx/logs/error.log" -c "$tmp/nginx/nginx.conf" &
	nginx_pid=$!
	for _ in $(seq 1 50); do
		curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && { nginx_port=$port; break; }
		kill -0 "$nginx_pid" 2>/dev/null || break
		sleep 0.05
	done
	[ -n "$nginx_port" ] && break
	kill -QUIT "$nginx_pid" 2>/dev/null || true
	wait "$nginx_pid" 2>/dev/null || true
	nginx_pid=
done
[ -n "$nginx_port" ] || { echo "http-server.sh: nginx did not start" >&2; exit 1; }

rps() { awk '/Requests\/sec/{print $2; exit}'; }

echo "hey -z $duration -c 50 against httpd-demo (port $demo_port)"
hey_out=$(hey -z "$duration" -c 50 "http://127.0.0.1:$demo_port/")
hey_rps=$(rps <<<"$hey_out")
hey_non200=$(awk '/Status code distribution/{f=1;next} f && /\[[0-9]+\]/{gsub(/[\[\]]/,"",$1); if ($1 != 200) n+=$2} END{print n+0}' <<<"$hey_out")
hey_errors=$(grep -c 'Error distribution' <<<"$hey_out" || true)

echo "wrk -t1 -c50 -d$duration against httpd-demo and nginx"
wrk_demo_out=$(wrk -t1 -c50 -d"$duration" "http://127.0.0.1:$demo_port/")
wrk_nginx_out=$(wrk -t1 -c50 -d"$duration" "http://127.0.0.1:$nginx_port/")
wrk_demo=$(rps <<<"$wrk_demo_out")
wrk_nginx=$(rps <<<"$wrk_nginx_out")

printf '%-28s %12s\n' "run" "requests/s"
printf '%-28s %12.0f\n' "hey httpd-demo" "$hey_rps"
printf '%-28s %12.0f\n' "wrk httpd-demo" "$wrk_demo"
printf '%-28s %12.0f\n' "wrk nginx (1 worker)" "$wrk_nginx"
awk -v a="$wrk_demo" -v b="$wrk_nginx" -v h="$hey_rps" 'BEGIN{
	printf "ratio wrk httpd-demo/nginx:  %.2f\n", a / b
	printf "ratio hey httpd-demo/wrk nginx: %.2f\n", h / b }'
for out in "$wrk_demo_out" "$wrk_nginx_out"; do
	grep -E 'Socket errors|Non-2xx' <<<"$out" || true
done

if [ "$hey_errors" != 0 ] || [ "$hey_non200" != 0 ]; then
	echo "http-server.sh: hey reported errors" >&2
	sed -n '/Error distribution/,$p' <<<"$hey_out" >&2
	exit 1
fi
echo "hey: 0 errors"
