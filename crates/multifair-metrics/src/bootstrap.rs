//! Seeded bootstrap: percentile intervals and a paired test, resampling within strata so that
//! every group (and the unknown-code stratum) keeps its size in each resample.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::MetricError;
use crate::frame::{GroupFrame, Grouping, Predictions};

/// A metric of one attribute's group frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Auc,
    EsAuc,
    Dpd,
    DeOdds,
    WorstGroupAuc,
    AucGap,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Auc,
        Metric::EsAuc,
        Metric::Dpd,
        Metric::DeOdds,
        Metric::WorstGroupAuc,
        Metric::AucGap,
    ];

    /// The key used in JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Auc => "auc",
            Metric::EsAuc => "es_auc",
            Metric::Dpd => "dpd",
            Metric::DeOdds => "deodds",
            Metric::WorstGroupAuc => "worst_group_auc",
            Metric::AucGap => "auc_gap",
        }
    }

    pub fn of(self, frame: &GroupFrame) -> Option<f64> {
        match self {
            Metric::Auc => frame.overall.auc,
            Metric::EsAuc => frame.es_auc(),
            Metric::Dpd => frame.dpd(),
            Metric::DeOdds => frame.deodds(),
            Metric::WorstGroupAuc => frame.worst_group_auc(),
            Metric::AucGap => frame.auc_gap(),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!("unknown metric '{s}'; available: {}", names.join(", "))
            })
    }
}

/// How many resamples, from which seed, at which two-sided confidence level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootstrapConfig {
    pub resamples: usize,
    pub seed: u64,
    pub level: f64,
}

impl BootstrapConfig {
    /// A 95% interval.
    pub fn new(resamples: usize, seed: u64) -> Self {
        BootstrapConfig {
            resamples,
            seed,
            level: 0.95,
        }
    }
}

/// A percentile interval; `resamples` counts the resamples in which the metric was defined
/// (a resampled group can lose its only positive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    pub resamples: usize,
}

impl Interval {
    /// Percentiles (linear interpolation, numpy's default) of the defined values; `None` if
    /// no resample defined the metric.
    fn from_values(mut values: Vec<f64>, level: f64) -> Option<Interval> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable_by(f64::total_cmp);
        let tail = (1.0 - level) / 2.0;
        Some(Interval {
            low: quantile(&values, tail),
            high: quantile(&values, 1.0 - tail),
            resamples: values.len(),
        })
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, frac) = (pos.floor() as usize, pos - pos.floor());
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + frac * (sorted[hi] - sorted[lo])
}

/// Intervals for every `Metric` of one attribute and for each group's AUC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameIntervals {
    #[serde(flatten)]
    pub metrics: BTreeMap<&'static str, Option<Interval>>,
    pub group_auc: BTreeMap<i64, Option<Interval>>,
}

/// Draws resample multiplicities: each stratum draws as many samples as it has.
struct Resampler {
    strata: Vec<Vec<u32>>,
    rng: ChaCha8Rng,
    weights: Vec<u32>,
}

impl Resampler {
    fn new(grouping: &Grouping, seed: u64) -> Self {
        let mut strata = vec![Vec::new(); grouping.codes.len() + 1];
        for (i, &slot) in grouping.slot.iter().enumerate() {
            strata[slot].push(i as u32);
        }
        let weights = vec![0; grouping.slot.len()];
        Resampler {
            strata,
            rng: ChaCha8Rng::seed_from_u64(seed),
            weights,
        }
    }

    fn next(&mut self) -> &[u32] {
        self.weights.fill(0);
        for members in &self.strata {
            for _ in 0..members.len() {
                let pick = members[self.rng.random_range(0..members.len())];
                self.weights[pick as usize] += 1;
            }
        }
        &self.weights
    }
}

/// Percentile intervals of every metric of the attribute `codes`, resampling within its groups.
pub fn bootstrap_frame(
    predictions: &Predictions,
    codes: &[i64],
    config: &BootstrapConfig,
) -> Result<FrameIntervals, MetricError> {
    let grouping = Grouping::new(predictions, codes)?;
    let mut resampler = Resampler::new(&grouping, config.seed);
    let mut metric_values: BTreeMap<Metric, Vec<f64>> = BTreeMap::new();
    let mut group_values: BTreeMap<i64, Vec<f64>> =
        grouping.codes.iter().map(|&c| (c, Vec::new())).collect();
    for _ in 0..config.resamples {
        let frame = grouping.frame(predictions, Some(resampler.next()));
        for metric in Metric::ALL {
            let values = metric_values.entry(metric).or_default();
            values.extend(metric.of(&frame));
        }
        for (code, stats) in &frame.groups {
            group_values
                .get_mut(code)
                .expect("resampled groups are known")
                .extend(stats.auc);
        }
    }
    Ok(FrameIntervals {
        metrics: Metric::ALL
            .iter()
            .map(|&m| {
                let values = metric_values.remove(&m).unwrap_or_default();
                (m.name(), Interval::from_values(values, config.level))
            })
            .collect(),
        group_auc: group_values
            .into_iter()
            .map(|(code, values)| (code, Interval::from_values(values, config.level)))
            .collect(),
    })
}

