//! `multifair compare`: methods x seeds on one dataset (the synthetic benchmark unless
//! `--data-dir` names one), each run in its own folder, then a table of mean ± std over seeds
//! and paired tests across seeds of every method against the first. A finished run is read, not
//! retrained; an interrupted one resumes from its checkpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use multifair_data::DatasetKind;
use multifair_data::synthetic::FAILED_RACE;
use multifair_metrics::{BootstrapConfig, paired_seed_bootstrap, sign_flip_p};
use multifair_models::presets::ModelSize;
use serde_json::{Value, json};

use crate::table::{at, mean_std};
use crate::train::{RunOptions, TrainConfig, train};

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub out: PathBuf,
    /// The dataset; `None`: the synthetic FairVision benchmark under `out/data`.
    pub data_dir: Option<PathBuf>,
    pub dataset: DatasetKind,
    /// The first is the baseline of the paired tests.
    pub methods: Vec<String>,
    pub seeds: usize,
    pub epochs: usize,
    pub attribute: String,
    /// Training samples of the generated benchmark.
    pub samples: usize,
    /// `--set` pairs: `key=value` for every method, `METHOD:key=value` for one.
    pub sets: Vec<(String, String)>,
    pub device: String,
}

/// One method's test reports, by seed.
struct MethodRuns {
    method: String,
    tests: Vec<Value>,
}

/// The `--set` pairs that apply to `method`.
fn sets_for(method: &str, sets: &[(String, String)]) -> Vec<(String, String)> {
    sets.iter()
        .filter_map(|(k, v)| match k.split_once(':') {
            Some((m, key)) if m == method => Some((key.to_owned(), v.clone())),
            Some(_) => None,
            None => Some((k.clone(), v.clone())),
        })
        .collect()
}

/// Trains (or reads) one run.
fn run_one(config: TrainConfig, folder: &Path) -> anyhow::Result<Value> {
    let test = folder.join("test.json");
    let state = folder.join("checkpoint/state.json");
    if test.is_file() && state.is_file() {
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state)?)?;
        if saved["config"] == serde_json::to_value(&config)? {
            eprintln!("{}: finished, reading test.json", folder.display());
            return Ok(serde_json::from_str(&std::fs::read_to_string(&test)?)?);
        }
    }
    train(config, folder, &RunOptions::default())
}

