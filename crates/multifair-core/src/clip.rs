//! Global gradient-norm clipping (torch's `clip_grad_norm_`): one norm over every parameter.
//! burn's own `GradientClipping::Norm` clips each tensor separately, which is not what the
//! reference does. Everything stays on the device: no host read per step.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g.powf_scalar(2.0).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
        }
    }
}

/// Multiplies each visited gradient by a host number or a device scalar [1].
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Result<f64, Tensor<1>>,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let g = match &self.factor {
                Ok(f) => g.mul_scalar(*f),
                Err(t) => g * t.clone().reshape([1; D]),
            };
            self.grads.register::<D>(param.id, g);
        }
    }
}

/// The global L2 norm of `grads` over `module`'s parameters, on the device [1] (None: no
/// gradient at all).
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut visitor = SquaredNorm { grads, total: None };
    module.visit(&mut visitor);
    visitor.total.map(Tensor::sqrt)
}

/// Scales every gradient of `module` by `factor` in place.
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    module.visit(&mut Scale {
        grads,
        factor: Ok(factor),
    });
}

/// Clips the global norm to `max_norm` with torch's factor min(1, max / (norm + 1e-6)), on
/// the device; returns the norm before clipping [1].
pub fn clip_grad_norm<M: Module>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Option<Tensor<1>> {
    let norm = grad_norm(module, grads)?;
    let factor = norm
        .clone()
        .add_scalar(1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    module.visit(&mut Scale {
        grads,
        factor: Err(factor),
    });
    Some(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[derive(Module, Debug)]
    struct Two {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
    }

    fn clipped(max_norm: f64) -> (f32, Vec<f32>) {
        let device = Device::flex();
        let two = Two {
            a: Param::from_tensor(Tensor::zeros([1], &device)),
            b: Param::from_tensor(Tensor::zeros([1, 1], &device)),
        };
        let mut grads = GradientsParams::new();
        grads.register(two.a.id, Tensor::<1>::from_floats([3.0], &device));
        grads.register(two.b.id, Tensor::<2>::from_floats([[4.0]], &device));
        let norm = clip_grad_norm(&two, &mut grads, max_norm).unwrap();
        let a = grads.get::<1>(two.a.id).unwrap().into_scalar::<f32>();
        let b = grads.get::<2>(two.b.id).unwrap().into_scalar::<f32>();
        (norm.into_scalar::<f32>(), vec![a, b])
    }

    #[test]
    fn one_norm_over_every_parameter_as_torch() {
        // |(3, 4)| = 5: with max 1 both scale by 1 / (5 + 1e-6); with max 10 nothing changes.
        let (norm, g) = clipped(1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let f = 1.0 / (5.0 + 1e-6);
        assert!((g[0] as f64 - 3.0 * f).abs() < 1e-6 && (g[1] as f64 - 4.0 * f).abs() < 1e-6);
        assert_eq!(clipped(10.0).1, vec![3.0, 4.0]);
    }
}
