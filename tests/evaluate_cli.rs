//! End-to-end: the `multifair` binary on the golden cases and on malformed files.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;

use common::multifair;
use serde_json::Value;

const GOLDEN: &str = include_str!("golden/reference-vectors.json");

/// `name` in this process's scratch folder (one for all its tests).
fn scratch(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| common::scratch("evaluate")).join(name)
}

fn evaluate(path: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["evaluate", "--predictions", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    multifair(&args)
}

fn close(case: &str, what: &str, got: &Value, want: &Value) {
    match (got.as_f64(), want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-6, "{case}/{what}: {g} vs {w}"),
        _ => assert!(
            got.is_null() && want.is_null(),
            "{case}/{what}: {got} vs {want}"
        ),
    }
}

#[test]
fn golden_cases_through_the_command() {
    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    for case in golden["metrics"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let column = |k: &str| case[k].as_array().unwrap().clone();
        let (probs, labels, groups) = (column("probs"), column("labels"), column("groups"));
        // Two attribute columns: the case's groups and a copy with unknowns, to check both
        // several attributes per file and the unknown count.
        let mut csv = String::from("prob,label,race,site\n");
        for i in 0..probs.len() {
            let site = if i % 10 == 0 {
                -1
            } else {
                groups[i].as_i64().unwrap()
            };
            csv += &format!("{},{},{},{}\n", probs[i], labels[i], groups[i], site);
        }
        let path = scratch(&format!("{name}.csv"));
        std::fs::write(&path, csv).unwrap();
        let threshold = case["threshold"].to_string();
        let out = evaluate(&path, &["--threshold", &threshold]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let want = &case["expected"];
        assert_eq!(report["n"].as_u64().unwrap() as usize, probs.len());
        close(name, "auc", &report["auc"], &want["auc"]);
        let race = &report["attributes"]["race"];
        for key in ["es_auc", "dpd", "deodds", "worst_group_auc", "auc_gap"] {
            close(name, key, &race[key], &want[key]);
        }
        let want_groups = want["group_auc"].as_object().unwrap();
        assert_eq!(race["groups"].as_object().unwrap().len(), want_groups.len());
        for (code, value) in want_groups {
            close(
                name,
                &format!("group {code}"),
                &race["groups"][code]["auc"],
                value,
            );
            for key in ["n", "tpr", "fpr", "selection_rate"] {
                assert!(
                    race["groups"][code].get(key).is_some(),
                    "{name}: group {code} lacks {key}"
                );
            }
        }
        assert_eq!(race["unknown"], 0);
        let unknown = (0..probs.len()).filter(|i| i % 10 == 0).count();
        assert_eq!(
            report["attributes"]["site"]["unknown"].as_u64().unwrap() as usize,
            unknown
        );
    }
}

#[test]
fn bootstrap_is_seeded() {
    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    let case = &golden["metrics"][1];
    let mut csv = String::from("prob,label,race\n");
    for i in 0..case["probs"].as_array().unwrap().len() {
        csv += &format!(
            "{},{},{}\n",
            case["probs"][i], case["labels"][i], case["groups"][i]
        );
    }
    let path = scratch("bootstrap.csv");
    std::fs::write(&path, csv).unwrap();
    let run = |seed: &str| evaluate(&path, &["--bootstrap", "200", "--seed", seed]).stdout;
    let first = run("11");
    assert_eq!(first, run("11"));
    assert_ne!(first, run("12"));
    let report: Value = serde_json::from_slice(&first).unwrap();
    let ci = &report["attributes"]["race"]["ci"]["es_auc"];
    let es = report["attributes"]["race"]["es_auc"].as_f64().unwrap();
    assert!(ci["low"].as_f64().unwrap() <= es && es <= ci["high"].as_f64().unwrap());
    assert_eq!(report["ci"]["resamples"], 200);
}

#[test]
fn malformed_files_fail_naming_row_and_column() {
    let cases = [
        (
            "missing-prob",
            "label,race\n1,0\n",
            "header row: missing column 'prob'",
        ),
        (
            "missing-label",
            "prob,race\n0.3,0\n",
            "header row: missing column 'label'",
        ),
        (
            "prob-range",
            "prob,label,race\n0.3,1,0\n1.2,0,1\n",
            "row 2, column 'prob': '1.2'",
        ),
        (
            "prob-nan",
            "prob,label,race\nnan,1,0\n",
            "row 1, column 'prob': 'nan'",
        ),
        (
            "label-range",
            "prob,label,race\n0.3,1,0\n0.4,3,1\n",
            "row 2, column 'label': '3'",
        ),
        (
            "code-text",
            "prob,label,race\n0.3,1,White\n",
            "row 1, column 'race': 'White'",
        ),
        ("empty", "", "empty file"),
    ];
    for (name, text, expected) in cases {
        let path = scratch(&format!("{name}.csv"));
        std::fs::write(&path, text).unwrap();
        let out = evaluate(&path, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: succeeded");
        assert!(out.stdout.is_empty(), "{name}: printed to stdout");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()),
            "{name}: file not named: {stderr}"
        );
    }
    let out = evaluate(Path::new("/nonexistent/p.csv"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/p.csv"));
}
