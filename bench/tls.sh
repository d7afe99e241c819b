#!/usr/bin/env bash
# TLS inspection benchmark, in one run: the same HTTPS client against the
# same loopback HTTPS server (bench/tls_bench.cc, OpenSSL) directly, through
# airlock's proxy as a plain tunnel (tlsTerminate with the hosts excluded)
# and inspected (tlsTerminate), through a bare TLS-terminating relay on the
# host (for reference), and through srt's proxy both ways when srt can be
# set up; all in lockstep. Cost of a new host (cold leaf cache, then warm),
# latency added per request on a kept-alive connection (p50, p99), and one
# download's throughput. Targets: inspected adds < 0.5 ms per request at
# p50; inspected bulk >= 0.5x the plain tunnel. Takes about a minute and a half.
#   AIRLOCK=path/to/airlock bench/tls.sh   (default: build/airlock, rebuilt)
#   ROUNDS=3 HOSTS=50 RTT=2000 BULK_MIB=200 bench/tls.sh   (quick: ROUNDS=1 HOSTS=10 RTT=300 BULK_MIB=50)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh  # bwrap, ripgrep, socat; SRT; bench_setup
bench_setup tls -pthread -lssl -lcrypto
"$exe" --airlock "$bin" ${SRT:+--srt "$SRT"} --rounds "${ROUNDS:-3}" --hosts "${HOSTS:-50}" \
  --rtt "${RTT:-2000}" --bulk-mib "${BULK_MIB:-200}"
