//! MultiFair's architecture in burn (docs/architecture.md, "Models"). Every encoder maps a modality's batch to
//! features [B, d]; the fusion model projects them to tokens, fuses them with a transformer and
//! classifies token 0; auxiliary heads read each modality's detached token.

pub mod fin;
pub mod fused;
pub mod mlp;
pub mod model;
pub mod oct;
pub mod presets;
pub mod pretrained;
pub mod text;
pub mod torch_init;
pub mod vit;
mod welford;

pub use model::{Encoder, EncoderConfig, ModalityInput, ModelConfig, MultimodalModel, Readout};
