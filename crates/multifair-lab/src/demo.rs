//! `multifair demo`: the synthetic FairVision-format benchmark, then the demo spec (fusion ERM,
//! SLO alone, OCT alone, MultiFair; `experiments/demo.toml`) swept for one seed, its table
//! against the oracle, and what the runs show: the imbalance, the unfairness, and what
//! MultiFair changed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use multifair_data::DatasetKind;
use multifair_data::synthetic::{SyntheticConfig, generate};
use serde_json::Value;

use crate::sweep::{Overrides, Plan, sweep_local};
use crate::table::Format;

/// Sizes of a demo (the command's defaults keep it under 10 minutes on 2 CPU cores).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out: PathBuf,
    pub epochs: usize,
    /// Training samples (validation and test are a quarter and a half of it).
    pub samples: usize,
    pub seed: u64,
}

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
    let mut spec = crate::reproduce::builtin("demo")?;
    (spec.epochs, spec.seeds, spec.seed_list) = (options.epochs, 1, Some(vec![options.seed]));
    let plan = sweep_local(&spec, &data, &Overrides::default(), &options.out, 1)?;
    let tables = crate::table::load(&options.out)?;
    let mut summary = crate::table::render(&tables, Format::Md)?;
    summary += &oracle_line(&meta, "race");
    summary += &findings(&meta, &plan, &options.out)?;
    std::fs::write(options.out.join("summary.md"), &summary)?;
    Ok(summary)
}

fn fmt(v: &Value) -> String {
    v.as_f64().map_or("-".to_owned(), |v| format!("{v:.3}"))
}

/// The oracle's test AUC (the latent severity's) overall and per group of `attribute`.
pub fn oracle_line(meta: &Value, attribute: &str) -> String {
    let oracle = &meta["oracle_auc"];
    let groups: Vec<String> = (oracle["attributes"][attribute]
        .as_object()
        .into_iter()
        .flatten())
    .map(|(code, auc)| format!("{attribute}={code} {}", fmt(auc)))
    .collect();
    format!(
        "\nOracle (latent severity): AUC {}; {}.\n",
        fmt(&oracle["overall"]),
        groups.join(", ")
    )
}

/// The problem MultiFair addresses and what it changed, read off the runs' test reports.
fn findings(meta: &Value, plan: &Plan, out: &Path) -> anyhow::Result<String> {
    let test = |label: &str| -> anyhow::Result<Value> {
        let run = plan
            .runs
            .iter()
            .find(|r| r.label == label)
            .context(label.to_owned())?;
        let path = out.join(&run.folder).join("test.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (erm, oct, multifair) = (test("erm")?, test("oct")?, test("multifair")?);
    let race = |t: &Value, code: &str| fmt(&t["attributes"]["race"]["groups"][code]["auc"]);
    let oct_head = |t: &Value| fmt(&t["modality_group_report"]["oct"]["aux"]["race"]["overall"]);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nModality imbalance: the OCT auxiliary head inside fusion ERM reaches test AUC {}, the OCT model alone {}.",
        oct_head(&erm),
        fmt(&oct["auc"])
    );
    let _ = writeln!(
        text,
        "Unfairness: fusion ERM's AUC on race=1 (the group the fundus fails) is {}, against {} and {} on the other groups and {} for the oracle on that group.",
        race(&erm, "1"),
        race(&erm, "0"),
        race(&erm, "2"),
        fmt(&meta["oracle_auc"]["attributes"]["race"]["1"])
    );
    let _ = writeln!(
        text,
        "MultiFair against fusion ERM: race=1 AUC {} vs {}, ES-AUC {} vs {}, the OCT head inside fusion {} vs {}.",
        race(&multifair, "1"),
        race(&erm, "1"),
        fmt(&multifair["attributes"]["race"]["es_auc"]),
        fmt(&erm["attributes"]["race"]["es_auc"]),
        oct_head(&multifair),
        oct_head(&erm)
    );
    Ok(text)
}
