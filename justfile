# MultiFair workspace recipes. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The main job on the built-in data.
demo:
    cargo run --release -- demo

# Methods x seeds on the synthetic benchmark (or --data-dir), mean ± std and paired tests against
# the first method, e.g. `just compare --methods erm,multifair,group_dro --seeds 5`.
compare *ARGS:
    cargo run --release -- compare {{ARGS}}

# A paper table end to end: `just reproduce table1 [--data-dir DIR] [--seeds N] [--jobs J]
# [--methods erm,multifair] [--device libtorch-cuda:0]` (table1, table2, ablation, demo). Without
# data it says the datasets are gated and runs the same spec on the synthetic benchmark.
reproduce name *ARGS:
    {{ if ARGS =~ "libtorch" { "scripts/setup-libtorch.sh && source scripts/libtorch-env.sh && cargo run --release --features tch" } else { "cargo run --release" } }} -- reproduce {{name}} {{ARGS}}

# Expand a spec into runs: `just sweep experiments/table1.toml --emit local|shell|slurm --jobs J`.
sweep spec *ARGS:
    cargo run --release -- sweep {{spec}} {{ARGS}}

# Equal-budget tuning of a spec's rows, then its seeds on the chosen settings:
# `just tune experiments/ablation.toml --trials 8 --jobs 2`.
tune spec *ARGS:
    cargo run --release -- tune {{spec}} {{ARGS}}

# A sweep's runs with their status: `just runs results/table1 --where status=failed`.
runs results *ARGS:
    cargo run --release -- runs {{results}} {{ARGS}}

# Install mlflow and tensorboard (pinned) for the tracking test and for looking at sweeps.
setup-tracking:
    scripts/setup-tracking.sh

# Train one run, e.g. `just train --dataset fairvision --data-dir DIR --method erm --out results/run`.
train *ARGS:
    cargo run --release -- train {{ARGS}}

# The test suite (flex backend).
test:
    cargo test --workspace

# Fairness report of a predictions CSV, with bootstrap intervals.
evaluate predictions bootstrap="1000" seed="0":
    cargo run --release -- evaluate --predictions {{predictions}} --bootstrap {{bootstrap}} --seed {{seed}}

# Install libtorch (PyTorch 2.9.0 from PyPI) into ~/.cache/multifair for the `tch` feature.
setup-libtorch:
    scripts/setup-libtorch.sh

# The test suite with the libtorch backend compiled in (its device tests run too).
test-tch: setup-libtorch
    source scripts/libtorch-env.sh && cargo test --workspace --features tch

# Check a device's forward and backward pass against the closed form, e.g. `just check-device libtorch-cuda:0`.
check-device device="flex":
    {{ if device == "flex" { "" } else { "scripts/setup-libtorch.sh && source scripts/libtorch-env.sh &&" } }} cargo run --release {{ if device == "flex" { "" } else { "--features tch" } }} -- check-device --device {{device}}

# Benchmarks: bootstrap ES-AUC (1000 resamples of 3000 predictions, 3 groups; target <= 0.5 s).
bench:
    cargo bench -p multifair-metrics --bench bootstrap

# Loader benchmark (FairVision-format 200^3 OCT + 200^2 SLO -> 10 x 224^2 and 224^2) next to the
# reference's numpy + torch path on the same files; prints samples/s and the ratio (target >= 5x).
bench-loader: setup-libtorch
    #!/usr/bin/env bash
    set -euo pipefail
    export MULTIFAIR_BENCH_DATA=${MULTIFAIR_BENCH_DATA:-${TMPDIR:-/tmp}/multifair-bench-fairvision}
    cargo bench -p multifair-data --bench loader
    source scripts/libtorch-env.sh
    python -c "import numpy" 2>/dev/null || pip install --quiet numpy
    python crates/multifair-data/benches/reference_loader.py "$MULTIFAIR_BENCH_DATA" | tee /tmp/multifair-reference.txt
    python - <<'PY'
    import glob, json, os
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ref = float(open("/tmp/multifair-reference.txt").read().split(":")[1].split()[0])
    for path in sorted(glob.glob(os.path.join(target, "criterion", "loader", "*", "new", "estimates.json"))):
        name = path.split(os.sep)[-3]
        seconds = json.load(open(path))["mean"]["point_estimate"] / 1e9
        n = json.load(open(os.path.join(os.path.dirname(path), "benchmark.json")))["throughput"]["Elements"]
        print(f"{name}: {n / seconds:.1f} samples/s = {n / seconds / ref:.1f}x the reference")
    PY

