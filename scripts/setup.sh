#!/usr/bin/env bash
# Installs every Debian package cutover needs to build, test and run its main job.
# Idempotent: checks each package with dpkg first and touches apt only for what is
# missing ('apt-get update' once, then one 'apt-get install -y'). Works as root or
# through sudo. Prints what it did.
set -euo pipefail

packages=(
  # toolchain and build
  gcc clang make meson ninja-build pkg-config git curl ca-certificates
  # libraries (see README: what each dependency is for)
  libuv1-dev libcurl4-openssl-dev libyaml-dev libjansson-dev libgit2-dev
  libhttp-parser-dev libssl-dev
  # tests and fuzzing
  libcmocka-dev libclang-rt-14-dev
  # real peers: metrics, load balancer, load tools, a reference web server
  prometheus haproxy wrk hey nginx-light
  # process helpers used by scripts
  procps iproute2 jq
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# Services installed by Debian's packages (prometheus, haproxy, nginx) are not wanted as
# system daemons: cutover and its tests start their own instances on loopback.
policy_added=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
  policy_added=1
fi
rc=0
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
if [ $policy_added -eq 1 ]; then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
[ $rc -eq 0 ] || { echo "setup: apt-get install failed ($rc)" >&2; exit $rc; }
echo "setup: installed ${#missing[@]} packages"
