//! Per-group statistics of one sensitive attribute, computed once; every fairness metric is
//! a few lines over this frame (fairlearn's `MetricFrame`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::MetricError;
use crate::auc::{AucAccumulator, Ranking};
use crate::calibration::CalibrationBins;

/// The code of an unknown attribute value: such samples count overall but join no group.
pub const UNKNOWN: i64 = -1;

/// Validated positive-class probabilities, binary labels and a decision threshold, with the
/// probabilities ranked once for every AUC computed from them.
#[derive(Debug, Clone)]
pub struct Predictions {
    probs: Vec<f64>,
    labels: Vec<bool>,
    threshold: f64,
    ranking: Ranking,
}

impl Predictions {
    /// Fails on a length mismatch, a probability outside [0, 1] (NaN included) or a threshold
    /// outside [0, 1].
    pub fn new(probs: Vec<f64>, labels: Vec<bool>, threshold: f64) -> Result<Self, MetricError> {
        if probs.len() != labels.len() {
            return Err(MetricError::LengthMismatch {
                what: "labels",
                expected: probs.len(),
                found: labels.len(),
            });
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(MetricError::Threshold(threshold));
        }
        if let Some(index) = probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(MetricError::Probability {
                index,
                value: probs[index],
            });
        }
        let ranking = Ranking::new(&probs);
        Ok(Predictions {
            probs,
            labels,
            threshold,
            ranking,
        })
    }

    pub fn len(&self) -> usize {
        self.probs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probs.is_empty()
    }

    pub fn probs(&self) -> &[f64] {
        &self.probs
    }

    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// AUC over all samples; `None` with one class.
    pub fn auc(&self) -> Option<f64> {
        self.tally_all(None).auc.auc()
    }

    fn tally_all(&self, weights: Option<&[u32]>) -> Tally {
        let mut tally = Tally::default();
        for block in self.ranking.blocks() {
            for &i in block {
                let i = i as usize;
                let w = weights.map_or(1.0, |w| w[i] as f64);
                if w > 0.0 {
                    tally.add(self.probs[i], self.labels[i], self.threshold, w);
                }
            }
            tally.auc.end_block();
        }
        tally
    }
}

/// Counts behind the metrics of one set of samples (weights are bootstrap multiplicities).
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    n: f64,
    positives: f64,
    true_positives: f64,
    false_positives: f64,
    auc: AucAccumulator,
    calibration: CalibrationBins,
}

impl Tally {
    fn add(&mut self, prob: f64, positive: bool, threshold: f64, weight: f64) {
        let selected = prob >= threshold;
        self.n += weight;
        if positive {
            self.positives += weight;
            if selected {
                self.true_positives += weight;
            }
        } else if selected {
            self.false_positives += weight;
        }
        self.auc.add(positive, weight);
        self.calibration.add(prob, positive, weight);
    }

    fn stats(&self) -> GroupStats {
        let negatives = self.n - self.positives;
        let ratio = |num: f64, den: f64| (den > 0.0).then(|| num / den);
        GroupStats {
            n: self.n as usize,
            positives: self.positives as usize,
            auc: self.auc.auc(),
            tpr: ratio(self.true_positives, self.positives),
            fpr: ratio(self.false_positives, negatives),
            selection_rate: ratio(self.true_positives + self.false_positives, self.n),
            ece: self.calibration.ece(),
        }
    }
}

/// Metrics of one group. A rate whose denominator is empty is `None` (JSON null): a group
/// without positives has no TPR, a group lacking a class has no AUC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStats {
    pub n: usize,
    pub positives: usize,
    pub auc: Option<f64>,
    pub tpr: Option<f64>,
    pub fpr: Option<f64>,
    pub selection_rate: Option<f64>,
    pub ece: Option<f64>,
}

/// One attribute's groups (by code, ascending), the overall statistics, and how many samples
/// had the unknown code.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFrame {
    pub overall: GroupStats,
    pub groups: BTreeMap<i64, GroupStats>,
    pub unknown: usize,
}

