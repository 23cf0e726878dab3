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
    /// The per-slice encoder: one input channel, or three fed the grey slice repeated (the
    /// original's; its patch filters then learn as three, not as their sum).
    pub slice: VitConfig,
    pub slices: usize,
    pub aggregator_layers: usize,
    pub aggregator_heads: usize,
    /// Dropout inside the slice aggregator (the original's 0.1).
    #[serde(default)]
    pub aggregator_dropout: f64,
    /// The original's layout: the slice position encoding starts at zero, as its
    /// `nn.Parameter(zeros)` (else N(0, 0.02)), and the aggregator's attention is initialised as
    /// PyTorch's.
    #[serde(default)]
    pub zero_position: bool,
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
            position: match self.zero_position {
                true => Initializer::Zeros,
                false => Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                },
            }
            .init([1, self.slices, d], device),
            aggregator: {
                let aggregator = TransformerEncoderConfig::new(
                    d,
                    4 * d,
                    self.aggregator_heads,
                    self.aggregator_layers,
                )
                .with_dropout(self.aggregator_dropout)
                .init(device);
                // The original's layout also initialises its attention as PyTorch does.
                match self.zero_position {
                    true => crate::torch_init::torch_attention(aggregator, device),
                    false => aggregator,
                }
            },
        }
    }
}

impl OctEncoder {
    /// Input channels of the per-slice encoder.
    pub fn slice_channels(&self) -> usize {
        self.slice.in_channels()
    }

    /// Replaces the per-slice encoder (e.g. with pretrained weights).
    pub fn with_slice_encoder(mut self, slice: Vit) -> Self {
        self.slice = slice;
        self
    }

    /// Volumes [B, S, H, W] -> features [B, hidden].
    pub fn forward(&self, volumes: Tensor<4>) -> Tensor<2> {
        let [b, s, h, w] = volumes.dims();
        let grey = volumes.reshape([b * s, 1, h, w]);
        let channels = self.slice.in_channels();
        let input = match channels {
            1 => grey,
            _ => grey.repeat_dim(1, channels),
        };
        let per_slice = self.slice.forward(input); // [B*S, d]
        let d = per_slice.dims()[1];
        let x = per_slice.reshape([b, s, d]) + self.position.val();
        let x = self.aggregator.forward(TransformerEncoderInput::new(x));
        x.slice([0..b, 0..1, 0..d]).reshape([b, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EncoderConfig;
    use crate::presets::ModelSize;
    use burn::tensor::Distribution;

    #[test]
    fn the_paper_size_is_the_originals_oct_layout() {
        let EncoderConfig::Volume(c) = ModelSize::Paper.encoder("volume", 224, 10, 0, 0) else {
            panic!("a volume encoder");
        };
        assert_eq!(c.slice.in_channels, 3);
        assert_eq!(c.aggregator_dropout, 0.1);
        assert!(c.zero_position);
        let EncoderConfig::Text(t) = ModelSize::Paper.encoder("text", 224, 10, 100, 0) else {
            panic!("a text encoder");
        };
        assert_eq!(t.cls_dropout, 0.1);
    }

    /// Feeding the grey slice on three channels equals one channel through the summed filters:
    /// the two layouts differ in how the filters learn, not in what they compute.
    #[test]
    fn grey_on_three_channels_equals_the_summed_filters() {
        let device = Device::flex();
        device.seed(0);
        let EncoderConfig::Volume(mut c) = ModelSize::Tiny.encoder("volume", 16, 3, 0, 0) else {
            panic!("a volume encoder");
        };
        c.slice.in_channels = 3;
        (c.slice.dropout, c.aggregator_dropout) = (0.0, 0.0);
        let three = c.init(&device);
        let one = three
            .clone()
            .with_slice_encoder(three.slice.clone().single_channel());
        assert_eq!((three.slice_channels(), one.slice_channels()), (3, 1));
        let volumes = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (three.forward(volumes.clone()), one.forward(volumes));
        let diff = (a - b).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "{diff}");
    }
}
