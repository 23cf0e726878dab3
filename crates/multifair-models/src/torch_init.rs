//! PyTorch's initialisation of `nn.MultiheadAttention`, for the layers the original builds
//! with `nn.TransformerEncoderLayer` (the OCT aggregator and the fusion): the query, key and
//! value weights drawn as one [3d, d] Xavier-uniform matrix, their biases and the output
//! projection's bias zero; the output weight and the feed-forward layers keep the default
//! U(±1/√fan_in), which burn's and PyTorch's linear layers share.

use burn::module::Param;
use burn::nn::transformer::TransformerEncoder;
use burn::nn::{Initializer, Linear};
use burn::tensor::{Device, Distribution, Tensor};

/// `encoder` with its attention layers initialised as PyTorch's.
pub fn torch_attention(mut encoder: TransformerEncoder, device: &Device) -> TransformerEncoder {
    let d = encoder.d_model;
    let bound = (6.0 / (d + 3 * d) as f64).sqrt();
    for layer in encoder.layers.iter_mut() {
        let mha = &mut layer.mha;
        for linear in [&mut mha.query, &mut mha.key, &mut mha.value] {
            let shape = linear.weight.val().shape();
            linear.weight = Param::from_tensor(Tensor::random(
                shape,
                Distribution::Uniform(-bound, bound),
                device,
            ));
            zero_bias(linear, device);
        }
        zero_bias(&mut mha.output, device);
    }
    encoder
}

fn zero_bias(linear: &mut Linear, device: &Device) {
    if let Some(bias) = &linear.bias {
        let n = bias.val().dims()[0];
        linear.bias = Some(Initializer::Zeros.init([n], device));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::transformer::TransformerEncoderConfig;

    #[test]
    fn attention_as_pytorch_initialises_it() {
        let device = Device::flex();
        device.seed(0);
        let encoder = TransformerEncoderConfig::new(64, 256, 4, 2).init(&device);
        let encoder = torch_attention(encoder, &device);
        let bound = (6.0f32 / 256.0).sqrt();
        for layer in &encoder.layers {
            let m = &layer.mha;
            for linear in [&m.query, &m.key, &m.value] {
                let w: Vec<f32> = linear.weight.val().into_data().try_to_vec().unwrap();
                assert!(w.iter().all(|v| v.abs() <= bound));
                assert!(
                    w.iter().any(|v| v.abs() > 0.9 * bound),
                    "the full Xavier range"
                );
            }
            for linear in [&m.query, &m.key, &m.value, &m.output] {
                let b: Vec<f32> = linear
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .into_data()
                    .try_to_vec()
                    .unwrap();
                assert!(b.iter().all(|v| *v == 0.0));
            }
        }
    }
}
