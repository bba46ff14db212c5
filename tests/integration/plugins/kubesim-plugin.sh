#!/usr/bin/env bash
# A cutover provider plugin (docs/providers.md) backed by kubesim's control API, written
# the way a plugin for a cloud would be: read one JSON request on stdin, act, answer one
# JSON document on stdout. Needs curl and jq.
#
# kubesim is found through KUBESIM_URL, else ${CUTOVER_STATE_DIR}/kubesim/kubesim.url.
set -uo pipefail

die() { # exit-code message
  jq -cn --arg m "$2" '{error: $m}'
  exit "$1"
}

command -v jq >/dev/null || { echo '{"error":"kubesim-plugin needs jq"}'; exit 1; }
req=$(head -c 1048576) || die 1 "cannot read the request"
op=$(jq -er '.op' <<<"$req" 2>/dev/null) || die 1 "request has no op"
name=$(jq -r '.cluster.name // empty' <<<"$req")

url="${KUBESIM_URL:-}"
if [ -z "$url" ]; then
  f="${CUTOVER_STATE_DIR:-./.cutover}/kubesim/kubesim.url"
  [ -r "$f" ] || die 1 "kubesim is not running (no $f)"
  url=$(head -n 1 "$f")
fi

# call METHOD PATH [BODY]: sets $code and $body
call() {
  local out
  out=$(curl -sS -m 30 -X "$1" -H 'Content-Type: application/json' \
        ${3:+--data-binary "$3"} -w '\n%{http_code}' "$url$2") ||
    die 1 "kubesim at $url not reachable"
  code=${out##*$'\n'}
  body=${out%$'\n'*}
}

# answer KUBESIM_CLUSTER_JSON: the plugin's cluster answer, kubeconfig text included
answer() {
  local kc kubeconfig=''
  kc=$(jq -r '.kubeconfig // empty' <<<"$1")
  if [ -n "$kc" ] && [ -r "$kc" ]; then kubeconfig=$(cat "$kc"); fi
  jq -c --arg kc "$kubeconfig" '{name, image, version,
      ingress: ("http://127.0.0.1:" + (.ingressPort | tostring)),
      apiServer: .server, state: (if .ready then "ready" else "creating" end),
      kubeconfig: $kc}' <<<"$1"
}

case "$op" in
create)
  image=$(jq -r '.cluster.image // empty' <<<"$req")
  port=$(jq -r '.cluster.port // 0' <<<"$req")
  [ -n "$name" ] && [ -n "$image" ] || die 1 "create needs cluster.name and cluster.image"
  call GET "/clusters/$name"
  if [ "$code" = 404 ]; then
    call POST /clusters "$(jq -cn --arg n "$name" --arg i "$image" --argjson p "$port" \
                           '{name: $n, image: $i} + (if $p > 0 then {ingressPort: $p} else {} end)')"
    [ "$code" = 409 ] && call GET "/clusters/$name"
  fi
  case "$code" in 200|201) ;; *) die 1 "create '$name': $(jq -r '.error // "failed"' <<<"$body" 2>/dev/null)";; esac
  have=$(jq -r '.image' <<<"$body")
  [ "$have" = "$image" ] || die 1 "cluster '$name' exists with image '$have'"
  # wait until ready: kubesim boots a cluster in about 3 s times its time scale
  deadline=$(( $(date +%s) + 120 ))
  until [ "$(jq -r '.ready' <<<"$body")" = true ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die 1 "cluster '$name' not ready in time"
    sleep 0.05
    call GET "/clusters/$name"
    [ "$code" = 200 ] || die 1 "cluster '$name' vanished while booting"
  done
  answer "$body"
  ;;
get)
  call GET "/clusters/$name"
  [ "$code" = 404 ] && die 3 "cluster '$name' not found"
  [ "$code" = 200 ] || die 1 "get '$name': HTTP $code"
  answer "$body"
  ;;
delete)
  call DELETE "/clusters/$name"
  case "$code" in
  200) echo '{"existed": true}' ;;
  404) echo '{"existed": false}' ;;
  *) die 1 "delete '$name': HTTP $code" ;;
  esac
  ;;
list)
  call GET /clusters
  [ "$code" = 200 ] || die 1 "list: HTTP $code"
  jq -c '[.clusters[] | {name, image, version,
           ingress: ("http://127.0.0.1:" + (.ingressPort | tostring)),
           state: (if .ready then "ready" else "creating" end)}]' <<<"$body"
  ;;
*)
  die 1 "unknown op '$op'"
  ;;
esac
