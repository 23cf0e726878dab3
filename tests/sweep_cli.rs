//! Sweeps: a spec expands into seeded runs that run locally, print as shell commands or become
//! a Slurm array script; rerunning does no work and a deleted run is the only one redone; the
//! results turn into tables and figures; `reproduce` without data says the data are gated.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run_ok as multifair, scratch, small_fairvision};
use serde_json::Value;

const SPEC: &str = r#"
name = "mini"
dataset = "fairvision"
attributes = ["race", "gender"]
seeds = 2
base_seed = 3
epochs = 1
[set]
image_size = 16
slices = 4
batch_size = 16
[[runs]]
label = "erm"
method = "erm"
[[runs]]
label = "oct"
method = "unimodal"
set = { unimodal_modality = "oct" }
"#;

/// A tiny dataset and the spec beside it.
fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = scratch(name);
    let data = dir.join("data");
    small_fairvision(&data, 4);
    let spec = dir.join("mini.toml");
    std::fs::write(&spec, SPEC).unwrap();
    (dir.join("results"), data, spec)
}

fn sweep(spec: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "sweep",
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    multifair(&args)
}

fn planned(out: &Path) -> Vec<Value> {
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    plan["runs"].as_array().unwrap().clone()
}

#[test]
fn local_sweep_runs_once_and_redoes_only_a_deleted_run() {
    let (out, data, spec) = setup("local");
    let first = sweep(&spec, &data, &out, &["--jobs", "2"]);
    assert!(String::from_utf8_lossy(&first.stderr).contains("mini: 8 runs, 8 to do"));
    let runs = planned(&out);
    assert_eq!(runs.len(), 8);
    // Seeds come from the base seed, one per seed index, and land in run.json.
    let seeds: Vec<u64> = runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds[0], seeds[2]);
    assert_ne!(seeds[0], seeds[1]);
    for run in &runs {
        let folder = out.join(run["folder"].as_str().unwrap());
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(folder.join("run.json")).unwrap())
                .unwrap();
        assert_eq!(config["config"]["seed"], run["seed"]);
        assert!(folder.join("test.json").is_file());
        // The folder name carries the hash of the resolved configuration.
        let id = run["id"].as_str().unwrap();
        assert!(folder.to_str().unwrap().ends_with(&id[..8]));
    }
    let stamp = |r: &Value| {
        std::fs::metadata(out.join(r["folder"].as_str().unwrap()).join("test.json"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before: Vec<_> = runs.iter().map(stamp).collect();
    let again = sweep(&spec, &data, &out, &["--jobs", "2"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("mini: 8 runs, 0 to do"));
    assert_eq!(runs.iter().map(stamp).collect::<Vec<_>>(), before);

    let victim = out.join(runs[5]["folder"].as_str().unwrap());
    std::fs::remove_file(victim.join("test.json")).unwrap();
    let third = sweep(&spec, &data, &out, &[]);
    assert!(String::from_utf8_lossy(&third.stderr).contains("mini: 8 runs, 1 to do"));
    let after: Vec<_> = runs.iter().map(stamp).collect();
    for (i, (a, b)) in after.iter().zip(&before).enumerate() {
        assert_eq!(a == b, i != 5, "run {i}");
    }

    // Nothing left to do: no Slurm script.
    let slurm = sweep(&spec, &data, &out, &["--emit", "slurm"]);
    assert!(String::from_utf8_lossy(&slurm.stdout).contains("0 runs to do: no script written"));
    assert!(!out.join("sweep.sbatch").exists());

    // Tables in three formats and the figures.
    let md =
        String::from_utf8_lossy(&multifair(&["table", out.to_str().unwrap()]).stdout).into_owned();
    assert!(md.contains("## race") && md.contains("| erm | ") && md.contains("| oct | "));
    let tex = out.join("table.tex");
    multifair(&[
        "table",
        out.to_str().unwrap(),
        "--format",
        "latex",
        "--out",
        tex.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&tex)
            .unwrap()
            .contains("\\begin{tabular}")
    );
    let csv = String::from_utf8_lossy(
        &multifair(&["table", out.to_str().unwrap(), "--format", "csv"]).stdout,
    )
    .into_owned();
    assert_eq!(csv.lines().count(), 1 + 2 * (2 + 3 + 2) + 2 * (2 + 2 + 2));
    let figures = out.join("figures");
    let listed = multifair(&[
        "plot",
        out.to_str().unwrap(),
        "--out",
        figures.to_str().unwrap(),
    ]);
    let files: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    for stem in [
        "roc-race",
        "group-auc-race",
        "modality-group-race",
        "roc-gender",
    ] {
        let png = std::fs::read(figures.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{stem}");
        let svg = std::fs::read_to_string(figures.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{stem}");
        assert!(files.iter().any(|f| f.ends_with(&format!("{stem}.png"))));
    }
}

#[test]
fn shell_and_slurm_emit_one_command_per_run_to_do() {
    let (out, data, spec) = setup("emit");
    let shell = sweep(&spec, &data, &out, &["--emit", "shell", "--methods", "erm"]);
    let lines: Vec<String> = String::from_utf8_lossy(&shell.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 4); // erm x 2 attributes x 2 seeds
    for line in &lines {
        assert!(line.contains(" train --dataset fairvision ") && line.contains(" --method erm "));
    }

    // Slurm: a GPU asked for when the device is CUDA, no throttle unless asked, the commands
    // inside the script, absolute paths, each emission in a folder of its own.
    let scripts = |stdout: &[u8]| -> Vec<PathBuf> {
        (String::from_utf8_lossy(stdout).lines())
            .filter_map(|l| l.strip_prefix("sbatch "))
            .map(|p| PathBuf::from(p.trim_matches('\'')))
            .collect()
    };
    let cuda = ["--emit", "slurm", "--device", "libtorch-cuda:0"];
    let slurm = sweep(&spec, &data, &out, &cuda);
    assert!(String::from_utf8_lossy(&slurm.stdout).contains("8 runs to do in 1 array(s)"));
    let first = scripts(&slurm.stdout);
    assert_eq!(first.len(), 1);
    let script = std::fs::read_to_string(&first[0]).unwrap();
    let (directives, body) = parts(&script);
    assert!(
        directives.contains(&"--gres=gpu:1".to_owned()),
        "{directives:?}"
    );
    assert!(
        directives.contains(&"--array=0-7".to_owned()),
        "{directives:?}"
    );
    for d in [
        "--requeue",
        "--mem=16G",
        "--cpus-per-task=2",
        "--time=24:00:00",
    ] {
        assert!(directives.contains(&d.to_owned()), "{d}: {directives:?}");
    }
    let cases: Vec<&String> = body
        .iter()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(cases.len(), 8);
    let absolute_out = std::path::absolute(&out).unwrap();
    assert!(
        cases
            .iter()
            .all(|c| c.contains(&format!("--out {}", absolute_out.display()))),
        "{cases:?}"
    );
    assert!(body.iter().any(|l| l.contains("OMP_NUM_THREADS")));
    assert!(body.iter().any(|l| l.contains("no command for array task")));
    assert!(
        Command::new("bash")
            .args(["-n", first[0].to_str().unwrap()])
            .status()
            .unwrap()
            .success()
    );
    // Asked: a throttle, no GPU on the CPU, a partition; a sweep larger than the cluster's
    // arrays split in several; the first emission left as it was.
    let cpu = [
        "--emit",
        "slurm",
        "--max-running",
        "3",
        "--max-array",
        "3",
        "--partition",
        "short",
    ];
    let second = scripts(&sweep(&spec, &data, &out, &cpu).stdout);
    assert_eq!(second.len(), 3);
    let (directives, _) = parts(&std::fs::read_to_string(&second[2]).unwrap());
    assert!(
        directives.contains(&"--array=0-1%3".to_owned()),
        "{directives:?}"
    );
    assert!(directives.contains(&"--partition=short".to_owned()));
    assert!(!directives.iter().any(|d| d.starts_with("--gres")));
    assert_eq!(std::fs::read_to_string(&first[0]).unwrap(), script);
}

/// A script's `#SBATCH` directives (all before any command) and its other lines.
fn parts(script: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = script.lines();
    assert_eq!(lines.next(), Some("#!/bin/bash"));
    let (mut directives, mut body) = (Vec::new(), Vec::new());
    for line in lines {
        if let Some(d) = line.strip_prefix("#SBATCH ") {
            assert!(body.is_empty(), "#SBATCH after a command: {line}");
            directives.push(d.to_owned());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            body.push(line.to_owned());
        }
    }
    (directives, body)
}

#[test]
fn reproduce_without_data_says_it_is_gated_and_uses_the_synthetic_benchmark() {
    let dir = scratch("reproduce");
    let out = dir.join("results");
    let figures = dir.join("figures");
    let run = multifair(&[
        "reproduce",
        "demo",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--methods",
        "erm",
        "--out",
        out.to_str().unwrap(),
        "--figures",
        figures.to_str().unwrap(),
    ]);
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(
        log.contains("fairvision is gated (access by request: see datasets/README.md)"),
        "{log}"
    );
    assert!(out.join("data/meta.json").is_file());
    for ext in ["md", "tex", "csv"] {
        assert!(out.join(format!("table.{ext}")).is_file(), "table.{ext}");
    }
    assert!(figures.join("roc-race.png").is_file());
    assert!(String::from_utf8_lossy(&run.stdout).contains("| erm | "));
}

#[test]
fn dry_runs_print_resolved_configurations_and_train_nothing() {
    let (out, data, spec) = setup("dry-run");
    let printed = sweep(&spec, &data, &out, &["--dry-run"]);
    let runs: Vec<Value> = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(runs.len(), 2 * 2 * 2);
    let oct = runs.iter().find(|r| r["label"] == "oct").unwrap();
    assert_eq!(oct["config"]["hparams"]["unimodal_modality"], "oct");
    assert_eq!(oct["config"]["engine"]["batch_size"], 16);
    assert!(!out.join("sweep.json").exists() && !out.join("runs").exists());
    // train --dry-run: run.json's config, paper settings of the method applied.
    let run = out.join("one");
    let printed = multifair(&[
        "train",
        "--dataset",
        "fairvision",
        "--data-dir",
        data.to_str().unwrap(),
        "--method",
        "ogm_ge",
        "--set",
        "lr=0.5",
        "--out",
        run.to_str().unwrap(),
        "--dry-run",
    ]);
    let config: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(config["config"]["engine"]["optimizer"], "sgd");
    assert_eq!(config["config"]["engine"]["lr"], 0.5);
    assert!(!run.exists());
}
