//! Runs in phases (UME, UMT): one `unimodal` run per modality first, each in
//! `RUN/phases/MODALITY/` — an ordinary run, resumed or read back like any — then either the
//! members' summed logits are the run's predictions (an ensemble) or their selected models
//! teach the method's own run.

use std::path::Path;

use multifair_core::create;
use multifair_models::MultimodalModel;
use serde_json::{Value, json};

use crate::average;
use crate::config::TrainConfig;
use crate::durable::RunLock;
use crate::run_dir::RunDir;
use crate::score::Scorer;
use crate::setup::Run;
use crate::train::{RunOptions, train};

/// The `unimodal` run of `modality` under the same engine, seed and data.
fn member_config(config: &TrainConfig, modality: &str) -> TrainConfig {
    let mut member = config.clone();
    member.method = "unimodal".into();
    member.hparams = json!({"unimodal_modality": modality});
    member.preset = None;
    member
}

/// Trains (or resumes, or reads back) every member, then loads each one's selected model, in
/// the order of `run`'s model; `None` when a member stopped early as asked.
pub fn members(
    run: &Run,
    out: &Path,
    options: &RunOptions,
) -> anyhow::Result<Option<Vec<MultimodalModel>>> {
    let names: Vec<String> = run
        .model_config
        .names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut models = Vec::new();
    for name in &names {
        let config = member_config(&run.config, name);
        let folder = RunDir::new(out).phase(name);
        options.say(format!(
            "{}: phase {name} ({})",
            out.display(),
            folder.path().display()
        ));
        if train(config.clone(), folder.path(), options)?.is_null() {
            return Ok(None);
        }
        let mut method = create("unimodal", &config.hparams).map_err(anyhow::Error::msg)?;
        let member = Run::new(config, method.as_mut())?;
        let template = member.model_config.init(&member.device);
        models.push(average::load(template, &folder.model())?);
    }
    Ok(Some(models))
}

/// A [`multifair_core::Phases::Ensemble`] run: its members, then their summed logits on the
/// test split (`predictions.csv`, `test.json`).
pub fn ensemble(run: &Run, out: &Path, options: &RunOptions) -> anyhow::Result<Value> {
    std::fs::create_dir_all(out)?;
    let _lock = RunLock::take(out)?;
    let Some(models) = members(run, out, options)? else {
        return Ok(Value::Null);
    };
    run.write_run_json(out, &[])?;
    let names = run.model_config.names();
    let extra =
        json!({"ensemble": names.iter().map(|n| format!("phases/{n}")).collect::<Vec<_>>()});
    let test = run.write_test(out, Scorer::Ensemble(&models), None, extra)?;
    options.say(format!(
        "test AUC {:.4} (the members' summed logits); outputs in {}",
        test["auc"].as_f64().unwrap_or(f64::NAN),
        out.display()
    ));
    Ok(test)
}
