//! Fair identity normalisation (FIN; Luo et al., Harvard-GF, WACV 2024): a learnable mean and
//! scale per demographic group on a feature (the final linear layer's input), blended with the un-normalised feature:
//! `out = (1 - m) (x - mu_g) / (softplus(s_g) + 1e-6) + m x`. Samples of unknown group (-1)
//! pass unchanged: the layer never guesses a group.

use burn::module::{Module, Param};
use burn::tensor::activation::softplus;
use burn::tensor::{Device, Distribution, Int, Tensor};

#[derive(Module, Debug)]
pub struct FairNorm {
    /// Per-group means [K, p].
    pub mus: Param<Tensor<2>>,
    /// Per-group scales before softplus [K, p].
    pub sigmas: Param<Tensor<2>>,
    pub momentum: f64,
}

impl FairNorm {
    /// The original training script's initialisation (Harvard-GF `train_glaucoma_fair_fin.py`:
    /// `fin_mu` 0.01, `fin_sigma` 1, `fin_momentum` 0.3): means N(0, 0.01^2), scales before
    /// softplus N(0, 1).
    pub fn new(groups: usize, dim: usize, momentum: f64, device: &Device) -> Self {
        FairNorm {
            mus: Param::from_tensor(Tensor::random(
                [groups, dim],
                Distribution::Normal(0.0, 0.01),
                device,
            )),
            sigmas: Param::from_tensor(Tensor::random(
                [groups, dim],
                Distribution::Normal(0.0, 1.0),
                device,
            )),
            momentum,
        }
    }

    /// `x` [B, p] normalised by each sample's group `groups` [B] (-1: unchanged).
    pub fn forward(&self, x: Tensor<2>, groups: Tensor<1, Int>) -> Tensor<2> {
        let [b, _] = x.dims();
        let known = groups.clone().greater_equal_elem(0).float().reshape([b, 1]);
        let index = groups.clamp_min(0);
        let mu = self.mus.val().select(0, index.clone());
        let sigma = softplus(self.sigmas.val().select(0, index), 1.0).add_scalar(1e-6);
        let normed = (x.clone() - mu) / sigma;
        let blended = normed * (1.0 - self.momentum) + x.clone() * self.momentum;
        blended * known.clone() + x * known.neg().add_scalar(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialised_as_the_original_script() {
        let device = Device::flex();
        device.seed(0);
        let fin = FairNorm::new(4, 4096, 0.3, &device);
        let std = |t: Tensor<2>| {
            let v: Vec<f32> = t.into_data().try_to_vec().unwrap();
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
        };
        let (mu, sigma) = (std(fin.mus.val()), std(fin.sigmas.val()));
        assert!((mu - 0.01).abs() < 0.0005, "{mu}");
        assert!((sigma - 1.0).abs() < 0.05, "{sigma}");
        assert_eq!(fin.momentum, 0.3);
    }

    #[test]
    fn normalises_by_group_and_leaves_unknown_samples_alone() {
        let device = Device::flex();
        let mut fin = FairNorm::new(2, 2, 0.3, &device);
        // Group 0: mean [1, 2], softplus(s) = 2 (s = ln(e^2 - 1)); group 1: mean 0, scale 1.
        let s2 = (2f64.exp() - 1.0).ln() as f32;
        let s1 = (1f64.exp() - 1.0).ln() as f32;
        fin.mus = Param::from_tensor(Tensor::from_floats([[1.0, 2.0], [0.0, 0.0]], &device));
        fin.sigmas = Param::from_tensor(Tensor::from_floats([[s2, s2], [s1, s1]], &device));
        let x = Tensor::<2>::from_floats([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0]], &device);
        let out = fin.forward(x, Tensor::from_ints([0, 1, -1], &device));
        let got: Vec<f32> = out.into_data().try_to_vec::<f32>().unwrap();
        // Group 0: 0.7 [(3-1)/2, (4-2)/2] + 0.3 [3, 4] = [1.6, 1.9] (scale 2 + 1e-6);
        // group 1: 0.7 [3, 4] + 0.3 [3, 4] = [3, 4] (scale 1 + 1e-6); unknown: [3, 4].
        let want = [1.6, 1.9, 3.0, 4.0, 3.0, 4.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }
}
