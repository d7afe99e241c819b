#!/usr/bin/env bash
# Runs the start-up benchmark against bare, bwrap and (when it can be set
# up) srt, in one run. Installs bwrap, and srt's own dependencies, if
# missing; srt itself goes into a scratch folder (bench/.srt) with Node 22.
# Then the egress proxy (bench/proxy.sh) and TLS inspection (bench/tls.sh)
# benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh  # bwrap, ripgrep, socat; SRT
cmake --build build -j"$(nproc)" >/dev/null
g++ -O2 -std=c++20 -o build/bench-startup bench/startup.cc

ws=$(mktemp -d /var/tmp/airlock-bench-XXXXXX)
trap 'rm -rf "$ws"' EXIT
bin=$(realpath build/airlock)
cd "$ws"
"$OLDPWD/build/bench-startup" --runs "${RUNS:-200}" --airlock "$bin" ${SRT:+--srt "$SRT"}
echo; "$OLDPWD/bench/proxy.sh"
echo; "$OLDPWD/bench/tls.sh"
