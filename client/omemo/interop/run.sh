#!/usr/bin/env bash
# Interop check against python-oldmemo (PyPI `oldmemo[xml]`), an independent OMEMO 0.3
# implementation: client/omemo/tests/interop_oldmemo.rs, which builds the workspace's pinned
# interop venv (target/interop/venv) when missing. `run.sh capture_oldmemo_vectors` regenerates
# the committed vectors instead.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$root"
if [ "$#" -eq 0 ]; then
    exec cargo test -p sotto-omemo --test interop_oldmemo
fi
exec cargo test -p sotto-omemo --test interop_oldmemo -- --ignored "$@"