impl GroupFrame {
    /// Frames `predictions` by the attribute `codes` (one per sample; `UNKNOWN` = -1).
    pub fn new(predictions: &Predictions, codes: &[i64]) -> Result<Self, MetricError> {
        Ok(Grouping::new(predictions, codes)?.frame(predictions, None))
    }

    /// AUC / (1 + sum over groups with an AUC of |AUC_g - AUC|); `None` without an overall AUC.
    pub fn es_auc(&self) -> Option<f64> {
        let auc = self.overall.auc?;
        let spread: f64 = self.group_values(|g| g.auc).map(|a| (a - auc).abs()).sum();
        Some(auc / (1.0 + spread))
    }

    /// Demographic parity difference: range of selection rates across groups.
    pub fn dpd(&self) -> Option<f64> {
        range(self.group_values(|g| g.selection_rate))
    }

    /// Equalised-odds difference: the larger of the TPR range and the FPR range across groups.
    ///
    /// fairlearn counts an undefined rate (a group without positives, or without negatives)
    /// as 0; here it is left out, as an undefined AUC is.
    pub fn deodds(&self) -> Option<f64> {
        match (
            range(self.group_values(|g| g.tpr)),
            range(self.group_values(|g| g.fpr)),
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lowest defined group AUC.
    pub fn worst_group_auc(&self) -> Option<f64> {
        self.group_values(|g| g.auc).reduce(f64::min)
    }

    /// Highest minus lowest defined group AUC.
    pub fn auc_gap(&self) -> Option<f64> {
        range(self.group_values(|g| g.auc))
    }

    fn group_values<'a>(
        &'a self,
        field: impl Fn(&GroupStats) -> Option<f64> + 'a,
    ) -> impl Iterator<Item = f64> + 'a {
        self.groups.values().filter_map(field)
    }
}

fn range(values: impl Iterator<Item = f64>) -> Option<f64> {
    values
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((f64::min(lo, v), f64::max(hi, v))),
        })
        .map(|(lo, hi)| hi - lo)
}

/// The attribute's codes made dense once, so that each bootstrap resample is one linear pass.
#[derive(Debug, Clone)]
pub(crate) struct Grouping {
    /// Known codes, ascending.
    pub(crate) codes: Vec<i64>,
    /// Per sample, the index of its code in `codes`, or `codes.len()` for unknown.
    pub(crate) slot: Vec<usize>,
}

impl Grouping {
    pub(crate) fn new(predictions: &Predictions, codes: &[i64]) -> Result<Self, MetricError> {
        if codes.len() != predictions.len() {
            return Err(MetricError::LengthMismatch {
                what: "group codes",
                expected: predictions.len(),
                found: codes.len(),
            });
        }
        if let Some(index) = codes.iter().position(|&c| c < UNKNOWN) {
            return Err(MetricError::Code {
                index,
                code: codes[index],
            });
        }
        let mut known: Vec<i64> = codes.iter().copied().filter(|&c| c != UNKNOWN).collect();
        known.sort_unstable();
        known.dedup();
        let slot = codes
            .iter()
            .map(|c| known.binary_search(c).unwrap_or(known.len()))
            .collect();
        Ok(Grouping { codes: known, slot })
    }

