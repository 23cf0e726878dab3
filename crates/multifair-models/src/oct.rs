//! The OCT branch: one encoder shared by every B-scan, a learned slice position embedding, a
//! transformer aggregator over the slices, and token 0 as the volume's feature.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::vit::{Vit, VitConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OctConfig {
    /// The per-slice encoder (one input channel).
    pub slice: VitConfig,
    pub slices: usize,
    pub aggregator_layers: usize,
    pub aggregator_heads: usize,
}

#[derive(Module, Debug)]
pub struct OctEncoder {
    slice: Vit,
    position: Param<Tensor<3>>,
    aggregator: TransformerEncoder,
}

impl OctConfig {
    pub fn init(&self, device: &Device) -> OctEncoder {
        let d = self.slice.hidden;
        OctEncoder {
            slice: self.slice.init(device),
            position: Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([1, self.slices, d], device),
            aggregator: TransformerEncoderConfig::new(
                d,
                4 * d,
                self.aggregator_heads,
                self.aggregator_layers,
            )
            .with_dropout(self.slice.dropout)
            .init(device),
        }
    }
}

impl OctEncoder {
    /// Replaces the per-slice encoder (e.g. with pretrained weights).
    pub fn with_slice_encoder(mut self, slice: Vit) -> Self {
        self.slice = slice;
        self
    }

    /// Volumes [B, S, H, W] -> features [B, hidden].
    pub fn forward(&self, volumes: Tensor<4>) -> Tensor<2> {
        let [b, s, h, w] = volumes.dims();
        let per_slice = self.slice.forward(volumes.reshape([b * s, 1, h, w])); // [B*S, d]
        let d = per_slice.dims()[1];
        let x = per_slice.reshape([b, s, d]) + self.position.val();
        let x = self.aggregator.forward(TransformerEncoderInput::new(x));
        x.slice([0..b, 0..1, 0..d]).reshape([b, d])
    }
}
