#!/usr/bin/env bash
# A Python environment for scripts/parity/parity.py: the libtorch environment's torch 2.9.0
# (scripts/setup-libtorch.sh) shared through a .pth file, plus what the original code imports.
set -euo pipefail
torch_dir=${MULTIFAIR_TORCH_DIR:-$HOME/.cache/multifair/torch-2.9.0}
dir=${MULTIFAIR_PARITY_DIR:-$HOME/.cache/multifair/parity}
python3 -m venv "$dir"
site=$("$dir/bin/python" -c 'import site; print(site.getsitepackages()[0])')
"$torch_dir/bin/python" -c 'import site; print(site.getsitepackages()[0])' > "$site/torch-venv.pth"
"$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps torchvision==0.24.0
"$dir/bin/pip" install --quiet --disable-pip-version-check transformers==4.57.1 \
    scikit-learn==1.9.1 tqdm matplotlib pillow
echo "parity: $dir/bin/python scripts/parity/parity.py --original CHECKOUT --multifair BINARY"
