//! `multifair tune SPEC --trials N`: an equal tuning budget for every row. Per row, N
//! configurations are drawn (seeded) from the ranges the method and the engine declare beside
//! their defaults; each trains on the spec's first seed and first attribute and is scored on the
//! validation split by the run's selection metric (never the test split); then the spec's seeds
//! run on each row's chosen configuration, and the table reports them with the chosen values.
//! Trials and final runs are sweeps: resumable, and emitted for Slurm like any sweep.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use multifair_core::hparams::{Hparam, Hparams, Range};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::sweep::{
    Emit, Execution, Overrides, Plan, Spec, SpecRow, emit, plan, sweep_local, write_plan,
};
use multifair_engine::config::{Engine, Selection};

/// Engine keys tuned when a spec does not list its own (`tune = [...]`).
const ENGINE_TUNED: &[&str] = &["lr", "weight_decay"];

/// A value drawn from `range`, as `--set` reads it.
fn draw(range: &Range, rng: &mut ChaCha8Rng) -> Option<String> {
    let short = |v: f64| {
        format!("{:.3e}", v)
            .parse::<f64>()
            .map_or(v.to_string(), |v| v.to_string())
    };
    Some(match *range {
        Range::Uniform(lo, hi) => short(rng.random_range(lo..=hi)),
        Range::LogUniform(lo, hi) => short(10f64.powf(rng.random_range(lo.log10()..=hi.log10()))),
        Range::Int(lo, hi) => rng.random_range(lo..=hi).to_string(),
        Range::Choice(values) => values[rng.random_range(0..values.len())].to_owned(),
        Range::Fixed => return None,
    })
}

/// The keys tuned for `row`: the spec's `tune` list, else the method's declared ranges and
/// the engine's `lr` and `weight_decay`; never a key the row or the spec sets.
fn tuned_keys(spec: &Spec, row: &SpecRow) -> anyhow::Result<Vec<&'static Hparam>> {
    let info = multifair_core::info(&row.method).map_err(anyhow::Error::msg)?;
    let all: Vec<&'static Hparam> = info.hparams.iter().chain(Engine::HPARAMS).collect();
    let wanted: Vec<&'static Hparam> = match &spec.tune {
        Some(keys) => keys
            .iter()
            .filter_map(|k| all.iter().find(|h| h.key == k).copied())
            .collect(),
        None => {
            let engine = Engine::HPARAMS
                .iter()
                .filter(|h| ENGINE_TUNED.contains(&h.key));
            info.hparams.iter().chain(engine).collect()
        }
    };
    Ok(wanted
        .into_iter()
        .filter(|h| {
            h.range != Range::Fixed && !row.set.contains_key(h.key) && !spec.set.contains_key(h.key)
        })
        .collect())
}

/// Trials per row at most.
pub const MAX_TRIALS: usize = 1000;

/// The label of trial `k` of `label`.
fn trial_label(label: &str, k: usize) -> String {
    format!("{label}.trial{k}")
}

/// The trials as a spec: per row `trials` rows with drawn values, on the first seed and the
/// first attribute.
pub fn trial_spec(spec: &Spec, trials: usize) -> anyhow::Result<Spec> {
    let mut runs = Vec::new();
    for (r, row) in spec.runs.iter().enumerate() {
        let keys = tuned_keys(spec, row)?;
        let mut rng = ChaCha8Rng::seed_from_u64(spec.base_seed ^ ((r as u64 + 1) << 32));
        for k in 0..trials {
            let mut set = row.set.clone();
            for h in &keys {
                if let Some(value) = draw(&h.range, &mut rng) {
                    set.insert(h.key.to_owned(), toml::Value::String(value));
                }
            }
            runs.push(SpecRow {
                label: trial_label(&row.label, k),
                method: row.method.clone(),
                set,
            });
        }
    }
    let first_seed = *spec
        .seed_values()
        .first()
        .context("the spec has no seeds")?;
    Ok(Spec {
        name: format!("{}-trials", spec.name),
        description: format!("{trials} tuning trials per row of {}", spec.name),
        attributes: spec.attributes[..1].to_vec(),
        seeds: 1,
        seed_list: Some(vec![first_seed]),
        tune: None,
        profile: None,
        runs,
        ..spec.clone()
    })
}

