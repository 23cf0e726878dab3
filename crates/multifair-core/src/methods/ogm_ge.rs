//! OGM-GE (Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation",
//! CVPR 2022). Each modality's score s_m is the summed softmax probability of the true class
//! under its own classifier — here its auxiliary head (our fusion is a transformer, not the
//! paper's concatenation, whose split head this replaces). With ratio r_m = s_m / mean of the
//! others' scores (for M = 2 the paper's ratio), a dominant modality (r_m > 1) has its encoder
//! gradient multiplied by k_m = 1 - tanh(alpha r_m) (>= 0 since tanh < 1), the others by 1; then
//! generalisation enhancement adds Gaussian noise with each gradient tensor's own standard
//! deviation to every encoder's gradient. Active from epoch `ogm_start` to `ogm_end`
//! (inclusive, 0-based), as in the paper's code.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::softmax;
use burn::tensor::{Distribution, Tensor};
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range, Valid};
use crate::{DeviceBatch, Method, Setup, StepOutput, hparams, to_host};

hparams! {
    pub struct OgmGeHparams {
        /// Strength of the slow-down of the dominant modality, k = 1 - tanh(alpha ratio).
        alpha as "ogm_alpha": f64 = 0.1, Range::LogUniform(0.01, 1.0), Valid::NonNegative;
        /// First epoch of modulation (0-based).
        start as "ogm_start": usize = 0, Range::Fixed;
        /// Last epoch of modulation (inclusive).
        end as "ogm_end": usize = 50, Range::Fixed;
        /// Generalisation enhancement: Gaussian noise on the encoder gradients (false: OGM).
        noise as "ogm_noise": bool = true, Range::Choice(&["true", "false"]);
        /// Which gradients are modulated: all (every parameter of the encoder and its
        /// projection, our adaptation to ViT encoders) or conv (4-D ones only, the original's
        /// rule for its ResNets, which on a ViT leaves the patch embedding alone modulated).
        params as "ogm_params": Params = Params::All, Range::Fixed;
    }
}

/// The gradients OGM-GE modulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Params {
    All,
    Conv,
}

pub const INFO: MethodInfo = MethodInfo {
    name: "ogm_ge",
    about: "OGM-GE (Peng et al., CVPR 2022): slows the dominant encoder, adds gradient noise",
    hparams: OgmGeHparams::HPARAMS,
    defaults: OgmGeHparams::defaults,
    // The paper's code: SGD 1e-3, momentum 0.9, weight decay 1e-4, StepLR(70, 0.1).
    engine_defaults: &[
        ("optimizer", "sgd"),
        ("lr", "1e-3"),
        ("momentum", "0.9"),
        ("weight_decay", "1e-4"),
        ("aux_weight_decay", "1e-4"),
        ("schedule", "step"),
        ("step_size", "70"),
        ("gamma", "0.1"),
        ("warmup_epochs", "0"),
    ],
    presets: &[],
    build: |h| {
        let h = OgmGeHparams::from_value(h)?;
        Ok(Box::new(OgmGe {
            alpha: h.alpha,
            start: h.start,
            end: h.end,
            noise: h.noise,
            params: h.params,
            epoch: 0,
        }))
    },
};

pub struct OgmGe {
    alpha: f64,
    start: usize,
    end: usize,
    noise: bool,
    params: Params,
    epoch: usize,
}

/// The modulation coefficients k_m from the modalities' scores.
pub fn coefficients(scores: &[f64], alpha: f64) -> Vec<f64> {
    let m = scores.len();
    let total: f64 = scores.iter().sum();
    scores
        .iter()
        .map(|&s| {
            let others = (total - s) / (m - 1) as f64;
            let ratio = s / others.max(1e-12);
            if ratio > 1.0 {
                (1.0 - (alpha * ratio).tanh()).max(0.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// Multiplies each visited gradient by `k` and, with `noise`, adds N(0, std(g)^2 + 1e-8) noise;
/// with `Params::Conv`, 4-D gradients only.
struct Modulate<'a> {
    grads: &'a mut GradientsParams,
    k: f64,
    noise: bool,
    params: Params,
}

impl ModuleVisitor for Modulate<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.params == Params::Conv && D != 4 {
            return;
        }
        let Some(g) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let mut out = g.clone().mul_scalar(self.k);
        let n = g.shape().num_elements();
        if self.noise && n > 1 {
            // torch's Tensor.std(): unbiased.
            let std = g.clone().reshape([n]).var(0).sqrt().add_scalar(1e-8);
            let unit = Tensor::<D>::random(g.shape(), Distribution::Normal(0.0, 1.0), &g.device());
            out = out + unit * std.reshape([1; D]);
        }
        self.grads.register::<D>(param.id, out);
    }
}

impl Method for OgmGe {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_modalities(INFO.name)
    }

    fn start_epoch(&mut self, epoch: usize) {
        self.epoch = epoch;
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        // With missing modalities, a head's score is its mean over the samples that have the
        // modality, scaled to the batch (so that a missing input counts neither way).
        let [b, _] = batch.onehot.dims();
        let scores: Vec<Tensor<1>> = f
            .aux_logits
            .iter()
            .enumerate()
            .map(|(j, u)| {
                let p_true = softmax(u.clone().detach(), 1) * batch.onehot.clone();
                match batch.available {
                    None => p_true.sum(),
                    Some(_) => batch
                        .mean_where_available(j, p_true.sum_dim(1).reshape([b]))
                        .mul_scalar(b as f64),
                }
            })
            .collect();
        let scores = to_host(Tensor::cat(scores, 0)).expect("scores");
        let k = coefficients(&scores, self.alpha);
        let objective = f.per_sample.clone().mean();
        let active = (self.start..=self.end).contains(&self.epoch);
        let mut out = finish(model, f, objective, BTreeMap::new());
        if active {
            for (m, &k) in k.iter().enumerate() {
                let mut visitor = Modulate {
                    grads: &mut out.grads,
                    k,
                    noise: self.noise,
                    params: self.params,
                };
                model.encoders[m].visit(&mut visitor);
                if self.params == Params::All {
                    model.projections[m].visit(&mut visitor);
                }
            }
        }
        for (m, (s, k)) in scores.iter().zip(&k).enumerate() {
            out.stats.insert(format!("score_{m}"), *s);
            out.stats
                .insert(crate::stats::coeff(m), if active { *k } else { 1.0 });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_by_hand() {
        // M = 2, s = [30, 10]: ratio 3 for the first, k = 1 - tanh(0.3) = 0.708687...
        let k = coefficients(&[30.0, 10.0], 0.1);
        assert!((k[0] - (1.0 - 0.3f64.tanh())).abs() < 1e-12 && k[1] == 1.0);
        assert!((k[0] - 0.708_687_0).abs() < 1e-6);
        // M = 3, s = [30, 10, 20]: ratios 30/15 = 2, 10/25 = 0.4, 20/20 = 1 (not dominant).
        let k = coefficients(&[30.0, 10.0, 20.0], 0.5);
        assert!((k[0] - (1.0 - 1f64.tanh())).abs() < 1e-12);
        assert_eq!(&k[1..], &[1.0, 1.0]);
    }
}
