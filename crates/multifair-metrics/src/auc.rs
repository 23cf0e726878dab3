//! ROC-AUC as the Mann–Whitney statistic: ties count half, one sort, then linear passes.

/// Scores sorted once and cut into blocks of equal scores.
///
/// Bootstrap resamples only change how often each sample counts, never the order, so one
/// `Ranking` serves every resample: each AUC after the first is a linear pass, not a sort.
#[derive(Debug, Clone)]
pub struct Ranking {
    /// Sample indices in ascending score order.
    order: Vec<u32>,
    /// Exclusive end (into `order`) of each block of tied scores.
    block_ends: Vec<u32>,
}

impl Ranking {
    /// Sorts `scores` ascending (`f64::total_cmp`; callers reject NaN before).
    pub fn new(scores: &[f64]) -> Self {
        assert!(scores.len() < u32::MAX as usize, "at most 2^32 - 1 scores");
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
        let mut block_ends = Vec::new();
        for i in 1..=order.len() {
            if i == order.len() || scores[order[i] as usize] != scores[order[i - 1] as usize] {
                block_ends.push(i as u32);
            }
        }
        Ranking { order, block_ends }
    }

    /// Visits the tied blocks from the lowest score up, each as a slice of sample indices.
    pub fn blocks(&self) -> impl Iterator<Item = &[u32]> {
        let mut start = 0usize;
        self.block_ends.iter().map(move |&end| {
            let block = &self.order[start..end as usize];
            start = end as usize;
            block
        })
    }
}

/// Running Mann–Whitney sums for one set of samples, fed block by block in ascending order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AucAccumulator {
    positives: f64,
    negatives: f64,
    /// Sum over positives of (negatives scored strictly lower + half the tied negatives).
    wins: f64,
    block_pos: f64,
    block_neg: f64,
}

impl AucAccumulator {
    pub(crate) fn add(&mut self, positive: bool, weight: f64) {
        if positive {
            self.block_pos += weight;
        } else {
            self.block_neg += weight;
        }
    }

    /// Closes the current block of tied scores.
    pub(crate) fn end_block(&mut self) {
        self.wins += self.block_pos * (self.negatives + 0.5 * self.block_neg);
        self.positives += self.block_pos;
        self.negatives += self.block_neg;
        self.block_pos = 0.0;
        self.block_neg = 0.0;
    }

    /// `None` unless both classes are present: AUC is undefined there, never 0.5.
    pub(crate) fn auc(&self) -> Option<f64> {
        (self.positives > 0.0 && self.negatives > 0.0)
            .then(|| self.wins / (self.positives * self.negatives))
    }
}

/// ROC-AUC of `scores` against binary `labels`, ties counted half (scikit-learn's
/// `roc_auc_score`). `None` when only one class is present. O(n log n).
///
/// Panics if the lengths differ (a programming error, not a data error).
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(
        scores.len(),
        labels.len(),
        "scores and labels differ in length"
    );
    let ranking = Ranking::new(scores);
    let mut acc = AucAccumulator::default();
    for block in ranking.blocks() {
        for &i in block {
            acc.add(labels[i as usize], 1.0);
        }
        acc.end_block();
    }
    acc.auc()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts every (positive, negative) pair: the definition, O(n^2).
    fn auc_pairs(scores: &[f64], labels: &[bool]) -> Option<f64> {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if li && !lj {
                    pairs += 1.0;
                    wins += match scores[i].partial_cmp(&scores[j]).unwrap() {
                        std::cmp::Ordering::Greater => 1.0,
                        std::cmp::Ordering::Equal => 0.5,
                        std::cmp::Ordering::Less => 0.0,
                    };
                }
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    #[test]
    fn perfect_reversed_and_tied() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &labels), Some(0.5));
    }

    #[test]
    fn one_class_is_undefined() {
        assert_eq!(auc(&[0.1, 0.7], &[true, true]), None);
        assert_eq!(auc(&[0.1, 0.7], &[false, false]), None);
        assert_eq!(auc(&[], &[]), None);
    }

    #[test]
    fn matches_pair_count_with_heavy_ties() {
        // Scores on a coarse grid so that most of them tie.
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        for _ in 0..20 {
            let n = 1 + (next() % 60) as usize;
            let scores: Vec<f64> = (0..n).map(|_| (next() % 5) as f64 / 4.0).collect();
            let labels: Vec<bool> = (0..n).map(|_| next() % 3 == 0).collect();
            let (fast, slow) = (auc(&scores, &labels), auc_pairs(&scores, &labels));
            match (fast, slow) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{a} vs {b}"),
                (a, b) => assert_eq!(a, b),
            }
        }
    }
}
