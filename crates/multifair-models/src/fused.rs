//! Scaled dot-product attention, layer normalisation, linear layers and dropout as single
//! differentiable operations.
//!
//! burn 0.22's autodiff backend records attention and layer norm op by op. Attention (matmul,
//! scale, softmax, matmul) then keeps the [heads, L, L] score and probability matrices of every
//! layer until the backward pass, and a layer norm keeps its centred and its normalised input:
//! at the paper size (197 tokens, 12 heads, 11 images per sample) that was most of the memory a
//! step needed beyond PyTorch's (README, "The libtorch backend"). Here the forward passes are the
//! backend's own kernels (libtorch's `scaled_dot_product_attention` and `layer_norm`, flex's,
//! whose layer norm runs many rows at once in [`crate::welford`]) and the backward passes keep
//! only the inputs (and attention's output), recomputing the rest once, as flash attention and
//! PyTorch's layer norm do; on libtorch's CPU attention's backward pass is PyTorch's own flash
//! kernel. burn's dispatch backend records a linear layer as a broadcast batched product, whose
//! weight gradient is a product per batch element summed afterwards; [`linear`] records burn's
//! autodiff `linear` instead. Dropout on flex draws its mask from a seed hashed with each
//! element's index (burn's samples a ChaCha stream element by element, a fifth of a tiny-model
//! step), so the backward pass and a fused attention's recomputation repeat it from the seed.

// burn 0.22 marks libtorch deprecated; it is still the fast CPU/CUDA path here.
#![allow(deprecated)]

use std::cell::Cell;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::AttentionModuleOptions;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::nn::attention::{MhaInput, MultiHeadAttention};
use burn::nn::transformer::{PositionWiseFeedForward, TransformerEncoder, TransformerEncoderLayer};
use burn::nn::{Dropout, LayerNorm, Linear};
use burn::tensor::{Bool, DType, Device, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Attention, layer norm and dropout as single operations on every backend this workspace builds.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FusedOps: Backend {
    /// dropout(softmax(q kᵀ / √d)) v for q, k, v of shape [B, H, L, d], the probabilities
    /// dropped as [`FusedOps::fused_dropout`] with `dropout` and `seed` (burn's attention
    /// order); without dropout the backend's own attention kernel.
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        dropout: f64,
        seed: u64,
    ) -> FloatTensor<Self> {
        if dropout == 0.0 {
            let options = AttentionModuleOptions::default();
            return Self::attention(query, key, value, None, None, options);
        }
        let p = attention_probabilities::<Self>(&query, &key);
        Self::float_matmul(Self::fused_dropout(p, dropout, seed), value)
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

    /// x w + b for x [..., in], w [in, out], b [out]; under autodiff its weight gradient is one
    /// matrix product over all rows (burn's own `linear`, which its dispatch backend skips).
    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::linear(x, weight, Some(bias))
    }

    /// x with each element zeroed where [`drops`] says so for (`seed`, its index) and the rest
    /// scaled by 1/(1 − prob). The mask is a function of the seed, so the backward pass is this
    /// same operation on the gradient and nothing is stored.
    fn fused_dropout(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        dropout_by_host_mask::<Self>(x, prob, seed)
    }
}

/// [`FusedOps::fused_dropout`] on any backend: the scaled mask made on the host and multiplied in.
fn dropout_by_host_mask<B: Backend>(x: FloatTensor<B>, prob: f64, seed: u64) -> FloatTensor<B> {
    let shape = x.shape();
    let mut mask = vec![1.0f32; shape.num_elements()];
    drop_in_place(&mut mask, prob, seed);
    let mask = B::float_from_data(TensorData::new(mask, shape), &x.device());
    let mask = B::float_cast(mask, x.dtype().into());
    B::float_mul(x, mask)
}

/// Elements whose hash falls at or above this value are dropped: keep probability × 2³².
fn keep_threshold(prob: f64) -> u32 {
    ((1.0 - prob) * 2f64.powi(32)) as u32
}