# One whole training step of the two-modality model against the same architecture in PyTorch
# (benches/paper_step.py), side by side in one run: the paper size (ViT-B/16 fundus + ViT-B/16 per
# OCT slice, 10 slices, 224 px, batch 2) on burn-libtorch's CPU and the tiny size (batch 16) on
# burn-flex, each against PyTorch on the same number of threads (flex runs on one). Ours and
# PyTorch alternate for `rounds` rounds (the paper size for `paper_rounds`), so a busy spell
# on a shared machine hits both; prints each round and the medians' ratios (ours / PyTorch;
# targets <= 1.0) of seconds per step and peak memory.
bench-paper-step threads="2" rounds="3" paper_rounds="1": setup-libtorch
    #!/usr/bin/env bash
    set -euo pipefail
    source scripts/libtorch-env.sh
    # Optimised, as runs are: a debug build leaves the tensor API's generic code in our crates
    # unoptimised, which the tiny size's many small ops feel.
    cargo build --release --features tch --bin multifair
    mf=${CARGO_TARGET_DIR:-target}/release/multifair
    dir=$(mktemp -d)
    for round in $(seq {{paper_rounds}}); do
        OMP_NUM_THREADS={{threads}} "$mf" time-step --model paper --batch 2 --steps 2 --device libtorch > "$dir/ours-paper-$round.json"
        python benches/paper_step.py --model paper --batch 2 --steps 2 --threads {{threads}} > "$dir/torch-paper-$round.json"
    done
    for round in $(seq {{rounds}}); do
        "$mf" time-step --model tiny --batch 16 --steps 30 --device flex > "$dir/ours-tiny-$round.json"
        python benches/paper_step.py --model tiny --batch 16 --steps 30 --threads 1 > "$dir/torch-tiny-$round.json"
    done
    python - "$dir" <<'PY'
    import glob, json, os, statistics, sys
    d = sys.argv[1]
    for size, ours_device in [("paper", "burn-libtorch CPU, {{threads}} threads"), ("tiny", "burn-flex, 1 thread")]:
        load = lambda who: [json.load(open(p)) for p in sorted(glob.glob(os.path.join(d, f"{who}-{size}-*.json")))]
        ours, torch = load("ours"), load("torch")
        if not ours:
            continue
        for i, (o, t) in enumerate(zip(ours, torch)):
            print(f"  {size} round {i + 1}: ours {o['seconds_per_step']:.4f} s/step, PyTorch {t['seconds_per_step']:.4f}")
        median = lambda runs, key: statistics.median(r[key] for r in runs)
        o_s, t_s = median(ours, "seconds_per_step"), median(torch, "seconds_per_step")
        o_m, t_m = median(ours, "peak_rss_mib"), median(torch, "peak_rss_mib")
        print(f"{size} (batch {ours[0]['batch']}, {ours[0]['image_size']} px, {ours[0]['slices']} slices, "
              f"median of {len(ours)}): ours ({ours_device}) {o_s:.4f} s/step, peak {o_m:.0f} MiB; "
              f"PyTorch {t_s:.4f} s/step, peak {t_m:.0f} MiB; time {o_s / t_s:.2f}x, memory {o_m / t_m:.2f}x")
    PY

# The tiny training step on flex as built by default and with burn-flex's `simd` and `rayon`
# features (cargo features flex-simd, flex-rayon), side by side: seconds per step, and the last
# loss, which shows whether a feature changes results.
bench-flex-features:
    #!/usr/bin/env bash
    set -euo pipefail
    target=${CARGO_TARGET_DIR:-target}
    for features in "" flex-simd flex-simd,flex-rayon; do
        cargo build --quiet --release --bin multifair ${features:+--features $features}
        "$target/release/multifair" time-step --model tiny --batch 16 --steps 30 --device flex \
            | python3 -c 'import json, sys; r = json.load(sys.stdin); print((sys.argv[1] or "default") + ": %.4f s/step, last loss %r" % (r["seconds_per_step"], r["last_loss"]))' "$features"
    done

# Training-step cost of each two-modality method on the same tiny model and batch (flex),
# relative to fusion ERM, measured side by side in one run.
bench-step:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo bench -p multifair-core --bench step
    python3 - <<'PY'
    import glob, json, os
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    times = {}
    for path in glob.glob(os.path.join(target, "criterion", "step", "*", "new", "estimates.json")):
        times[path.split(os.sep)[-3]] = json.load(open(path))["mean"]["point_estimate"] / 1e6
    base = times.pop("erm")
    print(f"erm: {base:.1f} ms per step")
    for name, ms in sorted(times.items()):
        print(f"{name}: {ms:.1f} ms per step = {ms / base:.2f}x fusion ERM")
    PY
