# Source this after scripts/setup-libtorch.sh: the tch build asks the virtual environment's
# python where torch is (LIBTORCH_USE_PYTORCH), and binaries find libtorch*.so at run time.
dir=${MULTIFAIR_TORCH_DIR:-$HOME/.cache/multifair/torch-2.9.0}
export VIRTUAL_ENV="$dir"
export PATH="$dir/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
torch_lib=$("$dir/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset dir torch_lib