/// Whether dropout with this `threshold` zeroes element `index` under `seed`: the index hashed
/// with the seed's two halves by two rounds of a 32-bit integer hash (lowbias32). Random enough
/// for a mask, cheap enough to recompute in the backward pass, and in 32-bit lanes so the loop
/// vectorises.
#[inline(always)]
fn drops(seed: u64, index: u32, threshold: u32) -> bool {
    let round = |mut x: u32| {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7FEB_352D);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846C_A68B);
        x ^ (x >> 16)
    };
    round(round(index ^ seed as u32) ^ (seed >> 32) as u32) >= threshold
}

/// Zeroes the dropped elements of a contiguous slice and scales the rest by 1/(1 − prob).
fn drop_in_place(values: &mut [f32], prob: f64, seed: u64) {
    let (scale, threshold) = ((1.0 / (1.0 - prob)) as f32, keep_threshold(prob));
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { drop_in_place_avx2(values, seed, threshold, scale) };
    }
    drop_in_place_portable(values, seed, threshold, scale);
}

/// The loop built for AVX2, whose 32-bit lane multiplies vectorise the hash (the baseline
/// x86-64 target has none).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn drop_in_place_avx2(values: &mut [f32], seed: u64, threshold: u32, scale: f32) {
    drop_in_place_portable(values, seed, threshold, scale);
}

#[inline(always)]
fn drop_in_place_portable(values: &mut [f32], seed: u64, threshold: u32, scale: f32) {
    for (i, value) in values.iter_mut().enumerate() {
        *value = match drops(seed, i as u32, threshold) {
            true => 0.0,
            false => *value * scale,
        };
    }
}

/// Every dropout on the CPU backend: one pass over the data, in place when nothing else holds
/// it. burn's own dropout samples a float mask element by element from a ChaCha generator and
/// multiplies twice, a fifth of a tiny-model step.
impl FusedOps for Flex {
    fn fused_dropout(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        if x.dtype() != DType::F32 {
            return dropout_by_host_mask::<Self>(x, prob, seed);
        }
        let mut x = match x.layout().contiguous_offsets() {
            Some(_) => x,
            None => x.to_contiguous(),
        };
        let (start, end) = x.layout().contiguous_offsets().expect("made contiguous");
        drop_in_place(&mut x.storage_mut::<f32>()[start..end], prob, seed);
        x
    }

    /// burn-flex's layer norm, bit for bit, with many rows normalised at once
    /// ([`crate::welford`]); with burn's `simd` feature, burn's own SIMD kernel.
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let shape = x.shape();
        let f32s = [&x, &gamma, &beta].iter().all(|t| t.dtype() == DType::F32);
        let width = shape[shape.num_dims() - 1];
        if cfg!(feature = "flex-simd")
            || !f32s
            || width == 0
            || gamma.shape().num_elements() != width
        {
            return Self::layer_norm(x, gamma, Some(beta), epsilon);
        }
        let contiguous = |t: &FloatTensor<Self>| t.to_contiguous();
        let (x, gamma, beta) = (contiguous(&x), contiguous(&gamma), contiguous(&beta));
        fn values(t: &FloatTensor<Flex>) -> &[f32] {
            let (start, end) = t.layout().contiguous_offsets().expect("made contiguous");
            &t.storage::<f32>()[start..end]
        }
        let mut output = FloatTensor::<Self>::empty(shape, DType::F32);
        crate::welford::layer_norm_rows(
            values(&x),
            output.storage_mut::<f32>(),
            values(&gamma),
            values(&beta),
            epsilon as f32,
        );
        output
    }
}

#[cfg(feature = "tch")]
impl FusedOps for burn::backend::LibTorch {}

