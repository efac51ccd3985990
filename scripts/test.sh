#!/usr/bin/env bash
# The test suite on a fresh machine: set-up, then every test. The report test drives a real headless Chromium
# (Debian's package); LAAC_REQUIRE_BROWSER=1 makes its absence a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install Debian's chromium package (apt-get install chromium) for the report test" >&2
  fi
fi
# The tests read the project's shared/ folder (see shared_dir.sh).
source scripts/shared_dir.sh
LAAC_REQUIRE_BROWSER=1 python -m pytest -q tests "$@"
