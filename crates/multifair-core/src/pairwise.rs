//! Pairwise ranking statistics per group on the device: ROC-AUC (ties half) and the reference's
//! surrogate AUC, for the generalised MultiFair's modality and group levels.

use burn::tensor::Tensor;
use burn::tensor::activation::softplus;

/// Pairwise "positive i beats negative j" statistics, per group: mean of `pair(s_i - s_j)` over
/// positive i and negative j of each group (rows of `members`), and whether the group has both
/// classes. `scores` [T, B] and `y` [T, B] (1 positive) hold one row per one-vs-rest task,
/// `members` [K, B] (1 in the group); a group's value is the mean over the tasks it has both
/// classes of (macro one-vs-rest), and it is valid when it has any.
pub fn pairwise_by_group(
    scores: Tensor<2>,
    y: Tensor<2>,
    members: Tensor<2>,
    pair: impl Fn(Tensor<2>) -> Tensor<2>,
) -> (Tensor<1>, Tensor<1>) {
    let [tasks, b] = scores.dims();
    let [k, _] = members.dims();
    let one_task = |t: usize| {
        let scores = scores.clone().slice([t..t + 1, 0..b]).reshape([b]);
        let y = y.clone().slice([t..t + 1, 0..b]).reshape([b]);
        let diff = scores.clone().reshape([b, 1]) - scores.reshape([1, b]); // s_i - s_j
        let values = pair(diff); // [B, B]
        let pos = members.clone() * y.clone().reshape([1, b]); // [K, B]
        let neg = members.clone() * y.neg().add_scalar(1.0).reshape([1, b]);
        let pairs = pos.clone().sum_dim(1) * neg.clone().sum_dim(1); // [K, 1]
        let total = (pos.matmul(values) * neg).sum_dim(1); // [K, 1]
        let valid = pairs.clone().greater_elem(0.0).float();
        let mean = total / pairs.clamp_min(1.0);
        (mean.reshape([k]), valid.reshape([k]))
    };
    if tasks == 1 {
        return one_task(0);
    }
    let (mut sum, mut count) = (
        Tensor::zeros([k], &members.device()),
        Tensor::zeros([k], &members.device()),
    );
    for t in 0..tasks {
        let (mean, valid) = one_task(t);
        sum = sum + mean * valid.clone();
        count = count + valid;
    }
    (
        sum / count.clone().clamp_min(1.0),
        count.greater_elem(0.0).float(),
    )
}

/// ROC-AUC per group on the device, ties half; invalid groups get 0.
pub fn auc_by_group(scores: Tensor<2>, y: Tensor<2>, members: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    pairwise_by_group(scores, y, members, |d| {
        d.sign().add_scalar(1.0).mul_scalar(0.5)
    })
}

/// The reference's surrogate AUC per group: 1 - mean log(1 + exp(-(s_i - s_j))); 0.5 where a
/// group lacks a class.
pub fn surrogate_by_group(
    scores: Tensor<2>,
    y: Tensor<2>,
    members: Tensor<2>,
) -> (Tensor<1>, Tensor<1>) {
    let (loss, valid) = pairwise_by_group(scores, y, members, |d| softplus(d.neg(), 1.0));
    let value = loss.neg().add_scalar(1.0);
    (
        value.clone() * valid.clone() + valid.clone().neg().add_scalar(1.0).mul_scalar(0.5),
        valid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn host2(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn multi_class_aucs_are_macro_one_vs_rest() {
        let device = Device::flex();
        // Three classes, six samples: each task's scores are the class's probabilities.
        let labels = [0usize, 1, 2, 0, 1, 2];
        let probs = [
            [0.7, 0.2, 0.1],
            [0.3, 0.4, 0.3],
            [0.2, 0.3, 0.5],
            [0.4, 0.5, 0.1],
            [0.1, 0.8, 0.1],
            [0.5, 0.1, 0.4],
        ];
        let scores: Vec<f32> = (0..3)
            .flat_map(|c| probs.iter().map(move |p| p[c] as f32))
            .collect();
        let targets: Vec<f32> = (0..3)
            .flat_map(|c| labels.iter().map(move |&y| (y == c) as u8 as f32))
            .collect();
        let scores = Tensor::<1>::from_floats(scores.as_slice(), &device).reshape([3, 6]);
        let targets = Tensor::<1>::from_floats(targets.as_slice(), &device).reshape([3, 6]);
        let everyone = Tensor::<2>::ones([1, 6], &device);
        let (auc, valid) = auc_by_group(scores, targets, everyone);
        let macro_auc = (0..3)
            .map(|c| {
                let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
                let y: Vec<bool> = labels.iter().map(|&l| l == c).collect();
                multifair_metrics::auc(&s, &y).unwrap()
            })
            .sum::<f64>()
            / 3.0;
        assert!((host2(auc.reshape([1, 1]))[0] as f64 - macro_auc).abs() < 1e-6);
        assert_eq!(host2(valid.reshape([1, 1])), [1.0]);
    }
}
