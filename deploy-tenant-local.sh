#!/usr/bin/env bash
# Deploy a tenant on a local cluster of the embedded fleet, with the argument order of
# the original lab script:
#
#   ./deploy-tenant-local.sh CLUSTER TENANT
#
# Seeds tenant-TENANT.git from tenants/repos/TENANT when missing, commits the tenant's
# wiring for the cluster's env/location to the fleet repo when missing, bootstraps
# Flux on the cluster when it is not yet, and waits until the tenant's Kustomization
# is Ready at its repo's HEAD and its Flagger canaries Succeeded: a thin wrapper over
# `cutover tenant deploy CLUSTER TENANT`. The cluster comes from
# ./create-cluster-local.sh, which also starts kubesim; this script starts nothing
# else. Environment: CUTOVER_STATE_DIR (default ./.cutover), CUTOVER_TIME_SCALE
# (default 1), CUTOVER (cutover binary).
set -euo pipefail

case "${1:-}" in
-h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
''|-*) echo "usage: $0 CLUSTER TENANT" >&2; exit 2 ;;
esac
[ $# -eq 2 ] || { echo "usage: $0 CLUSTER TENANT" >&2; exit 2; }

root="$(cd "$(dirname "$0")" && pwd)"
state="${CUTOVER_STATE_DIR:-./.cutover}"
mkdir -p "$state"
export CUTOVER_STATE_DIR="$(cd "$state" && pwd)"
export CUTOVER_TIME_SCALE="${CUTOVER_TIME_SCALE:-1}"
cutover="${CUTOVER:-$root/build/cutover}"
if [ ! -x "$cutover" ]; then
  echo "deploy-tenant-local: no cutover binary at '$cutover' (run create-cluster-local.sh first)" >&2
  exit 1
fi
[ -n "${CUTOVER_FLEET_SOURCE:-}" ] || export CUTOVER_FLEET_SOURCE="$root"
exec "$cutover" tenant deploy "$1" "$2"