/// Attention for training: the forward pass with what the backward pass keeps beyond q, k, v
/// and the output, and the backward pass. By default nothing more is kept and the backward pass
/// recomputes the probabilities ([`attention_backward`]); libtorch's CPU keeps each row's
/// log-sum-exp and runs PyTorch's flash-attention backward, tiled, as a PyTorch model's
/// attention trains there.
pub trait TrainingAttention: FusedOps {
    fn attention_forward(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        dropout: f64,
        seed: u64,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        (
            Self::fused_attention(query, key, value, dropout, seed),
            None,
        )
    }

    fn attention_backward(
        state: AttentionState<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        attention_backward::<Self>(state, grad)
    }
}

impl TrainingAttention for Flex {}

#[cfg(feature = "tch")]
impl TrainingAttention for burn::backend::LibTorch {
    fn attention_forward(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        dropout: f64,
        seed: u64,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        use burn::backend::libtorch::TchTensor;
        if dropout != 0.0 || query.tensor.device() != tch::Device::Cpu {
            return (
                Self::fused_attention(query, key, value, dropout, seed),
                None,
            );
        }
        // The kernel scaled_dot_product_attention runs on the CPU, here with its row statistics.
        let (output, logsumexp) = tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu(
            &query.tensor,
            &key.tensor,
            &value.tensor,
            0.0,
            false,
            None::<tch::Tensor>,
            None,
        );
        (TchTensor::new(output), Some(TchTensor::new(logsumexp)))
    }

    fn attention_backward(
        ([q, k, v, o], logsumexp, dropout, seed): AttentionState<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        use burn::backend::libtorch::TchTensor;
        let Some(logsumexp) = logsumexp else {
            return attention_backward::<Self>(([q, k, v, o], None, dropout, seed), grad);
        };
        let (dq, dk, dv) =
            tch::Tensor::internal_scaled_dot_product_flash_attention_for_cpu_backward(
                &grad.tensor,
                &q.tensor,
                &k.tensor,
                &v.tensor,
                &o.tensor,
                &logsumexp.tensor,
                0.0,
                false,
                None::<tch::Tensor>,
                None,
            );
        [TchTensor::new(dq), TchTensor::new(dk), TchTensor::new(dv)]
    }
}

/// softmax(q kᵀ / √d) over the last dimension.
fn attention_probabilities<B: Backend>(q: &FloatTensor<B>, k: &FloatTensor<B>) -> FloatTensor<B> {
    let dims = q.shape().num_dims();
    let scale = (q.shape()[dims - 1] as f64).sqrt().recip();
    let scores = B::float_mul_scalar(
        B::float_matmul(q.clone(), B::float_swap_dims(k.clone(), dims - 2, dims - 1)),
        scale.into(),
    );
    let max = B::float_max_dim(scores.clone(), dims - 1);
    let exp = B::float_exp(B::float_sub(scores, max));
    let sum = B::float_sum_dim(exp.clone(), dims - 1);
    B::float_div(exp, sum)
}

/// The backward pass of D(softmax(q kᵀ s)) v, D the seeded dropout (or none), from q, k, v, the
/// output o and its gradient g: with P recomputed, dv = D(P)ᵀ g, dP = D(g vᵀ) (the same mask),
/// dS = P ⊙ (dP − rowsum(dP ⊙ P)), dq = s dS k, dk = s dSᵀ q. Without dropout rowsum(dP ⊙ P)
/// is the cheaper rowsum(g ⊙ o).
fn attention_backward<B: Backend + FusedOps>(
    ([q, k, v, o], _, dropout, seed): AttentionState<B>,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let dims = q.shape().num_dims();
    let scale = (q.shape()[dims - 1] as f64).sqrt().recip();
    let p = attention_probabilities::<B>(&q, &k);
    let drop = |t: FloatTensor<B>| match dropout {
        0.0 => t,
        _ => B::fused_dropout(t, dropout, seed),
    };
    let dv = B::float_matmul(
        B::float_swap_dims(drop(p.clone()), dims - 2, dims - 1),
        grad.clone(),
    );
    let dp = drop(B::float_matmul(
        grad.clone(),
        B::float_swap_dims(v, dims - 2, dims - 1),
    ));
    let delta = match dropout {
        0.0 => B::float_sum_dim(B::float_mul(grad, o), dims - 1),
        _ => B::float_sum_dim(B::float_mul(dp.clone(), p.clone()), dims - 1),
    };
    let ds = B::float_mul_scalar(B::float_mul(p, B::float_sub(dp, delta)), scale.into());
    let dq = B::float_matmul(ds.clone(), k);
    let dk = B::float_matmul(B::float_swap_dims(ds, dims - 2, dims - 1), q);
    [dq, dk, dv]
}

