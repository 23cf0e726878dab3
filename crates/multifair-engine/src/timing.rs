//! `multifair time-step`: the wall time of whole training steps (forward, backward, clipping,
//! both optimizers) of a two-modality FairVision model on random inputs, on any device, with
//! the process's peak resident memory. `just bench-paper-step` sets it beside the same
//! architecture in PyTorch (`benches/paper_step.py`); `scripts/gpu-check.sh` runs it on a GPU.

use std::time::Instant;

use anyhow::Context;
use burn::tensor::{Distribution, FloatDType, Tensor};
use multifair_core::{DeviceBatch, Setup};
use multifair_data::DatasetKind;
use multifair_models::ModalityInput;
use multifair_models::presets::ModelSize;
use serde::Serialize;

use crate::config::{Request, TrainConfig};
use crate::device::DeviceSpec;
use crate::optim::{Optimizers, train_step};

/// What to time.
#[derive(Debug, Clone)]
pub struct StepTiming {
    pub model: ModelSize,
    pub method: String,
    pub batch: usize,
    pub image_size: usize,
    pub slices: usize,
    /// Timed steps, after one untimed warm-up step.
    pub steps: usize,
    pub device: DeviceSpec,
    pub seed: u64,
    pub dtype: Precision,
}

/// The float type of the whole step: weights, activations, gradients and optimizer state.
/// burn 0.22 has no autocast, so a half-precision step here is a half-precision model, not
/// PyTorch's mixed precision (fp32 weights and reductions, half matmuls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Bf16,
    F16,
}

impl Precision {
    fn float(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }
}

/// The measurement, as JSON.
#[derive(Debug, Serialize)]
pub struct StepReport {
    pub model: String,
    pub method: String,
    pub device: String,
    pub batch: usize,
    pub image_size: usize,
    pub slices: usize,
    pub dtype: Precision,
    pub steps: usize,
    pub warmup_seconds: f64,
    pub seconds_per_step: f64,
    /// The process's peak resident memory (VmHWM), MiB; host memory only.
    pub peak_rss_mib: Option<f64>,
    pub last_loss: f64,
}

/// The process's peak resident set size in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The device of `t`, in its float type, recording gradients.
fn device(t: &StepTiming) -> anyhow::Result<burn::tensor::Device> {
    let mut device = t.device.device()?;
    if t.dtype != Precision::F32 {
        anyhow::ensure!(
            device.supports_dtype(t.dtype.float()),
            "{} has no {:?} tensors",
            t.device,
            t.dtype
        );
        device
            .configure(t.dtype.float())
            .map_err(|e| anyhow::anyhow!("setting {} to {:?}: {e:?}", t.device, t.dtype))?;
    }
    Ok(device.autodiff())
}

/// A batch of `t`'s size of random images and volumes, labels and groups alternating.
fn random_batch(t: &StepTiming, device: &burn::tensor::Device) -> DeviceBatch {
    let (b, size) = (t.batch, t.image_size);
    let labels: Vec<u8> = (0..b).map(|i| (i % 2) as u8).collect();
    let groups: Vec<i64> = (0..b as i64).map(|i| (i / 2) % 2).collect();
    let normal = Distribution::Normal(0.0, 1.0);
    let inputs = vec![
        ModalityInput::Pixels(Tensor::random([b, 3, size, size], normal, device)),
        ModalityInput::Pixels(Tensor::random([b, t.slices, size, size], normal, device)),
    ];
    DeviceBatch::new(inputs, &labels, vec![groups], 0, device)
}

