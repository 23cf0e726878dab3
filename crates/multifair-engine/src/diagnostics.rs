//! Modulation diagnostics: how much of a method's gradient scale reaches the weights under the
//! optimizer in use. Every `diagnostics_every` steps, each modality encoder's update relative to
//! its parameters, ||delta theta|| / ||theta||, for the real step and for a counterfactual
//! unmodulated step (fusion ERM's gradient on the same batch, from the same model and optimizer
//! state). Under SGD the two differ by the modulation; under Adam they nearly coincide.
//! The counterfactual draws its own dropout masks, so a run with diagnostics is not
//! bit-identical to one without: they are off by default.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use multifair_core::{DeviceBatch, create, stats, to_host};
use multifair_models::MultimodalModel;

use crate::config::TrainConfig;
use crate::optim::{Optimizers, clip_gradients};

/// The visited parameters, flattened, in visiting order.
struct Flat(Vec<Tensor<1>>);

impl ModuleVisitor for Flat {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().detach().flatten(0, D - 1));
    }
}

fn parameters(module: &impl Module) -> Vec<Tensor<1>> {
    let mut flat = Flat(Vec::new());
    module.visit(&mut flat);
    flat.0
}

/// ||after - before|| / ||before|| of each modality encoder.
pub fn update_ratios(before: &MultimodalModel, after: &MultimodalModel) -> Vec<f64> {
    let total = |t: Vec<Tensor<1>>| to_host(Tensor::cat(t, 0).sum()).map_or(f64::NAN, |v| v[0]);
    (before.encoders.iter().zip(&after.encoders))
        .map(|(b, a)| {
            let (b, a) = (parameters(b), parameters(a));
            let diffs = (b.iter().zip(&a))
                .map(|(b, a)| (a.clone() - b.clone()).powf_scalar(2.0).sum())
                .collect();
            let values = b.into_iter().map(|b| b.powf_scalar(2.0).sum()).collect();
            (total(diffs) / total(values).max(1e-30)).sqrt()
        })
        .collect()
}

/// The diagnostics of one step: the real step's ratios, and those of fusion ERM's step on
/// `batch` from `before` with `optim_before` (the state before the real step).
pub fn diagnose(
    config: &TrainConfig,
    factor: f64,
    before: &MultimodalModel,
    after: &MultimodalModel,
    mut optim_before: Optimizers,
    batch: &DeviceBatch,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for (m, r) in update_ratios(before, after).into_iter().enumerate() {
        out.insert(stats::update(m, false), r);
    }
    let mut erm = create("erm", &serde_json::json!({})).map_err(anyhow::Error::msg)?;
    let mut plain = erm.step(before, batch);
    clip_gradients(config, before, &mut plain.grads);
    let counterfactual = optim_before.step(config, factor, before.clone(), plain.grads, None);
    for (m, r) in update_ratios(before, &counterfactual)
        .into_iter()
        .enumerate()
    {
        out.insert(stats::update(m, true), r);
    }
    Ok(out)
}
