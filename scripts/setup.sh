#!/usr/bin/env bash
# Installs what airlock needs on Debian 12, builds build/airlock, and runs a
# short demo: a write outside the workspace and a secret read, both blocked.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
PACKAGES=(build-essential cmake pkg-config libfmt-dev nlohmann-json3-dev libcli11-dev libgtest-dev
          libseccomp-dev libboost-dev libssl-dev libidn2-dev libunistring-dev bsdutils util-linux iproute2 procps
          # the test suite's real clients and servers (curl, git, python's urllib, openssl)
          curl git python3 nodejs openssl ca-certificates)
missing=()
for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== building"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" 2>&1 | grep -E "error|warning" || true
test -x build/airlock

echo "== demo"
demo=$(mktemp -d /var/tmp/airlock-demo-XXXXXX)
trap 'rm -rf "$demo"' EXIT
mkdir -p "$demo/home/.ssh" "$demo/project"
echo "-----BEGIN DEMO PRIVATE KEY-----" > "$demo/home/.ssh/id_demo"
cd "$demo/project"
HOME="$demo/home" "$OLDPWD/build/airlock" run -- sh -c '
  echo "hello" > notes.txt && echo "write inside the workspace:   allowed"
  if echo evil >> "$HOME/.bashrc" 2>/dev/null; then echo "write to ~/.bashrc:           ALLOWED (bad)"; else echo "write to ~/.bashrc:           blocked"; fi
  if cat "$HOME/.ssh/id_demo" 2>/dev/null | grep -q KEY; then echo "read ~/.ssh/id_demo:          ALLOWED (bad)"; else echo "read ~/.ssh/id_demo:          blocked"; fi
  if echo "{}" > .mcp.json 2>/dev/null; then echo "write .mcp.json:              ALLOWED (bad)"; else echo "write .mcp.json:              blocked"; fi
'
echo "== done: the binary is build/airlock"
