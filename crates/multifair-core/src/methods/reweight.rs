//! Group reweighting: each sample's loss weighted by the inverse of its group's training
//! frequency, w_g = N / (K n_g) (so that every group weighs the same in expectation), or, with
//! `reweight_mode=sample`, batches that draw every group equally often and the plain loss.
//! Samples of unknown group (-1) keep weight 1 (and are not drawn under balanced sampling).

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range};
use crate::{Cells, DeviceBatch, Method, Sampling, Setup, StepOutput, hparams};

/// How groups are balanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReweightMode {
    /// Inverse group-frequency loss weights.
    Loss,
    /// Batches that draw every group equally often.
    Sample,
}

hparams! {
    pub struct ReweightHparams {
        /// loss (inverse-frequency weights) or sample (balanced group sampling).
        mode as "reweight_mode": ReweightMode = ReweightMode::Loss, Range::Choice(&["loss", "sample"]);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "reweight",
    about: "group reweighting: inverse group-frequency loss weights or balanced group sampling",
    hparams: ReweightHparams::HPARAMS,
    defaults: ReweightHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        Ok(Box::new(Reweight {
            sample: ReweightHparams::from_value(h)?.mode == ReweightMode::Sample,
            weights: Vec::new(),
        }))
    },
};

pub struct Reweight {
    sample: bool,
    /// Loss weight per group code.
    weights: Vec<f64>,
}

/// w_g = N / (K n_g) over the known samples; a group absent from training gets weight 0.
pub fn inverse_frequency(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let k = counts.len() as f64;
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                n as f64 / (k * c as f64)
            }
        })
        .collect()
}

impl Method for Reweight {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_groups(INFO.name)?;
        self.weights = inverse_frequency(&setup.group_counts);
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        match self.sample {
            true => Sampling::Balanced(Cells::Group),
            false => Sampling::Shuffle,
        }
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        if self.sample {
            let objective = f.per_sample.clone().mean();
            return finish(model, f, objective, BTreeMap::new());
        }
        let w: Vec<f32> = batch
            .groups
            .iter()
            .map(|&g| {
                usize::try_from(g)
                    .ok()
                    .and_then(|g| self.weights.get(g))
                    .map_or(1.0, |&w| w as f32)
            })
            .collect();
        let n = w.len() as f64;
        let device = f.per_sample.device();
        let objective = (f.per_sample.clone() * Tensor::<1>::from_floats(w.as_slice(), &device))
            .sum()
            .div_scalar(n);
        finish(model, f, objective, BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_frequency_by_hand() {
        // 80 / 15 / 5 of 100: w = 100 / (3 n_g).
        let w = inverse_frequency(&[80, 15, 5]);
        for (got, want) in w.iter().zip([100.0 / 240.0, 100.0 / 45.0, 100.0 / 15.0]) {
            assert!((got - want).abs() < 1e-12);
        }
        // Weighted, every group contributes the same total: n_g w_g = N / K.
        assert!(
            w.iter()
                .zip([80.0, 15.0, 5.0])
                .all(|(w, n)| (w * n - 100.0 / 3.0).abs() < 1e-9)
        );
    }
}
