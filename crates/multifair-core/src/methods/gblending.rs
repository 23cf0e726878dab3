//! Gradient blending (G-Blend, Wang, Tran & Feiszli, "What Makes Training Multi-Modal
//! Classification Networks Hard?", CVPR 2020), online, with BalanceBenchmark's weight formula
//! (GeWu-Lab/BalanceBenchmark@4c1482f balancemm/trainer/GBlending_trainer.py:292-376;
//! configs/trainer_config.yaml:34-39):
//!
//! 1. a share of the training split (`gblend_holdout`, MultiBench's `v_rate` 0.08) is held out:
//!    never trained on, it measures generalisation;
//! 2. every head k — each modality's unimodal head (its auxiliary head, fed with gradient) and
//!    the fused head — has a training loss (the mean of its cross-entropy over the epoch's
//!    steps) and a held-out loss after each epoch;
//! 3. over each super-epoch of `gblend_super_epoch` epochs, from its first epoch's losses
//!    (pre) to its last's (now): g = V_now - V_pre, o = (V_now - T_now) - (V_pre - T_pre),
//!    w_k = |g / o^2|, normalised to sum to 1 (the overfitting-to-generalisation ratio);
//! 4. the loss is sum_k w_k CE_k, uniform weights during the first super-epoch.
//!
//! BalanceBenchmark estimates each w_k by training a copy of the model per head for a
//! super-epoch (M + 1 extra super-epochs every super-epoch) on its *test* split as "validation";
//! here the heads' own losses over the run's previous super-epoch, on a split held out of
//! training, give the estimate (docs/fidelity.md). A head whose o is 0 or whose weight is not
//! finite keeps the previous weights (the original divides by zero).

use std::collections::BTreeMap;

use multifair_models::MultimodalModel;
use serde::{Deserialize, Serialize};

use super::MethodInfo;
use super::erm::{Forward, finish};
use crate::hparams::{Hparams, Range, Valid};
use crate::{
    DeviceBatch, EpochEnd, Method, Setup, StepOutput, cross_entropy_per_sample, hparams,
    read_state, to_host, write_state,
};

hparams! {
    pub struct GblendHparams {
        /// Epochs between weight estimates (BalanceBenchmark's `super_epoch`).
        super_epoch as "gblend_super_epoch": usize = 10, Range::Int(2, 10), Valid::Closed(2.0, 1e6);
        /// Share of the training split held out for the estimate.
        holdout as "gblend_holdout": f64 = 0.08, Range::Fixed, Valid::Closed(0.01, 0.5);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "gblending",
    about: "gradient blending (Wang et al., CVPR 2020): head losses weighted by their overfitting-to-generalisation ratio",
    hparams: GblendHparams::HPARAMS,
    defaults: GblendHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        Ok(Box::new(Gblending {
            h: GblendHparams::from_value(h)?,
            state: GblendState::default(),
            sums: Vec::new(),
        }))
    },
};

/// A head's (training, held-out) losses after an epoch, per head (modalities, then fused).
type Losses = Vec<(f64, f64)>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GblendState {
    /// The current weights, modalities then fused.
    pub weights: Vec<f64>,
    /// The losses after the current super-epoch's first epoch.
    pub pre: Option<Losses>,
}

pub struct Gblending {
    h: GblendHparams,
    state: GblendState,
    /// This epoch's summed training losses per head and the steps.
    sums: Vec<(f64, usize)>,
}

/// Step 3: the normalised weights from each head's losses at the super-epoch's start and end;
/// `None` when some weight is not finite.
pub fn blend_weights(pre: &Losses, now: &Losses) -> Option<Vec<f64>> {
    let raw: Vec<f64> = (pre.iter().zip(now))
        .map(|(&(t0, v0), &(t1, v1))| {
            let g = v1 - v0;
            let o = (v1 - t1) - (v0 - t0);
            (g / (o * o)).abs()
        })
        .collect();
    let total: f64 = raw.iter().sum();
    (raw.iter().all(|w| w.is_finite()) && total > 0.0)
        .then(|| raw.iter().map(|w| w / total).collect())
}

