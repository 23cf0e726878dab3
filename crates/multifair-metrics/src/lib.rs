//! Classification and group-fairness metrics for MultiFair.
//!
//! Pure functions first ([`auc`], [`ece`]), then one [`GroupFrame`] per sensitive attribute
//! from which ES-AUC, DPD, DEOdds, worst-group AUC and the AUC gap are read, then seeded
//! bootstrap intervals and paired tests ([`bootstrap_frame`], [`paired_bootstrap`]).
//! Definitions follow scikit-learn and fairlearn; see the workspace's golden vectors.

mod auc;
mod bootstrap;
mod calibration;
mod frame;

pub use auc::{Ranking, auc};
pub use bootstrap::{
    BootstrapConfig, FrameIntervals, Interval, Metric, PairedTest, bootstrap_frame,
    paired_bootstrap, paired_seed_bootstrap, sign_flip_p,
};
pub use calibration::{ECE_BINS, ece};
pub use frame::{GroupFrame, GroupStats, Predictions, UNKNOWN};

/// Invalid input to a metric. Sample indices are 0-based; callers reading files add the
/// file, row and column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    #[error("{what} has {found} entries; expected {expected}, one per prediction")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("probability {value} at index {index} is outside [0, 1]")]
    Probability { index: usize, value: f64 },
    #[error("threshold {0} is outside [0, 1]")]
    Threshold(f64),
    #[error("group code {code} at index {index} is invalid; codes are >= 0, or -1 for unknown")]
    Code { index: usize, code: i64 },
    #[error("the two prediction sets have different labels; a paired test needs the same samples")]
    LabelsDiffer,
}
