//! End-to-end: `multifair generate` writes each dataset's real layout, and
//! `multifair data summary` reads back the counts recorded in `meta.json`.

use std::process::Output;

mod common;

use common::multifair;
use serde_json::Value;

/// A small dataset of `kind` in `dir`, seed 3.
fn generate(kind: &str, dir: &std::path::Path) -> Output {
    let dir = dir.to_str().unwrap();
    let args = "--seed 3 --n-train 60 --n-val 20 --n-test 40 --size 12 --depth 4";
    let mut all = vec!["generate", "--kind", kind, "--out", dir];
    all.extend(args.split(' '));
    multifair(&all)
}

#[test]
fn generated_data_summarises_to_its_meta() {
    let root = std::env::temp_dir().join(format!("multifair-gen-{}", std::process::id()));
    for kind in ["fairvision", "fairvlmed", "harvard-gf"] {
        let dir = root.join(kind);
        let out = generate(kind, &dir);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let out = multifair(&[
            "data",
            "summary",
            "--dataset",
            kind,
            "--data-dir",
            dir.to_str().unwrap(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
        let splits = meta["splits"].as_object().unwrap();
        assert_eq!(summary.as_object().unwrap().len(), splits.len(), "{kind}");
        for (split, counts) in splits {
            let got = &summary[split];
            assert_eq!(got["n"], counts["n"], "{kind}/{split}");
            assert_eq!(got["positives"], counts["positives"], "{kind}/{split}");
            assert_eq!(got["attributes"], counts["attributes"], "{kind}/{split}");
            assert_eq!(got["skipped"], 0);
        }
        let oracle = meta["oracle_auc"]["overall"].as_f64().unwrap();
        assert!(oracle > 0.7 && oracle < 1.0, "{kind}: oracle AUC {oracle}");
        // Same seed, same bytes.
        let again = root.join(format!("{kind}-again"));
        generate(kind, &again);
        assert_eq!(
            std::fs::read(dir.join("meta.json")).unwrap(),
            std::fs::read(again.join("meta.json")).unwrap()
        );
    }
    // The plain-text summary names each split and attribute.
    let dir = root.join("fairvision");
    let out = multifair(&[
        "data",
        "summary",
        "--dataset",
        "fairvision",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["train (", "val (", "test (", "  race: ", "  ethnicity: "] {
        assert!(text.contains(needle), "{text}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn summary_of_a_missing_folder_fails_clearly() {
    let out = multifair(&[
        "data",
        "summary",
        "--dataset",
        "fairvision",
        "--data-dir",
        "/nonexistent/fv",
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/fv: no such folder"), "{err}");
    let out = multifair(&[
        "data",
        "summary",
        "--dataset",
        "mimic",
        "--data-dir",
        "/tmp",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'mimic' for '--dataset <DATASET>'")
            && err.contains("[possible values: fairvision, fairvlmed, harvard-gf, manifest]"),
        "{err}"
    );
}
