//! Crash safety: a run killed after any of its writes, or stopped by a full disk, resumes to a
//! `test.json` byte-identical to an uninterrupted run's, with no epoch logged twice; a torn
//! `test.json` does not count as finished; two sweeps on one folder train each run once; bad
//! settings and closed pipes end cleanly. Faults come from `MULTIFAIR_FAULT` (see
//! `crates/multifair-engine/src/durable.rs`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ok, read, scratch, small_fairvision};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    let dir = scratch(name);
    small_fairvision(&dir, 11);
    dir
}

/// `multifair train` of a 2-epoch run into `out`, with `fault` injected.
fn train(data: &Path, out: &Path, fault: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multifair"));
    command.args([
        "train",
        "--dataset",
        "fairvision",
        "--data-dir",
        data.to_str().unwrap(),
        "--method",
        "multifair",
        "--epochs",
        "2",
        "--set",
        "image_size=16",
        "--set",
        "slices=4",
        "--set",
        "batch_size=16",
        "--out",
        out.to_str().unwrap(),
    ]);
    if let Some(fault) = fault {
        command.env("MULTIFAIR_FAULT", fault);
    }
    command.output().expect("run multifair")
}

/// The epochs of `metrics.jsonl`'s epoch lines, checked to appear once each, in order.
fn logged_epochs(out: &Path) -> Vec<u64> {
    let epochs: Vec<u64> = read(&out.join("metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l.get("step").is_none())
        .map(|l| l["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(
        epochs,
        (1..=epochs.len() as u64).collect::<Vec<_>>(),
        "{}",
        out.display()
    );
    epochs
}

#[test]
fn a_run_killed_after_any_write_resumes_to_the_same_test_json() {
    let data = data("kill-data");
    let reference = scratch("kill-reference");
    ok(train(&data, &reference, None));
    let want = read(&reference.join("test.json"));
    let mut kills = 0;
    for n in 1.. {
        let out = scratch(&format!("kill-{n}"));
        let killed = train(&data, &out, Some(&format!("kill-after:{n}")));
        if killed.status.success() {
            break; // fewer than n writes: every point has been tried
        }
        assert_eq!(
            killed.status.code(),
            None,
            "write {n}: not killed: {}",
            String::from_utf8_lossy(&killed.stderr)
        );
        kills += 1;
        ok(train(&data, &out, None));
        assert_eq!(read(&out.join("test.json")), want, "killed after write {n}");
        assert_eq!(logged_epochs(&out), [1, 2], "killed after write {n}");
        // No temporary is left behind, and two checkpoints at most.
        let names: BTreeSet<String> = std::fs::read_dir(out.join("checkpoint"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(".tmp")) && names.len() <= 3,
            "{names:?}"
        );
        let stray: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "killed after write {n}: {stray:?}");
        std::fs::remove_dir_all(&out).unwrap();
    }
    // run.json, and per epoch the best model, the log, the checkpoint and its pointer, then
    // predictions.csv and test.json.
    assert!(kills >= 9, "only {kills} kill points");
}

#[test]
fn an_empty_or_torn_checkpoint_falls_back_to_the_previous_one() {
    let data = data("torn-data");
    let reference = scratch("torn-reference");
    ok(train(&data, &reference, None));
    let out = scratch("torn");
    // Both checkpoints exist; the newest and the pointer are damaged by hand.
    ok(train(&data, &out, None));
    std::fs::write(out.join("checkpoint/epoch-0002/state.json"), "").unwrap();
    std::fs::write(out.join("checkpoint/LATEST"), "").unwrap();
    let resumed = ok(train(&data, &out, None));
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        log.contains("LATEST is empty") && log.contains("epoch-0002/state.json: unreadable"),
        "{log}"
    );
    assert!(
        log.contains("resuming") && log.contains("after epoch 1"),
        "{log}"
    );
    assert_eq!(
        read(&out.join("test.json")),
        read(&reference.join("test.json"))
    );
    assert_eq!(logged_epochs(&out), [1, 2]);
}

#[test]
fn a_full_disk_fails_naming_the_file_and_the_rerun_finishes() {
    let data = data("full-data");
    let reference = scratch("full-reference");
    ok(train(&data, &reference, None));
    for n in [1, 4, 9] {
        let out = scratch(&format!("full-{n}"));
        let failed = train(&data, &out, Some(&format!("full-after:{n}")));
        assert!(!failed.status.success());
        let err = String::from_utf8_lossy(&failed.stderr);
        assert!(
            err.contains("error: writing ") && err.contains("No space left on device"),
            "{err}"
        );
        assert!(
            err.contains(out.to_str().unwrap()),
            "the file is named: {err}"
        );
        ok(train(&data, &out, None));
        assert_eq!(
            read(&out.join("test.json")),
            read(&reference.join("test.json")),
            "full after {n}"
        );
        assert_eq!(logged_epochs(&out), [1, 2]);
    }
}

fn crash_spec() -> String {
    common::small_spec(
        "crash",
        2,
        1,
        "[[runs]]\nlabel = \"erm\"\nmethod = \"erm\"\n",
    )
}

fn sweep_command(spec: &Path, data: &Path, out: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_multifair"));
    command.args([
        "sweep",
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    command
}

#[test]
fn a_torn_test_json_is_not_finished_and_the_table_recovers() {
    let data = data("torn-sweep-data");
    let dir = scratch("torn-sweep");
    let spec = dir.join("crash.toml");
    std::fs::write(&spec, crash_spec()).unwrap();
    let out = dir.join("results");
    ok(sweep_command(&spec, &data, &out).output().unwrap());
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let folder = out.join(plan["runs"][0]["folder"].as_str().unwrap());
    let test = read(&folder.join("test.json"));
    // What a full disk leaves: the first 4096 bytes of the file.
    std::fs::write(
        folder.join("test.json"),
        &test.as_bytes()[..test.len().min(4096) / 2],
    )
    .unwrap();
    let again = ok(sweep_command(&spec, &data, &out).output().unwrap());
    assert!(String::from_utf8_lossy(&again.stderr).contains("2 runs, 1 to do"));
    assert_eq!(read(&folder.join("test.json")), test);
    ok(Command::new(env!("CARGO_BIN_EXE_multifair"))
        .args(["table", out.to_str().unwrap()])
        .output()
        .unwrap());
}

#[test]
fn two_sweeps_on_one_folder_train_each_run_once() {
    let data = data("concurrent-data");
    let dir = scratch("concurrent");
    let spec = dir.join("crash.toml");
    std::fs::write(&spec, crash_spec()).unwrap();
    let out = dir.join("results");
    let children: Vec<_> = (0..2)
        .map(|_| {
            sweep_command(&spec, &data, &out)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let result = child.wait_with_output().unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    for run in plan["runs"].as_array().unwrap() {
        let folder = out.join(run["folder"].as_str().unwrap());
        let log = read(&folder.join("train.log"));
        // Trained once: one epoch line, one test line (a second process only says it was locked).
        assert_eq!(log.matches("epoch 1/1:").count(), 1, "{log}");
        assert_eq!(log.matches("test AUC").count(), 1, "{log}");
        assert!(!folder.join("lock").exists());
        assert_eq!(logged_epochs(&folder), [1]);
    }
}

#[test]
fn out_of_range_settings_are_refused_naming_the_key() {
    let data = data("ranges-data");
    let out = scratch("ranges");
    for (set, want) in [
        ("lr=-1", "--set lr=-1: must be a finite number >= 0"),
        ("momentum=1.5", "--set momentum: 1.5 must lie in [0, 1)"),
        (
            "weight_decay=-0.1",
            "--set weight_decay=-0.1: must be a finite number >= 0",
        ),
        ("clip=-1", "--set clip=-1: must be a finite number >= 0"),
        ("eps=0", "--set eps=0: must be a finite number > 0"),
        (
            "lr=nan",
            "--set lr=nan: invalid type: string \"nan\", expected f64",
        ),
        ("image_size=0", "--set image_size=0: must lie in 1..=2048"),
        (
            "image_size=100000",
            "--set image_size=100000: must lie in 1..=2048",
        ),
        (
            "image_size=7",
            "--set image_size=7: must be a positive multiple of the ViT's patch size 8 (e.g. 8)",
        ),
    ] {
        let result = Command::new(env!("CARGO_BIN_EXE_multifair"))
            .args([
                "train",
                "--dataset",
                "fairvision",
                "--data-dir",
                data.to_str().unwrap(),
                "--set",
                set,
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(1), "{set}: {err}");
        assert!(err.contains(want), "{set}: {err}");
    }
}

#[test]
fn a_closed_pipe_ends_quietly_and_the_bootstrap_is_bounded() {
    let dir = scratch("pipe");
    let csv = dir.join("p.csv");
    let mut text = String::from("prob,label,race\n");
    for i in 0..2000 {
        text += &format!("{},{},{}\n", (i % 97) as f64 / 97.0, i % 2, i % 3);
    }
    std::fs::write(&csv, text).unwrap();
    let shell = format!(
        "{} evaluate --predictions {} | head -c 1",
        env!("CARGO_BIN_EXE_multifair"),
        csv.display()
    );
    let result = Command::new("bash")
        .args(["-o", "pipefail", "-c", &shell])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(result.status.code(), Some(0) | Some(141)),
        "{:?}: {err}",
        result.status
    );
    let result = Command::new(env!("CARGO_BIN_EXE_multifair"))
        .args([
            "evaluate",
            "--predictions",
            csv.to_str().unwrap(),
            "--bootstrap",
            "1000000000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(
        err.contains("--bootstrap 1000000000: at most 100000 resamples"),
        "{err}"
    );
}
