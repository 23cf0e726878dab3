//! BERT-style text encoder: token, position and segment embeddings, post-LN encoder, [CLS].

use burn::module::Module;
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub dropout: f64,
    pub layer_norm_eps: f64,
    /// Dropout on the [CLS] feature the encoder returns.
    #[serde(default)]
    pub cls_dropout: f64,
}

#[derive(Module, Debug)]
pub struct TextEncoder {
    tokens: Embedding,
    positions: Embedding,
    segments: Embedding,
    norm: LayerNorm,
    dropout: Dropout,
    encoder: TransformerEncoder,
    cls_dropout: Dropout,
    /// The layer norms' epsilon, which burn's `LayerNorm` keeps private (for `fused`).
    epsilon: f64,
}

impl TextConfig {
    pub fn init(&self, device: &Device) -> TextEncoder {
        TextEncoder {
            tokens: EmbeddingConfig::new(self.vocab_size, self.hidden).init(device),
            positions: EmbeddingConfig::new(self.max_positions, self.hidden).init(device),
            segments: EmbeddingConfig::new(self.type_vocab_size, self.hidden).init(device),
            norm: LayerNormConfig::new(self.hidden)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            encoder: TransformerEncoderConfig::new(
                self.hidden,
                self.intermediate,
                self.heads,
                self.layers,
            )
            .with_dropout(self.dropout)
            .with_norm_first(false)
            .with_layer_norm_eps(self.layer_norm_eps)
            .init(device),
            cls_dropout: DropoutConfig::new(self.cls_dropout).init(),
            epsilon: self.layer_norm_eps,
        }
    }
}

impl TextEncoder {
    /// The [CLS] feature's dropout probability.
    pub fn cls_dropout(&self) -> f64 {
        self.cls_dropout.prob
    }

    /// The same encoder with `prob` dropout on its [CLS] feature.
    pub fn with_cls_dropout(mut self, prob: f64) -> Self {
        self.cls_dropout = DropoutConfig::new(prob).init();
        self
    }

    /// Token ids and attention mask (1 = token, 0 = padding), both [B, L] -> [CLS] features [B, hidden].
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<2> {
        let x = self.hidden_states(ids, mask);
        let [b, _, d] = x.dims();
        crate::fused::dropout(
            &self.cls_dropout,
            x.slice([0..b, 0..1, 0..d]).reshape([b, d]),
        )
    }

    /// The mean of the token states over the mask (sentence-transformers' mean pooling) [B, hidden].
    pub fn mean_pooled(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<2> {
        let [b, l] = mask.dims();
        let weights = mask.clone().float().reshape([b, l, 1]);
        let x = self.hidden_states(ids, mask);
        let [_, _, d] = x.dims();
        let summed = (x * weights.clone()).sum_dim(1).reshape([b, d]);
        summed / weights.sum_dim(1).reshape([b, 1]).clamp_min(1e-9)
    }

    /// Every token's final hidden state [B, L, hidden].
    pub fn hidden_states(&self, ids: Tensor<2, Int>, mask: Tensor<2, Int>) -> Tensor<3> {
        let [b, l] = ids.dims();
        let device = ids.device();
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
            .reshape([1, l])
            .expand([b, l]);
        let segments = Tensor::<2, Int>::zeros([b, l], &device);
        let x = self.tokens.forward(ids)
            + self.positions.forward(positions)
            + self.segments.forward(segments);
        let x = crate::fused::layer_norm(&self.norm, x, self.epsilon);
        let x = crate::fused::dropout(&self.dropout, x);
        crate::fused::encoder(&self.encoder, x, Some(mask.equal_elem(0)), self.epsilon)
    }
}
