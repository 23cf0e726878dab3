//! Vision transformer (ViT-B/16 layout): patch embedding, class token, position embedding,
//! pre-LN encoder, final LayerNorm, and the HF-style pooler (dense + tanh on the class token).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::transformer::{TransformerEncoder, TransformerEncoderConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub mlp: usize,
    pub dropout: f64,
    pub layer_norm_eps: f64,
}

#[derive(Module, Debug)]
pub struct Vit {
    patch: Conv2d,
    cls: Param<Tensor<3>>,
    position: Param<Tensor<3>>,
    encoder: TransformerEncoder,
    norm: LayerNorm,
    pooler: Linear,
    /// The layer norms' epsilon, which burn's `LayerNorm` keeps private (for `fused`).
    epsilon: f64,
}

impl VitConfig {
    pub fn init(&self, device: &Device) -> Vit {
        assert!(
            self.image_size % self.patch_size == 0,
            "image size must be a multiple of the patch size"
        );
        let patches = (self.image_size / self.patch_size).pow(2);
        let small = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Vit {
            patch: Conv2dConfig::new([self.in_channels, self.hidden], [self.patch_size; 2])
                .with_stride([self.patch_size; 2])
                .init(device),
            cls: small.init([1, 1, self.hidden], device),
            position: small.init([1, patches + 1, self.hidden], device),
            encoder: TransformerEncoderConfig::new(self.hidden, self.mlp, self.heads, self.layers)
                .with_dropout(self.dropout)
                .with_norm_first(true)
                .with_layer_norm_eps(self.layer_norm_eps)
                .init(device),
            norm: LayerNormConfig::new(self.hidden)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
            pooler: LinearConfig::new(self.hidden, self.hidden).init(device),
            epsilon: self.layer_norm_eps,
        }
    }
}

impl Vit {
    /// The same encoder for one-channel input: a grey image x fed as (x, x, x) to a 3-channel
    /// patch embedding equals x through the filters summed over channels (how an RGB
    /// checkpoint serves the OCT B-scans).
    pub fn single_channel(mut self) -> Vit {
        let weight = self.patch.weight.val().sum_dim(1).detach();
        self.patch.weight = Param::from_tensor(weight);
        self
    }

    /// Input channels of the patch embedding.
    pub fn in_channels(&self) -> usize {
        self.patch.weight.dims()[1]
    }

    /// Images [B, C, H, W] -> pooled features [B, hidden].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.patch.forward(images); // [B, d, h, w]
        let [b, d, h, w] = x.dims();
        let x = x.reshape([b, d, h * w]).swap_dims(1, 2); // [B, N, d]
        let cls = self.cls.val().expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, x], 1) + self.position.val();
        let x = crate::fused::encoder(&self.encoder, x, None, self.epsilon);
        let x = crate::fused::layer_norm(&self.norm, x, self.epsilon);
        let first = x.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        tanh(self.pooler.forward(first))
    }
}
