//! Fusion ERM: cross-entropy of the fused prediction; the auxiliary heads learn on detached
//! features beside it (they report each modality's progress and never reach the encoders).

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use crate::{DeviceBatch, Method, Params, StepOutput, cross_entropy};

pub const INFO: MethodInfo = MethodInfo {
    name: "erm",
    about: "fusion model, empirical risk minimisation",
    keys: &[],
    defaults: &[],
    build: |_: &Params| Ok(Box::new(Erm)),
};

pub struct Erm;

/// Fused and auxiliary losses of one batch, backpropagated once.
pub(crate) fn erm_step(model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
    let tokens = model.encode(batch.inputs.clone());
    let fused = cross_entropy(model.fuse(&tokens), batch.onehot.clone());
    let aux = model
        .aux_logits(&tokens)
        .into_iter()
        .map(|logits| cross_entropy(logits, batch.onehot.clone()))
        .reduce(|a, b| a + b)
        .expect("at least one modality");
    let total = fused.clone() + aux;
    let grads = GradientsParams::from_grads(total.backward(), model);
    let loss = fused.into_scalar::<f32>() as f64;
    StepOutput {
        grads,
        loss,
        stats: BTreeMap::new(),
    }
}

impl Method for Erm {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        erm_step(model, batch)
    }
}
