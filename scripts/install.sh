#!/usr/bin/env bash
# Installs everything SentinelEdge needs on Debian 12 (run as root):
# Debian packages (clang, bpftool, libbpf), the Python environment in .venv,
# and the BPF object compiled from bpf/ (shipped inside the package).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (it installs Debian packages and the agent loads eBPF programs)" >&2
  exit 1
fi

PKGS=(clang llvm libbpf-dev libbpf1 bpftool make gcc pkg-config python3 python3-venv python3-dev
      iproute2 liburing-dev libcap2-bin attr)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python 3.11+: the system's python3 on Debian 12
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "install.sh: $PY is older than 3.11" >&2; exit 1; }

make -s
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
echo "SentinelEdge installed: .venv/bin/sentinel-edge"
