//! The multimodal model: one encoder per modality (one contract: input -> [B, d]), a projection
//! to the fusion width, a fusion transformer over the modality tokens with the reference's head,
//! and per-modality auxiliary heads on detached features.

use burn::module::Module;
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::fin::FairNorm;
use crate::mlp::{Mlp, MlpConfig};
use crate::oct::{OctConfig, OctEncoder};
use crate::text::{TextConfig, TextEncoder};
use crate::vit::{Vit, VitConfig};

/// An encoder's configuration, by the kind of data it reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncoderConfig {
    Image(VitConfig),
    Volume(OctConfig),
    Text(TextConfig),
    Tabular(MlpConfig),
}

impl EncoderConfig {
    pub fn init(&self, device: &Device) -> Encoder {
        match self {
            EncoderConfig::Image(c) => Encoder::Image(c.init(device)),
            EncoderConfig::Volume(c) => Encoder::Volume(c.init(device)),
            EncoderConfig::Text(c) => Encoder::Text(c.init(device)),
            EncoderConfig::Tabular(c) => Encoder::Tabular(c.init(device)),
        }
    }

    /// Width of the encoder's output features.
    pub fn out_dim(&self) -> usize {
        match self {
            EncoderConfig::Image(c) => c.hidden,
            EncoderConfig::Volume(c) => c.slice.hidden,
            EncoderConfig::Text(c) => c.hidden,
            EncoderConfig::Tabular(c) => c.hidden,
        }
    }
}

#[derive(Module, Debug)]
pub enum Encoder {
    Image(Vit),
    Volume(OctEncoder),
    Text(TextEncoder),
    Tabular(Mlp),
}

/// One modality's batch on the device.
#[derive(Debug, Clone)]
pub enum ModalityInput {
    /// Images [B, 3, S, S] or volumes [B, slices, S, S].
    Pixels(Tensor<4>),
    /// Token ids and attention mask [B, L].
    Tokens(Tensor<2, Int>, Tensor<2, Int>),
    /// Numeric rows [B, columns].
    Rows(Tensor<2>),
}

impl EncoderConfig {
    /// Checks the input sizes against the encoder: a ViT's image size must be a positive
    /// multiple of its patch size, a text encoder must have a position for every token.
    pub fn check_inputs(&self, max_tokens: usize) -> Result<(), String> {
        let vit = match self {
            EncoderConfig::Image(c) => Some(c),
            EncoderConfig::Volume(c) => Some(&c.slice),
            EncoderConfig::Text(c) if c.max_positions < max_tokens => {
                return Err(format!(
                    "--set max_tokens={max_tokens}: the text encoder has {} positions",
                    c.max_positions
                ));
            }
            _ => None,
        };
        match vit {
            Some(c) if c.image_size == 0 || c.image_size % c.patch_size != 0 => Err(format!(
                "--set image_size={}: must be a positive multiple of the ViT's patch size {} (e.g. {})",
                c.image_size,
                c.patch_size,
                c.patch_size * (c.image_size / c.patch_size).max(1)
            )),
            _ => Ok(()),
        }
    }
}

impl ModalityInput {
    /// The input on `device`; `blank` zeroes pixels or replaces tokens with padding ids (mask
    /// kept), so that the modality says nothing about the sample. Rows come only from
    /// manifests, which mark a modality missing instead, and are moved as they are.
    pub fn to_device(self, device: &Device, blank: bool) -> Self {
        match self {
            ModalityInput::Pixels(x) => {
                let x = x.to_device(device);
                ModalityInput::Pixels(if blank { x.zeros_like() } else { x })
            }
            ModalityInput::Tokens(ids, mask) => {
                let ids = ids.to_device(device);
                let ids = if blank { ids.zeros_like() } else { ids };
                ModalityInput::Tokens(ids, mask.to_device(device))
            }
            ModalityInput::Rows(x) => ModalityInput::Rows(x.to_device(device)),
        }
    }
}

