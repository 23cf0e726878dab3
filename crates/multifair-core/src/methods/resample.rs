//! Group-balanced resampling, as MEDFAIR's `resampling` (ys-zong/MEDFAIR@2fae424,
//! datasets/BaseDataset.py:77-137, datasets/utils.py:116-126):
//!
//! 1. each training sample's cell is its group of the run's attribute (`resample_which=group`,
//!    MEDFAIR's default), its group x label (`balanced`) or its label (`class`);
//! 2. an epoch draws as many samples as the split has, with replacement, sample i with
//!    probability 1 / (K n_cell(i)): every cell equally likely, a member uniformly
//!    (`WeightedRandomSampler(1 / n_cell, N, replacement=True)`);
//! 3. model and loss are fusion ERM's.
//!
//! Samples of unknown group (-1) are never drawn (MEDFAIR's mappings give every row a group);
//! the run counts them in `run.json`.

use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::erm_step;
use crate::hparams::{Hparams, Range};
use crate::{Cells, DeviceBatch, Method, Sampling, Setup, StepOutput, hparams};

hparams! {
    pub struct ResampleHparams {
        /// The cells drawn evenly: group, balanced (group x label) or class.
        cells as "resample_which": Cells = Cells::Group, Range::Choice(&["group", "balanced", "class"]);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "resample",
    about: "group-balanced resampling (MEDFAIR): batches drawn with every group (or group x label) equally likely",
    hparams: ResampleHparams::HPARAMS,
    defaults: ResampleHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        Ok(Box::new(Resample {
            cells: ResampleHparams::from_value(h)?.cells,
        }))
    },
};

pub struct Resample {
    cells: Cells,
}

impl Method for Resample {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        if self.cells != Cells::Class {
            setup.require_groups(INFO.name)?;
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        Sampling::Balanced(self.cells)
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        erm_step(model, batch)
    }
}
