#!/usr/bin/env bash
# Runs the whole test suite: once as an unprivileged user, then as root.
# Must itself be run as root (it creates the test user), or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo "$0" "$@"; fi

[ -x build/airlock ] && [ -x build/tests/sandbox_tests ] || ./scripts/setup.sh >/dev/null
cmake --build build -j"$(nproc)" 2>&1 | grep -E "error" && exit 1

USER_NAME=airlock-test
id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"

# The unprivileged user may not be able to reach the build tree (a clone
# under /root): give it a readable copy of the binaries and docs.
copy=$(mktemp -d /var/tmp/airlock-suite-XXXXXX)
trap 'rm -rf "$copy"' EXIT
cp build/airlock build/tests/probe build/tests/unit_tests build/tests/sandbox_tests "$copy/"
mkdir -p "$copy/src" && cp -r docs tests "$copy/src/"
chmod -R a+rX "$copy"

fail=0
echo "== as an unprivileged user ($USER_NAME)"
for t in unit_tests sandbox_tests; do
  runuser -u "$USER_NAME" -- env HOME="/home/$USER_NAME" AIRLOCK_BIN="$copy/airlock" AIRLOCK_PROBE="$copy/probe" \
    AIRLOCK_SOURCE_DIR="$copy/src" "$copy/$t" --gtest_brief=1 || fail=1
done

echo "== as root"
ctest --test-dir build --output-on-failure -j2 || fail=1
exit $fail