/// The common end of every backward pass here: the output's gradient in, `partials` of it,
/// each input that takes part in the backward pass handed its gradient.
fn backward<B: Backend, S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    partials: impl FnOnce(S, FloatTensor<B>) -> [FloatTensor<B>; N],
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

/// q, k, v, the output, what else the backend's forward pass kept, and the dropout probability
/// and seed.
pub type AttentionState<B> = ([FloatTensor<B>; 4], Option<FloatTensor<B>>, f64, u64);

impl<B: Backend + TrainingAttention> Backward<B, 3> for AttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward::<B, _, 3>(ops, grads, B::attention_backward);
    }
}

impl<B: Backend + TrainingAttention, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        dropout: f64,
        seed: u64,
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
                let (output, kept) =
                    B::attention_forward(q.clone(), k.clone(), v.clone(), dropout, seed);
                prep.finish(([q, k, v, output.clone()], kept, dropout, seed), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_attention(
                query.into_primitive(),
                key.into_primitive(),
                value.into_primitive(),
                dropout,
                seed,
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

    fn fused_dropout(x: FloatTensor<Self>, prob: f64, seed: u64) -> FloatTensor<Self> {
        match DropoutBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (prob, seed),
                B::fused_dropout(x.into_primitive(), prob, seed),
            ),
            OpsKind::UnTracked(prep) => {
                prep.finish(B::fused_dropout(x.into_primitive(), prob, seed))
            }
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
        backward::<B, _, 3>(ops, grads, |(x, gamma, epsilon), grad| {
            layer_norm_backward::<B>(x, gamma, epsilon, grad)
        });
    }
}

#[derive(Debug)]
struct DropoutBackward;

impl<B: Backend + FusedOps> Backward<B, 1> for DropoutBackward {
    type State = (f64, u64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        backward::<B, _, 1>(ops, grads, |(prob, seed), grad| {
            [B::fused_dropout(grad, prob, seed)]
        });
    }
}

/// How training draws dropout masks (the engine's `dropout_mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropoutMask {
    /// On flex, each layer call draws one seed and hashes it with each element's index
    /// ([`FusedOps::fused_dropout`]): one pass, recomputed in the backward pass. libtorch keeps
    /// burn's dropout.
    #[default]
    Hashed,
    /// burn's own dropout on every backend, element by element from the device's generator:
    /// the masks of runs made before `hashed` existed, to rerun them to the same numbers.
    Sampled,
}

/// How training records the transformers' linear layers (the engine's `linear_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearOp {
    /// One recorded operation whose weight gradient is one product over all rows ([`linear`]).
    #[default]
    Fused,
    /// burn's `Linear::forward`: the weight gradient of a batched input summed over the batch,
    /// the last bits of which differ; the runs made before `fused` existed, to rerun them to
    /// the same numbers.
    Burn,
}

thread_local! {
    static MASK: Cell<DropoutMask> = const { Cell::new(DropoutMask::Hashed) };
    static LINEAR: Cell<LinearOp> = const { Cell::new(LinearOp::Fused) };
}

