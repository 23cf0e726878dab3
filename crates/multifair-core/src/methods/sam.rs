//! Sharpness-aware minimisation (SAM, Foret et al., ICLR 2021) and its adaptive form (ASAM,
//! Kwon et al., ICML 2021), as davda54/sam@3c3afdb `sam.py`, which MEDFAIR copies
//! (ys-zong/MEDFAIR@2fae424 models/SAM/utils.py:20-79, models/SAM/SAM.py:54-81):
//!
//! 1. g = the gradient of the batch's loss (fusion ERM's) at the weights w;
//! 2. e_p = rho T_p^2 g_p / (||T g|| + 1e-12) for every parameter p with a gradient, one norm
//!    over all of them, T_p = |w_p| with `sam_adaptive` (ASAM), else 1;
//! 3. g' = the gradient of the same batch's loss at w + e (a second forward pass, with its own
//!    dropout masks, as the original's);
//! 4. the optimizer steps from w with g' (the engine's clipping and optimizer).
//!
//! The reported loss is the first pass's, as MEDFAIR logs it. Defaults are SAM's (rho 0.05,
//! not adaptive); `--set preset=medfair` is MEDFAIR's ASAM (rho 2, adaptive: its `--adaptive`
//! flag parses any value as true).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::erm_step;
use crate::hparams::{Hparams, Range, Valid};
use crate::{DeviceBatch, Method, StepOutput, hparams};

hparams! {
    pub struct SamHparams {
        /// Radius of the ascent step.
        rho as "sam_rho": f64 = 0.05, Range::LogUniform(0.01, 5.0), Valid::Positive;
        /// ASAM: the ascent scaled by |w| (element-wise).
        adaptive as "sam_adaptive": bool = false, Range::Choice(&["false", "true"]);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "sam",
    about: "sharpness-aware minimisation (Foret et al., ICLR 2021; ASAM with sam_adaptive)",
    hparams: SamHparams::HPARAMS,
    defaults: SamHparams::defaults,
    engine_defaults: &[],
    presets: &[("medfair", &[("sam_rho", "2.0"), ("sam_adaptive", "true")])],
    build: |h| {
        let h = SamHparams::from_value(h)?;
        Ok(Box::new(Sam {
            rho: h.rho,
            adaptive: h.adaptive,
        }))
    },
};

pub struct Sam {
    rho: f64,
    adaptive: bool,
}

/// Sum over parameters with a gradient of ||T g||^2, on the device.
struct AscentNorm<'a> {
    grads: &'a GradientsParams,
    adaptive: bool,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for AscentNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let tg = match self.adaptive {
                true => param.val().inner().abs() * g,
                false => g,
            };
            let s = tg.powf_scalar(2.0).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Replaces each parameter with a gradient by w + scale T^2 g, a fresh leaf under the same id
/// (so the second pass's gradients land on the original parameters).
struct Ascend<'a> {
    grads: &'a GradientsParams,
    adaptive: bool,
    scale: Tensor<1>,
}

impl ModuleMapper for Ascend<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(g) = self.grads.get::<D>(param.id) else {
            return param;
        };
        let (adaptive, scale) = (self.adaptive, self.scale.clone());
        param.map(|w| {
            let w = w.inner();
            let step = match adaptive {
                true => w.clone().powf_scalar(2.0) * g,
                false => g,
            };
            Tensor::from_inner(w + step * scale.reshape([1; D])).require_grad()
        })
    }
}

/// The model at w + e for gradients `grads` (steps 2 of the rule); `None` without gradients.
pub fn ascend<M: Module>(model: &M, grads: &GradientsParams, rho: f64, adaptive: bool) -> M {
    let mut norm = AscentNorm {
        grads,
        adaptive,
        total: None,
    };
    model.visit(&mut norm);
    let Some(total) = norm.total else {
        return model.clone();
    };
    let scale = total.sqrt().add_scalar(1e-12).recip().mul_scalar(rho);
    model.clone().map(&mut Ascend {
        grads,
        adaptive,
        scale,
    })
}

impl Method for Sam {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let first = erm_step(model, batch);
        let perturbed = ascend(model, &first.grads, self.rho, self.adaptive);
        let second = erm_step(&perturbed, batch);
        StepOutput {
            grads: second.grads,
            loss: first.loss,
            stats: second.stats,
            encoder_steps: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<1>>,
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// The fixtures worked from davda54/sam's `first_step`: w = [1, -2] with g = [3, 4], and a
    /// second tensor [0.5] with g = [-12].
    #[test]
    fn the_ascent_step_by_hand() {
        let device = Device::flex().autodiff();
        let model = Two {
            a: Param::from_tensor(Tensor::from_floats([1.0, -2.0], &device)),
            b: Param::from_tensor(Tensor::from_floats([0.5], &device)),
        };
        let mut grads = GradientsParams::new();
        grads.register::<1>(model.a.id, Tensor::from_floats([3.0, 4.0], &device).inner());
        let close = |got: Vec<f32>, want: &[f64]| {
            for (g, w) in got.iter().zip(want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
            }
        };
        // One tensor: ||g|| = 5, e = 0.05 g / 5.
        let up = ascend(&model, &grads, 0.05, false);
        close(values(up.a.val()), &[1.03, -1.96]);
        close(values(up.b.val()), &[0.5]); // no gradient, unchanged
        // ASAM, rho 2: |w| g = [3, 8], norm sqrt(73); e = 2 w^2 g / sqrt(73).
        let up = ascend(&model, &grads, 2.0, true);
        close(values(up.a.val()), &[1.702_246_883, 1.745_316_710]);
        // Two tensors share one norm (13).
        grads.register::<1>(model.b.id, Tensor::from_floats([-12.0], &device).inner());
        let up = ascend(&model, &grads, 0.05, false);
        close(values(up.a.val()), &[1.011_538_461, -1.984_615_384]);
        close(values(up.b.val()), &[0.453_846_153]);
        let up = ascend(&model, &grads, 2.0, true);
        close(values(up.a.val()), &[1.574_695_771, 1.065_044_112]);
        close(values(up.b.val()), &[-0.074_695_771]);
        // The perturbed parameters keep their ids, so the second pass's gradients apply to w.
        assert_eq!(up.a.id, model.a.id);
    }
}
