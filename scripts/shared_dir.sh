# Sourced by setup.sh and test.sh (from the repository root): the project's shared/ folder (reference vectors, real
# tokenizers, Clotho captions and clips) is where laac.cli.paths.shared_dir finds it: $LAAC_SHARED_DIR, else beside
# the clone (or a worktree's main clone). A fresh clone elsewhere on the project's machines (CI, `git clone .
# "$(mktemp -d)/fresh"`) uses their /work/shared.
if [ -z "${LAAC_SHARED_DIR:-}" ] && [ ! -d ../shared ] && [ -d /work/shared ]; then
  export LAAC_SHARED_DIR=/work/shared
fi