pub fn run(options: &CompareOptions) -> anyhow::Result<String> {
    anyhow::ensure!(
        !options.methods.is_empty() && options.seeds > 0,
        "compare needs at least one method and one seed"
    );
    let (data, meta) = match &options.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let data = options.out.join("data");
            let meta = crate::demo::benchmark(&data, options.samples, 0)?;
            (data, Some(meta))
        }
    };
    let dataset = if options.data_dir.is_some() {
        options.dataset
    } else {
        DatasetKind::FairVision
    };
    let mut runs = Vec::new();
    for method in &options.methods {
        let mut tests = Vec::new();
        for seed in 0..options.seeds as u64 {
            eprintln!("== {method}, seed {seed}");
            let config = TrainConfig::resolve(
                dataset,
                data.clone(),
                method,
                &options.attribute,
                seed,
                options.epochs,
                ModelSize::Tiny,
                &options.device,
                &sets_for(method, &options.sets),
            )?;
            let folder = options
                .out
                .join("runs")
                .join(method)
                .join(format!("seed-{seed}"));
            tests.push(run_one(config, &folder).with_context(|| format!("{method}, seed {seed}"))?);
        }
        runs.push(MethodRuns {
            method: method.clone(),
            tests,
        });
    }
    let (text, json) = summarise(&runs, &options.attribute, meta.as_ref());
    std::fs::write(options.out.join("summary.md"), &text)?;
    std::fs::write(
        options.out.join("summary.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    Ok(text)
}

/// The columns of the table: (label, path into a test report).
fn columns(attribute: &str, groups: &[String]) -> Vec<(String, Vec<String>)> {
    let mut out = vec![
        ("AUC".to_owned(), vec!["auc".to_owned()]),
        (
            format!("ES-AUC ({attribute})"),
            vec!["attributes".into(), attribute.into(), "es_auc".into()],
        ),
    ];
    for g in groups {
        out.push((
            format!("AUC {attribute}={g}"),
            vec![
                "attributes".into(),
                attribute.into(),
                "groups".into(),
                g.clone(),
                "auc".into(),
            ],
        ));
    }
    out
}

/// Mean ± std per method and column, then each method against the first, paired by seed.
fn summarise(runs: &[MethodRuns], attribute: &str, meta: Option<&Value>) -> (String, Value) {
    let groups: Vec<String> = runs[0].tests[0]["attributes"][attribute]["groups"]
        .as_object()
        .map(|g| g.keys().cloned().collect())
        .unwrap_or_default();
    let columns = columns(attribute, &groups);
    let seeds = runs[0].tests.len();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Test metrics, mean ± std over {seeds} seeds (model selected on validation AUC).\n"
    );
    let header: Vec<&str> = columns.iter().map(|(l, _)| l.as_str()).collect();
    let _ = writeln!(text, "| method | {} |", header.join(" | "));
    let _ = writeln!(text, "|---|{}", "---|".repeat(columns.len()));
    if let Some(meta) = meta {
        let oracle: Vec<String> = columns
            .iter()
            .map(|(_, path)| {
                let oracle = match path.len() {
                    1 => &meta["oracle_auc"]["overall"],
                    5 => &meta["oracle_auc"]["attributes"][attribute][&path[3]],
                    _ => &Value::Null,
                };
                oracle.as_f64().map_or("-".into(), |v| format!("{v:.3}"))
            })
            .collect();
        let _ = writeln!(
            text,
            "| oracle (latent severity) | {} |",
            oracle.join(" | ")
        );
    }
    let mut json_methods = serde_json::Map::new();
    for r in runs {
        let mut cells = Vec::new();
        let mut stats = serde_json::Map::new();
        for (label, path) in &columns {
            let values: Vec<f64> = r.tests.iter().filter_map(|t| at(t, path)).collect();
            let (Some((mean, std)), true) = (mean_std(&values), values.len() == r.tests.len())
            else {
                cells.push(format!("missing in {} seeds", r.tests.len() - values.len()));
                stats.insert(label.clone(), json!({"values": values}));
                continue;
            };
            cells.push(format!("{mean:.3} ± {std:.3}"));
            stats.insert(
                label.clone(),
                json!({"mean": mean, "std": std, "values": values}),
            );
        }
        let _ = writeln!(text, "| {} | {} |", r.method, cells.join(" | "));
        json_methods.insert(r.method.clone(), Value::Object(stats));
    }

    // Paired by seed against the first method.
    let config = BootstrapConfig::new(10_000, 0);
    let mut compared = Vec::new();
    let focus: Vec<&(String, Vec<String>)> = columns
        .iter()
        .filter(|(l, _)| {
            l == "AUC"
                || l.starts_with("ES-AUC")
                || (attribute == "race"
                    && meta.is_some()
                    && *l == format!("AUC race={FAILED_RACE}"))
        })
        .collect();
    if runs.len() > 1 {
        let _ = writeln!(
            text,
            "\nAgainst {} (same seed, same data): mean difference, 95% bootstrap interval over seeds, two-sided bootstrap p and exact sign-flip p (with n seeds the sign-flip p cannot go below 2/2^n).\n",
            runs[0].method
        );
        let _ = writeln!(
            text,
            "| method | metric | difference | interval | bootstrap p | sign-flip p |"
        );
        let _ = writeln!(text, "|---|---|---|---|---|---|");
        for r in &runs[1..] {
            for (label, path) in &focus {
                let diffs: Vec<f64> = r
                    .tests
                    .iter()
                    .zip(&runs[0].tests)
                    .filter_map(|(a, b)| Some(at(a, path)? - at(b, path)?))
                    .collect();
                if let Some((mean, interval, p)) = paired_seed_bootstrap(&diffs, &config) {
                    let flip = sign_flip_p(&diffs);
                    let _ = writeln!(
                        text,
                        "| {} | {label} | {mean:+.3} | [{:+.3}, {:+.3}] | {p:.3} | {} |",
                        r.method,
                        interval.low,
                        interval.high,
                        flip.map_or("-".into(), |p| format!("{p:.3}"))
                    );
                    compared.push(json!({
                        "method": r.method, "against": runs[0].method, "metric": label,
                        "differences": diffs, "mean": mean,
                        "interval": [interval.low, interval.high], "p": p,
                        "sign_flip_p": flip,
                    }));
                }
            }
        }
    }
    let by_method: BTreeMap<&str, usize> = runs
        .iter()
        .map(|r| (r.method.as_str(), r.tests.len()))
        .collect();
    (
        text,
        json!({"seeds": by_method, "attribute": attribute, "methods": json_methods,
               "paired": compared}),
    )
}