/// Paired bootstrap comparison of two prediction sets on the same samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedTest {
    pub metric: &'static str,
    /// metric(a) - metric(b) on the full data; `None` where either is undefined.
    pub delta: Option<f64>,
    /// Interval of the difference over resamples where both were defined.
    pub interval: Option<Interval>,
    /// Two-sided: twice the smaller share of resampled differences on either side of zero
    /// (capped at 1).
    pub p_value: Option<f64>,
}

/// Compares `a` and `b` (same labels, one set of attribute `codes`) on `metric`: both are
/// evaluated on each resample, so the test accounts for their correlation.
pub fn paired_bootstrap(
    a: &Predictions,
    b: &Predictions,
    codes: &[i64],
    metric: Metric,
    config: &BootstrapConfig,
) -> Result<PairedTest, MetricError> {
    if a.labels() != b.labels() {
        return Err(MetricError::LabelsDiffer);
    }
    let grouping = Grouping::new(a, codes)?;
    let diff = |weights: Option<&[u32]>| {
        Some(metric.of(&grouping.frame(a, weights))? - metric.of(&grouping.frame(b, weights))?)
    };
    let delta = diff(None);
    let mut resampler = Resampler::new(&grouping, config.seed);
    let diffs: Vec<f64> = (0..config.resamples)
        .filter_map(|_| diff(Some(resampler.next())))
        .collect();
    let p_value = (!diffs.is_empty()).then(|| {
        let below = diffs.iter().filter(|&&d| d <= 0.0).count();
        let above = diffs.iter().filter(|&&d| d >= 0.0).count();
        (2.0 * below.min(above) as f64 / diffs.len() as f64).min(1.0)
    });
    Ok(PairedTest {
        metric: metric.name(),
        delta,
        interval: Interval::from_values(diffs, config.level),
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u64, noise: f64) -> (Predictions, Vec<i64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let labels: Vec<bool> = (0..n).map(|_| rng.random_bool(0.4)).collect();
        let codes: Vec<i64> = (0..n)
            .map(|i| (i % 3) as i64 - i64::from(i % 17 == 0))
            .collect();
        let probs = labels
            .iter()
            .map(|&y| {
                let base = if y { 0.65 } else { 0.35 };
                (base + noise * (rng.random::<f64>() - 0.5)).clamp(0.0, 1.0)
            })
            .collect();
        (Predictions::new(probs, labels, 0.5).unwrap(), codes)
    }

    #[test]
    fn same_seed_same_interval_and_it_covers_the_estimate() {
        let (p, codes) = sample(400, 1, 0.9);
        let config = BootstrapConfig::new(200, 7);
        let first = bootstrap_frame(&p, &codes, &config).unwrap();
        assert_eq!(first, bootstrap_frame(&p, &codes, &config).unwrap());
        let other = bootstrap_frame(&p, &codes, &BootstrapConfig::new(200, 8)).unwrap();
        assert_ne!(first, other);
        let frame = GroupFrame::new(&p, &codes).unwrap();
        for metric in Metric::ALL {
            let ci = first.metrics[metric.name()].unwrap();
            let value = metric.of(&frame).unwrap();
            assert!(
                ci.low <= value && value <= ci.high,
                "{}: {value} not in {ci:?}",
                metric.name()
            );
            assert_eq!(ci.resamples, 200);
        }
        assert_eq!(first.group_auc.len(), 3);
    }

    #[test]
    fn resamples_keep_every_stratum_size() {
        let (p, codes) = sample(300, 2, 0.5);
        let grouping = Grouping::new(&p, &codes).unwrap();
        let full = grouping.frame(&p, None);
        let mut resampler = Resampler::new(&grouping, 3);
        for _ in 0..5 {
            let frame = grouping.frame(&p, Some(resampler.next()));
            assert_eq!(frame.unknown, full.unknown);
            for (code, stats) in &full.groups {
                assert_eq!(frame.groups[code].n, stats.n);
            }
        }
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&values, 0.0), 1.0);
        assert_eq!(quantile(&values, 1.0), 4.0);
        assert!((quantile(&values, 0.025) - 1.075).abs() < 1e-12);
    }

    #[test]
    fn paired_test_separates_better_from_worse_and_not_from_itself() {
        let (good, codes) = sample(500, 4, 0.6);
        let noisy: Vec<f64> = good
            .probs()
            .iter()
            .enumerate()
            .map(|(i, &p)| if i % 2 == 0 { 1.0 - p } else { p })
            .collect();
        let bad = Predictions::new(noisy, good.labels().to_vec(), 0.5).unwrap();
        let config = BootstrapConfig::new(300, 5);
        let test = paired_bootstrap(&good, &bad, &codes, Metric::Auc, &config).unwrap();
        assert!(test.delta.unwrap() > 0.2);
        assert!(test.p_value.unwrap() < 0.01);
        let same = paired_bootstrap(&good, &good, &codes, Metric::EsAuc, &config).unwrap();
        assert_eq!(same.delta, Some(0.0));
        assert_eq!(same.p_value, Some(1.0));
        let flipped = Predictions::new(good.probs().to_vec(), vec![true; 500], 0.5).unwrap();
        assert!(matches!(
            paired_bootstrap(&good, &flipped, &codes, Metric::Auc, &config),
            Err(MetricError::LabelsDiffer)
        ));
    }
}

