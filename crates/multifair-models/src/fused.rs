//! Scaled dot-product attention and layer normalisation as single differentiable operations.
//!
//! burn 0.22's autodiff backend records both op by op. Attention (matmul, scale, softmax, matmul)
//! then keeps the [heads, L, L] score and probability matrices of every layer until the backward
//! pass, and a layer norm keeps its centred and its normalised input: at the paper size (197
//! tokens, 12 heads, 11 images per sample) that was most of the memory a step needed beyond
//! PyTorch's (README, "The libtorch backend"). Here the forward
//! passes are the backend's own kernels (libtorch's `scaled_dot_product_attention` and
//! `layer_norm`, flex's) and the backward passes keep only the inputs (and attention's output),
//! recomputing the rest once, as flash attention and PyTorch's layer norm do.

// burn 0.22 marks libtorch deprecated; it is still the fast CPU/CUDA path here.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::AttentionModuleOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderLayer};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Bool, Tensor};

/// Attention and layer norm as single operations on every backend this workspace builds.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FusedOps: Backend {
    /// softmax(q kᵀ / √d) v for q, k, v of shape [B, H, L, d].
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::attention(
            query,
            key,
            value,
            None,
            None,
            AttentionModuleOptions::default(),
        )
    }

    /// Layer norm over the last dimension with scale `gamma` and shift `beta`.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, Some(beta), epsilon)
    }
}

impl FusedOps for Flex {}

#[cfg(feature = "tch")]
impl FusedOps for burn::backend::LibTorch {}

/// The backward pass of softmax(q kᵀ s) v, from q, k, v, the output o and its gradient g:
/// with P recomputed, dv = Pᵀ g, dS = P ⊙ (g vᵀ − rowsum(g ⊙ o)), dq = s dS k, dk = s dSᵀ q.
fn attention_backward<B: Backend>(
    [q, k, v, o]: [FloatTensor<B>; 4],
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let dims = q.shape().num_dims();
    let head = q.shape()[dims - 1];
    let scale = (head as f64).sqrt().recip();
    let scores = B::float_mul_scalar(
        B::float_matmul(q.clone(), B::float_swap_dims(k.clone(), dims - 2, dims - 1)),
        scale.into(),
    );
    let max = B::float_max_dim(scores.clone(), dims - 1);
    let exp = B::float_exp(B::float_sub(scores, max));
    let sum = B::float_sum_dim(exp.clone(), dims - 1);
    let p = B::float_div(exp, sum);

    let dv = B::float_matmul(
        B::float_swap_dims(p.clone(), dims - 2, dims - 1),
        grad.clone(),
    );
    let dp = B::float_matmul(grad.clone(), B::float_swap_dims(v, dims - 2, dims - 1));
    let delta = B::float_sum_dim(B::float_mul(grad, o), dims - 1);
    let ds = B::float_mul_scalar(B::float_mul(p, B::float_sub(dp, delta)), scale.into());
    let dq = B::float_matmul(ds.clone(), k);
    let dk = B::float_matmul(B::float_swap_dims(ds, dims - 2, dims - 1), q);
    [dq, dk, dv]
}

/// The common end of both backward passes: the output's gradient in, `partials` of it, each
/// input that takes part in the backward pass handed its gradient.
fn backward<B: Backend, S>(
    ops: Ops<S, 3>,
    grads: &mut Gradients,
    partials: impl FnOnce(S, FloatTensor<B>) -> [FloatTensor<B>; 3],
) {
    let grad = grads.consume::<B>(&ops.node);
    for (parent, partial) in ops.parents.into_iter().zip(partials(ops.state, grad)) {
        if let Some(node) = parent {
            grads.register::<B>(node.id, partial);
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend> Backward<B, 3> for AttentionBackward {
    type State = [FloatTensor<B>; 4];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward::<B, _>(ops, grads, attention_backward::<B>);
    }
}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        match AttentionBackward
            .prepare::<C>([query.node(), key.node(), value.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (
                    query.into_primitive(),
                    key.into_primitive(),
                    value.into_primitive(),
                );
                let output = B::fused_attention(q.clone(), k.clone(), v.clone());
                prep.finish([q, k, v, output.clone()], output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(
                query.into_primitive(),
                key.into_primitive(),
                value.into_primitive(),
            )),
        }
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        match LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
                let output =
                    B::fused_layer_norm(x.clone(), gamma.clone(), beta.into_primitive(), epsilon);
                prep.finish((x, gamma, epsilon), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_layer_norm(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
            )),
        }
    }
}

