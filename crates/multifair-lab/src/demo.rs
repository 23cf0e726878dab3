//! `multifair demo`: the synthetic FairVision-format benchmark, then the demo spec (fusion ERM,
//! SLO alone, OCT alone, MultiFair; `experiments/demo.toml`) swept for one seed, its table
//! against the oracle, and what the runs show: the imbalance, the unfairness, and what
//! MultiFair changed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use multifair_engine::run_dir::RunDir;

use crate::specs::{benchmark, fmt, oracle_line};
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

pub fn run(options: &DemoOptions) -> anyhow::Result<String> {
    let data = options.out.join("data");
    let meta = benchmark(&data, options.samples, options.seed)?;
    let mut spec = crate::specs::builtin("demo")?;
    (spec.epochs, spec.seeds, spec.seed_list) = (options.epochs, 1, Some(vec![options.seed]));
    let plan = sweep_local(&spec, &data, &Overrides::default(), &options.out, 1)?;
    let tables = crate::table::load(&options.out)?;
    let mut summary = crate::table::render(&tables, Format::Md)?;
    summary += &oracle_line(&meta, "race");
    summary += &findings(&meta, &plan, &options.out)?;
    std::fs::write(options.out.join("summary.md"), &summary)?;
    Ok(summary)
}

/// The problem MultiFair addresses and what it changed, read off the runs' test reports.
fn findings(meta: &Value, plan: &Plan, out: &Path) -> anyhow::Result<String> {
    let test = |label: &str| -> anyhow::Result<Value> {
        let run = plan
            .runs
            .iter()
            .find(|r| r.label == label)
            .context(label.to_owned())?;
        let dir = RunDir::new(out.join(&run.folder));
        dir.report()?
            .with_context(|| format!("{}: no report", dir.path().display()))
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
