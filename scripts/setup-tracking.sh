#!/usr/bin/env bash
# Installs the tracking tools the export is checked against: MLflow and TensorBoard (pinned)
# from PyPI into a virtual environment under the cache folder. Idempotent.
# The end-to-end test (tests/tracking_cli.rs) finds its python there, or in
# MULTIFAIR_TRACKING_PYTHON.
set -euo pipefail
dir=${MULTIFAIR_TRACKING_DIR:-$HOME/.cache/multifair/tracking}
check='import sys, mlflow, tensorboard; sys.exit(mlflow.__version__ != "3.17.2" or tensorboard.__version__ != "2.21.0")'
if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" 2>/dev/null; then
    echo "tracking: mlflow 3.17.2 and tensorboard 2.21.0 already in $dir"
else
    echo "tracking: installing mlflow 3.17.2 and tensorboard 2.21.0 into $dir (once)"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check mlflow==3.17.2 tensorboard==2.21.0
    "$dir/bin/python" -c "$check"
    echo "tracking: ready"
fi