pub fn time_steps(t: &StepTiming) -> anyhow::Result<StepReport> {
    let mut request = Request::new(DatasetKind::FairVision, "unused", &t.method);
    (request.model, request.device, request.seed) = (Some(t.model), t.device, t.seed);
    request.sets = vec![
        ("image_size".into(), t.image_size.to_string()),
        ("slices".into(), t.slices.to_string()),
        ("batch_size".into(), t.batch.to_string()),
    ];
    let config: TrainConfig = TrainConfig::resolve(&request)?;
    let device = device(t)?;
    device.seed(t.seed);
    let mut method =
        multifair_core::create(&t.method, &config.hparams).map_err(anyhow::Error::msg)?;
    let modalities = [("slo", "image"), ("oct", "volume")];
    let setup = Setup {
        modalities: 2,
        attributes: vec!["gender".into()],
        attribute: 0,
        group_counts: vec![t.batch.div_ceil(2), t.batch / 2],
        unknown: 0,
        classes: 2,
    };
    let error = |e: String| anyhow::anyhow!("{}: {e}", t.method);
    method.prepare(&setup).map_err(error)?;
    let model_config = (t.model).model(&modalities, t.image_size, t.slices, 0, 2);
    // The sizes `train` accepts, checked the same way.
    for (_, encoder) in &model_config.modalities {
        encoder
            .check_inputs(config.engine.max_tokens)
            .map_err(anyhow::Error::msg)?;
    }
    let mut model =
        multifair_core::model_for_steps(method.as_mut(), &model_config, &setup, &device)
            .map_err(error)?;
    let batch = random_batch(t, &device);
    let mut optim = Optimizers::new(&config);
    let mut step = |model: multifair_models::MultimodalModel| -> anyhow::Result<_> {
        let (model, stepped) = train_step(&config, &mut optim, 1.0, method.as_mut(), model, &batch);
        let last = stepped.losses.last().expect("a step").clone();
        let loss = last.into_scalar::<f32>() as f64;
        anyhow::ensure!(loss.is_finite(), "a non-finite loss in {:?}", t.dtype);
        Ok((model, loss))
    };
    let start = Instant::now();
    let (next, mut last_loss) = step(model).context("the warm-up step")?;
    model = next;
    let warmup_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..t.steps {
        (model, last_loss) = step(model)?;
    }
    let seconds_per_step = start.elapsed().as_secs_f64() / t.steps.max(1) as f64;
    Ok(StepReport {
        model: t.model.name().into(),
        method: t.method.clone(),
        device: t.device.to_string(),
        batch: t.batch,
        image_size: t.image_size,
        slices: t.slices,
        dtype: t.dtype,
        steps: t.steps,
        warmup_seconds,
        seconds_per_step,
        peak_rss_mib: peak_rss_mib(),
        last_loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_step_is_timed_and_its_memory_read() {
        let report = time_steps(&StepTiming {
            model: ModelSize::Tiny,
            method: "multifair_ref".into(),
            batch: 4,
            image_size: 16,
            slices: 2,
            steps: 2,
            device: DeviceSpec::Flex,
            seed: 0,
            dtype: Precision::F32,
        })
        .unwrap();
        assert!(report.seconds_per_step > 0.0 && report.last_loss.is_finite());
        assert!(report.peak_rss_mib.is_some_and(|m| m > 1.0), "{report:?}");
    }

    /// The sizes `train` refuses are refused here too, and every method times, MLA's
    /// sub-steps and UMT's teachers included.
    #[test]
    fn sizes_are_checked_as_train_checks_them_and_every_method_times() {
        let timing = |method: &str, image_size| StepTiming {
            model: ModelSize::Tiny,
            method: method.into(),
            batch: 4,
            image_size,
            slices: 2,
            steps: 1,
            device: DeviceSpec::Flex,
            seed: 0,
            dtype: Precision::F32,
        };
        let e = time_steps(&timing("erm", 17)).unwrap_err().to_string();
        assert!(
            e.contains("--set image_size=17: must be a positive multiple"),
            "{e}"
        );
        for method in ["mla", "umt", "pmr", "domain_ind", "ume"] {
            let report = time_steps(&timing(method, 16)).unwrap();
            assert!(report.last_loss.is_finite(), "{method}");
        }
    }
}