/// Sets how dropout draws its masks on this thread (a run's training thread).
pub fn use_dropout_mask(mask: DropoutMask) {
    MASK.set(mask);
}

/// Sets how linear layers are recorded on this thread (a run's training thread).
pub fn use_linear_op(op: LinearOp) {
    LINEAR.set(op);
}

/// What a dropout layer does to a tensor on `device`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Nothing: evaluation, no autodiff, or probability 0.
    Identity,
    /// A mask recomputed from this seed ([`FusedOps::fused_dropout`]): on the CPU backend,
    /// where burn's sampled mask costs a fifth of a small model's step.
    Seeded(u64),
    /// burn's own dropout: with `DropoutMask::Sampled`, and on libtorch (its generator and
    /// kernels are fast, and drawing a seed on the host would wait on a GPU).
    Burns,
}

impl Plan {
    /// The seed is drawn from the device's generator, so `Device::seed` still makes a run
    /// repeat.
    fn of(dropout: &Dropout, device: &Device) -> Plan {
        if MASK.get() == DropoutMask::Sampled && dropout.prob > 0.0 {
            return Plan::Burns;
        }
        if !dropout.training.is_enabled() || !device.is_autodiff() || dropout.prob == 0.0 {
            return Plan::Identity;
        }
        let device = device.clone().without_autodiff();
        if device != Device::flex() {
            return Plan::Burns;
        }
        let draws = Tensor::<1>::random([2], Distribution::Default, &device)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 draws");
        // Two uniform f32 in [0, 1) carry 24 random bits each.
        let bits = |u: f32| (u * 16_777_216.0) as u64;
        Plan::Seeded(bits(draws[0]) << 24 | bits(draws[1]))
    }
}

/// `dropout.forward(x)`, as one recorded operation with a seeded mask where that is cheaper.
pub fn dropout<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    match Plan::of(dropout, &x.device()) {
        Plan::Identity => x,
        Plan::Burns => dropout.forward(x),
        Plan::Seeded(seed) => {
            Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::fused_dropout(
                x.into_dispatch(),
                dropout.prob,
                seed,
            ))
        }
    }
}

/// `linear.forward(x)` as one recorded operation. burn's dispatch backend records a linear
/// layer on inputs of rank 3 or more as a batched product with the weight broadcast over the
/// batch, so its weight gradient is a [batch, in, out] product summed over the batch: a
/// temporary of that size per layer per step (at the paper size, 190 MB for each MLP layer of
/// the OCT encoder), freshly paged in, and a reduction: 30% of a paper-size step on
/// libtorch. Recorded as one operation (burn's autodiff `linear`), the weight gradient is one
/// product over all rows, as PyTorch's. The forward pass is the same computation.
pub fn linear<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    let Some(bias) = &linear.bias else {
        return linear.forward(x);
    };
    if D < 3 || !x.device().is_autodiff() || LINEAR.get() == LinearOp::Burn {
        return linear.forward(x);
    }
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::fused_linear(
        x.into_dispatch(),
        linear.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
    ))
}

/// softmax(q kᵀ / √d) v for q, k, v of shape [B, H, L, d], differentiable, one recorded operation.
pub fn attention(query: Tensor<4>, key: Tensor<4>, value: Tensor<4>) -> Tensor<4> {
    attention_dropped(query, key, value, 0.0, 0)
}

/// [`attention`] with its probabilities dropped as [`FusedOps::fused_dropout`] does.
fn attention_dropped(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, prob: f64, seed: u64) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        prob,
        seed,
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

