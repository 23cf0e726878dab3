//! Multimodal representation learning by alternating unimodal adaptation (MLA, Zhang et al.,
//! CVPR 2024), as BalanceBenchmark's `MLATrainer` (GeWu-Lab/BalanceBenchmark@4c1482f
//! balancemm/trainer/MLA_trainer.py:33-53, 129-179; balancemm/models/avclassify_model.py:650-700):
//!
//! 1. each batch takes one optimizer step per modality, in order: modality m's token alone
//!    through the shared head (here the fusion head; the model has no fusion transformer
//!    layer), its cross-entropy, backward;
//! 2. before each step but the run's first, the projector P (p x p, the identity at the start,
//!    shared across modalities, never reset) takes the batch's mean head input r:
//!    k = P r^T, P <- P - k k^T / (alpha + r k), P <- P / ||P||_F, with
//!    alpha = 0.1^(1 + batch / batches); then the head's last weight's gradient G gets
//!    G + G P^T (bias untouched);
//! 3. a prediction weighs each modality's logits by softmax over modalities of minus their
//!    entropy, per sample: sum_m softmax(-H)_m z_m.
//!
//! The authors' repository (Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation)
//! tests for a parameter name its head never has, so its modification never runs, and weighs
//! whole batches; BalanceBenchmark's is the working rule. A parameter without a gradient in a
//! step keeps its optimizer state here (torch >= 2's `set_to_none`), where torch 1.12's zeroed
//! gradients still moved the other encoder through AdamW's moments.

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use multifair_models::{MultimodalModel, Readout};
use serde::{Deserialize, Serialize};

use super::MethodInfo;
use crate::hparams::{Hparams, NoHparams};
use crate::{
    DeviceBatch, Method, Setup, StepOutput, cross_entropy_per_sample, read_state, write_state,
};

pub const INFO: MethodInfo = super::plain(
    "mla",
    "MLA (Zhang et al., CVPR 2024): alternating unimodal steps through a shared head, gradient modification, entropy-weighted fusion",
    |h| {
        NoHparams::from_value(h)?;
        Ok(Box::new(Mla::default()))
    },
);

/// The projector and the steps taken, carried across epochs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MlaState {
    /// P, row-major (empty until the first step).
    pub projector: Vec<f32>,
    pub steps: u64,
}

#[derive(Default)]
pub struct Mla {
    state: MlaState,
    modalities: usize,
    next: usize,
    batch: (usize, usize),
}

/// Step 2's update of P by the mean head input `r` [1, p].
pub fn update_projector(p: Tensor<2>, r: Tensor<2>, alpha: f64) -> Tensor<2> {
    let k = p.clone().matmul(r.clone().transpose()); // [p, 1]
    let denominator = r.matmul(k.clone()).add_scalar(alpha); // [1, 1]
    let p = p - k.clone().matmul(k.transpose()) / denominator;
    let norm = p.clone().powf_scalar(2.0).sum().sqrt().reshape([1, 1]);
    p / norm
}

/// G + G P^T for burn's [in, out] weight gradient (torch's [out, in] transposed): G + P G.
pub fn modify_gradient(g: Tensor<2>, p: Tensor<2>) -> Tensor<2> {
    g.clone() + p.matmul(g)
}

impl Mla {
    fn projector(&self, dim: usize, device: &Device) -> Tensor<2> {
        match self.state.projector.is_empty() {
            true => Tensor::eye(dim, device),
            false => Tensor::from_data(
                TensorData::new(self.state.projector.clone(), [dim, dim]),
                device,
            ),
        }
    }
}

impl Method for Mla {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_modalities(INFO.name)?;
        self.modalities = setup.modalities;
        Ok(())
    }

    fn readout(&self, _setup: &Setup) -> Readout {
        Readout::Alone
    }

    fn substeps(&self) -> usize {
        self.modalities.max(1)
    }

    fn start_batch(&mut self, index: usize, batches: usize) {
        (self.batch, self.next) = ((index, batches.max(1)), 0);
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let m = model.encoders.len();
        let j = self.next % m;
        self.next = (j + 1) % m;
        let token = model.encode_one(j, batch.inputs[j].clone());
        let hidden = model.fused_hidden(std::slice::from_ref(&token), Some(&batch.group_ids), None);
        let logits = model.head.classify(hidden.clone());
        let objective =
            batch.mean_where_available(j, cross_entropy_per_sample(logits, batch.onehot.clone()));
        let aux = batch.aux_cross_entropy(j, model.aux[j].forward(token.detach()));
        let mut grads = GradientsParams::from_grads((objective.clone() + aux).backward(), model);
        let mut stats = BTreeMap::new();
        if self.state.steps > 0 {
            let (index, batches) = self.batch;
            let alpha = 0.1f64.powf(1.0 + index as f64 / batches.max(1) as f64);
            let [_, p] = hidden.dims();
            let r = hidden.detach().inner().mean_dim(0);
            let projector = update_projector(self.projector(p, &r.device()), r, alpha);
            let id = model.head.last_layer().weight.id;
            if let Some(g) = grads.remove::<2>(id) {
                grads.register::<2>(id, modify_gradient(g, projector.clone()));
            }
            self.state.projector = projector
                .into_data()
                .convert::<f32>()
                .try_to_vec()
                .expect("P");
            stats.insert("alpha".into(), alpha);
        }
        self.state.steps += 1;
        StepOutput {
            grads,
            loss: objective.detach(),
            stats,
            encoder_steps: None,
        }
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

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    fn close(got: Vec<f32>, want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }

    /// P = I (d 2), r = [1, 0] at batch 0 (alpha 0.1): P = diag(0.0905357, 0.9958932), and a
    /// head gradient [[1, 1]] (torch's [out, in]) becomes [1.0905357, 1.9958932]; then
    /// r = [0, 1] at batch 5 of 10 (alpha 0.1^1.5) gives diag(0.9471947, 0.3206590).
    #[test]
    fn projector_and_gradient_by_hand() {
        let device = Device::flex();
        let p = update_projector(
            Tensor::eye(2, &device),
            Tensor::from_floats([[1.0, 0.0]], &device),
            0.1,
        );
        close(values(p.clone()), &[0.090_535_7, 0.0, 0.0, 0.995_893_2]);
        let g = modify_gradient(Tensor::from_floats([[1.0], [1.0]], &device), p.clone());
        close(values(g), &[1.090_535_7, 1.995_893_2]);
        let p = update_projector(
            p,
            Tensor::from_floats([[0.0, 1.0]], &device),
            0.1f64.powf(1.5),
        );
        close(values(p), &[0.947_194_7, 0.0, 0.0, 0.320_659_0]);
    }
}
