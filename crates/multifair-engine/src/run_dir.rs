//! A run's folder ([`RunDir`]): the names of what it holds, reading and cutting its log, its
//! report's checks, and what a run writes besides its checkpoint — `run.json`,
//! `predictions.csv` (the input format of `multifair evaluate`) and `test.json` (its report,
//! plus the selection and the modality x group report).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use multifair_core::ovr_tasks;
use multifair_metrics::Predictions;
use serde::Serialize;
use serde_json::{Value, json};

use crate::durable;
use crate::report::{PredictionTable, report_json};
use crate::score::{Scored, Scorer};
use crate::setup::Run;

/// A run's folder. Every file name a run writes or reads is spelt here:
///
/// ```text
/// run.json            the resolved configuration, versions, imports, group counts
/// metrics.jsonl       a line per epoch (and per logged step)
/// test.json           the report of the tested model
/// predictions.csv     the test split's predictions
/// model.safetensors   the tested model
/// checkpoint/         resumable checkpoints
/// segments/           averaged weights per epoch (weight-averaging methods)
/// phases/MODALITY/    the runs a phased method trains first
/// tb/                 TensorBoard events
/// train.log           the run's output, when a sweep ran it
/// lock                the lock of the process training it
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn run_json(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    pub fn test(&self) -> PathBuf {
        self.path.join("test.json")
    }

    pub fn predictions(&self) -> PathBuf {
        self.path.join("predictions.csv")
    }

    pub fn model(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    pub fn checkpoints(&self) -> PathBuf {
        self.path.join("checkpoint")
    }

    /// Epoch `epoch`'s (0-based) averaged weights, named from 1.
    pub fn segment(&self, epoch: usize) -> PathBuf {
        (self.path.join("segments")).join(format!("epoch-{:04}.safetensors", epoch + 1))
    }

    /// The run of a phase (a modality's `unimodal` run).
    pub fn phase(&self, modality: &str) -> RunDir {
        RunDir::new(self.path.join("phases").join(modality))
    }

    pub fn tensorboard(&self) -> PathBuf {
        self.path.join("tb")
    }

    pub fn log(&self) -> PathBuf {
        self.path.join("train.log")
    }

    /// The report when it is whole and valid ([`read_report`]).
    pub fn report(&self) -> anyhow::Result<Option<Value>> {
        read_report(&self.path)
    }

    /// The report of a finished run (a torn or invalid one is not finished).
    pub fn finished(&self) -> Option<Value> {
        self.report().ok().flatten()
    }

    /// The epoch lines of `metrics.jsonl` (step lines and a torn last line left out).
    pub fn epoch_lines(&self) -> Vec<Value> {
        (std::fs::read_to_string(self.metrics())
            .unwrap_or_default()
            .lines())
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("step").is_none() && l["epoch"].is_u64())
        .collect()
    }

    /// Appends lines to `metrics.jsonl`, synced.
    pub fn append_metrics(&self, text: &str) -> anyhow::Result<()> {
        durable::append(&self.metrics(), text)
    }

    /// Keeps the lines of `metrics.jsonl` up to epoch `epochs_done` (per-step lines included)
    /// and drops a torn last line: what a run resumed there has already logged.
    pub fn truncate_metrics(&self, epochs_done: usize) -> anyhow::Result<()> {
        let Ok(text) = std::fs::read_to_string(self.metrics()) else {
            return Ok(());
        };
        let kept: String = (text.lines())
            .filter(|line| {
                let epoch = serde_json::from_str::<Value>(line)
                    .ok()
                    .and_then(|v| v["epoch"].as_u64());
                epoch.is_some_and(|e| e as usize <= epochs_done)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        if kept != text {
            durable::write(&self.metrics(), kept.as_bytes())?;
        }
        Ok(())
    }
}

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    durable::write(
        path,
        (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
    )
}

/// The report keys whose values are rates or AUCs, so within [0, 1] (or null).
const UNIT_KEYS: [&str; 9] = [
    "auc",
    "es_auc",
    "worst_group_auc",
    "auc_gap",
    "dpd",
    "deodds",
    "tpr",
    "fpr",
    "selection_rate",
];

/// The first rate or AUC in `value` outside [0, 1], as (JSON path, value).
fn out_of_range(value: &Value, path: &str) -> Option<(String, f64)> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{path}.{k}");
            match v.as_f64() {
                Some(x) if UNIT_KEYS.contains(&k.as_str()) && !(0.0..=1.0).contains(&x) => {
                    Some((here, x))
                }
                _ => out_of_range(v, &here),
            }
        }),
        Value::Array(items) => {
            (items.iter().enumerate()).find_map(|(i, v)| out_of_range(v, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// A run's `test.json`: `None` when there is none yet; an error naming the file when it is
/// torn (a kill mid-write on a filesystem without atomic renames, a hand edit) or holds a rate
/// or AUC outside [0, 1]. Tables, figures and listings read run reports through this alone.
pub fn read_report(folder: &Path) -> anyhow::Result<Option<Value>> {
    let path = RunDir::new(folder).test();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a whole report ({e}); rerun the run to rewrite it",
            path.display()
        )
    })?;
    anyhow::ensure!(value.is_object(), "{}: not a report object", path.display());
    if let Some((at, x)) = out_of_range(&value, "") {
        anyhow::bail!("{}: {} = {x} lies outside [0, 1]", path.display(), &at[1..]);
    }
    Ok(Some(value))
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl Run {
    /// `run.json`: the resolved configuration, the model, the training groups, the imported
    /// weights and the versions.
    pub fn write_run_json(&self, out: &Path, imported: &[Value]) -> anyhow::Result<()> {
        let config = &self.config;
        write_json(
            &RunDir::new(out).run_json(),
            &json!({
                "config": config,
                "model": &self.model_config,
                "modalities": self.model_config.names(),
                "train_groups": {
                    "attribute": &config.attribute,
                    "counts": &self.setup.group_counts,
                    "unknown": self.setup.unknown,
                },
                "pretrained": imported,
                "git_commit": git_commit(),
                "versions": {"multifair": env!("CARGO_PKG_VERSION"), "burn": "0.22.1"},
            }),
        )
    }

    /// `predictions.csv` of the test split (two classes: `prob` is class 1's probability; more:
    /// one `prob_C` column per class), and the same predictions as a table, from memory.
    fn write_predictions(&self, out: &Path, scored: &Scored) -> anyhow::Result<PredictionTable> {
        let classes = self.schema.classes.len();
        let mut csv = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = match classes {
            2 => vec!["prob".into()],
            _ => (0..classes).map(|c| format!("prob_{c}")).collect(),
        };
        header.push("label".into());
        header.extend(self.schema.attributes.iter().map(|a| a.name.clone()));
        csv.write_record(&header)?;
        for (i, probs) in scored.probs.iter().enumerate() {
            let mut row: Vec<String> = ovr_tasks(classes).map(|c| probs[c].to_string()).collect();
            row.push(scored.labels[i].to_string());
            row.extend(scored.codes.iter().map(|c| c[i].to_string()));
            csv.write_record(&row)?;
        }
        let bytes = csv
            .into_inner()
            .map_err(|e| anyhow::anyhow!("predictions.csv: {e}"))?;
        durable::write(&RunDir::new(out).predictions(), &bytes)?;
        let tasks = ovr_tasks(classes)
            .map(|c| {
                let p = scored.probs.iter().map(|p| p[c]).collect();
                let y = scored.labels.iter().map(|&l| l as usize == c).collect();
                Predictions::new(p, y, 0.5)
            })
            .collect::<Result<_, _>>()?;
        let attributes = (self.schema.attributes.iter().zip(&scored.codes))
            .map(|(a, codes)| (a.name.clone(), codes.clone()))
            .collect();
        Ok(PredictionTable { tasks, attributes })
    }

    /// Writes `predictions.csv` and `test.json` for the selected epoch's `model`; returns the
    /// report.
    /// `extra` (an object) adds what chose the model: a weight average's epochs, an
    /// ensemble's members.
    pub fn write_test(
        &self,
        out: &Path,
        scorer: Scorer,
        selected: Option<usize>,
        extra: Value,
    ) -> anyhow::Result<Value> {
        let scored = self.score(scorer, &self.test, None)?;
        let table = self.write_predictions(out, &scored)?;
        let mut test = report_json(&table, None)?;
        let classes = &self.schema.classes;
        if classes.len() > 2 {
            test["classes"] = json!(classes);
        }
        // A manifest names its groups; tables use the names.
        let named: BTreeMap<&str, &[String]> = (self.schema.attributes.iter())
            .filter(|a| !a.groups.is_empty())
            .map(|a| (a.name.as_str(), a.groups.as_slice()))
            .collect();
        if !named.is_empty() {
            test["group_names"] = json!(named);
        }
        let c = &self.config;
        test["selected_epoch"] = json!(selected);
        if let Value::Object(extra) = extra {
            test.as_object_mut().expect("an object").extend(extra);
        }
        test["selection"] =
            json!({"metric": c.engine.selection.name(), "attribute": c.attribute, "split": "val"});
        test["modality_group_report"] = self.modality_group_report(scorer, &scored)?;
        write_json(&RunDir::new(out).test(), &test)?;
        Ok(test)
    }
}
