//! `multifair demo`: the synthetic FairVision-format benchmark, fusion ERM and both unimodal
//! models, and a table of test AUC, ES-AUC and group AUCs per attribute against the oracle.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use multifair_data::DatasetKind;
use multifair_data::synthetic::{SyntheticConfig, generate};
use multifair_models::presets::ModelSize;
use serde_json::Value;

use crate::train::{RunOptions, TrainConfig, train};

/// Sizes of a demo (the command's defaults keep it under 10 minutes on 2 CPU cores).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out: PathBuf,
    pub epochs: usize,
    /// Training samples (validation and test are a quarter and a half of it).
    pub samples: usize,
    pub seed: u64,
}

/// (run folder, label, method, --set pairs)
const RUNS: [(&str, &str, &str, &[(&str, &str)]); 3] = [
    ("erm", "fusion ERM", "erm", &[]),
    (
        "unimodal-slo",
        "SLO alone",
        "unimodal",
        &[("unimodal_modality", "slo")],
    ),
    (
        "unimodal-oct",
        "OCT alone",
        "unimodal",
        &[("unimodal_modality", "oct")],
    ),
];

/// The synthetic FairVision-format benchmark in `data` (written once: `samples` training
/// samples, a quarter as many for validation, half for test), and its `meta.json`.
pub fn benchmark(data: &Path, samples: usize, seed: u64) -> anyhow::Result<Value> {
    if !data.join("meta.json").is_file() {
        let mut config = SyntheticConfig::new(DatasetKind::FairVision, seed);
        config.n_train = samples;
        config.n_val = samples / 4;
        config.n_test = samples / 2;
        eprintln!(
            "writing the synthetic FairVision-format benchmark to {}",
            data.display()
        );
        generate(&config, data).with_context(|| format!("writing {}", data.display()))?;
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(
        data.join("meta.json"),
    )?)?)
}

pub fn run(options: &DemoOptions) -> anyhow::Result<String> {
    let data = options.out.join("data");
    let meta = benchmark(&data, options.samples, options.seed)?;
    let mut results = Vec::new();
    for (folder, label, method, sets) in RUNS {
        eprintln!("== {label}");
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = TrainConfig::resolve(
            DatasetKind::FairVision,
            data.clone(),
            method,
            "race",
            options.seed,
            options.epochs,
            ModelSize::Tiny,
            "flex",
            &sets,
        )?;
        let test = train(config, &options.out.join(folder), &RunOptions::default())?;
        results.push((label, test));
    }
    let summary = summarise(&meta, &results);
    std::fs::write(options.out.join("summary.md"), &summary)?;
    Ok(summary)
}

fn fmt(v: &Value) -> String {
    v.as_f64().map_or("  -  ".to_owned(), |v| format!("{v:.3}"))
}

/// One table per attribute, then the two checks the benchmark is built for.
pub fn summarise(meta: &Value, results: &[(&str, Value)]) -> String {
    let mut out = String::new();
    let attributes = meta["oracle_auc"]["attributes"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, oracle) in &attributes {
        let codes: Vec<&String> = oracle
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        let header: Vec<String> = codes.iter().map(|c| format!("{name}={c}")).collect();
        let _ = writeln!(out, "| {name} | AUC | ES-AUC | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|---|---|{}", "---|".repeat(codes.len()));
        let oracle_groups: Vec<String> = codes.iter().map(|c| fmt(&oracle[c.as_str()])).collect();
        let _ = writeln!(
            out,
            "| oracle (latent severity) | {} | - | {} |",
            fmt(&meta["oracle_auc"]["overall"]),
            oracle_groups.join(" | ")
        );
        for (label, test) in results {
            let attr = &test["attributes"][name.as_str()];
            let groups: Vec<String> = codes
                .iter()
                .map(|c| fmt(&attr["groups"][c.as_str()]["auc"]))
                .collect();
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} |",
                fmt(&test["auc"]),
                fmt(&attr["es_auc"]),
                groups.join(" | ")
            );
        }
        out.push('\n');
    }
    // The problem MultiFair addresses, read off the runs.
    let find = |label: &str| results.iter().find(|(l, _)| *l == label).map(|(_, t)| t);
    if let (Some(erm), Some(oct)) = (find("fusion ERM"), find("OCT alone")) {
        let inside = &erm["modality_group_report"]["oct"]["aux"]["race"]["overall"];
        let _ = writeln!(
            out,
            "Modality imbalance: the OCT auxiliary head inside fusion ERM reaches test AUC {}, the OCT model alone {}.",
            fmt(inside),
            fmt(&oct["auc"])
        );
        let failed = &erm["attributes"]["race"]["groups"]["1"]["auc"];
        let others: Vec<String> = ["0", "2"]
            .iter()
            .map(|c| fmt(&erm["attributes"]["race"]["groups"][*c]["auc"]))
            .collect();
        let _ = writeln!(
            out,
            "Unfairness: fusion ERM's AUC on race=1 (the group the fundus fails) is {}, against {} on the other groups and {} for the oracle on that group.",
            fmt(failed),
            others.join(" and "),
            fmt(&meta["oracle_auc"]["attributes"]["race"]["1"])
        );
    }
    out
}
