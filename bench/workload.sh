#!/usr/bin/env bash
# Syscall-heavy real workloads inside airlock (every layer: namespaces,
# mounts, Landlock, the seccomp filter) against the same outside, in one run.
# Prints the median of N runs and the ratio. Target: under 3% overhead.
set -euo pipefail
cd "$(dirname "$0")/.."
AIRLOCK=$(realpath build/airlock)
N=${RUNS:-7}
ws=$(mktemp -d /var/tmp/airlock-bench-XXXXXX)
trap 'rm -rf "$ws"' EXIT
# A small C project and a git repository with a few thousand files.
mkdir -p "$ws/proj" && cd "$ws/proj"
for i in $(seq 40); do printf 'int f%d(int x){return x*%d;}\n' "$i" "$i" > "f$i.c"; done
printf 'int main(){return 0;}\n' > main.c
printf 'all: $(patsubst %%.c,%%.o,$(wildcard *.c))\n\tcc -o app *.o\nclean:\n\trm -f *.o app\n' > Makefile
git init -q . && mkdir -p tree && for d in $(seq 30); do mkdir -p tree/$d; for f in $(seq 100); do echo $f > tree/$d/$f; done; done
git add -A >/dev/null && git -c user.email=b@b -c user.name=b commit -qm init

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {  # measure LABEL CMD...: median seconds of N runs
  local t=()
  for _ in $(seq "$N"); do
    local s=$(date +%s.%N); "$@" >/dev/null 2>&1; local e=$(date +%s.%N)
    t+=("$(echo "$e - $s" | bc -l)")
  done
  printf '%s\n' "${t[@]}" | median
}
printf '%-28s %10s %10s %8s\n' workload "bare s" "airlock s" ratio
run() {
  local label=$1; shift
  local bare=$(measure "$@")
  local boxed=$(measure "$AIRLOCK" run -- "$@")
  printf '%-28s %10.3f %10.3f %8.3f\n' "$label" "$bare" "$boxed" "$(echo "$boxed / $bare" | bc -l)"
}
run "find /usr (stat-heavy)" find /usr -xdev -name '*.h'
run "git status (3000 files)" git status --porcelain
run "make -j2 (41 C files)" sh -c 'make -s clean && make -s -j2'