impl Method for Gblending {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_modalities(INFO.name)?;
        if self.state.weights.is_empty() {
            let heads = setup.modalities + 1;
            self.state.weights = vec![1.0 / heads as f64; heads];
        }
        Ok(())
    }

    fn holdout(&self) -> f64 {
        self.h.holdout
    }

    fn start_epoch(&mut self, _epoch: usize) {
        self.sums = vec![(0.0, 0); self.state.weights.len()];
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let tokens = model.encode(batch.inputs.clone());
        let fused = model.fuse(&tokens, Some(&batch.group_ids), batch.available.as_ref());
        let per_sample = cross_entropy_per_sample(fused, batch.onehot.clone());
        let heads = model.unimodal_logits(&tokens);
        let mut losses: Vec<_> = (heads.iter().enumerate())
            .map(|(j, z)| batch.aux_cross_entropy(j, z.clone()))
            .collect();
        losses.push(per_sample.clone().mean());
        let w = &self.state.weights;
        let objective = (losses.iter().zip(w))
            .map(|(l, w)| l.clone().mul_scalar(*w))
            .reduce(|a, b| a + b)
            .expect("at least one head");
        let values = to_host(burn::tensor::Tensor::cat(
            losses.iter().map(|l| l.clone().detach()).collect(),
            0,
        ))
        .expect("G-Blend's head losses");
        for (sum, v) in self.sums.iter_mut().zip(values) {
            (sum.0, sum.1) = (sum.0 + v, sum.1 + 1);
        }
        let forward = Forward {
            per_sample,
            aux_loss: objective.zeros_like(),
            aux_logits: heads,
        };
        let stats = (w.iter().enumerate())
            .map(|(k, w)| (format!("blend_{k}"), *w))
            .collect::<BTreeMap<_, _>>();
        finish(model, forward, objective, stats)
    }

    fn end_epoch(&mut self, end: &EpochEnd) -> bool {
        let Some(held_out) = &end.holdout else {
            return false;
        };
        // The engine reports modalities' heads then the fused one, as the weights are ordered.
        let losses: Losses = (self.sums.iter().zip(held_out))
            .map(|(&(sum, n), &v)| (sum / n.max(1) as f64, v))
            .collect();
        let s = self.h.super_epoch;
        match end.epoch % s {
            0 => self.state.pre = Some(losses),
            r if r == s - 1 => {
                if let Some(w) = self
                    .state
                    .pre
                    .take()
                    .and_then(|pre| blend_weights(&pre, &losses))
                {
                    self.state.weights = w;
                }
            }
            _ => {}
        }
        false
    }

    fn state(&self) -> serde_json::Value {
        write_state(&self.state)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.state = read_state(state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BalanceBenchmark's formula on worked losses (train, held-out) before and after a
    /// super-epoch: audio (1.5, 1.6) -> (1.0, 1.4), visual (1.8, 1.85) -> (1.6, 1.7), fused
    /// (1.2, 1.5) -> (0.5, 1.3): raw weights 2.2222, 60, 0.8, normalised 0.035261, 0.952045,
    /// 0.012694.
    #[test]
    fn weights_by_hand() {
        let pre = vec![(1.5, 1.6), (1.8, 1.85), (1.2, 1.5)];
        let now = vec![(1.0, 1.4), (1.6, 1.7), (0.5, 1.3)];
        let w = blend_weights(&pre, &now).unwrap();
        for (g, want) in w.iter().zip([0.035_261, 0.952_045, 0.012_694]) {
            assert!((g - want).abs() < 1e-6, "{w:?}");
        }
        // o = 0 (no change in the gap) gives no weights.
        assert_eq!(blend_weights(&vec![(1.0, 2.0)], &vec![(0.5, 1.5)]), None);
    }
}
