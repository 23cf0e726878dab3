#!/usr/bin/env bash
# The libtorch CUDA path on a machine with an NVIDIA GPU and PyTorch but no Rust toolchain.
# Run from the folder `scripts/pack-gpu-check.sh` wrote (it holds this script and a `multifair`
# built against that machine's torch version):
#
#     bash gpu-check.sh            # writes $OUT/gpu-report.json (OUT defaults to ./out)
#
# Steps, each bounded in time (about 8 minutes in all on one H200): check-device on
# libtorch-cuda:0; the paper-size training step (ViT-B/16 fundus + ViT-B/16 per OCT slice,
# 10 slices, 224 px) at batch 32 in fp32 for fusion ERM and multifair_ref, with the GPU's peak
# memory; the ERM step with the whole model in bf16 and in f16 (burn has no autocast, so this
# is what half precision can be here); one epoch of a `paper` run on a small synthetic
# FairVision-format set at 224 px.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${OUT:-$here/out}
mkdir -p "$out"
python=${PYTHON:-python3}
mf="$here/multifair"
device=${DEVICE:-libtorch-cuda:0}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log="$out/gpu-check.log"
: > "$log"

# Runs "$@" under `timeout`, sampling the GPU's used memory every 0.2 s; writes NAME.json (the
# command's stdout), NAME.mem (peak MiB) and NAME.rc.
measure() {
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" >> "$log"
    (while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; sleep 0.2; done) > "$out/$name.samples" &
    local sampler=$!
    local start=$(date +%s.%N)
    timeout "$limit" "$@" > "$out/$name.json" 2>> "$log"
    echo $? > "$out/$name.rc"
    awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }' > "$out/$name.seconds"
    kill $sampler 2>/dev/null
    sort -n "$out/$name.samples" | tail -1 > "$out/$name.mem"
}

measure check_device 60 "$mf" check-device --device "$device"
for method in erm multifair_ref; do
    measure "step_$method" 150 "$mf" time-step --model paper --method $method --batch 32 \
        --steps 3 --device "$device"
done
for dtype in bf16 f16; do
    measure "step_erm_$dtype" 90 "$mf" time-step --model paper --method erm --batch 32 \
        --steps 3 --device "$device" --dtype $dtype
done
"$mf" generate --kind fairvision --out "$out/data" --size 224 --depth 10 --n-train 64 \
    --n-val 32 --n-test 32 >> "$log" 2>&1
measure paper_epoch 180 "$mf" train --dataset fairvision --data-dir "$out/data" \
    --method multifair_ref --model paper --epochs 1 --device "$device" --set workers=4 \
    --out "$out/run"

"$python" - "$out" <<'PY'
import json, os, subprocess, sys
out = sys.argv[1]
def read(name, ext):
    try:
        return open(os.path.join(out, f"{name}.{ext}")).read().strip()
    except OSError:
        return None
def step(name):
    text = read(name, "json")
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError:
        value = {"unparsed": text}
    mem = read(name, "mem")
    return {
        "exit_code": int(read(name, "rc") or -1),
        "seconds": float(read(name, "seconds") or "nan"),
        "gpu_peak_used_mib": float(mem) if mem else None,
        "output": value,
    }
import torch
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip()
report = {
    "gpu": gpu,
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "check_device": step("check_device"),
    "paper_step_fp32_batch32": {m: step(f"step_{m}") for m in ["erm", "multifair_ref"]},
    "mixed_precision": "not run: burn 0.22 has no autocast or gradient scaler (see docs/fidelity.md)",
    "half_precision_model_erm_batch32": {d: step(f"step_erm_{d}") for d in ["bf16", "f16"]},
    "paper_epoch_synthetic_224px_10_slices": step("paper_epoch"),
}
test = os.path.join(out, "run", "test.json")
if os.path.exists(test):
    report["paper_epoch_synthetic_224px_10_slices"]["test_auc"] = json.load(open(test)).get("auc")
json.dump(report, open(os.path.join(out, "gpu-report.json"), "w"), indent=2)
print(json.dumps(report, indent=2))
PY
