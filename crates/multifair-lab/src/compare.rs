//! `multifair compare`: methods x seeds 0..N on one dataset (the synthetic benchmark unless
//! `--data-dir` names one), as a spec built in memory and run through the sweep and the table:
//! finished runs are read, not retrained; an interrupted one resumes from its checkpoint.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::ensure;
use multifair_data::DatasetKind;
use multifair_models::presets::ModelSize;

use crate::sweep::{Overrides, Spec, SpecRow, sweep_local};
use crate::table::Format;
use multifair_engine::device::DeviceSpec;

#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub out: PathBuf,
    /// The dataset; `None`: the synthetic FairVision benchmark under `out/data`.
    pub data_dir: Option<PathBuf>,
    pub dataset: DatasetKind,
    /// The rows, in order (the table tests each against `erm` and `multifair`).
    pub methods: Vec<String>,
    pub seeds: usize,
    pub epochs: usize,
    pub attribute: String,
    /// Training samples of the generated benchmark.
    pub samples: usize,
    /// `--set` pairs: `key=value` for every method, `METHOD:key=value` for one.
    pub sets: Vec<(String, String)>,
    pub device: DeviceSpec,
}

/// The comparison as a spec: one row per method, seeds 0..N.
pub fn spec(options: &CompareOptions, dataset: DatasetKind) -> anyhow::Result<Spec> {
    ensure!(
        !options.methods.is_empty() && options.seeds > 0,
        "compare needs at least one method and one seed"
    );
    let mut seen = std::collections::BTreeSet::new();
    if let Some(m) = options.methods.iter().find(|m| !seen.insert(*m)) {
        anyhow::bail!("'{m}' appears twice in --methods: each method is one row");
    }
    let mut set = BTreeMap::new();
    let mut rows: Vec<SpecRow> = (options.methods.iter())
        .map(|m| SpecRow {
            label: m.clone(),
            method: m.clone(),
            set: BTreeMap::new(),
        })
        .collect();
    for (key, value) in &options.sets {
        let value = toml::Value::String(value.clone());
        match key.split_once(':') {
            None => drop(set.insert(key.clone(), value)),
            Some((method, key)) => {
                let Some(row) = rows.iter_mut().find(|r| r.method == method) else {
                    anyhow::bail!("--set {method}:{key}: '{method}' is not among --methods");
                };
                row.set.insert(key.to_owned(), value);
            }
        }
    }
    Ok(Spec {
        name: "compare".into(),
        description: format!(
            "{} over seeds 0..{}",
            options.methods.join(", "),
            options.seeds
        ),
        dataset,
        attributes: vec![options.attribute.clone()],
        seeds: options.seeds,
        base_seed: 0,
        seed_list: Some((0..options.seeds as u64).collect()),
        epochs: options.epochs,
        model: ModelSize::Tiny,
        set,
        tune: None,
        profile: None,
        runs: rows,
    })
}

pub fn run(options: &CompareOptions) -> anyhow::Result<String> {
    let (data, meta, dataset) = match &options.data_dir {
        Some(dir) => (dir.clone(), None, options.dataset),
        None => {
            let data = options.out.join("data");
            let meta = crate::specs::benchmark(&data, options.samples, 0)?;
            (data, Some(meta), DatasetKind::FairVision)
        }
    };
    let spec = spec(options, dataset)?;
    let overrides = Overrides {
        device: Some(options.device),
        ..Overrides::default()
    };
    sweep_local(&spec, &data, &overrides, &options.out, 1)?;
    let mut text = crate::table::render(&crate::table::load(&options.out)?, Format::Md)?;
    if let Some(meta) = meta {
        text += &crate::specs::oracle_line(&meta, &options.attribute);
    }
    std::fs::write(options.out.join("summary.md"), &text)?;
    Ok(text)
}
