//! `tiny` (the CPU default) and `paper` (ViT-B/16, 224 px, 10 slices, BERT-base) sizes.

use serde::{Deserialize, Serialize};

use crate::mlp::MlpConfig;
use crate::model::{EncoderConfig, ModelConfig};
use crate::oct::OctConfig;
use crate::text::TextConfig;
use crate::vit::VitConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelSize {
    Tiny,
    Paper,
}

impl ModelSize {
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "tiny" => Ok(ModelSize::Tiny),
            "paper" => Ok(ModelSize::Paper),
            _ => Err(format!(
                "unknown model size '{name}'; available: tiny, paper"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelSize::Tiny => "tiny",
            ModelSize::Paper => "paper",
        }
    }

    /// Input sizes the preset expects: (image size, OCT slices).
    pub fn inputs(self) -> (usize, usize) {
        match self {
            ModelSize::Tiny => (32, 8),
            ModelSize::Paper => (224, 10),
        }
    }

    fn vit(self, in_channels: usize, image_size: usize) -> VitConfig {
        match self {
            ModelSize::Tiny => VitConfig {
                image_size,
                patch_size: 8,
                in_channels,
                hidden: 64,
                layers: 2,
                heads: 4,
                mlp: 128,
                dropout: 0.1,
                layer_norm_eps: 1e-6,
            },
            ModelSize::Paper => VitConfig {
                image_size,
                patch_size: 16,
                in_channels,
                hidden: 768,
                layers: 12,
                heads: 12,
                mlp: 3072,
                dropout: 0.0,
                layer_norm_eps: 1e-12,
            },
        }
    }

    /// The encoder for a modality kind: "image", "volume", "text" or "tabular".
    pub fn encoder(
        self,
        kind: &str,
        image_size: usize,
        slices: usize,
        vocab: usize,
        columns: usize,
    ) -> EncoderConfig {
        match kind {
            "image" => EncoderConfig::Image(self.vit(3, image_size)),
            // The paper size is the original's layout: the grey slice repeated on three channels,
            // aggregator dropout 0.1, the position encoding from zeros.
            "volume" => EncoderConfig::Volume(OctConfig {
                slice: self.vit(if self == ModelSize::Paper { 3 } else { 1 }, image_size),
                slices,
                aggregator_layers: 2,
                aggregator_heads: 4,
                aggregator_dropout: 0.1,
                zero_position: self == ModelSize::Paper,
            }),
            "text" => EncoderConfig::Text(match self {
                ModelSize::Tiny => TextConfig {
                    vocab_size: vocab,
                    max_positions: 512,
                    type_vocab_size: 2,
                    hidden: 64,
                    layers: 2,
                    heads: 4,
                    intermediate: 128,
                    dropout: 0.1,
                    layer_norm_eps: 1e-12,
                    cls_dropout: 0.0,
                },
                ModelSize::Paper => TextConfig {
                    vocab_size: vocab,
                    max_positions: 512,
                    type_vocab_size: 2,
                    hidden: 768,
                    layers: 12,
                    heads: 12,
                    intermediate: 3072,
                    dropout: 0.1,
                    layer_norm_eps: 1e-12,
                    // The original's TextEncoder: Dropout(0.1) on the [CLS] feature.
                    cls_dropout: 0.1,
                },
            }),
            _ => EncoderConfig::Tabular(MlpConfig {
                inputs: columns,
                hidden: if self == ModelSize::Tiny { 64 } else { 256 },
                layers: 2,
                dropout: 0.1,
            }),
        }
    }

    /// Fusion sizes: (p, heads, layers). The paper uses p 128 / 4 heads / 2 layers on FairVision
    /// and p 256 / 8 heads / 3 layers on FairVLMed.
    pub fn fusion(self, with_text: bool) -> (usize, usize, usize) {
        match (self, with_text) {
            (ModelSize::Tiny, _) => (64, 4, 1),
            (ModelSize::Paper, false) => (128, 4, 2),
            (ModelSize::Paper, true) => (256, 8, 3),
        }
    }

    /// A model over `modalities` (name, kind) with `classes` outputs.
    pub fn model(
        self,
        modalities: &[(&str, &str)],
        image_size: usize,
        slices: usize,
        vocab: usize,
        classes: usize,
    ) -> ModelConfig {
        let with_text = modalities.iter().any(|(_, k)| *k == "text");
        let (fusion_dim, fusion_heads, mut fusion_layers) = self.fusion(with_text);
        // Attention over a single token is the identity: a one-modality model goes straight
        // from its token to the head.
        if modalities.len() == 1 {
            fusion_layers = 0;
        }
        ModelConfig {
            modalities: modalities
                .iter()
                .map(|(name, kind)| {
                    (
                        name.to_string(),
                        self.encoder(kind, image_size, slices, vocab, 0),
                    )
                })
                .collect(),
            fusion_dim,
            fusion_heads,
            fusion_layers,
            classes,
            dropout: 0.1,
            fin_groups: None,
            torch_init: self == ModelSize::Paper,
            readout: crate::model::Readout::Fused,
        }
    }
}
