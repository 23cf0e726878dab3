//! One modality alone: the same model and loss as ERM, built over `unimodal_modality` only.
//! Where the modality is missing for some rows (manifests), it trains on the rows that have it.

use std::collections::BTreeMap;

use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range};
use crate::{DeviceBatch, Method, StepOutput, hparams};

hparams! {
    pub struct UnimodalHparams {
        /// The modality trained alone (null: the dataset's first).
        modality as "unimodal_modality": Option<String> = None, Range::Fixed;
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "unimodal",
    about: "a single modality (unimodal_modality), the baseline each modality reaches alone",
    hparams: UnimodalHparams::HPARAMS,
    defaults: UnimodalHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        Ok(Box::new(Unimodal {
            modality: UnimodalHparams::from_value(h)?.modality,
        }))
    },
};

pub struct Unimodal {
    modality: Option<String>,
}

impl Method for Unimodal {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn modalities(&self, available: &[String]) -> Result<Vec<String>, String> {
        match &self.modality {
            None => Ok(available[..1].to_vec()),
            Some(m) if available.contains(m) => Ok(vec![m.clone()]),
            Some(m) => Err(format!(
                "--set unimodal_modality={m}: no such modality; available: {}",
                available.join(", ")
            )),
        }
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        let objective = batch.mean_where_available(0, f.per_sample.clone());
        finish(model, f, objective, BTreeMap::new())
    }
}
