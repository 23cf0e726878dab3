//! The scaling identity: with one weight for the batch it equals scaling the encoder's
//! parameter gradients (the reference's hook); with a weight per sample it equals the gradient
//! of the per-sample weighted loss.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Tensor};
use multifair_core::clip::scale_grads;
use multifair_core::cross_entropy_per_sample;
use multifair_core::scaling::scale_gradient;

#[derive(Module, Debug)]
struct Tiny {
    encoder: Linear,
    head: Linear,
}

/// Flattened gradients of `module`'s parameters, in visiting order.
struct Flatten<'a> {
    grads: &'a GradientsParams,
    values: Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let g = self.grads.get::<D>(param.id).expect("gradient");
        self.values
            .extend(g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
    }
}

fn flat<M: Module>(module: &M, grads: &GradientsParams) -> Vec<f32> {
    let mut v = Flatten {
        grads,
        values: Vec::new(),
    };
    module.visit(&mut v);
    v.values
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

fn setup() -> (Device, Tiny, Tensor<2>, Tensor<2>) {
    let device = Device::flex().autodiff();
    device.seed(3);
    let model = Tiny {
        encoder: LinearConfig::new(5, 4).init(&device),
        head: LinearConfig::new(4, 2).init(&device),
    };
    let x = Tensor::<2>::random([6, 5], Distribution::Normal(0.0, 1.0), &device);
    let labels = [0.0f32, 1.0, 1.0, 0.0, 1.0, 0.0];
    let onehot: Vec<f32> = labels.iter().flat_map(|&y| [1.0 - y, y]).collect();
    let onehot = Tensor::<1>::from_floats(onehot.as_slice(), &device).reshape([6, 2]);
    (device, model, x, onehot)
}

#[test]
fn one_weight_equals_scaling_the_encoder_parameter_gradients() {
    let (device, model, x, onehot) = setup();
    let c = 0.37;
    // Plain gradients, encoder's scaled afterwards (the reference's way).
    let loss = cross_entropy_per_sample(
        model.head.forward(model.encoder.forward(x.clone())),
        onehot.clone(),
    )
    .mean();
    let mut plain = GradientsParams::from_grads(loss.backward(), &model);
    scale_grads(&model.encoder, &mut plain, c);
    // The identity in the forward pass.
    let w = Tensor::<2>::full([6, 1], c, &device);
    let z = scale_gradient(model.encoder.forward(x), w);
    let loss = cross_entropy_per_sample(model.head.forward(z), onehot).mean();
    let identity = GradientsParams::from_grads(loss.backward(), &model);
    assert_close(
        &flat(&model.encoder, &identity),
        &flat(&model.encoder, &plain),
    );
    assert_close(&flat(&model.head, &identity), &flat(&model.head, &plain));
}

#[test]
fn per_sample_weights_equal_the_weighted_loss_for_the_encoder() {
    let (device, model, x, onehot) = setup();
    let weights = [0.2f32, 1.5, 0.0, 1.0, 0.7, 2.0];
    let w = Tensor::<1>::from_floats(weights.as_slice(), &device).reshape([6, 1]);
    // Weighted loss: mean_n w_n l_n.
    let per_sample = cross_entropy_per_sample(
        model.head.forward(model.encoder.forward(x.clone())),
        onehot.clone(),
    );
    let weighted = (per_sample * w.clone().reshape([6])).mean();
    let expected = GradientsParams::from_grads(weighted.backward(), &model);
    // The identity with the unweighted loss.
    let z = scale_gradient(model.encoder.forward(x), w);
    let loss = cross_entropy_per_sample(model.head.forward(z), onehot).mean();
    let identity = GradientsParams::from_grads(loss.backward(), &model);
    assert_close(
        &flat(&model.encoder, &identity),
        &flat(&model.encoder, &expected),
    );
}
