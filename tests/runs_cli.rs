//! `multifair runs`: a sweep folder with a finished, an interrupted and a failed run shows each
//! status, filters and sorts.

mod common;

use std::process::Command;

use common::{multifair, ok, read, scratch, small_fairvision};
use serde_json::Value;

const RUNS: &str = r#"
[[runs]]
label = "done"
method = "erm"
[[runs]]
label = "stopped"
method = "group_dro"
[[runs]]
label = "broken"
method = "unimodal"
set = { unimodal_modality = "xray" }
"#;

#[test]
fn runs_lists_finished_interrupted_and_failed_runs() {
    let dir = scratch("runs");
    let data = dir.join("data");
    small_fairvision(&data, 5);
    std::fs::write(
        dir.join("spec.toml"),
        common::small_spec("statuses", 1, 2, RUNS),
    )
    .unwrap();
    let out = dir.join("results");
    let (spec, data, out_s) = (
        dir.join("spec.toml"),
        data.to_str().unwrap().to_owned(),
        out.to_str().unwrap().to_owned(),
    );
    // The sweep's own commands, run by hand: one whole, one stopped after an epoch, one failing.
    let shell = ok(multifair(&[
        "sweep",
        spec.to_str().unwrap(),
        "--data-dir",
        &data,
        "--out",
        &out_s,
        "--emit",
        "shell",
    ]));
    let commands: Vec<String> = String::from_utf8_lossy(&shell.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(commands.len(), 3);
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    for (i, extra) in ["", " --stop-after 1", ""].iter().enumerate() {
        let folder = out.join(plan["runs"][i]["folder"].as_str().unwrap());
        std::fs::create_dir_all(&folder).unwrap();
        let line = format!(
            "{}{extra} > {} 2>&1",
            commands[i],
            folder.join("train.log").display()
        );
        Command::new("bash").args(["-c", &line]).status().unwrap();
    }
    let listed = ok(multifair(&["runs", &out_s, "--format", "json"]));
    let lines: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let by_label = |label: &str| {
        lines
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["label"] == label)
            .unwrap()
            .clone()
    };
    let done = by_label("done");
    assert_eq!(
        (done["status"].as_str(), done["epochs_done"].as_u64()),
        (Some("finished"), Some(2))
    );
    assert!(done["test_auc"].is_f64() && done["val_auc"].is_f64() && done["es_auc"].is_f64());
    let stopped = by_label("stopped");
    assert_eq!(
        (stopped["status"].as_str(), stopped["epochs_done"].as_u64()),
        (Some("interrupted"), Some(1))
    );
    assert!(stopped["test_auc"].is_null());
    let broken = by_label("broken");
    assert_eq!(broken["status"], "failed");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("unimodal_modality=xray: no such modality"),
        "{broken}"
    );
    // Filters and the markdown view.
    let failed = ok(multifair(&[
        "runs",
        &out_s,
        "--where",
        "status=failed",
        "--sort",
        "test-auc",
    ]));
    let text = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("| broken | race | 0 | failed: error: "),
        "{text}"
    );
    let all = ok(multifair(&["runs", &out_s, "--format", "csv"]));
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 4);
    let bad = multifair(&["runs", &out_s, "--where", "colour=red"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("expected one of label, method, attribute, seed, status")
    );
}
