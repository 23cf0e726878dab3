//! Emitted Slurm arrays on a real single-node Slurm (`scripts/slurm-cluster.sh start`;
//! `.ci/run` starts it and runs these with `--ignored`): a sweep runs to the end, and a task
//! requeued while training resumes from its checkpoint and ends identical to an
//! uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{read, run_ok, scratch, small_fairvision, small_spec};
use serde_json::Value;

/// Submits every script the emission printed (from another folder: the paths are absolute);
/// returns the job ids.
fn submit(stdout: &[u8], cwd: &Path) -> Vec<String> {
    (String::from_utf8_lossy(stdout).lines())
        .filter_map(|l| l.strip_prefix("sbatch "))
        .map(|script| {
            let script = script.trim_matches('\'');
            let out = Command::new("sbatch")
                .args(["--parsable", script])
                .current_dir(cwd)
                .output()
                .expect("sbatch on the PATH (scripts/slurm-cluster.sh start)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect()
}

/// Whether job `id` still has tasks queued or running.
fn queued(id: &str) -> bool {
    let out = Command::new("squeue")
        .args(["-h", "-j", id])
        .output()
        .unwrap();
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(seconds),
            "{what}: not after {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn emit(spec: &Path, data: &Path, out: &Path) -> Vec<u8> {
    let args = [
        "sweep",
        spec.to_str().unwrap(),
        "--emit",
        "slurm",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cpus-per-task",
        "1",
        "--mem",
        "2G",
        "--time",
        "00:30:00",
    ];
    run_ok(&args).stdout
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-cluster.sh start, then --ignored"]
fn an_emitted_sweep_runs_to_the_end() {
    let dir = scratch("slurm-sweep");
    let data = dir.join("data");
    small_fairvision(&data, 5);
    let spec = dir.join("spec.toml");
    let runs = "[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n[[runs]]\nlabel = 'sam'\nmethod = 'sam'\n";
    std::fs::write(&spec, small_spec("slurm", 2, 1, runs)).unwrap();
    let out = dir.join("results");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let jobs = submit(&emit(&spec, &data, &out), &elsewhere);
    assert_eq!(jobs.len(), 1);
    wait_until("the array", 600, || !queued(&jobs[0]));
    let listed: Value = serde_json::from_slice(
        &run_ok(&["runs", out.to_str().unwrap(), "--format", "json"]).stdout,
    )
    .unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert!(
        listed.iter().all(|r| r["status"] == "finished"),
        "{listed:?}"
    );
    // Each attempt logged to a file of its own.
    let logs: Vec<PathBuf> = glob_logs(&out);
    assert!(
        logs.iter()
            .any(|l| l.to_string_lossy().contains("task-3.attempt-0.log")),
        "{logs:?}"
    );
    // Emitting again finds nothing to do.
    assert!(String::from_utf8_lossy(&emit(&spec, &data, &out)).contains("0 runs to do"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The attempt logs of every emission under `out/slurm/`.
fn glob_logs(out: &Path) -> Vec<PathBuf> {
    let mut logs = Vec::new();
    for emission in std::fs::read_dir(out.join("slurm")).unwrap().flatten() {
        for log in std::fs::read_dir(emission.path().join("logs"))
            .unwrap()
            .flatten()
        {
            logs.push(log.path());
        }
    }
    logs
}

#[test]
#[ignore = "needs a Slurm cluster: scripts/slurm-cluster.sh start, then --ignored"]
fn a_requeued_task_resumes_and_ends_identical() {
    let dir = scratch("slurm-requeue");
    let data = dir.join("data");
    small_fairvision(&data, 6);
    let spec = dir.join("spec.toml");
    let runs = "[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n";
    std::fs::write(&spec, small_spec("requeue", 1, 40, runs)).unwrap();
    let out = dir.join("results");
    let jobs = submit(&emit(&spec, &data, &out), &dir);
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let run = &plan["runs"][0];
    let folder = out.join(run["folder"].as_str().unwrap());
    // Requeued once some epochs are checkpointed and before the last.
    let epochs = || {
        std::fs::read_to_string(folder.join("metrics.jsonl"))
            .map(|t| t.lines().filter(|l| !l.contains("\"step\"")).count())
            .unwrap_or(0)
    };
    wait_until("the first epochs", 300, || epochs() >= 2);
    assert!(
        epochs() < 40,
        "the run finished before it could be requeued"
    );
    let requeue = Command::new("scontrol")
        .args(["requeue", &format!("{}_0", jobs[0])])
        .status()
        .unwrap();
    assert!(requeue.success());
    wait_until("the requeued task", 600, || !queued(&jobs[0]));
    let logs = glob_logs(&out);
    let second = logs
        .iter()
        .find(|l| l.to_string_lossy().contains("task-0.attempt-1.log"));
    let second = second.unwrap_or_else(|| panic!("no second attempt's log: {logs:?}"));
    assert!(read(second).contains("resuming"), "{}", read(second));
    // The same run uninterrupted, here.
    let config = &run["config"];
    let again = dir.join("again");
    let sets: Vec<String> = (run["sets"].as_array().unwrap().iter())
        .map(|p| format!("{}={}", p[0].as_str().unwrap(), p[1].as_str().unwrap()))
        .collect();
    let mut args = vec![
        "train",
        "--dataset",
        "fairvision",
        "--data-dir",
        data.to_str().unwrap(),
        "--method",
        "erm",
        "--attribute",
        "race",
        "--epochs",
        "40",
        "--out",
        again.to_str().unwrap(),
    ];
    let seed = config["seed"].to_string();
    args.extend(["--seed", &seed]);
    for s in &sets {
        args.extend(["--set", s]);
    }
    run_ok(&args);
    assert_eq!(
        read(&folder.join("test.json")),
        read(&again.join("test.json"))
    );
    assert_eq!(
        read(&folder.join("predictions.csv")),
        read(&again.join("predictions.csv"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
