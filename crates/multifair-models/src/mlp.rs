//! Tabular encoder: a multilayer perceptron over standardised numeric columns.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub inputs: usize,
    pub hidden: usize,
    pub layers: usize,
    pub dropout: f64,
}

#[derive(Module, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    dropout: Dropout,
}

impl MlpConfig {
    pub fn init(&self, device: &Device) -> Mlp {
        let layers = (0..self.layers.max(1))
            .map(|i| {
                LinearConfig::new(if i == 0 { self.inputs } else { self.hidden }, self.hidden)
                    .init(device)
            })
            .collect();
        Mlp {
            layers,
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

impl Mlp {
    /// Rows [B, inputs] -> features [B, hidden].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.layers.iter().fold(x, |x, layer| {
            crate::fused::dropout(&self.dropout, relu(layer.forward(x)))
        })
    }
}
