#!/usr/bin/env bash
# The test suite on a fresh machine: set-up, then every test. The report test drives a real headless Chromium
# (Debian's package), installed here where apt-get can (as root). A test whose data or tool cannot be had skips,
# saying how to get it (-rs lists the reasons); under CI (CI=true) it fails instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: the report's browser test will skip (install Debian's chromium package to run it)" >&2
  fi
fi
python -m pytest -q -rs tests "$@"