/// A finished trial's validation score: its selection metric at its selected epoch, read from
/// `metrics.jsonl` only (higher is better; DTO negated). `None` until the trial has finished
/// (its `test.json` parses): a trial still training never competes.
pub fn trial_score(folder: &Path, selection: Selection) -> Option<f64> {
    let dir = multifair_engine::run_dir::RunDir::new(folder);
    dir.finished()?;
    let text = std::fs::read_to_string(dir.metrics()).ok()?;
    let selected = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("step").is_none() && l["selected"] == true)
        .last()?;
    let value = selected["val"][selection.name()].as_f64()?;
    Some(if selection == Selection::Dto {
        -value
    } else {
        value
    })
}

/// What tuning chose for one row.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub trial: usize,
    pub score: f64,
    pub selection: &'static str,
    /// The drawn values of the chosen trial.
    pub values: BTreeMap<String, String>,
    /// Every trial's validation score.
    pub scores: Vec<Option<f64>>,
}

/// Per row of `spec`, the trial of `trials` (planned into `trials_out`) with the best
/// validation score.
fn choose(
    spec: &Spec,
    trials: &Plan,
    trials_out: &Path,
) -> anyhow::Result<BTreeMap<String, Choice>> {
    let mut chosen = BTreeMap::new();
    for row in &spec.runs {
        let mut scores = Vec::new();
        let mut best: Option<(usize, f64, &crate::sweep::PlannedRun)> = None;
        let labels: Vec<String> = (0..trials.spec.runs.len())
            .map(|k| trial_label(&row.label, k))
            .collect();
        for (k, run) in trials
            .runs
            .iter()
            .filter(|r| labels.contains(&r.label))
            .enumerate()
        {
            let score = trial_score(&trials_out.join(&run.folder), run.config.engine.selection);
            scores.push(score);
            if let Some(s) = score
                && best.is_none_or(|(_, b, _)| s > b)
            {
                best = Some((k, s, run));
            }
        }
        let unfinished: Vec<usize> = (scores.iter().enumerate())
            .filter(|(_, s)| s.is_none())
            .map(|(k, _)| k)
            .collect();
        anyhow::ensure!(
            unfinished.is_empty(),
            "row '{}': trials {unfinished:?} have not finished (see {}); rerun once they have",
            row.label,
            trials_out
                .join("runs")
                .join(format!("{}.trial*", row.label))
                .display()
        );
        let (trial, score, run) =
            best.with_context(|| format!("row '{}': no trial has finished", row.label))?;
        let keys = tuned_keys(spec, row)?;
        let values = run
            .sets
            .iter()
            .filter(|(k, _)| keys.iter().any(|h| h.key == k))
            .cloned()
            .collect();
        let selection = run.config.engine.selection.name();
        chosen.insert(
            row.label.clone(),
            Choice {
                trial,
                score,
                selection,
                values,
                scores,
            },
        );
    }
    Ok(chosen)
}

/// One phase's sweep: run locally, or emit what is left and return `None` (the phase is not
/// done yet).
fn phase(
    spec: &Spec,
    data: &Path,
    overrides: &Overrides,
    out: &Path,
    exec: &Execution,
) -> anyhow::Result<Option<Plan>> {
    if exec.emit == Emit::Local {
        return sweep_local(spec, data, overrides, out, exec.jobs).map(Some);
    }
    let planned = plan(spec, data, overrides)?;
    let todo = write_plan(&planned, out)?;
    if todo.is_empty() {
        return Ok(Some(planned));
    }
    eprintln!(
        "{}: {} runs to do; run tune again once they have finished",
        spec.name,
        todo.len()
    );
    print!(
        "{}",
        emit(exec.emit, &todo, out, &spec.name, exec.jobs, &exec.slurm)?
    );
    Ok(None)
}

/// The table of the tuned runs in `out`, and each row's chosen values.
fn report(out: &Path, chosen: &BTreeMap<String, Choice>, trials: &Spec) -> anyhow::Result<String> {
    let mut text = crate::table::render(&crate::table::load(out)?, crate::table::Format::Md)?;
    text += &format!(
        "\nChosen on the validation split ({} trials per row, seed {} and attribute {} only):\n\n",
        trials.runs.len() / chosen.len().max(1),
        trials.seed_values()[0],
        trials.attributes[0]
    );
    for (label, choice) in chosen {
        let values: Vec<String> = choice
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let score = choice.score.abs();
        text += &format!(
            "- {label}: trial {} (validation {} {score:.4}): {}\n",
            choice.trial,
            choice.selection,
            values.join(" ")
        );
    }
    Ok(text)
}

