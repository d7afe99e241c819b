#!/usr/bin/env bash
# The syscall filter's own cost on a syscall-heavy workload: the share of the
# workload's CPU samples spent in the kernel's seccomp path (perf), next to
# the whole sandbox's overhead (wall time inside vs outside, start-up
# amortised over five runs in one sandbox). Target for the filter: under 3%.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is needed (Debian: linux-perf)"; exit 0; }
AIRLOCK=$(realpath build/airlock)
ws=$(mktemp -d /var/tmp/airlock-bench-XXXXXX)
trap 'rm -rf "$ws" "$ws.perf"' EXIT
cd "$ws"
work='for i in 1 2 3 4 5; do find /usr -xdev -name "*.h" >/dev/null 2>&1; done; true'
t() { local s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; echo "$(date +%s.%N) - $s" | bc -l; }
bare=$(t sh -c "$work"); boxed=$(t "$AIRLOCK" run -- sh -c "$work")
perf record -q -a -g -o "$ws.perf" -- "$AIRLOCK" run -- sh -c "$work" >/dev/null 2>&1 || true
share() { perf report -i "$ws.perf" --no-children --comm find --sort sym -q -g none 2>/dev/null |
          grep -E "$1" | awk '{gsub("%","",$1); s+=$1} END {printf "%.2f", s}'; }
printf 'find /usr x5: bare %.3f s, inside airlock %.3f s, ratio %.3f\n' "$bare" "$boxed" "$(echo "$boxed / $bare" | bc -l)"
printf 'share of find'"'"'s CPU samples: seccomp filter %s%%, Landlock %s%%\n' \
  "$(share '__seccomp_filter|populate_seccomp_data|seccomp_run_filters|bpf_prog_run')" \
  "$(share 'landlock|is_access_to_paths_allowed|hook_file')"