impl Encoder {
    /// The one encoder contract: a modality's batch -> features [B, d].
    pub fn forward(&self, input: ModalityInput) -> Tensor<2> {
        match (self, input) {
            (Encoder::Image(e), ModalityInput::Pixels(x)) => e.forward(x),
            (Encoder::Volume(e), ModalityInput::Pixels(x)) => e.forward(x),
            (Encoder::Text(e), ModalityInput::Tokens(ids, mask)) => e.forward(ids, mask),
            (Encoder::Tabular(e), ModalityInput::Rows(x)) => e.forward(x),
            (encoder, input) => panic!(
                "modality input {} does not fit the {} encoder (the model and the batch disagree)",
                input_kind(&input),
                encoder_kind(encoder)
            ),
        }
    }
}

fn input_kind(input: &ModalityInput) -> &'static str {
    match input {
        ModalityInput::Pixels(_) => "pixels",
        ModalityInput::Tokens(..) => "tokens",
        ModalityInput::Rows(_) => "rows",
    }
}

fn encoder_kind(encoder: &Encoder) -> &'static str {
    match encoder {
        Encoder::Image(_) => "image",
        Encoder::Volume(_) => "volume",
        Encoder::Text(_) => "text",
        Encoder::Tabular(_) => "tabular",
    }
}

/// Encoder features -> a fusion token: Linear + LayerNorm + Dropout.
#[derive(Module, Debug)]
pub struct Projection {
    linear: Linear,
    norm: LayerNorm,
    dropout: Dropout,
}

impl Projection {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let z = self.linear.forward(x);
        crate::fused::dropout(&self.dropout, self.norm.forward(z))
    }
}

/// The reference's classification head: Linear + LayerNorm + GELU + Dropout + Linear.
#[derive(Module, Debug)]
pub struct FusionHead {
    first: Linear,
    norm: LayerNorm,
    dropout: Dropout,
    last: Linear,
}

/// Auxiliary head on a modality's detached features: Linear + ReLU + Dropout + Linear.
#[derive(Module, Debug)]
pub struct AuxHead {
    first: Linear,
    dropout: Dropout,
    last: Linear,
}

impl AuxHead {
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.classify(self.hidden(x))
    }

    /// The input of the last layer [B, p].
    pub fn hidden(&self, x: Tensor<2>) -> Tensor<2> {
        crate::fused::dropout(&self.dropout, relu(self.first.forward(x)))
    }

    pub fn classify(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.last.forward(hidden)
    }

    /// The last layer's weight [p, C].
    pub fn classifier_weight(&self) -> Tensor<2> {
        self.last.weight.val()
    }
}

impl FusionHead {
    /// The input of the last layer [B, p].
    pub fn hidden(&self, x: Tensor<2>) -> Tensor<2> {
        let h = self.first.forward(x);
        crate::fused::dropout(&self.dropout, gelu(self.norm.forward(h)))
    }

    pub fn classify(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.last.forward(hidden)
    }

    /// The last layer's weight [p, C].
    pub fn classifier_weight(&self) -> Tensor<2> {
        self.last.weight.val()
    }

    /// The last layer itself (its parameters' ids).
    pub fn last_layer(&self) -> &Linear {
        &self.last
    }
}

/// Modalities, their encoders and the fusion sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// (modality name, encoder), in the order batches list them.
    pub modalities: Vec<(String, EncoderConfig)>,
    /// Width of the modality tokens (the reference's `p`).
    pub fusion_dim: usize,
    pub fusion_heads: usize,
    pub fusion_layers: usize,
    pub classes: usize,
    pub dropout: f64,
    /// Groups of a fair identity normalisation (FIN) on the head's final linear input, when used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fin_groups: Option<usize>,
    /// The fusion's attention initialised as PyTorch's (`torch_init`), as the original's.
    #[serde(default)]
    pub torch_init: bool,
    /// How the fused prediction is read out (absent: the fusion transformer's token 0).
    #[serde(default, skip_serializing_if = "Readout::is_fused")]
    pub readout: Readout,
}

/// How the model turns modality tokens into its prediction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readout {
    /// The fusion transformer over all tokens, token 0, the head.
    #[default]
    Fused,
    /// One head per group (domain-independent training): the last layer has `classes x K`
    /// outputs, group-major; a sample trains its own group's, a prediction sums the K heads'
    /// logits (MEDFAIR's DomainInd inference).
    Domains(usize),
    /// Each modality alone through the shared head (MLA; the model has no fusion transformer
    /// layer): a prediction weighs each modality's logits by softmax over modalities of minus
    /// its entropy, per sample.
    Alone,
}

