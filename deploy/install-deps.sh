#!/bin/sh
# Installs what building (and, with "test", testing) halfpipe needs on Debian 12.
# Safe to run again: apt-get only runs when a package is missing.
set -eu
build="g++ cmake make ccache libboost1.81-dev libboost-program-options1.81-dev libboost-json1.81-dev prometheus-cpp-dev
       libyaml-cpp-dev libspdlog-dev libgtest-dev libcrypt-dev"
test_tools="clang libclang-rt-14-dev python3 python3-yaml curl iproute2 procps wrk prometheus nftables"
want="$build"
[ "${1:-}" = test ] && want="$want $test_tools"
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
fi
