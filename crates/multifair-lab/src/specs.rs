//! What the commands share about their inputs: the built-in specs (`experiments/*.toml`), the
//! data a spec runs on (a real folder, its environment variable, or the synthetic benchmark),
//! the protocol `reproduce` chooses, and the benchmark and its oracle as the demo and
//! `compare` use them. Commands build on this module and never on one another.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use multifair_data::cohort::{self, CohortConfig};
use multifair_data::synthetic::{SyntheticConfig, generate};
use multifair_data::{DatasetKind, manifest};
use multifair_engine::profile::Profile;
use serde_json::Value;

use crate::sweep::Spec;

/// The built-in specs, by name.
pub const SPECS: &[(&str, &str)] = &[
    ("table1", include_str!("../../../experiments/table1.toml")),
    ("table2", include_str!("../../../experiments/table2.toml")),
    (
        "ablation",
        include_str!("../../../experiments/ablation.toml"),
    ),
    ("demo", include_str!("../../../experiments/demo.toml")),
    ("cohort", include_str!("../../../experiments/cohort.toml")),
    (
        "modulation",
        include_str!("../../../experiments/modulation.toml"),
    ),
];

pub fn builtin(name: &str) -> anyhow::Result<Spec> {
    match SPECS.iter().find(|(n, _)| *n == name) {
        Some((n, text)) => Spec::parse(text, &format!("experiments/{n}.toml")),
        None => {
            let names: Vec<&str> = SPECS.iter().map(|(n, _)| *n).collect();
            bail!("no spec '{name}'; built in: {}", names.join(", "))
        }
    }
}

/// The environment variable that points at a real dataset.
fn env_var(kind: DatasetKind) -> &'static str {
    match kind {
        DatasetKind::FairVision => "FAIRVISION_DIR",
        DatasetKind::FairVlmed => "FAIRVLMED_DIR",
        DatasetKind::HarvardGf => "HARVARD_GF_DIR",
        DatasetKind::Manifest => "MULTIFAIR_MANIFEST",
    }
}

/// The data a spec runs on: `data_dir`, else the environment variable, else the synthetic
/// benchmark under `out/data` (written once), with a message saying so.
pub fn resolve_data(spec: &Spec, data_dir: Option<&Path>, out: &Path) -> anyhow::Result<PathBuf> {
    let kind = spec.dataset;
    if let Some(dir) = data_dir {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(env_var(kind)) {
        return Ok(PathBuf::from(dir));
    }
    let data = out.join("data");
    if kind == DatasetKind::Manifest {
        eprintln!(
            "neither --data-dir nor {} is set: running {} on the generated example cohort in {}",
            env_var(kind),
            spec.name,
            data.display()
        );
        if !data.join(manifest::TOML_NAME).is_file() {
            cohort::generate(&CohortConfig::new(spec.base_seed), &data)
                .with_context(|| format!("writing {}", data.display()))?;
        }
        return Ok(data);
    }
    eprintln!(
        "{} is gated (access by request: see datasets/README.md) and neither --data-dir nor {} \
         is set: running {} on the synthetic {}-format benchmark in {}",
        kind.name(),
        env_var(kind),
        spec.name,
        kind.name(),
        data.display()
    );
    if !data.join("meta.json").is_file() {
        generate(&SyntheticConfig::new(kind, spec.base_seed), &data)
            .with_context(|| format!("writing {}", data.display()))?;
    }
    Ok(data)
}

/// The protocol `reproduce` runs, said on stderr: the one asked for, else the spec's, else
/// `paper` on a real FairVision or FairVLMed folder (`--data-dir` or the environment variable)
/// and `cpu` on the synthetic benchmark.
pub fn choose_profile(spec: &Spec, data_dir: Option<&Path>, asked: Option<Profile>) -> Profile {
    let real = data_dir.is_some() || std::env::var_os(env_var(spec.dataset)).is_some();
    let has_paper = Profile::Paper.attribute(spec.dataset).is_some();
    let (profile, why) = match (asked.or(spec.profile), real && has_paper) {
        (Some(p), _) => (p, "as asked"),
        (None, true) => (Profile::Paper, "real data: the original code's protocol"),
        (None, false) => (Profile::Cpu, "the small CPU setting"),
    };
    eprintln!(
        "{}: profile {} ({why}; --profile cpu|paper chooses)",
        spec.name,
        profile.name()
    );
    profile
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

/// A number as the summaries print it (`-` for none).
pub fn fmt(v: &Value) -> String {
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
