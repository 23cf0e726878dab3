#!/usr/bin/env bash
# Installs libtorch for the `tch` feature: PyTorch 2.9.0 (the version tch 0.22 expects) from PyPI
# into a virtual environment under the cache folder. Idempotent: does nothing when it is there.
# Then `source scripts/libtorch-env.sh` points the build and the binaries at it.
set -euo pipefail
dir=${MULTIFAIR_TORCH_DIR:-$HOME/.cache/multifair/torch-2.9.0}
check='import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.9.0")'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "libtorch: PyTorch 2.9.0 already in $dir"
    exit 0
fi
echo "libtorch: installing PyTorch 2.9.0 into $dir (several GB, once)"
python3 -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check torch==2.9.0
"$dir/bin/python" -c "$check"
echo "libtorch: ready"
