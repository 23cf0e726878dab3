//! Expected calibration error over equal-width probability bins.

/// Number of equal-width bins on [0, 1] used for ECE.
pub const ECE_BINS: usize = 10;

/// Per-bin sums of predicted probability and observed label, filled one sample at a time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CalibrationBins {
    count: [f64; ECE_BINS],
    sum_prob: [f64; ECE_BINS],
    sum_label: [f64; ECE_BINS],
}

impl CalibrationBins {
    pub(crate) fn add(&mut self, prob: f64, positive: bool, weight: f64) {
        // p = 1 belongs to the last bin, not to an eleventh.
        let bin = ((prob * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        self.count[bin] += weight;
        self.sum_prob[bin] += weight * prob;
        if positive {
            self.sum_label[bin] += weight;
        }
    }

    /// sum_b (n_b / n) |mean label_b - mean prob_b|; `None` for no samples.
    pub(crate) fn ece(&self) -> Option<f64> {
        let n: f64 = self.count.iter().sum();
        (n > 0.0).then(|| {
            (0..ECE_BINS)
                .map(|b| (self.sum_label[b] - self.sum_prob[b]).abs())
                .sum::<f64>()
                / n
        })
    }
}

/// Expected calibration error of positive-class probabilities (`ECE_BINS` equal-width bins).
/// `None` for no samples. Panics if the lengths differ.
pub fn ece(probs: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(
        probs.len(),
        labels.len(),
        "probs and labels differ in length"
    );
    let mut bins = CalibrationBins::default();
    for (&p, &y) in probs.iter().zip(labels) {
        bins.add(p, y, 1.0);
    }
    bins.ece()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_calibrated_bins_score_zero() {
        // Bin [0.2, 0.3): mean prob 0.25, one positive in four.
        let probs = [0.25, 0.25, 0.25, 0.25, 0.95, 0.95];
        let labels = [true, false, false, false, true, true];
        // Bin [0.9, 1.0]: mean prob 0.95, all positive -> |1 - 0.95| * 2 / 6.
        assert!((ece(&probs, &labels).unwrap() - 0.1 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn worked_example() {
        // Bin 0: p = 0.0, 0.05 (mean 0.025) labels 0, 1 -> |0.5 - 0.025| * 2/4.
        // Bin 9 (p = 1.0 lands in the last bin): p = 1.0, 0.9 labels 1, 0 -> |0.5 - 0.95| * 2/4.
        let probs = [0.0, 0.05, 1.0, 0.9];
        let labels = [false, true, true, false];
        let expected = (0.5f64 - 0.025).abs() * 0.5 + (0.5f64 - 0.95).abs() * 0.5;
        assert!((ece(&probs, &labels).unwrap() - expected).abs() < 1e-12);
        assert_eq!(ece(&[], &[]), None);
    }
}
