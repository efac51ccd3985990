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
# The tests read the project's shared/ folder (reference vectors, real tokenizers, Clotho clips) where
# laac.cli.paths.shared_dir finds it: $LAAC_SHARED_DIR, else beside the clone (or a worktree's main clone). A fresh
# clone elsewhere on the project's machines (CI, `git clone . "$(mktemp -d)/fresh"`) uses their /work/shared.
if [ -z "${LAAC_SHARED_DIR:-}" ] && [ ! -d ../shared ] && [ -d /work/shared ]; then
  export LAAC_SHARED_DIR=/work/shared
fi
LAAC_REQUIRE_BROWSER=1 python -m pytest -q tests "$@"
