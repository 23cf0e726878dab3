//! Resumable checkpoints: the model, both optimizers, and the state that decides what comes
//! next (epochs done, the best epoch so far, the method's and the schedule's state).

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use burn::module::Module;
use multifair_core::Method;
use multifair_models::MultimodalModel;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::optim::{LrSchedule, Optimizers};
use crate::outputs::write_json;

/// What a checkpoint records besides the model and optimizers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointState {
    pub config: TrainConfig,
    pub epochs_done: usize,
    pub best_epoch: Option<usize>,
    pub best_score: f64,
    /// The method's own state struct.
    pub method_state: serde_json::Value,
    pub schedule: LrSchedule,
    /// Early stopping ended the run after this epoch.
    pub stopped_early: Option<usize>,
}

impl CheckpointState {
    pub fn new(config: TrainConfig) -> Self {
        CheckpointState {
            config,
            epochs_done: 0,
            best_epoch: None,
            best_score: f64::NEG_INFINITY,
            method_state: serde_json::Value::Null,
            schedule: LrSchedule::default(),
            stopped_early: None,
        }
    }
}

/// A run's checkpoint folder.
pub struct Checkpoint {
    folder: PathBuf,
}

impl Checkpoint {
    pub fn new(out: &Path) -> anyhow::Result<Self> {
        let folder = out.join("checkpoint");
        std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        Ok(Checkpoint { folder })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    fn state_path(&self) -> PathBuf {
        self.folder.join("state.json")
    }

    pub fn exists(&self) -> bool {
        self.state_path().is_file()
    }

    /// Restores a run of `config` into `model`, `optim` and `method`; `None` for a fresh
    /// folder. A checkpoint of another configuration is an error.
    pub fn resume(
        &self,
        config: &TrainConfig,
        model: MultimodalModel,
        optim: Optimizers,
        method: &mut dyn Method,
    ) -> anyhow::Result<Option<(CheckpointState, MultimodalModel, Optimizers)>> {
        let path = self.state_path();
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let saved: CheckpointState =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            saved.config == *config,
            "{} holds a checkpoint of a different configuration; use another --out",
            self.folder.display()
        );
        let model_path = self.folder.join("model.bpk");
        let model = (model.try_load_file(&model_path))
            .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", model_path.display()))?;
        let optim = optim.load(&self.folder)?;
        method
            .load_state(saved.method_state.clone())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Some((saved, model, optim)))
    }

    /// Writes the model, the optimizers and then `state` (which names the epoch they are of).
    pub fn save(&self, state: &CheckpointState, model: &MultimodalModel, optim: &Optimizers) -> anyhow::Result<()> {
        (model.clone().save_file(self.folder.join("model.bpk")))
            .map_err(|e| anyhow::anyhow!("writing the model checkpoint: {e:?}"))?;
        optim.save(&self.folder)?;
        write_json(&self.state_path(), state)
    }
}
