//! What a run writes besides its checkpoint: `run.json`, `predictions.csv` (the input format of
//! `multifair evaluate`) and `test.json` (its report, plus the selection and the modality x
//! group report).

use std::collections::BTreeMap;
use std::path::Path;

use multifair_core::ovr_tasks;
use multifair_metrics::Predictions;
use serde::Serialize;
use serde_json::{Value, json};

use crate::durable;
use crate::report::{PredictionTable, report_json};
use crate::score::{Scored, Scorer};
use crate::setup::Run;

/// Writes `value` as pretty JSON to `path`, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    durable::write(
        path,
        (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
    )
}

/// The report keys whose values are rates or AUCs, so within [0, 1] (or null).
const UNIT_KEYS: [&str; 9] = [
    "auc", "es_auc", "worst_group_auc", "auc_gap", "dpd", "deodds", "tpr", "fpr", "selection_rate",
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
        Value::Array(items) => (items.iter().enumerate())
            .find_map(|(i, v)| out_of_range(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// A run's `test.json`: `None` when there is none yet; an error naming the file when it is
/// torn (a kill mid-write on a filesystem without atomic renames, a hand edit) or holds a rate
/// or AUC outside [0, 1]. Tables, figures and listings read run reports through this alone.
pub fn read_report(folder: &Path) -> anyhow::Result<Option<Value>> {
    let path = folder.join("test.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a whole report ({e}); rerun the run to rewrite it", path.display()))?;
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
            &out.join("run.json"),
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
        durable::write(&out.join("predictions.csv"), &bytes)?;
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
        write_json(&out.join("test.json"), &test)?;
        Ok(test)
    }
}
