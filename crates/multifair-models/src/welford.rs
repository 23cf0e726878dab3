//! Layer norm rows on the CPU, bit for bit burn-flex's scalar kernel, many rows at once.
//!
//! burn-flex normalises one row at a time with Welford's running mean, whose division by the
//! element count is a chain: each step waits on the previous division, so the CPU idles
//! (a tenth of a parity-size epoch). Rows are independent, so here [`LANES`] rows advance
//! together, element k of each row in one vector lane: per row the same operations in the same
//! order (Rust never contracts a multiply and an add into one rounding), hence the same bits,
//! with a vector of divisions in flight instead of one.

/// Rows normalised together.
const LANES: usize = 16;

/// `output` = layer norm of each `width`-long row of `input` with scale `gamma` and shift
/// `beta`, as burn-flex's f32 `layer_norm` computes it without its `simd` feature.
pub fn layer_norm_rows(
    input: &[f32],
    output: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f32,
) {
    let width = gamma.len();
    assert!(width > 0 && beta.len() == width && input.len() == output.len());
    assert_eq!(input.len() % width, 0, "rows of {width}");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { rows_avx2(input, output, gamma, beta, epsilon) };
    }
    rows(input, output, gamma, beta, epsilon);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2(input: &[f32], output: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    rows(input, output, gamma, beta, epsilon);
}

#[inline(always)]
fn rows(input: &[f32], output: &mut [f32], gamma: &[f32], beta: &[f32], epsilon: f32) {
    let width = gamma.len();
    let block = LANES * width;
    let mut blocks_in = input.chunks_exact(block);
    let mut blocks_out = output.chunks_exact_mut(block);
    for (x, y) in (&mut blocks_in).zip(&mut blocks_out) {
        let (mut mean, mut m2) = ([0.0f32; LANES], [0.0f32; LANES]);
        for k in 0..width {
            let n_k = (k + 1) as f32;
            for j in 0..LANES {
                let value = x[j * width + k];
                let delta = value - mean[j];
                mean[j] += delta / n_k;
                m2[j] += delta * (value - mean[j]);
            }
        }
        for j in 0..LANES {
            let row = j * width..(j + 1) * width;
            normalise(
                &x[row.clone()],
                &mut y[row],
                gamma,
                beta,
                mean[j],
                m2[j],
                epsilon,
            );
        }
    }
    let rest = blocks_in.remainder().chunks_exact(width);
    for (x, y) in rest.zip(blocks_out.into_remainder().chunks_exact_mut(width)) {
        let (mut mean, mut m2) = (0.0f32, 0.0f32);
        for (k, &value) in x.iter().enumerate() {
            let delta = value - mean;
            mean += delta / (k + 1) as f32;
            m2 += delta * (value - mean);
        }
        normalise(x, y, gamma, beta, mean, m2, epsilon);
    }
}

#[inline(always)]
fn normalise(
    x: &[f32],
    y: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    mean: f32,
    m2: f32,
    epsilon: f32,
) {
    let inv_std = 1.0f32 / (m2 / x.len() as f32 + epsilon).sqrt();
    for (((y, &x), &g), &b) in y.iter_mut().zip(x).zip(gamma).zip(beta) {
        *y = (x - mean) * (inv_std * g) + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::ModuleOps;
    use burn::tensor::TensorData;

    fn flex(values: &[f32], shape: Vec<usize>) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values.to_vec(), shape))
    }

    /// Deterministic values with a spread of magnitudes and an offset, as activations have.
    fn draw(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = (i ^ seed).wrapping_mul(0x9E37_79B9).rotate_left(13) as f32;
                3.0 + h / u32::MAX as f32 * 8.0 - (i % 7) as f32 * 0.37
            })
            .collect()
    }

    #[test]
    fn equals_burn_flex_bit_for_bit() {
        // Whole blocks and a remainder, narrow and ViT-wide rows.
        for (rows, width) in [(1, 5), (16, 8), (37, 64), (50, 768)] {
            let x = draw(rows * width, 1);
            let gamma = draw(width, 2);
            let beta = draw(width, 3);
            let mut ours = vec![0.0f32; rows * width];
            layer_norm_rows(&x, &mut ours, &gamma, &beta, 1e-6);
            let burns = Flex::layer_norm(
                flex(&x, vec![rows, width]),
                flex(&gamma, vec![width]),
                Some(flex(&beta, vec![width])),
                1e-6,
            );
            let burns = burns.into_data().try_to_vec::<f32>().unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ours), bits(&burns), "{rows} rows of {width}");
        }
    }
}