/// Runs the trials, chooses, runs the spec on the choices, and returns the table with the
/// chosen values beside it. With `emit` other than local, prints the commands of whatever
/// phase is not done yet and returns `None`.
pub fn tune(
    spec: &Spec,
    data: &Path,
    overrides: &Overrides,
    out: &Path,
    trials: usize,
    exec: &Execution,
) -> anyhow::Result<Option<String>> {
    anyhow::ensure!(
        (1..=MAX_TRIALS).contains(&trials),
        "--trials {trials}: must be 1 to {MAX_TRIALS}"
    );
    // `--methods` keeps rows before their trials are drawn; `--seeds` applies to the final runs.
    let mut spec = spec.clone();
    if let Some(labels) = &overrides.labels {
        let keep = Overrides {
            labels: Some(labels.clone()),
            ..Overrides::default()
        };
        spec = plan(&spec, data, &keep)?.spec;
    }
    let overrides = Overrides {
        labels: None,
        ..overrides.clone()
    };
    let trials_spec = trial_spec(&spec, trials)?;
    let (trials_out, trials_overrides) = (
        out.join("trials"),
        Overrides {
            seeds: None,
            ..overrides.clone()
        },
    );
    let Some(trials_plan) = phase(&trials_spec, data, &trials_overrides, &trials_out, exec)? else {
        return Ok(None);
    };
    let chosen = choose(&spec, &trials_plan, &trials_out)?;
    let mut tuned = spec.clone();
    for row in &mut tuned.runs {
        for (key, value) in &chosen[&row.label].values {
            row.set
                .insert(key.clone(), toml::Value::String(value.clone()));
        }
    }
    multifair_engine::run_dir::write_json(&out.join("tuned.json"), &chosen)?;
    if phase(&tuned, data, &overrides, out, exec)?.is_none() {
        return Ok(None);
    }
    let text = report(out, &chosen, &trials_spec)?;
    multifair_engine::durable::write(&out.join("tuned.md"), text.as_bytes())?;
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trial_with_the_best_validation_score_wins_whatever_its_test_score() {
        let dir = std::env::temp_dir().join(format!("multifair-tune-{}", std::process::id()));
        let write = |name: &str, val: f64, test: f64| {
            let folder = dir.join(name);
            std::fs::create_dir_all(&folder).unwrap();
            let lines = format!(
                "{{\"epoch\": 1, \"val\": {{\"auc\": {}}}, \"selected\": true}}\n{{\"epoch\": 2, \"val\": {{\"auc\": 0.1}}, \"selected\": false}}\n",
                val
            );
            std::fs::write(folder.join("metrics.jsonl"), lines).unwrap();
            std::fs::write(folder.join("test.json"), format!("{{\"auc\": {test}}}")).unwrap();
            folder
        };
        // Best test AUC, worst validation: not chosen.
        let a = write("a", 0.55, 0.99);
        let b = write("b", 0.80, 0.40);
        let (sa, sb) = (
            trial_score(&a, Selection::Auc),
            trial_score(&b, Selection::Auc),
        );
        assert_eq!((sa, sb), (Some(0.55), Some(0.80)));
        assert!(sb > sa);
        assert_eq!(trial_score(&dir.join("missing"), Selection::Auc), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn draws_stay_in_their_ranges_and_repeat_with_the_seed() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let v: f64 = draw(&Range::LogUniform(1e-4, 1e-1), &mut rng)
                .unwrap()
                .parse()
                .unwrap();
            assert!((1e-4..=1e-1).contains(&v), "{v}");
            let c = draw(&Range::Choice(&["adamw", "sgd"]), &mut rng).unwrap();
            assert!(c == "adamw" || c == "sgd");
        }
        let spec: Spec = Spec::parse(
            "name = 't'\ndataset = 'fairvision'\nattributes = ['race', 'gender']\nseeds = 3\nepochs = 1\n\
             [[runs]]\nlabel = 'm'\nmethod = 'multifair'\nset = { multifair_rho = 1.0 }\n",
            "t.toml",
        )
        .unwrap();
        let (a, b) = (trial_spec(&spec, 4).unwrap(), trial_spec(&spec, 4).unwrap());
        assert_eq!(a, b);
        assert_eq!((a.runs.len(), a.seeds, a.attributes.len()), (4, 1, 1));
        for row in &a.runs {
            // Set by the row: not tuned; declared ranges and the engine's rate: drawn.
            assert_eq!(row.set["multifair_rho"], toml::Value::Float(1.0));
            assert!(row.set.contains_key("multifair_beta") && row.set.contains_key("lr"));
            assert!(!row.set.contains_key("multifair_modality"));
        }
        assert_ne!(a.runs[0].set, a.runs[1].set);
    }
}
