//! `multifair reproduce NAME`: the spec `experiments/NAME.toml` (built in), swept locally, then
//! its tables (md, LaTeX, CSV) and figures. The real data come from `--data-dir` or the
//! dataset's environment variable; without either, the command says the data are gated and runs
//! the same spec on the synthetic benchmark written in the same format.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use multifair_data::cohort::{self, CohortConfig};
use multifair_data::synthetic::{SyntheticConfig, generate};
use multifair_data::{DatasetKind, manifest};

use multifair_engine::profile::Profile;
use crate::sweep::{Overrides, Spec, sweep_local};
use crate::table::Format;

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

/// Sweeps `spec` locally into `out`, then writes `out/table.{md,tex,csv}` and the figures into
/// `figures`. Returns the markdown table.
pub fn reproduce(
    spec: &Spec,
    data_dir: Option<&Path>,
    out: &Path,
    figures: &Path,
    overrides: &Overrides,
    jobs: usize,
) -> anyhow::Result<String> {
    let data = resolve_data(spec, data_dir, out)?;
    sweep_local(spec, &data, overrides, out, jobs)?;
    let tables = crate::table::load(out)?;
    for format in Format::ALL {
        let path = out.join(format!("table.{}", format.extension()));
        multifair_engine::durable::write(&path, crate::table::render(&tables, format)?.as_bytes())?;
    }
    let written = crate::plot::plot(out, figures)?;
    eprintln!(
        "tables in {}/table.{{md,tex,csv}}; {} figures in {}",
        out.display(),
        written.len(),
        figures.display()
    );
    crate::table::render(&tables, Format::Md)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::plan;

    #[test]
    fn every_built_in_spec_parses_and_plans() {
        for (name, _) in SPECS {
            let spec = builtin(name).unwrap();
            // Built-in specs name registered methods and valid settings.
            let data = std::path::Path::new("unused");
            if spec.dataset != DatasetKind::Manifest {
                plan(&spec, data, &Overrides::default())
                    .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            }
        }
    }
}