/// Paired comparison across seeds: per-seed differences `a_s - b_s` (same seed, same data),
/// resampled with replacement; the mean difference, its interval and a two-sided p-value
/// (twice the smaller share of resampled means on either side of zero, capped at 1). With
/// few seeds the resampling distribution is coarse: report the seed count beside it.
pub fn paired_seed_bootstrap(
    differences: &[f64],
    config: &BootstrapConfig,
) -> Option<(f64, Interval, f64)> {
    if differences.is_empty() {
        return None;
    }
    let n = differences.len();
    let mean = differences.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let means: Vec<f64> = (0..config.resamples)
        .map(|_| {
            (0..n)
                .map(|_| differences[rng.random_range(0..n)])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    let below = means.iter().filter(|&&d| d <= 0.0).count();
    let above = means.iter().filter(|&&d| d >= 0.0).count();
    let p = (2.0 * below.min(above) as f64 / means.len().max(1) as f64).min(1.0);
    Some((mean, Interval::from_values(means, config.level)?, p))
}

/// Exact paired sign-flip (randomisation) test of per-seed differences: the share of the 2^n
/// sign assignments whose |sum| reaches the observed |sum| (two-sided). Unlike the bootstrap
/// it stays honest with few seeds: with 5 seeds the smallest possible p is 2/32 = 0.0625.
/// Exact up to 20 differences; `None` beyond, or when empty.
pub fn sign_flip_p(differences: &[f64]) -> Option<f64> {
    let n = differences.len();
    if n == 0 || n > 20 {
        return None;
    }
    let observed = differences.iter().sum::<f64>().abs();
    let tolerance = 1e-12 * differences.iter().map(|d| d.abs()).sum::<f64>().max(1.0);
    let reached = (0u32..1 << n)
        .filter(|mask| {
            let total: f64 = differences
                .iter()
                .enumerate()
                .map(|(i, d)| if mask >> i & 1 == 1 { -d } else { *d })
                .sum();
            total.abs() >= observed - tolerance
        })
        .count();
    Some(reached as f64 / (1u64 << n) as f64)
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    #[test]
    fn sign_flip_by_hand() {
        // [1, 2, 3]: only all-plus and all-minus reach |6| of 8 assignments.
        assert_eq!(sign_flip_p(&[1.0, 2.0, 3.0]), Some(0.25));
        // [1, -1]: the observed sum is 0, which every assignment reaches.
        assert_eq!(sign_flip_p(&[1.0, -1.0]), Some(1.0));
        // Five positive differences: 2/32.
        assert_eq!(sign_flip_p(&[0.1, 0.2, 0.3, 0.1, 0.2]), Some(0.0625));
        assert_eq!(sign_flip_p(&[]), None);
    }

    #[test]
    fn seed_bootstrap_p_values() {
        let config = BootstrapConfig::new(2000, 1);
        // All differences positive: no resampled mean reaches zero.
        let (mean, interval, p) = paired_seed_bootstrap(&[0.1, 0.2, 0.3], &config).unwrap();
        assert!((mean - 0.2).abs() < 1e-12 && p == 0.0);
        assert!(interval.low >= 0.1 && interval.high <= 0.3);
        // Symmetric differences: p near 1.
        let (_, _, p) = paired_seed_bootstrap(&[-0.2, 0.2, -0.1, 0.1], &config).unwrap();
        assert!(p > 0.8, "{p}");
        assert!(paired_seed_bootstrap(&[], &config).is_none());
    }
}