/// The backward pass of layer norm y = γ x̂ + β, x̂ = (x − μ) r, r = 1/√(σ² + ε), from x, γ and
/// the output's gradient g: dx = r (gγ − mean(gγ) − x̂ mean(gγ x̂)), dγ = Σ g x̂, dβ = Σ g.
fn layer_norm_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    epsilon: f64,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let shape = x.shape();
    let last = shape.num_dims() - 1;
    let width = shape[last];
    let rows = shape.num_elements() / width;
    let mean = B::float_mean_dim(x.clone(), last);
    let centred = B::float_sub(x, mean);
    let variance = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), last);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(variance, epsilon.into())));
    let normalised = B::float_mul(centred, rstd.clone());

    let mut row = vec![1; shape.num_dims()];
    row[last] = width;
    let scaled = B::float_mul(grad.clone(), B::float_reshape(gamma, row.into()));
    let mean_scaled = B::float_mean_dim(scaled.clone(), last);
    let mean_projected = B::float_mean_dim(B::float_mul(scaled.clone(), normalised.clone()), last);
    let dx = B::float_mul(
        rstd,
        B::float_sub(
            B::float_sub(scaled, mean_scaled),
            B::float_mul(normalised.clone(), mean_projected),
        ),
    );
    let per_feature = |t: FloatTensor<B>| {
        B::float_reshape(
            B::float_sum_dim(B::float_reshape(t, [rows, width].into()), 0),
            [width].into(),
        )
    };
    let dgamma = per_feature(B::float_mul(grad.clone(), normalised));
    let dbeta = per_feature(grad);
    [dx, dgamma, dbeta]
}

#[derive(Debug)]
struct LayerNormBackward;

impl<B: Backend> Backward<B, 3> for LayerNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward::<B, _>(ops, grads, |(x, gamma, epsilon), grad| {
            layer_norm_backward::<B>(x, gamma, epsilon, grad)
        });
    }
}

/// softmax(q kᵀ / √d) v for q, k, v of shape [B, H, L, d], differentiable, one recorded operation.
pub fn attention(query: Tensor<4>, key: Tensor<4>, value: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::fused_attention(
        query.into_dispatch(),
        key.into_dispatch(),
        value.into_dispatch(),
    ))
}

/// `norm.forward(x)` as one recorded operation; `epsilon` is the one `norm` was built with
/// (burn keeps it private). A norm without shift keeps burn's path.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, x: Tensor<D>, epsilon: f64) -> Tensor<D> {
    let Some(beta) = &norm.beta else {
        return norm.forward(x);
    };
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::fused_layer_norm(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        epsilon,
    ))
}

/// burn's `TransformerEncoder::forward`, its layer norms fused (`epsilon` is the encoder's) and,
/// without a padding mask, each attention fused where its dropout is 0 (ViT's; BERT's 0.1 keeps
/// burn's attention, which drops probabilities).
pub fn encoder(
    encoder: &TransformerEncoder,
    mut x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    epsilon: f64,
) -> Tensor<3> {
    for layer in &encoder.layers {
        x = encoder_layer(layer, x, mask_pad.clone(), epsilon);
    }
    x
}

/// `TransformerEncoderLayer::forward` step for step.
fn encoder_layer(
    layer: &TransformerEncoderLayer,
    x: Tensor<3>,
    mask_pad: Option<Tensor<2, Bool>>,
    epsilon: f64,
) -> Tensor<3> {
    let norm = |norm: &LayerNorm, x: Tensor<3>| layer_norm(norm, x, epsilon);
    let attend = |x: Tensor<3>| match (mask_pad, layer.mha.dropout.prob == 0.0) {
        (None, true) => self_attention(&layer.mha, x),
        (None, false) => layer.mha.forward(MhaInput::self_attn(x)).context,
        (Some(mask), _) => {
            layer
                .mha
                .forward(MhaInput::self_attn(x).mask_pad(mask))
                .context
        }
    };
    let attended = match layer.norm_first {
        true => attend(norm(&layer.norm_2, x.clone())),
        false => attend(x.clone()),
    };
    let mut x = x + layer.dropout.forward(attended);
    let residual = match layer.norm_first {
        true => norm(&layer.norm_1, x.clone()),
        false => {
            x = norm(&layer.norm_1, x);
            x.clone()
        }
    };
    let x = x + layer.dropout.forward(layer.pwff.forward(residual));
    match layer.norm_first {
        true => x,
        false => norm(&layer.norm_2, x),
    }
}

