//! Fusion ERM: cross-entropy of the fused prediction; the auxiliary heads learn on detached
//! features beside it (they report each modality's progress and never reach the encoders).

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use crate::hparams::{Hparams, NoHparams};
use crate::{DeviceBatch, Method, StepOutput, cross_entropy_per_sample};

pub const INFO: MethodInfo =
    super::plain("erm", "fusion model, empirical risk minimisation", |h| {
        NoHparams::from_value(h)?;
        Ok(Box::new(Erm))
    });

pub struct Erm;

/// One forward pass: the fused per-sample losses, the auxiliary logits and the sum of the
/// auxiliary heads' losses.
pub(crate) struct Forward {
    pub per_sample: Tensor<1>,
    pub aux_logits: Vec<Tensor<2>>,
    pub aux_loss: Tensor<1>,
}

pub(crate) fn forward(model: &MultimodalModel, batch: &DeviceBatch) -> Forward {
    forward_tokens(model, batch, &model.encode(batch.inputs.clone()))
}

/// [`forward`] from the modality tokens.
pub(crate) fn forward_tokens(
    model: &MultimodalModel,
    batch: &DeviceBatch,
    tokens: &[Tensor<2>],
) -> Forward {
    let fused_logits = model.fuse(tokens, Some(&batch.group_ids), batch.available.as_ref());
    let per_sample = cross_entropy_per_sample(fused_logits.clone(), batch.onehot.clone());
    let aux_logits = model.aux_logits(tokens);
    let aux_loss = batch.aux_loss(&aux_logits);
    Forward {
        per_sample,
        aux_logits,
        aux_loss,
    }
}

/// Backpropagates `objective + aux_loss` once; the reported loss is the plain fused
/// cross-entropy, so that every method's training loss means the same.
pub(crate) fn finish(
    model: &MultimodalModel,
    forward: Forward,
    objective: Tensor<1>,
    stats: BTreeMap<String, f64>,
) -> StepOutput {
    let loss = forward.per_sample.mean();
    let grads = GradientsParams::from_grads((objective + forward.aux_loss).backward(), model);
    StepOutput {
        encoder_steps: None,
        grads,
        loss: loss.detach(),
        stats,
    }
}

/// Fused and auxiliary losses of one batch, backpropagated once.
pub(crate) fn erm_step(model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
    let f = forward(model, batch);
    let objective = f.per_sample.clone().mean();
    finish(model, f, objective, BTreeMap::new())
}

impl Method for Erm {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        erm_step(model, batch)
    }
}
