#!/bin/sh
# Every kustomize overlay of the fleet repository and the sample tenant repo builds,
# and the builds contain what the pipeline relies on. Skips (77) without kubectl.
set -eu
top=${1:?usage: fleet-kustomize.sh SOURCE_ROOT}
command -v kubectl >/dev/null 2>&1 || { echo "kubectl not found: skipping"; exit 77; }
cd "$top"
fail=0
for dir in operators tenants/*/* tenants/repos/core/deploy/staging tenants/repos/core/deploy/production; do
  [ -f "$dir/kustomization.yaml" ] || continue
  if ! out=$(kubectl kustomize --load-restrictor=LoadRestrictionsNone "$dir" 2>&1); then
    echo "FAIL $dir: $out"; fail=1; continue
  fi
  echo "ok   $dir ($(printf '%s\n' "$out" | grep -c '^kind:') objects)"
done
# The per-env overlays point each tenant at its env's release path.
kubectl kustomize tenants/production/westeurope | grep -q 'path: ./deploy/production' || {
  echo "FAIL production overlay does not select ./deploy/production"; fail=1; }
kubectl kustomize tenants/staging/northeurope | grep -q 'cutover.io/location: northeurope' || {
  echo "FAIL location label missing"; fail=1; }
kubectl kustomize tenants/repos/core/deploy/production | grep -q 'replicas: 3' || {
  echo "FAIL production replicas"; fail=1; }
# Every cluster path has the two Kustomizations and at least one executable check.
for d in clusters/*/*; do
  for f in operations.yaml tenants.yaml; do
    [ -f "$d/$f" ] || { echo "FAIL $d/$f missing"; fail=1; }
  done
  ls "$d"/checks/* >/dev/null 2>&1 && [ -x "$(ls "$d"/checks/* | head -1)" ] || {
    echo "FAIL $d/checks has no executable"; fail=1; }
done
exit $fail
