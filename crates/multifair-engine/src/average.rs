//! Weight averaging for a method that tests averaged weights (SWAD): the running mean of the
//! model's parameters over an epoch's steps (a segment), each segment saved in the run folder
//! ([`crate::run_dir::RunDir::segment`]), and the weighted mean of the segments the method names.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use crate::durable;

/// A weighted sum of models' parameters, flattened in visiting order.
#[derive(Default)]
pub struct Average {
    sum: Vec<Tensor<1>>,
    weight: f64,
}

struct Accumulate<'a> {
    sum: &'a mut Vec<Tensor<1>>,
    weight: f64,
    index: usize,
}

impl ModuleVisitor for Accumulate<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param
            .val()
            .inner()
            .flatten::<1>(0, D - 1)
            .mul_scalar(self.weight);
        match self.sum.get_mut(self.index) {
            Some(s) => *s = s.clone() + value,
            None => self.sum.push(value),
        }
        self.index += 1;
    }
}

struct Assign<'a> {
    values: &'a [Tensor<1>],
    index: usize,
}

impl ModuleMapper for Assign<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = self.values[self.index].clone();
        self.index += 1;
        param.map(|w| {
            let shape = w.shape();
            let tracked = w.is_require_grad();
            let v = Tensor::from_inner(value.reshape(shape));
            if tracked { v.require_grad() } else { v }
        })
    }
}

impl Average {
    /// Adds `model`'s parameters with `weight`.
    pub fn add(&mut self, model: &MultimodalModel, weight: f64) {
        model.visit(&mut Accumulate {
            sum: &mut self.sum,
            weight,
            index: 0,
        });
        self.weight += weight;
    }

    pub fn is_empty(&self) -> bool {
        self.weight == 0.0
    }

    /// `template` with the mean's parameters.
    pub fn model(&self, template: MultimodalModel) -> MultimodalModel {
        let mean: Vec<Tensor<1>> = self
            .sum
            .iter()
            .map(|s| s.clone().div_scalar(self.weight))
            .collect();
        template.map(&mut Assign {
            values: &mean,
            index: 0,
        })
    }
}

/// Saves `model` atomically as safetensors at `path`.
pub fn save(model: &MultimodalModel, path: &Path) -> anyhow::Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    durable::persist(path, |tmp| {
        let mut store = SafetensorsStore::from_file(tmp).overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    })
}

/// `template` loaded from `path`.
pub fn load(template: MultimodalModel, path: &Path) -> anyhow::Result<MultimodalModel> {
    let mut model = template;
    let mut store = SafetensorsStore::from_file(path);
    (model.load_from(&mut store))
        .map_err(|e| anyhow::anyhow!("reading {}: {e:?}", path.display()))?;
    Ok(model)
}

/// The mean of the saved segments `epochs` (each with its count), on `template`.
pub fn of_segments(
    out: &Path,
    epochs: &[(usize, usize)],
    template: MultimodalModel,
) -> anyhow::Result<MultimodalModel> {
    let mut average = Average::default();
    for &(epoch, count) in epochs {
        let segment = load(
            template.clone(),
            &crate::run_dir::RunDir::new(out).segment(epoch),
        )?;
        average.add(&segment, count as f64);
    }
    anyhow::ensure!(
        !average.is_empty(),
        "no segment to average in {}",
        out.display()
    );
    Ok(average.model(template))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use multifair_models::presets::ModelSize;

    /// The mean of two models with weights 1 and 3 is a quarter of the way from the second
    /// to the first, parameter by parameter.
    #[test]
    fn weighted_mean_of_models() {
        let device = Device::flex().autodiff();
        let config = ModelSize::Tiny.model(&[("slo", "image")], 16, 3, 0, 2);
        let (a, b) = (config.init(&device), config.init(&device));
        let mut average = Average::default();
        average.add(&a, 1.0);
        average.add(&b, 3.0);
        let mean = average.model(a.clone());
        let first = |m: &MultimodalModel| -> Vec<f32> {
            m.head.classifier_weight().into_data().try_to_vec().unwrap()
        };
        for ((x, y), m) in first(&a).iter().zip(first(&b)).zip(first(&mean)) {
            assert!((m - (0.25 * x + 0.75 * y)).abs() < 1e-6);
        }
    }
}
