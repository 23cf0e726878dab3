//! FIN, fair identity normalisation (Luo et al., "Harvard Glaucoma Fairness", WACV 2024): the
//! fusion model with a learnable per-group mean and scale on the classifier's input (the final
//! linear layer's, as the original script places it; momentum 0.3 with the un-normalised
//! feature; `multifair_models::fin`), trained with cross-entropy. The
//! group is an input at test time too, as in the paper.

use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::erm_step;
use crate::hparams::{Hparams, NoHparams};
use crate::{DeviceBatch, Method, Setup, StepOutput};

pub const INFO: MethodInfo = super::plain(
    "fin",
    "FIN (Luo et al., WACV 2024): per-group learnable normalisation of the final linear layer's input",
    |h| {
        NoHparams::from_value(h)?;
        Ok(Box::new(Fin))
    },
);

pub struct Fin;

impl Method for Fin {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_groups(INFO.name)?;
        Ok(())
    }

    fn fair_norm(&self) -> bool {
        true
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        assert!(
            model.fin.is_some(),
            "fin runs on a model built with a FIN layer"
        );
        erm_step(model, batch)
    }
}
