//! FIS, fair identity scaling (Luo et al., "FairVision", ICLR 2024): per-sample loss weights
//! w = softmax((c l_i + (1 - c) d_{g(i)}) / T) over the batch, from each sample's loss l_i and
//! its group's Sinkhorn distance d_g between the group's and the batch's loss distributions
//! (`crate::sinkhorn`, blur 0.1), so that samples with high losses and groups whose losses sit
//! apart from the batch weigh more. Weights carry no gradient. A sample of unknown group
//! (-1) has no group term (d = 0).

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range};
use crate::sinkhorn::sinkhorn_divergence;
use crate::{DeviceBatch, Method, StepOutput, hparams, to_host};

hparams! {
    pub struct FisHparams {
        /// Weight of the sample's loss against its group's distance.
        c as "fis_c": f64 = 0.5, Range::Uniform(0.0, 1.0);
        /// Softmax temperature.
        t as "fis_t": f64 = 1.0, Range::LogUniform(0.1, 10.0);
        /// Sinkhorn blur.
        blur as "fis_blur": f64 = 0.1, Range::LogUniform(0.01, 1.0);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "fis",
    about: "FIS (Luo et al., ICLR 2024): loss weights from losses and group Sinkhorn distances",
    hparams: FisHparams::HPARAMS,
    defaults: FisHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        let h = FisHparams::from_value(h)?;
        Ok(Box::new(Fis {
            c: h.c,
            t: h.t,
            blur: h.blur,
        }))
    },
};

pub struct Fis {
    c: f64,
    t: f64,
    blur: f64,
}

impl Fis {
    /// The weights (sum 1) and each group's distance, from the batch's losses and codes.
    pub fn weights(&self, losses: &[f64], groups: &[i64]) -> (Vec<f64>, BTreeMap<i64, f64>) {
        let mut distance = BTreeMap::new();
        for &g in groups.iter().filter(|&&g| g >= 0) {
            distance.entry(g).or_insert_with(|| {
                let members: Vec<f64> = losses
                    .iter()
                    .zip(groups)
                    .filter(|&(_, &c)| c == g)
                    .map(|(&l, _)| l)
                    .collect();
                sinkhorn_divergence(&members, losses, self.blur)
            });
        }
        let scores: Vec<f64> = losses
            .iter()
            .zip(groups)
            .map(|(&l, g)| {
                (self.c * l + (1.0 - self.c) * distance.get(g).copied().unwrap_or(0.0)) / self.t
            })
            .collect();
        let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        (exp.iter().map(|e| e / total).collect(), distance)
    }
}

impl Method for Fis {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        let losses = to_host(f.per_sample.clone().detach()).expect("losses");
        let (weights, distance) = self.weights(&losses, &batch.groups);
        let w: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
        let device = f.per_sample.device();
        let objective =
            (f.per_sample.clone() * Tensor::<1>::from_floats(w.as_slice(), &device)).sum();
        let stats = distance
            .into_iter()
            .map(|(g, d)| (format!("sinkhorn_group_{g}"), d))
            .collect();
        finish(model, f, objective, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_hand() {
        // One group holding the whole batch: its distance to the batch is 0, so the weights are
        // softmax(c l / T): l = [0, ln 4] with c = 0.5 gives e^0 : e^(ln 2) = 1 : 2.
        let fis = Fis {
            c: 0.5,
            t: 1.0,
            blur: 0.1,
        };
        let (w, d) = fis.weights(&[0.0, 4f64.ln()], &[0, 0]);
        assert!(d[&0].abs() < 1e-9);
        assert!((w[0] - 1.0 / 3.0).abs() < 1e-9 && (w[1] - 2.0 / 3.0).abs() < 1e-9);
        // Two single-sample groups with losses 0 and 1 and an unknown sample at 0.5: the batch
        // {0, 0.5, 1} is symmetric about 0.5, so both groups sit at the same distance from it
        // and only the loss term separates them; the unknown sample has no group term.
        let (w, d) = fis.weights(&[0.0, 1.0, 0.5], &[0, 1, -1]);
        assert!((d[&0] - d[&1]).abs() < 1e-9 && d[&0] > 0.0);
        let s = [0.5 * d[&0], 0.5 + 0.5 * d[&1], 0.25];
        let z: f64 = s.iter().map(|v| v.exp()).sum();
        for (got, v) in w.iter().zip(s) {
            assert!((got - v.exp() / z).abs() < 1e-9);
        }
    }
}