/// burn's `TransformerEncoder::forward`, its layer norms and dropouts fused (`epsilon` is the
/// encoder's) and, without a padding mask, each attention fused, its probabilities dropped by a
/// seeded mask (libtorch's attention with dropout, and BERT's masked one, keep burn's).
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
    let mha = &layer.mha;
    let attend = |x: Tensor<3>| match mask_pad {
        Some(mask) => mha.forward(MhaInput::self_attn(x).mask_pad(mask)).context,
        None => match Plan::of(&mha.dropout, &x.device()) {
            Plan::Identity => self_attention(mha, x, 0.0, 0),
            Plan::Seeded(seed) => self_attention(mha, x, mha.dropout.prob, seed),
            Plan::Burns => mha.forward(MhaInput::self_attn(x)).context,
        },
    };
    let attended = match layer.norm_first {
        true => attend(norm(&layer.norm_2, x.clone())),
        false => attend(x.clone()),
    };
    let mut x = x + dropout(&layer.dropout, attended);
    let residual = match layer.norm_first {
        true => norm(&layer.norm_1, x.clone()),
        false => {
            x = norm(&layer.norm_1, x);
            x.clone()
        }
    };
    let x = x + dropout(&layer.dropout, feed_forward(&layer.pwff, residual));
    match layer.norm_first {
        true => x,
        false => norm(&layer.norm_2, x),
    }
}

/// `PositionWiseFeedForward::forward` with its dropout fused.
fn feed_forward(pwff: &PositionWiseFeedForward, x: Tensor<3>) -> Tensor<3> {
    let hidden = pwff.activation.forward(linear(&pwff.linear_inner, x));
    linear(&pwff.linear_outer, dropout(&pwff.dropout, hidden))
}

