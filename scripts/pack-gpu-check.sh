#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has PyTorch but no Rust toolchain:
# a stripped `multifair` built with the `tch` feature against that machine's torch version, and
# the script; refuses a pack of 64 MiB or more.
#
#     scripts/pack-gpu-check.sh [OUT]                 # builds against MULTIFAIR_TORCH_DIR's torch
#     scripts/pack-gpu-check.sh --binary PATH [OUT]   # packs an existing binary instead
#
# MULTIFAIR_TORCH_DIR defaults to ~/.cache/multifair/torch-2.11.0 (pip's torch==2.11.0, the
# version on the GPU machines this project borrows); its build goes to a target folder of its
# own, since a libtorch change rebuilds everything that links it.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=""
if [ "${1:-}" = "--binary" ]; then
    binary=$2
    shift 2
fi
out=${1:-gpu-pack}
if [ -z "$binary" ]; then
    export MULTIFAIR_TORCH_DIR=${MULTIFAIR_TORCH_DIR:-$HOME/.cache/multifair/torch-2.11.0}
    # shellcheck source=/dev/null
    source scripts/libtorch-env.sh
    # tch 0.22 is written for torch 2.9; newer ones build when their C++ API still matches.
    export LIBTORCH_BYPASS_VERSION_CHECK=1
    export CARGO_TARGET_DIR=${MULTIFAIR_PACK_TARGET:-$HOME/.cache/multifair/target-$(basename "$MULTIFAIR_TORCH_DIR")}
    cargo build --release --features tch --bin multifair
    binary="$CARGO_TARGET_DIR/release/multifair"
fi
rm -rf "$out"
mkdir -p "$out"
cp "$binary" "$out/multifair"
strip "$out/multifair"
cp scripts/gpu-check.sh "$out/"
size=$(du -sb "$out" | cut -f1)
limit=$((64 * 1024 * 1024))
if [ "$size" -ge "$limit" ]; then
    echo "$out holds $size bytes: over the 64 MiB a GPU call carries" >&2
    exit 1
fi
echo "$out: $size bytes (limit $limit)"
