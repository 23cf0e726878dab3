//! MMPareto (Wei & Hu, ICML 2024), as the authors' code (GeWu-Lab/MMPareto_ICML2024@a339db3
//! code/MMPareto.py:74-207, code/min_norm_solvers.py:9-30):
//!
//! 1. losses: the fused cross-entropy L_mm, and each modality's unimodal cross-entropy L_m of
//!    its own head on its features (here its auxiliary head, fed *with* gradient);
//! 2. for each modality encoder (with its projection), the gradients g_mm of L_mm and g_u of
//!    L_m, taken separately;
//! 3. on the encoder's whole gradient: if cos(g_mm, g_u) > 0 the weights are (1/2, 1/2), else
//!    the two-task min-norm point: c = (v22 - v12) / (v11 + v22 - 2 v12) (0.999 if v12 >= v11,
//!    0.001 if v12 >= v22), weights (c, 1 - c);
//! 4. tensor by tensor: new = 2 (k0 g_mm + k1 g_u) and the gradient gamma max(||new||,
//!    ||g_mm + g_u||) new / ||new||, gamma = 1.5 (hard-coded in the original);
//! 5. every other parameter keeps the summed loss's gradient.
//!
//! The original takes the three gradients from one forward pass (`retain_graph`); burn frees a
//! graph in its backward pass, so here L_mm and the L_m come from two forward passes with
//! their own dropout masks. A tensor whose `new` is zero gets zero (the original divides by
//! zero). BalanceBenchmark's port copies the gradients after all backward passes, so its cosine
//! is always 1; this follows the authors' code.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::forward;
use crate::hparams::{Hparams, Range, Valid};
use crate::{DeviceBatch, Method, Setup, StepOutput, hparams, to_host};

hparams! {
    pub struct MmParetoHparams {
        /// The final gradient's magnitude factor (the original's hard-coded 1.5).
        gamma as "mmpareto_gamma": f64 = 1.5, Range::Uniform(1.0, 2.0), Valid::Positive;
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "mmpareto",
    about: "MMPareto (Wei & Hu, ICML 2024): Pareto integration of each encoder's multimodal and unimodal gradients",
    hparams: MmParetoHparams::HPARAMS,
    defaults: MmParetoHparams::defaults,
    // The original's: SGD 2e-3, momentum 0.9, weight decay 1e-4, StepLR(30, 0.1).
    engine_defaults: &[
        ("optimizer", "sgd"),
        ("lr", "2e-3"),
        ("momentum", "0.9"),
        ("weight_decay", "1e-4"),
        ("aux_weight_decay", "1e-4"),
        ("schedule", "step"),
        ("step_size", "30"),
        ("gamma", "0.1"),
        ("warmup_epochs", "0"),
    ],
    presets: &[],
    build: |h| {
        Ok(Box::new(MmPareto {
            gamma: MmParetoHparams::from_value(h)?.gamma,
        }))
    },
};

pub struct MmPareto {
    gamma: f64,
}

/// The weights (k0, k1) of step 3 from v11 = ||g_mm||^2, v12 = <g_mm, g_u>, v22 = ||g_u||^2.
pub fn weights(v11: f64, v12: f64, v22: f64) -> (f64, f64) {
    if v12 > 0.0 && v12 / (v11 * v22).sqrt() > 0.0 {
        return (0.5, 0.5);
    }
    let c = if v12 >= v11 {
        0.999
    } else if v12 >= v22 {
        0.001
    } else {
        (v22 - v12) / (v11 + v22 - 2.0 * v12)
    };
    (c, 1.0 - c)
}

/// Sums <a, b>, ||a||^2 and ||b||^2 over the visited parameters' two gradients.
struct Products<'a> {
    mm: &'a GradientsParams,
    uni: &'a GradientsParams,
    sums: Vec<Tensor<1>>,
}

impl ModuleVisitor for Products<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(a), Some(b)) = (self.mm.get::<D>(param.id), self.uni.get::<D>(param.id)) else {
            return;
        };
        let terms = [
            a.clone().powf_scalar(2.0).sum(),
            (a * b.clone()).sum(),
            b.powf_scalar(2.0).sum(),
        ];
        if self.sums.is_empty() {
            self.sums = terms.to_vec();
        } else {
            for (s, t) in self.sums.iter_mut().zip(terms) {
                *s = s.clone() + t;
            }
        }
    }
}

/// Step 4 on each visited parameter, moved from the two gradients into `out`.
struct Combine<'a> {
    mm: &'a mut GradientsParams,
    uni: &'a mut GradientsParams,
    out: &'a mut GradientsParams,
    k: (f64, f64),
    gamma: f64,
}

impl ModuleVisitor for Combine<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (Some(a), Some(b)) = (
            self.mm.remove::<D>(param.id),
            self.uni.remove::<D>(param.id),
        ) else {
            return;
        };
        let new = a.clone().mul_scalar(2.0 * self.k.0) + b.clone().mul_scalar(2.0 * self.k.1);
        let norm = |t: Tensor<D>| t.powf_scalar(2.0).sum().sqrt();
        let (n_new, n_tot) = (norm(new.clone()), norm(a + b));
        let factor = n_new.clone().max_pair(n_tot) / n_new.clamp_min(1e-30);
        let g = new * factor.mul_scalar(self.gamma).reshape([1; D]);
        self.out.register::<D>(param.id, g);
    }
}

