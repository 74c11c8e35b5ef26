#!/usr/bin/env bash
# Installs everything, then runs the whole test suite (lint, types, pytest) as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# what only the tests use: real peers and workloads (rsyslog for the syslog sink, logrotate and git
# for the benign workload, dpkg-dev for building a local .deb, and the attack tools some rule tests run:
# nmap, ncat, socat, kmod), chromium for the console tests (Playwright drives it), prometheus to scrape
# /metrics, e2fsprogs for the loop-mounted file systems of the history disk tests; for the network
# inspector: hping3 (SYN bursts), dnsmasq-base + dig (a DNS server and client between namespaces), curl,
# ethtool (GSO/GRO off on test veths), nftables (the netdev-ingress drop the benchmark compares with)
TEST_PKGS=(rsyslog logrotate git dpkg-dev nmap ncat socat kmod chromium prometheus e2fsprogs
           hping3 dnsmasq-base bind9-dnsutils curl ethtool nftables)
missing=()
for p in "${TEST_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages for the tests: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "== ruff"; .venv/bin/ruff check src tests benchmarks
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
