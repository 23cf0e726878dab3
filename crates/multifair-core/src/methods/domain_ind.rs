//! Domain-independent training (Wang et al., CVPR 2020), as MEDFAIR's DomainInd
//! (ys-zong/MEDFAIR@2fae424 models/DomainInd/DomainInd.py:17-37, parse_args.py:192-193):
//!
//! 1. the head's last layer has C outputs for each of the K groups of the run's attribute,
//!    group-major (group g owns outputs g C .. (g + 1) C);
//! 2. a sample's loss is the cross-entropy of its own group's C logits, averaged over the
//!    batch (MEDFAIR: binary cross-entropy of its group's one logit — the same model for two
//!    classes, with that logit z_1 - z_0);
//! 3. a prediction sums the K groups' logits and takes the softmax, without the sample's group
//!    (MEDFAIR's `inference_sum_prob`, which despite its name sums logits, then the sigmoid).
//!
//! Samples of unknown group (-1) train no head (weight 0); every sample is scored.

use std::collections::BTreeMap;

use burn::tensor::{Int, Tensor};
use multifair_models::{MultimodalModel, Readout};

use super::MethodInfo;
use super::erm::{Forward, finish};
use crate::hparams::{Hparams, NoHparams};
use crate::{DeviceBatch, Method, Setup, StepOutput, cross_entropy_per_sample};

pub const INFO: MethodInfo = super::plain(
    "domain_ind",
    "domain-independent heads (MEDFAIR's DomainInd): one head per group, predictions sum them",
    |h| {
        NoHparams::from_value(h)?;
        Ok(Box::new(DomainInd))
    },
);

pub struct DomainInd;

/// Each sample's own group's logits [B, C] from every group's [B, K, C]; an unknown group
/// (-1) reads group 0's (its loss weight is 0).
pub fn own_group_logits(logits: Tensor<3>, groups: &Tensor<1, Int>) -> Tensor<2> {
    let [b, _, c] = logits.dims();
    let index = groups
        .clone()
        .clamp_min(0)
        .reshape([b, 1, 1])
        .repeat_dim(2, c);
    logits.gather(1, index).reshape([b, c])
}

/// The mean of per-sample losses [B] over samples of known group.
fn mean_over_known(losses: Tensor<1>, groups: &Tensor<1, Int>) -> Tensor<1> {
    let known = groups.clone().greater_equal_elem(0).float();
    (losses * known.clone()).sum() / known.sum().clamp_min(1.0)
}

impl Method for DomainInd {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_groups(INFO.name)
    }

    fn readout(&self, setup: &Setup) -> Readout {
        Readout::Domains(setup.group_counts.len())
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let tokens = model.encode(batch.inputs.clone());
        let all = model.domain_logits(&tokens, Some(&batch.group_ids), batch.available.as_ref());
        let [b, _, c] = all.dims();
        let own = own_group_logits(all.clone(), &batch.group_ids);
        let objective = mean_over_known(
            cross_entropy_per_sample(own, batch.onehot.clone()),
            &batch.group_ids,
        );
        // The reported loss is the prediction's, as every method's.
        let predicted = all.detach().sum_dim(1).reshape([b, c]);
        let aux_logits = model.aux_logits(&tokens);
        let forward = Forward {
            per_sample: cross_entropy_per_sample(predicted, batch.onehot.clone()),
            aux_loss: batch.aux_loss(&aux_logits),
            aux_logits,
        };
        finish(model, forward, objective, BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::activation::softmax;

    /// MEDFAIR's fixture in two-class form (logit z_1 - z_0): sample A of group 0, label 1, its
    /// head's logit 2; sample B of group 1, label 0, its head's logit 1.5. Loss = mean of
    /// softplus(-2) and softplus(1.5) = 0.9141706; A's prediction sums its heads' logits
    /// 2 + (-1) = 1 -> sigmoid(1) = 0.7310586.
    #[test]
    fn own_head_loss_and_summed_prediction_by_hand() {
        let device = Device::flex();
        let logits = Tensor::<3>::from_floats(
            [[[0.0, 2.0], [0.0, -1.0]], [[0.0, 0.5], [0.0, 1.5]]],
            &device,
        );
        let groups = Tensor::<1, Int>::from_ints([0, 1], &device);
        let onehot = Tensor::<2>::from_floats([[0.0, 1.0], [1.0, 0.0]], &device);
        let own = own_group_logits(logits.clone(), &groups);
        let loss = mean_over_known(cross_entropy_per_sample(own, onehot), &groups);
        assert!((loss.into_scalar::<f32>() - 0.914_170_6).abs() < 1e-6);
        let predicted = softmax(logits.sum_dim(1).reshape([2, 2]), 1);
        let p: Vec<f32> = predicted.into_data().try_to_vec().unwrap();
        assert!((p[1] - 0.731_058_6).abs() < 1e-6 && (p[3] - 0.880_797_1).abs() < 1e-6);
        // An unknown group trains nothing: the mean is over the known samples only.
        let groups = Tensor::<1, Int>::from_ints([0, -1], &device);
        let losses = Tensor::<1>::from_floats([0.5, 9.0], &device);
        assert_eq!(mean_over_known(losses, &groups).into_scalar::<f32>(), 0.5);
    }
}
