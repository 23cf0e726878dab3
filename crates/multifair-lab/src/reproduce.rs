//! `multifair reproduce NAME`: the spec `experiments/NAME.toml` (built in), swept locally, then
//! its tables (md, LaTeX, CSV) and figures. The real data come from `--data-dir` or the
//! dataset's environment variable; without either, the command says the data are gated and runs
//! the same spec on the synthetic benchmark written in the same format.

use std::path::Path;

use crate::specs::resolve_data;
use crate::sweep::{Overrides, Spec, sweep_local};
use crate::table::Format;

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
    use crate::specs::{SPECS, builtin};
    use crate::sweep::plan;
    use multifair_data::DatasetKind;

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