    /// The frame of the samples counted `weights[i]` times each (once each for `None`).
    pub(crate) fn frame(&self, predictions: &Predictions, weights: Option<&[u32]>) -> GroupFrame {
        let mut tallies = vec![Tally::default(); self.codes.len() + 1];
        let overall = predictions.tally_all(weights);
        let (probs, labels) = (&predictions.probs, &predictions.labels);
        for block in predictions.ranking.blocks() {
            for &i in block {
                let i = i as usize;
                let w = weights.map_or(1.0, |w| w[i] as f64);
                if w > 0.0 {
                    tallies[self.slot[i]].add(probs[i], labels[i], predictions.threshold, w);
                }
            }
            for &i in block {
                tallies[self.slot[i as usize]].auc.end_block();
            }
        }
        let unknown = tallies.pop().map_or(0, |t| t.n as usize);
        GroupFrame {
            overall: overall.stats(),
            groups: self
                .codes
                .iter()
                .zip(&tallies)
                .filter(|(_, t)| t.n > 0.0)
                .map(|(&code, t)| (code, t.stats()))
                .collect(),
            unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preds(probs: &[f64], labels: &[u8]) -> Predictions {
        Predictions::new(
            probs.to_vec(),
            labels.iter().map(|&y| y == 1).collect(),
            0.5,
        )
        .unwrap()
    }

    #[test]
    fn unknown_codes_are_counted_not_grouped() {
        let p = preds(&[0.9, 0.2, 0.7, 0.4, 0.6, 0.1], &[1, 0, 1, 0, 1, 0]);
        let frame = GroupFrame::new(&p, &[0, 0, 1, 1, -1, -1]).unwrap();
        assert_eq!(frame.unknown, 2);
        assert_eq!(frame.groups.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(frame.overall.n, 6);
        assert_eq!(frame.groups[&0].n + frame.groups[&1].n, 4);
    }

    #[test]
    fn group_lacking_a_class_has_no_auc_and_is_left_out_of_es_auc() {
        let p = preds(&[0.9, 0.2, 0.8, 0.3, 0.25, 0.7], &[1, 0, 1, 0, 1, 1]);
        let frame = GroupFrame::new(&p, &[0, 0, 1, 1, 2, 2]).unwrap();
        assert_eq!(frame.groups[&2].auc, None);
        assert_eq!(frame.groups[&2].fpr, None);
        assert_eq!(frame.groups[&2].tpr, Some(0.5));
        // Overall: 0.25 loses to the negative 0.3 -> 7 of 8 pairs; groups 0 and 1 score 1.
        assert_eq!(frame.overall.auc, Some(0.875));
        assert!((frame.es_auc().unwrap() - 0.875 / 1.25).abs() < 1e-12);
        assert_eq!(frame.worst_group_auc(), Some(1.0));
        assert_eq!(frame.auc_gap(), Some(0.0));
    }

    #[test]
    fn rates_by_hand() {
        // Group 0: TP, FN, FP, TN -> TPR 1/2, FPR 1/2, SR 1/2.
        // Group 1: TP, TP, TN      -> TPR 1,   FPR 0,   SR 2/3.
        let p = preds(&[0.9, 0.1, 0.6, 0.2, 0.7, 0.5, 0.3], &[1, 1, 0, 0, 1, 1, 0]);
        let frame = GroupFrame::new(&p, &[0, 0, 0, 0, 1, 1, 1]).unwrap();
        assert_eq!(frame.groups[&0].tpr, Some(0.5));
        assert_eq!(frame.groups[&0].fpr, Some(0.5));
        assert_eq!(frame.groups[&1].selection_rate, Some(2.0 / 3.0));
        assert!((frame.dpd().unwrap() - (2.0 / 3.0 - 0.5)).abs() < 1e-12);
        assert_eq!(frame.deodds(), Some(0.5));
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(matches!(
            Predictions::new(vec![0.2, f64::NAN], vec![true, false], 0.5),
            Err(MetricError::Probability { index: 1, .. })
        ));
        assert!(matches!(
            Predictions::new(vec![0.2, 1.5], vec![true, false], 0.5),
            Err(MetricError::Probability { index: 1, .. })
        ));
        let p = preds(&[0.2, 0.4], &[0, 1]);
        assert!(matches!(
            GroupFrame::new(&p, &[0]),
            Err(MetricError::LengthMismatch { .. })
        ));
        assert!(matches!(
            GroupFrame::new(&p, &[0, -2]),
            Err(MetricError::Code { index: 1, code: -2 })
        ));
    }
}
