# MultiFair workspace recipes. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The main job on the built-in data.
demo:
    cargo run --release -- demo

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
    source scripts/libtorch-env.sh && cargo test --workspace --features multifair-experiments/tch

# Check a device's forward and backward pass against the closed form, e.g. `just check-device libtorch-cuda:0`.
check-device device="flex":
    {{ if device == "flex" { "" } else { "scripts/setup-libtorch.sh && source scripts/libtorch-env.sh &&" } }} cargo run --release {{ if device == "flex" { "" } else { "--features tch" } }} -- check-device --device {{device}}

# Benchmarks: bootstrap ES-AUC (1000 resamples of 3000 predictions, 3 groups; target <= 0.5 s).
bench:
    cargo bench -p multifair-metrics --bench bootstrap