impl Readout {
    pub fn is_fused(&self) -> bool {
        *self == Readout::Fused
    }

    /// Sets of classifier outputs in the head's last layer.
    pub fn heads(&self) -> usize {
        match self {
            Readout::Domains(k) => *k,
            _ => 1,
        }
    }
}

#[derive(Module, Debug)]
pub struct MultimodalModel {
    pub encoders: Vec<Encoder>,
    pub projections: Vec<Projection>,
    pub fusion: TransformerEncoder,
    pub head: FusionHead,
    pub aux: Vec<AuxHead>,
    pub fin: Option<FairNorm>,
    #[module(skip)]
    pub readout: Readout,
}

impl ModelConfig {
    pub fn init(&self, device: &Device) -> MultimodalModel {
        let (p, c) = (self.fusion_dim, self.classes);
        let dropout = || DropoutConfig::new(self.dropout).init();
        MultimodalModel {
            encoders: self
                .modalities
                .iter()
                .map(|(_, e)| e.init(device))
                .collect(),
            projections: self
                .modalities
                .iter()
                .map(|(_, e)| Projection {
                    linear: LinearConfig::new(e.out_dim(), p).init(device),
                    norm: LayerNormConfig::new(p).init(device),
                    dropout: dropout(),
                })
                .collect(),
            fusion: {
                let fusion =
                    TransformerEncoderConfig::new(p, 4 * p, self.fusion_heads, self.fusion_layers)
                        .with_dropout(self.dropout)
                        .init(device);
                match self.torch_init {
                    true => crate::torch_init::torch_attention(fusion, device),
                    false => fusion,
                }
            },
            head: FusionHead {
                first: LinearConfig::new(p, p).init(device),
                norm: LayerNormConfig::new(p).init(device),
                dropout: dropout(),
                last: LinearConfig::new(p, c * self.readout.heads()).init(device),
            },
            aux: self
                .modalities
                .iter()
                .map(|_| AuxHead {
                    first: LinearConfig::new(p, p).init(device),
                    dropout: dropout(),
                    last: LinearConfig::new(p, c).init(device),
                })
                .collect(),
            fin: self.fin_groups.map(|k| FairNorm::new(k, p, 0.3, device)),
            readout: self.readout,
        }
    }

    /// The configuration read out by `readout`; [`Readout::Alone`] passes each token alone
    /// through the head, so the model has no fusion transformer.
    pub fn with_readout(mut self, readout: Readout) -> Self {
        if readout == Readout::Alone {
            self.fusion_layers = 0;
        }
        self.readout = readout;
        self
    }

