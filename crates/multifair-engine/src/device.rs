//! Compute devices by name, and a numerical self-check of a device's forward and backward pass.

use anyhow::{Context, bail};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// The device names `--device` accepts in this build.
pub fn available() -> &'static str {
    if cfg!(feature = "tch") {
        "flex, libtorch, libtorch-cuda:N"
    } else {
        "flex"
    }
}

/// A compute device by name: `flex`, `libtorch` or `libtorch-cuda:N` (the libtorch ones need
/// the `tch` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Flex,
    Libtorch,
    LibtorchCuda(usize),
}

impl std::str::FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> anyhow::Result<Self> {
        match (name, name.strip_prefix("libtorch-cuda:")) {
            ("flex", _) => Ok(DeviceSpec::Flex),
            ("libtorch", _) => Ok(DeviceSpec::Libtorch),
            (_, Some(index)) => index
                .parse()
                .map(DeviceSpec::LibtorchCuda)
                .with_context(|| format!("device '{name}': '{index}' is not a GPU index")),
            _ => bail!("unknown device '{name}'; available: {}", available()),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = anyhow::Error;

    fn try_from(name: String) -> anyhow::Result<Self> {
        name.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> String {
        spec.to_string()
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Flex => f.write_str("flex"),
            DeviceSpec::Libtorch => f.write_str("libtorch"),
            DeviceSpec::LibtorchCuda(i) => write!(f, "libtorch-cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The burn device; a libtorch device in a build without `tch` is an error that says how
    /// to get one.
    pub fn device(self) -> anyhow::Result<Device> {
        match self {
            DeviceSpec::Flex => {
                keep_freed_memory();
                Ok(Device::flex())
            }
            spec => libtorch_device(spec),
        }
    }
}

/// Lets glibc's heap keep and reuse the blocks the CPU backend frees. flex allocates every
/// op's output afresh; by default glibc hands blocks over its (adaptive) mmap threshold back to
/// the kernel on free, so the next op's output page-faults in zeroed pages again: 15% of a
/// tiny-model step (`just bench-paper-step`). Fixed thresholds of 32 MiB (mmap) and 256 MiB
/// (trim) keep a step's working set in the heap. libtorch has its own allocator habits and
/// measured no gain (and 2 GB more peak memory at the paper size), so only flex gets this.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only sets allocator parameters; it is called once, and glibc
        // serialises it against concurrent allocation.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        });
    }
}

/// Parses a device name into its burn device.
pub fn parse(name: &str) -> anyhow::Result<Device> {
    name.parse::<DeviceSpec>()?.device()
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn 0.22 marks libtorch deprecated; it is still the fast CPU/CUDA path here.
fn libtorch_device(spec: DeviceSpec) -> anyhow::Result<Device> {
    Ok(match spec {
        DeviceSpec::Flex => Device::flex(),
        DeviceSpec::Libtorch => Device::libtorch(),
        DeviceSpec::LibtorchCuda(index) => Device::libtorch_cuda(index),
    })
}

#[cfg(not(feature = "tch"))]
fn libtorch_device(spec: DeviceSpec) -> anyhow::Result<Device> {
    bail!(
        "device '{spec}' needs the libtorch backend, which this build lacks; rebuild with \
         `--features tch` after `just setup-libtorch`"
    )
}

/// Result of [`check`]: largest deviations from the f64 closed form.
#[derive(Debug, Serialize)]
pub struct DeviceCheck {
    pub device: String,
    pub loss: f64,
    pub loss_error: f64,
    pub grad_error: f64,
}

const ROWS: usize = 8;
const COLS: usize = 5;
const OUT: usize = 3;

/// Runs loss = sum(tanh(x w)) forward and backward on `device` and compares the loss and
/// dL/dw = x^T (1 - tanh^2(x w)) with the same computation in f64 on the host.
pub fn check(name: &str) -> anyhow::Result<DeviceCheck> {
    let device = parse(name)?.autodiff();
    let x: Vec<f64> = (0..ROWS * COLS)
        .map(|i| ((i * 7 % 11) as f64 - 5.0) / 10.0)
        .collect();
    let w: Vec<f64> = (0..COLS * OUT)
        .map(|i| ((i * 5 % 13) as f64 - 6.0) / 12.0)
        .collect();
    let to_f32 = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
    let xt = Tensor::<1>::from_floats(to_f32(&x).as_slice(), &device).reshape([ROWS, COLS]);
    let wt = Tensor::<1>::from_floats(to_f32(&w).as_slice(), &device)
        .reshape([COLS, OUT])
        .require_grad();
    let loss = xt.matmul(wt.clone()).tanh().sum();
    let grads = loss.backward();
    let read = |t: Tensor<1>| -> anyhow::Result<Vec<f32>> {
        t.into_data()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading a tensor back: {e:?}"))
    };
    let loss_value = read(loss)?[0] as f64;
    let grad = read(
        wt.grad(&grads)
            .context("no gradient for w")?
            .reshape([COLS * OUT]),
    )?;

    let mut expected_loss = 0.0;
    let mut expected_grad = vec![0.0; COLS * OUT];
    for r in 0..ROWS {
        for o in 0..OUT {
            let z: f64 = (0..COLS).map(|c| x[r * COLS + c] * w[c * OUT + o]).sum();
            expected_loss += z.tanh();
            for c in 0..COLS {
                expected_grad[c * OUT + o] += x[r * COLS + c] * (1.0 - z.tanh().powi(2));
            }
        }
    }
    let grad_error = grad
        .iter()
        .zip(&expected_grad)
        .map(|(&g, e)| (g as f64 - e).abs())
        .fold(0.0, f64::max);
    Ok(DeviceCheck {
        device: name.to_owned(),
        loss: loss_value,
        loss_error: (loss_value - expected_loss).abs(),
        grad_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_matches_the_closed_form() {
        let result = check("flex").unwrap();
        assert!(
            result.loss_error < 1e-4 && result.grad_error < 1e-4,
            "{result:?}"
        );
    }

    #[cfg(feature = "tch")]
    #[test]
    fn libtorch_cpu_matches_the_closed_form() {
        let result = check("libtorch").unwrap();
        assert!(
            result.loss_error < 1e-4 && result.grad_error < 1e-4,
            "{result:?}"
        );
    }

    #[test]
    fn unknown_and_unbuilt_devices_are_errors() {
        let err = parse("tpu").unwrap_err().to_string();
        assert_eq!(
            err,
            format!("unknown device 'tpu'; available: {}", available())
        );
        if !cfg!(feature = "tch") {
            assert!(
                parse("libtorch")
                    .unwrap_err()
                    .to_string()
                    .contains("--features tch")
            );
        }
    }
}