/// `MultiHeadAttention::forward(MhaInput::self_attn(x)).context` with one fused attention.
fn self_attention(mha: &MultiHeadAttention, x: Tensor<3>) -> Tensor<3> {
    let [b, l, d] = x.dims();
    let heads = |linear: &Linear| {
        linear
            .forward(x.clone())
            .reshape([b, l, mha.n_heads, mha.d_k])
            .swap_dims(1, 2)
    };
    let context = attention(heads(&mha.query), heads(&mha.key), heads(&mha.value));
    mha.output
        .forward(context.swap_dims(1, 2).reshape([b, l, d]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Int, activation::softmax};

    /// Every backend this build has: flex, and libtorch's CPU with the `tch` feature.
    fn devices() -> Vec<Device> {
        #[allow(unused_mut)]
        let mut devices = vec![Device::flex()];
        #[cfg(feature = "tch")]
        devices.push(Device::libtorch());
        devices
    }

    fn op_by_op(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let d = q.dims()[3] as f32;
        softmax(q.matmul(k.transpose()).div_scalar(d.sqrt()), 3).matmul(v)
    }

    fn close(a: Tensor<4>, b: Tensor<4>, what: &str) {
        let (a, b) = (
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
        );
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: largest difference {worst}");
    }

    #[test]
    fn output_and_gradients_equal_the_op_by_op_attention() {
        for device in devices() {
            attention_against_op_by_op(device.autodiff());
        }
    }

    fn attention_against_op_by_op(device: Device) {
        let draw = || Tensor::<4>::random([2, 3, 7, 5], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v, w) = (draw(), draw(), draw(), draw());
        let leaves = || {
            (
                q.clone().require_grad(),
                k.clone().require_grad(),
                v.clone().require_grad(),
            )
        };
        let (q1, k1, v1) = leaves();
        let fused = attention(q1.clone(), k1.clone(), v1.clone());
        let grads_fused = (fused.clone() * w.clone()).sum().backward();
        let (q2, k2, v2) = leaves();
        let reference = op_by_op(q2.clone(), k2.clone(), v2.clone());
        let grads_reference = (reference.clone() * w).sum().backward();

        close(fused, reference, "output");
        for (name, a, b) in [("q", q1, q2), ("k", k1, k2), ("v", v1, v2)] {
            close(
                a.grad(&grads_fused).expect("fused gradient"),
                b.grad(&grads_reference).expect("reference gradient"),
                name,
            );
        }
    }

    #[test]
    fn encoder_equals_burns_forward_in_both_layouts_with_and_without_a_mask() {
        use burn::nn::transformer::{TransformerEncoderConfig, TransformerEncoderInput};
        let device = Device::flex().autodiff();
        let mask =
            Tensor::<2, Int>::from_ints([[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], &device).equal_elem(1);
        for (norm_first, masked) in [(false, false), (true, false), (true, true)] {
            let model = TransformerEncoderConfig::new(8, 16, 2, 2)
                .with_dropout(0.0)
                .with_norm_first(norm_first)
                .with_layer_norm_eps(1e-6)
                .init(&device);
            let x = Tensor::<3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
            let mask = masked.then(|| mask.clone());
            let ours = encoder(&model, x.clone(), mask.clone(), 1e-6).unsqueeze::<4>();
            let input = TransformerEncoderInput::new(x);
            let input = match mask {
                Some(mask) => input.mask_pad(mask),
                None => input,
            };
            let burns = model.forward(input).unsqueeze::<4>();
            close(ours, burns, "encoder output");
        }
    }

    #[test]
    fn layer_norm_output_and_gradients_equal_burns() {
        for device in devices() {
            layer_norm_against_burns(device.autodiff());
        }
    }

    fn layer_norm_against_burns(device: Device) {
        use burn::nn::LayerNormConfig;
        let mut norm = LayerNormConfig::new(6).with_epsilon(1e-5).init(&device);
        // A trained norm is not the identity: gamma off 1.
        norm.gamma = burn::module::Param::from_tensor(Tensor::random(
            [6],
            Distribution::Normal(1.0, 0.5),
            &device,
        ));
        let x = Tensor::<3>::random([2, 3, 6], Distribution::Normal(1.0, 2.0), &device);
        let w = Tensor::<3>::random([2, 3, 6], Distribution::Normal(0.0, 1.0), &device);
        let x1 = x.clone().require_grad();
        let fused = layer_norm(&norm, x1.clone(), 1e-5);
        let grads_fused = (fused.clone() * w.clone()).sum().backward();
        let x2 = x.require_grad();
        let reference = norm.forward(x2.clone());
        let grads_reference = (reference.clone() * w).sum().backward();

        close(fused.unsqueeze(), reference.unsqueeze(), "output");
        close(
            x1.grad(&grads_fused).unwrap().unsqueeze(),
            x2.grad(&grads_reference).unwrap().unsqueeze(),
            "x",
        );
        let beta = norm.beta.as_ref().unwrap();
        for (name, param) in [("gamma", &norm.gamma), ("beta", beta)] {
            close(
                param.grad(&grads_fused).unwrap().unsqueeze(),
                param.grad(&grads_reference).unwrap().unsqueeze(),
                name,
            );
        }
    }

    #[test]
    fn without_autodiff_it_is_the_backends_attention() {
        for device in devices() {
            let draw =
                || Tensor::<4>::random([1, 2, 4, 3], Distribution::Normal(0.0, 1.0), &device);
            let (q, k, v) = (draw(), draw(), draw());
            close(
                attention(q.clone(), k.clone(), v.clone()),
                op_by_op(q, k, v),
                "output",
            );
        }
    }
}