    pub fn names(&self) -> Vec<&str> {
        self.modalities.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl MultimodalModel {
    /// Each modality's token [B, p], in the configured order.
    pub fn encode(&self, inputs: Vec<ModalityInput>) -> Vec<Tensor<2>> {
        self.project(self.features(inputs))
    }

    /// Modality `j`'s token [B, p] alone (the other encoders do not run).
    pub fn encode_one(&self, j: usize, input: ModalityInput) -> Tensor<2> {
        self.projections[j].forward(self.encoders[j].forward(input))
    }

    /// Each modality encoder's output [B, d] (before its projection), in the configured order.
    pub fn features(&self, inputs: Vec<ModalityInput>) -> Vec<Tensor<2>> {
        assert_eq!(inputs.len(), self.encoders.len(), "one input per modality");
        (inputs.into_iter().zip(&self.encoders))
            .map(|(input, encoder)| encoder.forward(input))
            .collect()
    }

    /// Encoder outputs -> tokens [B, p]: each modality's projection.
    pub fn project(&self, features: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
        (features.into_iter().zip(&self.projections))
            .map(|(x, projection)| projection.forward(x))
            .collect()
    }

    /// Fused logits [B, C] from the modality tokens: the fusion transformer, token 0, the head.
    /// `groups` [B] (codes, -1 unknown) feed the FIN layer when the model has one; `available`
    /// [B, M] (1 present, 0 missing) takes missing modalities out of the fusion.
    /// The prediction follows the model's [`Readout`].
    pub fn fuse(
        &self,
        tokens: &[Tensor<2>],
        groups: Option<&Tensor<1, Int>>,
        available: Option<&Tensor<2>>,
    ) -> Tensor<2> {
        match self.readout {
            Readout::Fused => self
                .head
                .classify(self.fused_hidden(tokens, groups, available)),
            Readout::Domains(k) => {
                let logits = self.domain_logits(tokens, groups, available);
                let [b, _, c] = logits.dims();
                debug_assert_eq!(logits.dims()[1], k);
                logits.sum_dim(1).reshape([b, c])
            }
            Readout::Alone => {
                let alone: Vec<Tensor<2>> = (0..tokens.len())
                    .map(|j| self.alone(&tokens[j], groups))
                    .collect();
                entropy_weighted(&alone, available)
            }
        }
    }

    /// Every group head's logits [B, K, C] (a model with [`Readout::Domains`]).
    pub fn domain_logits(
        &self,
        tokens: &[Tensor<2>],
        groups: Option<&Tensor<1, Int>>,
        available: Option<&Tensor<2>>,
    ) -> Tensor<3> {
        let logits = self
            .head
            .classify(self.fused_hidden(tokens, groups, available));
        let [b, kc] = logits.dims();
        let k = self.readout.heads();
        logits.reshape([b, k, kc / k])
    }

    /// One modality's token alone through the head [B, C] (the shared head of
    /// [`Readout::Alone`], whose model has no fusion transformer layer).
    pub fn alone(&self, token: &Tensor<2>, groups: Option<&Tensor<1, Int>>) -> Tensor<2> {
        self.head
            .classify(self.fused_hidden(std::slice::from_ref(token), groups, None))
    }

    /// The fused head's last-layer input [B, p]. A missing modality's token is zeroed (so the
    /// residual path carries nothing of it) and masked as padding (so no token attends to it);
    /// token 0 stays the read-out, attending to the modalities that are there.
    pub fn fused_hidden(
        &self,
        tokens: &[Tensor<2>],
        groups: Option<&Tensor<1, Int>>,
        available: Option<&Tensor<2>>,
    ) -> Tensor<2> {
        let stacked = Tensor::stack::<3>(tokens.to_vec(), 1); // [B, M, p]
        let [b, m, p] = stacked.dims();
        let input = match available {
            // A one-modality model has no other token to read from: it scores what it gets.
            Some(available) if m > 1 => {
                let masked = stacked * available.clone().reshape([b, m, 1]);
                TransformerEncoderInput::new(masked).mask_pad(available.clone().equal_elem(0.0))
            }
            _ => TransformerEncoderInput::new(stacked),
        };
        let fused = self.fusion.forward(input);
        let first = fused.slice([0..b, 0..1, 0..p]).reshape([b, p]);
        let hidden = self.head.hidden(first);
        // FIN sits where the original script puts it: on the final linear layer's input.
        match &self.fin {
            Some(fin) => {
                let groups = groups.expect("a model with FIN needs each sample's group");
                fin.forward(hidden, groups.clone())
            }
            None => hidden,
        }
    }

    /// Auxiliary logits of each modality on its detached token: they train their heads only.
    pub fn aux_logits(&self, tokens: &[Tensor<2>]) -> Vec<Tensor<2>> {
        self.aux_classify(&self.aux_hidden(tokens))
    }

    /// Each auxiliary head's last-layer input on its detached token [B, p].
    pub fn aux_hidden(&self, tokens: &[Tensor<2>]) -> Vec<Tensor<2>> {
        tokens
            .iter()
            .zip(&self.aux)
            .map(|(t, head)| head.hidden(t.clone().detach()))
            .collect()
    }

    /// Each auxiliary head on its modality's token *with* gradient into the encoder: the
    /// unimodal heads of methods that train each modality on its own loss too.
    pub fn unimodal_logits(&self, tokens: &[Tensor<2>]) -> Vec<Tensor<2>> {
        (tokens.iter().zip(&self.aux))
            .map(|(t, head)| head.forward(t.clone()))
            .collect()
    }

    /// Each auxiliary head's logits from its hidden features.
    pub fn aux_classify(&self, hidden: &[Tensor<2>]) -> Vec<Tensor<2>> {
        hidden
            .iter()
            .zip(&self.aux)
            .map(|(h, head)| head.classify(h.clone()))
            .collect()
    }
}

/// sum_m softmax_m(-H_m) z_m per sample, H_m the entropy of softmax(z_m) (MLA's inference,
/// as BalanceMM computes it); a missing modality (`available` [B, M] 0) gets weight 0.
pub fn entropy_weighted(logits: &[Tensor<2>], available: Option<&Tensor<2>>) -> Tensor<2> {
    let [b, _] = logits[0].dims();
    let entropies: Vec<Tensor<2>> = logits
        .iter()
        .map(|z| {
            let logp = burn::tensor::activation::log_softmax(z.clone(), 1);
            (logp.clone().exp() * logp).sum_dim(1).neg()
        })
        .collect();
    let scores = Tensor::cat(entropies, 1).neg(); // [B, M]
    let scores = match available {
        Some(a) => scores.mask_fill(a.clone().equal_elem(0.0), -1e30),
        None => scores,
    };
    let weights = burn::tensor::activation::softmax(scores, 1);
    (logits.iter().enumerate())
        .map(|(j, z)| z.clone() * weights.clone().slice([0..b, j..j + 1]))
        .reduce(|a, b| a + b)
        .expect("at least one modality")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presets::ModelSize;
    use burn::module::Param;
    use burn::tensor::{Distribution, Int};

    /// FIN sits on the final linear layer's input, as the original's
    /// `nn.Sequential(backbone, FIN, final Linear)`: with a group mean c and a unit scale it
    /// shifts that input by exactly -(1 - m) c, which no layer between it and the classifier
    /// would leave intact.
    #[test]
    fn fin_normalises_the_final_linear_layers_input() {
        let device = Device::flex();
        let config = ModelSize::Tiny.model(&[("slo", "image"), ("oct", "volume")], 16, 2, 0, 2);
        let p = config.fusion_dim;
        let plain = config.init(&device);
        let mut fin = FairNorm::new(2, p, 0.3, &device);
        fin.mus = Param::from_tensor(Tensor::full([2, p], 0.5, &device));
        // softplus(ln(e - 1)) = 1.
        fin.sigmas = Param::from_tensor(Tensor::full([2, p], (1f32.exp() - 1.0).ln(), &device));
        let mut with_fin = plain.clone();
        with_fin.fin = Some(fin);
        let tokens: Vec<Tensor<2>> = (0..2)
            .map(|_| Tensor::random([3, p], Distribution::Normal(0.0, 1.0), &device))
            .collect();
        let groups = Tensor::<1, Int>::from_ints([0, 1, -1], &device);
        let shifted = with_fin.fused_hidden(&tokens, Some(&groups), None);
        let hidden = plain.fused_hidden(&tokens, None, None);
        let difference: Vec<f32> = (shifted - hidden).into_data().try_to_vec().unwrap();
        for (i, d) in difference.iter().enumerate() {
            let want = if i / p < 2 { -0.7 * 0.5 } else { 0.0 };
            assert!((d - want).abs() < 1e-4, "element {i}: {d} (want {want})");
        }
    }

    /// MLA's gating on worked logits: z_a = [2, 0, 0] (entropy 0.665573), z_v = [1, 1, 0]
    /// (1.017357): weights 0.587050 and 0.412950, fused [1.587050, 0.412950, 0]; a missing
    /// modality gets weight 0.
    #[test]
    fn entropy_weighted_fusion_by_hand() {
        let device = Device::flex();
        let za = Tensor::<2>::from_floats([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]], &device);
        let zv = Tensor::<2>::from_floats([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], &device);
        let available = Tensor::<2>::from_floats([[1.0, 1.0], [1.0, 0.0]], &device);
        let fused: Vec<f32> = entropy_weighted(&[za, zv], Some(&available))
            .into_data()
            .try_to_vec()
            .unwrap();
        let want = [1.587_050, 0.412_950, 0.0, 2.0, 0.0, 0.0];
        for (g, w) in fused.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{fused:?}");
        }
    }
}