/// Steps 3 and 4 for one encoder (`module`): moves its gradients from `mm` and `uni` into
/// `out`; returns the cosine and the weights.
pub fn integrate<M: Module>(
    module: &M,
    mm: &mut GradientsParams,
    uni: &mut GradientsParams,
    out: &mut GradientsParams,
    gamma: f64,
) -> (f64, (f64, f64)) {
    let mut products = Products {
        mm,
        uni,
        sums: Vec::new(),
    };
    module.visit(&mut products);
    if products.sums.is_empty() {
        return (f64::NAN, (0.5, 0.5));
    }
    let v = to_host(Tensor::cat(products.sums, 0)).expect("MMPareto's products");
    let cos = v[1] / (v[0] * v[2]).sqrt().max(1e-30);
    let k = weights(v[0], v[1], v[2]);
    module.visit(&mut Combine {
        mm,
        uni,
        out,
        k,
        gamma,
    });
    (cos, k)
}

/// Moves every remaining gradient of `from` into `into`, adding where both have one.
struct Merge<'a> {
    from: &'a mut GradientsParams,
    into: &'a mut GradientsParams,
}

impl ModuleVisitor for Merge<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.from.remove::<D>(param.id) {
            let g = match self.into.remove::<D>(param.id) {
                Some(h) => g + h,
                None => g,
            };
            self.into.register::<D>(param.id, g);
        }
    }
}

impl Method for MmPareto {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_modalities(INFO.name)
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        // L_mm from the first pass (the auxiliary heads serve as the unimodal heads below).
        let f = forward(model, batch);
        let loss = f.per_sample.clone().mean();
        let mut mm = GradientsParams::from_grads(f.per_sample.mean().backward(), model);
        // The unimodal losses from the second.
        let tokens = model.encode(batch.inputs.clone());
        let unimodal = model.unimodal_logits(&tokens);
        let mut uni = GradientsParams::from_grads(batch.aux_loss(&unimodal).backward(), model);
        let mut grads = GradientsParams::new();
        let mut stats = BTreeMap::new();
        for j in 0..model.encoders.len() {
            let encoder = (model.encoders[j].clone(), model.projections[j].clone());
            let (cos, k) = integrate(&encoder, &mut mm, &mut uni, &mut grads, self.gamma);
            stats.insert(format!("cos_{j}"), cos);
            stats.insert(crate::stats::coeff(j), k.0);
        }
        for from in [&mut mm, &mut uni] {
            model.visit(&mut Merge {
                from,
                into: &mut grads,
            });
        }
        StepOutput {
            grads,
            loss: loss.detach(),
            stats,
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

    fn run(mm_a: &[f32], uni_a: &[f32], b: Option<(f32, f32)>) -> (f64, (f64, f64), Vec<f32>) {
        let device = Device::flex().autodiff();
        let plain = device.clone().inner();
        let model = Two {
            a: Param::from_tensor(Tensor::zeros([2], &device)),
            b: Param::from_tensor(Tensor::zeros([1], &device)),
        };
        let (mut mm, mut uni, mut out) = (
            GradientsParams::new(),
            GradientsParams::new(),
            GradientsParams::new(),
        );
        mm.register::<1>(model.a.id, Tensor::from_floats(mm_a, &plain));
        uni.register::<1>(model.a.id, Tensor::from_floats(uni_a, &plain));
        if let Some((x, y)) = b {
            mm.register::<1>(model.b.id, Tensor::from_floats([x], &plain));
            uni.register::<1>(model.b.id, Tensor::from_floats([y], &plain));
        }
        let (cos, k) = integrate(&model, &mut mm, &mut uni, &mut out, 1.5);
        let mut g: Vec<f32> = out
            .get::<1>(model.a.id)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        if b.is_some() {
            g.extend(
                out.get::<1>(model.b.id)
                    .unwrap()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
        (cos, k, g)
    }

    fn close(got: &[f32], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    /// The three worked cases: conflicting gradients (min-norm weights, then the magnitude of
    /// the larger of new and the sum), two tensors (the cosine over both, the magnitude per
    /// tensor), and agreeing gradients (1.5 times the sum).
    #[test]
    fn integration_by_hand() {
        let (cos, k, g) = run(&[1.0, 0.0], &[-1.0, 2.0], None);
        assert!((cos + 0.447_214).abs() < 1e-6 && k == (0.75, 0.25));
        close(&g, &[2.121_320, 2.121_320]);
        let (cos, k, g) = run(&[1.0, 0.0], &[-1.0, 2.0], Some((1.0, -2.0)));
        assert!((cos + 0.707_107).abs() < 1e-6 && (k.0 - 12.0 / 17.0).abs() < 1e-12);
        close(&g, &[1.720_387, 2.457_696, 1.5]);
        let (cos, k, g) = run(&[1.0, 2.0], &[3.0, 1.0], None);
        assert!((cos - 0.707_107).abs() < 1e-6 && k == (0.5, 0.5));
        close(&g, &[6.0, 4.5]);
    }
}
