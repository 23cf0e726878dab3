//! Resumable checkpoints, one unit each: epoch k's model, optimizers and state are written into
//! `checkpoint/epoch-K.tmp/`, synced, renamed to `checkpoint/epoch-K/` (the commit point), and
//! then `checkpoint/LATEST` names it. Resuming trusts only a complete checkpoint: a missing,
//! empty or unreadable one is reported and the previous one used. Two are kept.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use burn::module::Module;
use multifair_core::Method;
use multifair_models::MultimodalModel;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::durable;
use crate::optim::{LrSchedule, Optimizers};

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

/// Checkpoints kept: the newest and the one before it (the fallback).
const KEEP: usize = 2;

/// A run's checkpoint folder.
pub struct Checkpoint {
    folder: PathBuf,
}

/// A resumed run: its state, model and optimizers.
pub type Resumed = (CheckpointState, MultimodalModel, Optimizers);

fn epoch_name(epoch: usize) -> String {
    format!("epoch-{epoch:04}")
}

impl Checkpoint {
    /// The checkpoint folder of run folder `out`, with stale temporary folders removed.
    pub fn new(out: &Path) -> anyhow::Result<Self> {
        let folder = crate::run_dir::RunDir::new(out).checkpoints();
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        for entry in std::fs::read_dir(&folder)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(Checkpoint { folder })
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The committed epoch folders, newest first.
    fn epochs(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = (std::fs::read_dir(&self.folder)
            .into_iter()
            .flatten()
            .flatten())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("epoch-"))
        })
        .collect();
        found.sort();
        found.reverse();
        found
    }

    /// Whether a checkpoint has been committed.
    pub fn exists(&self) -> bool {
        !self.epochs().is_empty()
    }

    /// The checkpoints to try, in order: the one `LATEST` names, then the others, newest first.
    fn candidates(&self) -> Vec<PathBuf> {
        let latest = self.folder.join("LATEST");
        let named = std::fs::read_to_string(&latest)
            .ok()
            .map(|t| t.trim().to_owned());
        let mut out = Vec::new();
        match named.as_deref() {
            Some(name) if !name.is_empty() && self.folder.join(name).is_dir() => {
                out.push(self.folder.join(name))
            }
            _ if latest.exists() => eprintln!(
                "{} is empty or names no checkpoint; using the newest complete one",
                latest.display()
            ),
            _ => {}
        }
        let rest: Vec<PathBuf> = self
            .epochs()
            .into_iter()
            .filter(|p| !out.contains(p))
            .collect();
        out.extend(rest);
        out
    }

    /// Restores a run of `config`: the newest complete checkpoint; `None` without one. A
    /// checkpoint of another configuration is an error.
    pub fn resume(
        &self,
        config: &TrainConfig,
        model: &MultimodalModel,
        optim: impl Fn() -> Optimizers,
        method: &mut dyn Method,
    ) -> anyhow::Result<Option<Resumed>> {
        for folder in self.candidates() {
            let state_path = folder.join("state.json");
            let state = (std::fs::read_to_string(&state_path).map_err(anyhow::Error::from))
                .and_then(|text| Ok(serde_json::from_str::<CheckpointState>(&text)?));
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    eprintln!(
                        "{}: unreadable ({e}); trying the previous checkpoint",
                        state_path.display()
                    );
                    continue;
                }
            };
            ensure!(
                state.config == *config,
                "{} holds a checkpoint of a different configuration; use another --out",
                self.folder.display()
            );
            let loaded = (|| -> anyhow::Result<(MultimodalModel, Optimizers)> {
                let path = folder.join("model.bpk");
                let model = (model.clone().try_load_file(&path))
                    .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", path.display()))?;
                Ok((model, optim().load(&folder)?))
            })();
            match loaded {
                Ok((model, optim)) => {
                    method
                        .load_state(state.method_state.clone())
                        .map_err(|e| anyhow::anyhow!("{}: {e}", state_path.display()))?;
                    return Ok(Some((state, model, optim)));
                }
                Err(e) => eprintln!(
                    "{}: {e:#}; trying the previous checkpoint",
                    folder.display()
                ),
            }
        }
        Ok(None)
    }

    /// Commits epoch `state.epochs_done`'s checkpoint, then drops all but the newest two.
    pub fn save(
        &self,
        state: &CheckpointState,
        model: &MultimodalModel,
        optim: &Optimizers,
    ) -> anyhow::Result<()> {
        let name = epoch_name(state.epochs_done);
        let tmp = self.folder.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        (model.clone().save_file(tmp.join("model.bpk")))
            .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", tmp.join("model.bpk").display()))?;
        optim.save(&tmp)?;
        let text = serde_json::to_string_pretty(state)? + "\n";
        std::fs::write(tmp.join("state.json"), text)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let committed = self.folder.join(&name);
        let _ = std::fs::remove_dir_all(&committed);
        durable::commit_folder(&tmp, &committed)?;
        durable::write(&self.folder.join("LATEST"), name.as_bytes())?;
        for old in self.epochs().into_iter().skip(KEEP) {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(())
    }
}