/// `MultiHeadAttention::forward(MhaInput::self_attn(x)).context` with one fused attention, its
/// probabilities dropped with `prob` and `seed`.
fn self_attention(mha: &MultiHeadAttention, x: Tensor<3>, prob: f64, seed: u64) -> Tensor<3> {
    let [b, l, d] = x.dims();
    let heads = |layer: &Linear| {
        linear(layer, x.clone())
            .reshape([b, l, mha.n_heads, mha.d_k])
            .swap_dims(1, 2)
    };
    let (q, k, v) = (heads(&mha.query), heads(&mha.key), heads(&mha.value));
    let context = attention_dropped(q, k, v, prob, seed);
    linear(&mha.output, context.swap_dims(1, 2).reshape([b, l, d]))
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
    fn output_and_gradients_equal_the_op_by_op_attention_with_and_without_dropout() {
        for device in devices() {
            for prob in [0.0, 0.2] {
                attention_against_op_by_op(device.clone().autodiff(), prob);
            }
        }
    }

    fn attention_against_op_by_op(device: Device, prob: f64) {
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
        let fused = attention_dropped(q1.clone(), k1.clone(), v1.clone(), prob, 11);
        let grads_fused = (fused.clone() * w.clone()).sum().backward();
        let (q2, k2, v2) = leaves();
        let reference = match prob {
            0.0 => op_by_op(q2.clone(), k2.clone(), v2.clone()),
            _ => {
                let d = q2.dims()[3] as f32;
                let p = softmax(
                    q2.clone()
                        .matmul(k2.clone().transpose())
                        .div_scalar(d.sqrt()),
                    3,
                );
                seeded_dropout(p, prob, 11).matmul(v2.clone())
            }
        };
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

    /// libtorch's CPU trains attention with PyTorch's flash backward (the gradient test above
    /// checks its numbers); with dropout it recomputes, as every other backend.
    #[cfg(feature = "tch")]
    #[test]
    fn libtorch_cpu_keeps_row_statistics_only_without_dropout() {
        use burn::backend::{LibTorch, libtorch::TchTensor};
        let draw = || {
            TchTensor::new(tch::Tensor::randn(
                [1, 2, 4, 3],
                (tch::Kind::Float, tch::Device::Cpu),
            ))
        };
        let kept = |prob| {
            <LibTorch as TrainingAttention>::attention_forward(draw(), draw(), draw(), prob, 1).1
        };
        assert_eq!(
            kept(0.0).map(|lse| lse.shape().dims::<3>()),
            Some([1, 2, 4])
        );
        assert!(kept(0.2).is_none());
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
        let beta = norm.beta.as_ref().unwrap();
        same_output_and_gradients(
            x,
            |x| layer_norm(&norm, x, 1e-5),
            |x| norm.forward(x),
            &[
                ("gamma", &|g| norm.gamma.grad(g).unwrap().unsqueeze()),
                ("beta", &|g| beta.grad(g).unwrap().unsqueeze()),
            ],
        );
    }

    /// A parameter's name and how to read its gradient.
    type ParamGrad<'a> = (&'a str, &'a dyn Fn(&burn::tensor::Gradients) -> Tensor<4>);

    /// `fused` and `reference` applied to the same `x`, each into the backward pass of one
    /// random weighting of its output: the outputs, x's gradients and the gradients `params`
    /// read agree.
    fn same_output_and_gradients(
        x: Tensor<3>,
        fused: impl Fn(Tensor<3>) -> Tensor<3>,
        reference: impl Fn(Tensor<3>) -> Tensor<3>,
        params: &[ParamGrad],
    ) {
        let x1 = x.clone().require_grad();
        let out1 = fused(x1.clone());
        let w = Tensor::<3>::random(out1.dims(), Distribution::Normal(0.0, 1.0), &x.device());
        let grads1 = (out1.clone() * w.clone()).sum().backward();
        let x2 = x.require_grad();
        let out2 = reference(x2.clone());
        let grads2 = (out2.clone() * w).sum().backward();

        close(out1.unsqueeze(), out2.unsqueeze(), "output");
        close(
            x1.grad(&grads1).unwrap().unsqueeze(),
            x2.grad(&grads2).unwrap().unsqueeze(),
            "x",
        );
        for (name, grad) in params {
            close(grad(&grads1), grad(&grads2), name);
        }
    }

    #[test]
    fn linear_output_and_gradients_equal_burns_and_burn_is_the_thread_setting() {
        for device in devices() {
            // 5 rows of 3 batches: burn's dispatch runs this as a broadcast batched product.
            let device = device.autodiff();
            let layer = burn::nn::LinearConfig::new(6, 4).init(&device);
            let x = Tensor::<3>::random([3, 5, 6], Distribution::Normal(0.0, 1.0), &device);
            let bias = layer.bias.as_ref().unwrap();
            same_output_and_gradients(
                x,
                |x| linear(&layer, x),
                |x| layer.forward(x),
                &[
                    ("weight", &|g| layer.weight.grad(g).unwrap().unsqueeze()),
                    ("bias", &|g| bias.grad(g).unwrap().unsqueeze()),
                ],
            );
        }
        // With `burn` it is burn's forward, recorded op by op: bit for bit the same weight
        // gradient. The setting is the thread's: tests beside this one keep the default.
        let device = Device::flex().autodiff();
        let layer = burn::nn::LinearConfig::new(6, 4).init(&device);
        let x = Tensor::<3>::random([3, 5, 6], Distribution::Normal(0.0, 1.0), &device);
        let weight_grad = |y: Tensor<3>| values(layer.weight.grad(&y.sum().backward()).unwrap());
        use_linear_op(LinearOp::Burn);
        let pinned = weight_grad(linear(&layer, x.clone()));
        use_linear_op(LinearOp::Fused);
        assert_eq!(pinned, weight_grad(layer.forward(x)));
    }

    /// fused_dropout through the dispatcher: flex's kernel on flex, the host mask elsewhere.
    fn seeded_dropout<const D: usize>(x: Tensor<D>, prob: f64, seed: u64) -> Tensor<D> {
        Tensor::from_dispatch(<burn::backend::Dispatch as FusedOps>::fused_dropout(
            x.into_dispatch(),
            prob,
            seed,
        ))
    }

    fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn dropout_kernel_equals_the_host_mask_in_any_layout_and_on_every_backend() {
        let flex = Device::flex();
        let x = Tensor::<2>::random([37, 53], Distribution::Normal(0.0, 1.0), &flex);
        let by_mask = |x: Tensor<2>| {
            Tensor::<2>::from_dispatch(dropout_by_host_mask::<burn::backend::Dispatch>(
                x.into_dispatch(),
                0.3,
                7,
            ))
        };
        for x in [
            x.clone(),
            x.clone().transpose(),
            x.clone().slice([3..20, 5..40]),
        ] {
            let kernel = values(seeded_dropout(x.clone(), 0.3, 7));
            assert_eq!(kernel, values(by_mask(x.clone())));
            let dropped = kernel.iter().filter(|v| **v == 0.0).count();
            let kept_scaled = kernel
                .iter()
                .zip(values(x.clone()))
                .all(|(k, x)| *k == 0.0 || (k - x / 0.7).abs() < 1e-6);
            assert!(kept_scaled, "kept values are x / (1 - p)");
            let share = dropped as f64 / kernel.len() as f64;
            assert!((share - 0.3).abs() < 0.05, "dropped share {share}");
        }
        for device in devices() {
            let here = Tensor::<2>::from_data(x.to_data(), &device);
            assert_eq!(
                values(seeded_dropout(here, 0.3, 7)),
                values(by_mask(x.clone()))
            );
        }
    }

    #[test]
    fn dropout_masks_follow_the_seed_and_the_gradient_takes_the_same_mask() {
        let device = Device::flex().autodiff();
        let layer = burn::nn::DropoutConfig::new(0.25).init();
        let x = Tensor::<2>::random([64, 64], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<2>::random([64, 64], Distribution::Normal(0.0, 1.0), &device);
        // The mask is a function of the seed (the seed itself comes from the device's
        // generator, which tests running beside this one share, so it is not pinned here).
        let masked = |seed| values(seeded_dropout(x.clone().inner(), 0.25, seed));
        assert!(masked(3) == masked(3), "same seed, same mask");
        assert!(masked(3) != masked(4), "another seed, another mask");
        let leaf = x.clone().require_grad();
        let out = dropout(&layer, leaf.clone());
        let grads = (out.clone() * w.clone()).sum().backward();
        let (out, grad) = (values(out), values(leaf.grad(&grads).unwrap()));
        let (xs, ws) = (values(x.clone()), values(w.clone()));
        for i in 0..out.len() {
            let expected = if out[i] == 0.0 { 0.0 } else { ws[i] / 0.75 };
            assert!((grad[i] - expected).abs() < 1e-5, "element {i}");
            assert!(out[i] == 0.0 || (out[i] - xs[i] / 0.75).abs() < 1e-5);
        }
        let dropped = out.iter().filter(|v| **v == 0.0).count() as f64 / out.len() as f64;
        assert!((dropped - 0.25).abs() < 0.03, "dropped share {dropped}");
        // Without autodiff (evaluation) it is the identity, as burn's.
        let eval = dropout(&layer, x.clone().inner()).into_data();
        assert_eq!(eval, x.inner().into_data());
    }

    #[test]
    fn hashed_masks_on_flex_only_and_sampled_ones_are_burns_dropout() {
        let layer = burn::nn::DropoutConfig::new(0.1).init();
        let flex = Device::flex().autodiff();
        assert!(matches!(Plan::of(&layer, &flex), Plan::Seeded(_)));
        assert_eq!(Plan::of(&layer, &Device::flex()), Plan::Identity);
        #[cfg(feature = "tch")]
        assert_eq!(
            Plan::of(&layer, &Device::libtorch().autodiff()),
            Plan::Burns
        );
        // The setting is the thread's: tests beside this one keep the default.
        use_dropout_mask(DropoutMask::Sampled);
        assert_eq!(Plan::of(&layer, &flex), Plan::Burns);
        use_dropout_mask(DropoutMask::Hashed);
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
