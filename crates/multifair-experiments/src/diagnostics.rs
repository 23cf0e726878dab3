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

/// Sum of squares of the visited parameters, and of their difference from `other`'s.
struct Squares<'a> {
    other: Vec<Tensor<1>>,
    at: usize,
    values: Vec<Tensor<1>>,
    diffs: Vec<Tensor<1>>,
    collect: &'a mut Vec<Tensor<1>>,
}

impl ModuleVisitor for Squares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let flat: Tensor<1> = param.val().detach().flatten(0, D - 1);
        if let Some(before) = self.other.get(self.at) {
            self.diffs
                .push((flat.clone() - before.clone()).powf_scalar(2.0).sum());
            self.values.push(before.clone().powf_scalar(2.0).sum());
        }
        self.at += 1;
        self.collect.push(flat);
    }
}

/// The flattened parameters of a module, in visiting order.
fn parameters(module: &impl Module) -> Vec<Tensor<1>> {
    let mut collect = Vec::new();
    let mut visitor = Squares {
        other: Vec::new(),
        at: 0,
        values: Vec::new(),
        diffs: Vec::new(),
        collect: &mut collect,
    };
    module.visit(&mut visitor);
    collect
}

/// ||after - before|| / ||before|| of each modality encoder.
pub fn update_ratios(before: &MultimodalModel, after: &MultimodalModel) -> Vec<f64> {
    let mut ratios = Vec::new();
    for (b, a) in before.encoders.iter().zip(&after.encoders) {
        let mut sink = Vec::new();
        let mut visitor = Squares {
            other: parameters(b),
            at: 0,
            values: Vec::new(),
            diffs: Vec::new(),
            collect: &mut sink,
        };
        a.visit(&mut visitor);
        let total = |t: Vec<Tensor<1>>| to_host(Tensor::cat(t, 0).sum()).map_or(f64::NAN, |v| v[0]);
        ratios.push((total(visitor.diffs) / total(visitor.values).max(1e-30)).sqrt());
    }
    ratios
}

/// The diagnostics of one step: the real step's ratios, and those of fusion ERM's step on
/// `batch` from `before` with `optim_before` (the state before the real step).
#[allow(clippy::too_many_arguments)]
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
