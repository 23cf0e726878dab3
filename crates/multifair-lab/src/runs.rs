//! `multifair runs RESULTS`: one line per planned run of a sweep — its status (finished,
//! running, interrupted and resumable, failed with its error, pending), epochs done, selected
//! epoch, validation and test AUC, ES-AUC and wall time — filtered and sorted.

use std::path::Path;

use anyhow::bail;
use serde::Serialize;

use multifair_engine::durable::RunLock;
use multifair_engine::run_dir::RunDir;

use crate::sweep::PlannedRun;

/// A run's state, read off its folder.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Finished,
    /// A live process holds the run's lock.
    Running,
    /// Stopped after a checkpoint; rerunning resumes it.
    Interrupted,
    /// Its log ends with an error, or its report is torn or out of range.
    Failed,
    /// Nothing written yet.
    Pending,
}

impl Status {
    fn name(&self) -> &'static str {
        match self {
            Status::Finished => "finished",
            Status::Running => "running",
            Status::Interrupted => "interrupted (resumable)",
            Status::Failed => "failed",
            Status::Pending => "pending",
        }
    }
}

/// One line of the listing.
#[derive(Debug, Clone, Serialize)]
pub struct RunLine {
    pub label: String,
    pub method: String,
    pub attribute: String,
    pub seed: usize,
    pub status: Status,
    /// The last line of a failed run's log.
    pub error: Option<String>,
    pub epochs_done: usize,
    pub selected_epoch: Option<u64>,
    pub val_auc: Option<f64>,
    pub test_auc: Option<f64>,
    pub es_auc: Option<f64>,
    pub wall_seconds: f64,
    pub folder: String,
}

/// What `--sort` orders by (highest first; runs without the value last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    TestAuc,
    ValAuc,
    EsAuc,
    Wall,
    Epochs,
}

/// The listing's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunsFormat {
    Md,
    Csv,
    Json,
}

fn line_of(run: &PlannedRun, out: &Path) -> RunLine {
    let folder = out.join(&run.folder);
    let dir = RunDir::new(&folder);
    let epochs = dir.epoch_lines();
    let (test, invalid) = match dir.report() {
        Ok(test) => (test, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let last_log = std::fs::read_to_string(dir.log()).ok().and_then(|t| {
        t.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned)
    });
    let checkpointed = std::fs::read_dir(dir.checkpoints()).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("epoch-"))
    });
    let (status, error) = match (RunLock::held(&folder), &test, last_log) {
        (Some(_), _, _) => (Status::Running, None),
        _ if invalid.is_some() => (Status::Failed, invalid),
        (None, Some(_), _) => (Status::Finished, None),
        (None, None, Some(l)) if l.starts_with("error:") => (Status::Failed, Some(l)),
        _ if checkpointed => (Status::Interrupted, None),
        _ => (Status::Pending, None),
    };
    let selected_epoch = match &test {
        Some(t) => t["selected_epoch"].as_u64(),
        None => epochs
            .iter()
            .rev()
            .find(|l| l["selected"] == true)
            .and_then(|l| l["epoch"].as_u64()),
    };
    let val_auc = selected_epoch
        .and_then(|e| epochs.iter().find(|l| l["epoch"].as_u64() == Some(e)))
        .and_then(|l| l["val"]["auc"].as_f64());
    RunLine {
        label: run.label.clone(),
        method: run.method.clone(),
        attribute: run.attribute.clone(),
        seed: run.seed_index,
        status,
        error,
        epochs_done: epochs.len(),
        selected_epoch,
        val_auc,
        test_auc: test.as_ref().and_then(|t| t["auc"].as_f64()),
        es_auc: test
            .as_ref()
            .and_then(|t| t["attributes"][&run.attribute]["es_auc"].as_f64()),
        wall_seconds: epochs.iter().filter_map(|l| l["seconds"].as_f64()).sum(),
        folder: run.folder.display().to_string(),
    }
}

/// Every planned run of the sweep in `results`, filtered by `key=value` pairs (label, method,
/// attribute, seed, status) and sorted.
pub fn list(
    results: &Path,
    filters: &[String],
    sort: Option<SortKey>,
) -> anyhow::Result<Vec<RunLine>> {
    let plan = crate::sweep::read_plan(results)?;
    let mut lines: Vec<RunLine> = plan.runs.iter().map(|r| line_of(r, results)).collect();
    for filter in filters {
        let Some((key, value)) = filter.split_once('=') else {
            bail!("--where {filter}: expected key=value");
        };
        let field = |l: &RunLine| -> anyhow::Result<String> {
            Ok(match key {
                "label" => l.label.clone(),
                "method" => l.method.clone(),
                "attribute" => l.attribute.clone(),
                "seed" => l.seed.to_string(),
                "status" => serde_json::to_value(&l.status)?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                other => bail!(
                    "--where {other}=...: expected one of label, method, attribute, seed, status"
                ),
            })
        };
        let mut kept = Vec::new();
        for line in lines {
            if field(&line)? == value {
                kept.push(line);
            }
        }
        lines = kept;
    }
    if let Some(key) = sort {
        let value = |l: &RunLine| match key {
            SortKey::TestAuc => l.test_auc,
            SortKey::ValAuc => l.val_auc,
            SortKey::EsAuc => l.es_auc,
            SortKey::Wall => Some(l.wall_seconds),
            SortKey::Epochs => Some(l.epochs_done as f64),
        };
        lines.sort_by(|a, b| {
            value(b)
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&value(a).unwrap_or(f64::NEG_INFINITY))
        });
    }
    Ok(lines)
}

fn number(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The listing as a markdown table, CSV or JSON.
pub fn render(lines: &[RunLine], format: RunsFormat) -> anyhow::Result<String> {
    if format == RunsFormat::Json {
        return Ok(serde_json::to_string_pretty(lines)? + "\n");
    }
    let header = [
        "label",
        "attribute",
        "seed",
        "status",
        "epochs",
        "selected",
        "val AUC",
        "test AUC",
        "ES-AUC",
        "wall s",
    ];
    let rows: Vec<Vec<String>> = (lines.iter())
        .map(|l| {
            let status = match &l.error {
                Some(e) => format!("{}: {e}", l.status.name()),
                None => l.status.name().to_owned(),
            };
            vec![
                l.label.clone(),
                l.attribute.clone(),
                l.seed.to_string(),
                status,
                l.epochs_done.to_string(),
                l.selected_epoch.map_or("-".into(), |e| e.to_string()),
                number(l.val_auc),
                number(l.test_auc),
                number(l.es_auc),
                format!("{:.1}", l.wall_seconds),
            ]
        })
        .collect();
    if format == RunsFormat::Csv {
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.write_record(header)?;
        for row in &rows {
            csv.write_record(row)?;
        }
        return Ok(String::from_utf8(
            csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
        )?);
    }
    let mut text = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        text += &format!("| {} |\n", cells.join(" | "));
    }
    Ok(text)
}
