# Helpers shared by the kubesim controller integration tests (sourced, not run).
#
# start_kubesim starts `kubesim serve` on a temporary state dir with ephemeral ports;
# cleanup (installed as the EXIT trap) stops it and every other process started by
# the test, and removes the temporary dir. API calls go through curl with the
# cluster's bearer token; objects are applied server-side like `kubectl apply
# --server-side` does (PATCH application/apply-patch+yaml, fieldManager, force).
set -u

KUBESIM=${KUBESIM:?set KUBESIM to the kubesim binary}
SCALE=${SCALE:-0.01}
T=$(mktemp -d /tmp/kubesim-ctl-it-XXXXXX)
STATE=$T/state
PID=
FAILS=0
PIDS=()
export HOME=$T
# libgit2's regex matching leaves pcre2 match data per thread-pool thread at exit; it
# is not kubesim's to free (sanitizer builds only)
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lsan.supp}

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FATAL: $*"; [ -f "$T/kubesim.log" ] && tail -20 "$T/kubesim.log"; exit 1; }
finish() {
	# stop kubesim gracefully: sanitizer builds report leaks and errors at exit
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
		PID=
	fi
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/kubesim.log"; then
		grep -A30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/kubesim.log" | head -60
		fail "sanitizer report in the kubesim log"
	fi
	if [ "$FAILS" -gt 0 ]; then
		echo "$FAILS check(s) failed"
		tail -30 "$T/kubesim.log"
		exit 1
	fi
	echo "all checks passed"
	exit 0
}

start_kubesim() {
	rm -f "$STATE/kubesim.url"
	"$KUBESIM" serve --state-dir "$STATE" --control 127.0.0.1:0 --time-scale "$SCALE" \
		>>"$T/kubesim.log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do
		[ -s "$STATE/kubesim.url" ] && break
		kill -0 "$PID" 2>/dev/null || die "kubesim exited"
		sleep 0.05
	done
	[ -s "$STATE/kubesim.url" ] || die "kubesim did not write kubesim.url"
	URL=$(cat "$STATE/kubesim.url")
}

create_cluster() { # name image
	curl -sf -X POST -d "{\"name\":\"$1\",\"image\":\"$2\"}" "$URL/clusters" >/dev/null ||
		die "create cluster $1"
	for _ in $(seq 200); do
		curl -sf "$URL/clusters/$1" | grep -q '"ready": *true' && return 0
		sleep 0.05
	done
	die "cluster $1 not ready"
}

token() { awk '/token:/ {print $2}' "$STATE/$1/kubeconfig"; }
# curl against a cluster's HTTPS API with its CA and token: kcurl cluster args...
kcurl() {
	local c=$1
	shift
	curl --cacert "$STATE/$c/tls.crt" -H "Authorization: Bearer $(token "$c")" "$@"
}
api() { awk '/server:/ {print $2}' "$STATE/$1/kubeconfig"; }
ingress_port() {
	curl -sf "$URL/clusters/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ingressPort"])'
}

# apply FILE (one object) to cluster: its path is computed from apiVersion/kind/ns/name
apply() { # cluster file
	local path code
	path=$(python3 "$(dirname "${BASH_SOURCE[0]}")/kubesim-path.py" "$2") || die "path of $2"
	code=$(kcurl "$1" -s -o "$T/apply.out" -w '%{http_code}' -X PATCH \
		-H 'Content-Type: application/apply-patch+yaml' --data-binary @"$2" \
		"$(api "$1")$path?fieldManager=test&force=true")
	case "$code" in 200|201) return 0 ;; esac
	echo "apply $2: $code $(cat "$T/apply.out")"
	return 1
}

# apply a multi-document file object by object
apply_all() { # cluster file
	local d=$T/split.$$ f
	rm -rf "$d"
	mkdir -p "$d"
	python3 -c '
import sys
docs = open(sys.argv[1]).read().split("\n---\n")
for i, d in enumerate(docs):
    if d.strip():
        open("%s/%03d.yaml" % (sys.argv[2], i), "w").write(d + "\n")
' "$2" "$d"
	for f in "$d"/*.yaml; do apply "$1" "$f" || return 1; done
}

# JSON merge patch (what kubectl annotate/patch send): cluster path json
merge_patch() {
	local code
	code=$(kcurl "$1" -s -o "$T/patch.out" -w '%{http_code}' -X PATCH \
		-H 'Content-Type: application/merge-patch+json' --data-binary "$3" \
		"$(api "$1")$2?fieldManager=kubectl-annotate")
	[ "$code" = 200 ] && return 0
	echo "patch $2: $code $(cat "$T/patch.out")"
	return 1
}

# the requestedAt annotation as `flux reconcile` sets it
request_reconcile() { # cluster path value
	merge_patch "$1" "$2" "{\"metadata\":{\"annotations\":{\"reconcile.fluxcd.io/requestedAt\":\"$3\"}}}"
}

get() { # cluster path -> JSON on stdout
	kcurl "$1" -s "$(api "$1")$2"
}

# jq-like field read with python: get_field cluster path 'expr on o'
field() { # cluster path expr
	get "$1" "$2" | python3 -c "
import json, sys
try:
    o = json.load(sys.stdin)
    print($3)
except Exception as e:
    print('<error %s>' % e)
"
}

# wait_for DESC SECONDS CMD...: run CMD until it succeeds
wait_for() {
	local desc=$1 secs=$2 i
	shift 2
	for i in $(seq $((secs * 20))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

cond() { # cluster path type -> "status reason message"
	field "$1" "$2" "' '.join([(c['status'] + ' ' + c['reason'] + ' ' + c.get('message', '')) for c in o.get('status', {}).get('conditions', []) if c['type'] == '$3'])"
}
