//! Uni-modal ensemble (UME, Du et al., "On Uni-Modal Feature Learning in Supervised
//! Multi-Modal Learning", ICML 2023):
//!
//! 1. one `unimodal` run per modality, trained and selected on validation on its own (the
//!    run's phases; BalanceBenchmark's `unimodalTrainer`, GeWu-Lab/BalanceBenchmark@4c1482f
//!    balancemm/trainer/unimodal_trainer.py:90-101);
//! 2. the prediction is the softmax of the members' summed logits, no weights learned.
//!
//! No training of its own follows the phases. BalanceBenchmark has no step that combines the
//! members and the authors published no code; summing logits is the paper's rule. With three
//! or more classes it can choose another class than averaging the members' probabilities.
//!
//! Its [`Method::step`] is never called by the engine; on a multimodal model it trains each
//! modality's branch on its own head (the auxiliary one, with gradient), what the members'
//! runs do one at a time.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{Forward, finish};
use crate::hparams::{Hparams, NoHparams};
use crate::{DeviceBatch, Method, Phases, Setup, StepOutput, cross_entropy_per_sample};

pub const INFO: MethodInfo = super::plain(
    "ume",
    "uni-modal ensemble (Du et al., ICML 2023): unimodal models trained apart, their logits summed",
    |h| {
        NoHparams::from_value(h)?;
        Ok(Box::new(Ume))
    },
);

pub struct Ume;

/// The members' logits summed [B, C]; a member whose modality a sample lacks (`available`
/// [B] per member, 1 or 0) adds nothing for it.
pub fn ensemble(logits: &[Tensor<2>], available: &[Option<Tensor<1>>]) -> Tensor<2> {
    (logits.iter().zip(available))
        .map(|(z, a)| match a {
            Some(a) => {
                let [b, _] = z.dims();
                z.clone() * a.clone().reshape([b, 1])
            }
            None => z.clone(),
        })
        .reduce(|a, b| a + b)
        .expect("at least one member")
}

impl Method for Ume {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_modalities(INFO.name)
    }

    fn phases(&self) -> Phases {
        Phases::Ensemble
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let tokens = model.encode(batch.inputs.clone());
        let members = model.unimodal_logits(&tokens);
        let objective = batch.aux_loss(&members);
        let available: Vec<_> = (0..members.len()).map(|j| batch.available_of(j)).collect();
        let summed = ensemble(&members, &available).detach();
        let forward = Forward {
            per_sample: cross_entropy_per_sample(summed, batch.onehot.clone()),
            aux_loss: objective.zeros_like(),
            aux_logits: members,
        };
        finish(model, forward, objective, BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// Three classes, z_a = [5, 4, 0], z_v = [0, 0, 4.6]: the summed logits [5, 4, 4.6] pick
    /// class 0, where averaging the probabilities would pick class 2 — UME sums logits.
    #[test]
    fn members_logits_are_summed() {
        let device = Device::flex();
        let za = Tensor::<2>::from_floats([[5.0, 4.0, 0.0]], &device);
        let zv = Tensor::<2>::from_floats([[0.0, 0.0, 4.6]], &device);
        let sum: Vec<f32> = ensemble(&[za.clone(), zv.clone()], &[None, None])
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(sum, vec![5.0, 4.0, 4.6]);
        let mean_probs: Vec<f32> = ((burn::tensor::activation::softmax(za, 1)
            + burn::tensor::activation::softmax(zv.clone(), 1))
            / 2.0)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert!(mean_probs[2] > mean_probs[0]);
        // A member without its modality adds nothing.
        let missing = Some(Tensor::<1>::from_floats([0.0], &device));
        let only_a: Vec<f32> = ensemble(&[zv.clone(), zv], &[None, missing])
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(only_a, vec![0.0, 0.0, 4.6]);
    }
}
