#!/usr/bin/env bash
# Interop check against python-oldmemo (PyPI `oldmemo[xml]`), an independent OMEMO 0.3
# implementation. Creates a venv under target/omemo-interop/ and runs the ignored tests in
# client/omemo/tests/interop_oldmemo.rs.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="$root/target/omemo-interop/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet 'oldmemo[xml]==2.1.0'
cd "$root"
# Without arguments: the interop tests, not the vector capture (which rewrites a committed file).
if [ "$#" -eq 0 ]; then
    set -- --skip capture_oldmemo_vectors
fi
SOTTO_OLDMEMO_PYTHON="$venv/bin/python" \
    cargo test -p sotto-omemo --test interop_oldmemo -- --ignored "$@"
