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
. bench/common.sh  # bwrap, ripgrep, socat; SRT; bench_setup
bench_setup proxy -pthread
"$exe" --airlock "$bin" ${SRT:+--srt "$SRT"} --rounds "${ROUNDS:-3}" --bulk-mib "${BULK_MIB:-1024}" \
  --hold "${HOLD:-1000}" --conc "${CONC:-64}"
