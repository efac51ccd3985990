#!/usr/bin/env bash
# What a user gets who has the repository and the package registries but not the project's shared/ folder: a copy
# of this checkout (tracked and untracked files) in a temporary folder with nothing beside it, imported as `laac`
# ahead of the installed one, LAAC_SHARED_DIR pointing at an empty folder and an empty LAAC cache. Then: the whole
# suite collects; the tests that use public data run on what can be fetched here and skip, naming how to get what
# cannot; and `laac demo` at toy scale completes and writes its report. Run after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/clone" "$tmp/site" "$tmp/empty" "$tmp/cache"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tmp/clone" 2>/dev/null || true
ln -s "$tmp/clone" "$tmp/site/laac"
export PYTHONPATH="$tmp/site${PYTHONPATH:+:$PYTHONPATH}" LAAC_SHARED_DIR="$tmp/empty" LAAC_CACHE_DIR="$tmp/cache"
unset CI  # skipping is what this check expects of data that cannot be had
cd "$tmp/clone"
python - <<'PY'
import os, laac
from laac.cli.paths import shared_dir
here = os.path.realpath(os.getcwd())
assert os.path.realpath(laac.__file__).startswith(here + os.sep), f"laac imported from {laac.__file__}, not {here}"
assert shared_dir() == os.environ["LAAC_SHARED_DIR"] and not os.listdir(shared_dir()), shared_dir()
PY
python -m pytest -q --collect-only tests >"$tmp/collect.log" || { tail -40 "$tmp/collect.log"; exit 1; }
echo "check without shared/: $(tail -1 "$tmp/collect.log")"
python -m pytest -q -rs -p no:cacheprovider tests/test_ced.py tests/test_feature_extraction.py tests/test_data.py \
  tests/test_metrics.py tests/test_error_detector.py tests/test_llama2_tokenizer.py tests/test_smollm2_lora.py \
  tests/test_public_data.py | tee "$tmp/tests.log"
if grep "^SKIPPED" "$tmp/tests.log" | grep -v -e "Get them with" -e "Chromium"; then
  echo "check without shared/: the skips above do not say how to get what they need" >&2
  exit 1
fi
laac demo --out "$tmp/demo" --model-dir "$tmp/model" --n-train 48 --n-test 8 --tagger-steps 3 --caption-steps 3 \
  --baseline-steps 2 --report-clips 4 >"$tmp/demo.log" 2>&1 || { tail -40 "$tmp/demo.log"; exit 1; }
test -s "$tmp/demo/report/index.html"
grep -E "error detector: |post-correction: skipped" "$tmp/demo/report/report.md"
echo "check without shared/: laac demo wrote its report"
