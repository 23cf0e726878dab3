//! `--profile paper`: the original code's protocol, field by field, in what `reproduce
//! --dry-run` plans; and its path trained on the CPU with tiny pretrained fixtures.

mod common;

use std::path::{Path, PathBuf};

use common::{read, run_ok, scratch, small_fairvision};
use serde_json::{Value, json};

/// A weights folder whose expected subfolders are copies of `vit` and `bert` (or empty).
fn weights(dir: &Path, vit: Option<&Path>, bert: Option<&Path>) -> PathBuf {
    let root = dir.join("weights");
    for (name, from) in [
        ("vit-base-patch16-224-in21k", vit),
        ("bert-base-uncased", bert),
    ] {
        let to = root.join(name);
        std::fs::create_dir_all(&to).unwrap();
        if let Some(from) = from {
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    root
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/multifair-models/tests/fixtures/")
        .join(name)
}

/// The original's run settings (both `main()`s and the training function): ViT-B/16 at 224 px,
/// 10 slices, batch 32, 10 epochs, AdamW 3e-5 (decay 6e-3), heads 1e-5 (decay 3e-3),
/// ReduceLROnPlateau(10, 0.1) on the main optimizer only, no warm-up, clipping 0.8 over the
/// model only, selection on the raw class-1 logit's AUC, groups by gender.
fn original_engine() -> Value {
    json!({
        "lr": 3e-5, "aux_lr": 1e-5, "batch_size": 32, "optimizer": "adamw",
        "weight_decay": 6e-3, "aux_weight_decay": 3e-3, "schedule": "plateau",
        "plateau_patience": 10, "plateau_factor": 0.1, "warmup_epochs": 0,
        "schedule_aux": false, "clip": 0.8, "clip_aux": false, "selection": "auc_logit",
        "image_size": 224, "slices": 10, "max_tokens": 512,
    })
}

/// Every run `reproduce NAME --dry-run` plans on `data` with the weights in `w`.
fn planned(name: &str, data: &Path, w: &Path, out: &Path, profile: Option<&str>) -> Vec<Value> {
    let (data, w, out) = (
        data.to_str().unwrap(),
        w.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut args = vec!["reproduce", name, "--data-dir", data, "--weights-dir", w];
    args.extend(["--out", out, "--dry-run"]);
    if let Some(p) = profile {
        args.extend(["--profile", p]);
    }
    let output = run_ok(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("profile paper"), "{stderr}");
    let runs: Value = serde_json::from_slice(&output.stdout).unwrap();
    runs.as_array().unwrap().clone()
}

fn check(runs: &[Value], vit: &Path, text: Option<&Path>, beta_tau: (f64, f64)) {
    assert!(!runs.is_empty());
    for run in runs {
        let c = &run["config"];
        let label = run["label"].as_str().unwrap();
        assert_eq!(c["profile"], "paper", "{label}");
        assert_eq!(c["model"], "paper", "{label}");
        assert_eq!(c["epochs"], 10, "{label}");
        assert_eq!(c["attribute"], "gender", "{label}");
        // OGM-GE, MMPareto and PMR keep their originals' optimizers (SGD, StepLR), SWAD its
        // constant-rate Adam; every other method runs the MultiFair code's.
        for (key, want) in original_engine().as_object().unwrap() {
            let own = own_keys(c["method"].as_str().unwrap()).contains(&key.as_str());
            if !own {
                assert_eq!(&c["engine"][key], want, "{label}: {key}");
            }
        }
        assert_eq!(
            c["engine"]["fundus_weights"],
            vit.to_str().unwrap(),
            "{label}"
        );
        match text {
            Some(bert) => assert_eq!(c["engine"]["text_weights"], bert.to_str().unwrap()),
            None => assert_eq!(c["engine"]["oct_weights"], vit.to_str().unwrap()),
        }
        if c["method"] == "multifair_ref" || c["method"] == "multifair" {
            let h = &c["hparams"];
            assert_eq!(h["multifair_rho"], 1.2, "{label}");
            assert_eq!(h["multifair_ema"], 0.9, "{label}");
            assert_eq!(h["multifair_beta"], beta_tau.0, "{label}");
            assert_eq!(h["multifair_tau"], beta_tau.1, "{label}");
        }
        if c["method"] == "fis" {
            // FairVision's train_*_fair_fis.py: fair_scaling_coef .5, temperature 1, blur .1,
            // and a draw of 64 of each group's training samples every step.
            let h = &c["hparams"];
            assert_eq!(h["fis_c"], 0.5, "{label}");
            assert_eq!(h["fis_t"], 1.0, "{label}");
            assert_eq!(h["fis_blur"], 0.1, "{label}");
            assert_eq!(h["fis_group_samples"], 64, "{label}");
        }
    }
}

/// The engine keys a baseline's own original settings set over the MultiFair code's.
fn own_keys(method: &str) -> &'static [&'static str] {
    match method {
        "ogm_ge" | "mmpareto" | "pmr" => &[
            "optimizer",
            "lr",
            "weight_decay",
            "aux_weight_decay",
            "schedule",
            "warmup_epochs",
        ],
        "swad" => &["optimizer", "schedule", "warmup_epochs"],
        _ => &[],
    }
}

#[test]
fn reproduce_on_real_data_plans_the_original_protocol_field_by_field() {
    let dir = scratch("profile-dry");
    let data = dir.join("fairvision");
    small_fairvision(&data, 0);
    let w = weights(&dir, None, None);
    let vit = w.join("vit-base-patch16-224-in21k");
    // Real data chooses the paper profile by itself; --profile paper says the same.
    for profile in [None, Some("paper")] {
        let runs = planned("table1", &data, &w, &dir.join("t1"), profile);
        check(&runs, &vit, None, (0.3, 0.04));
    }
    // FairVLMed: BERT's folder, 512 tokens and the FairCLIP script's beta 0.5, tau 0.07.
    let vlmed = dir.join("fairvlmed");
    let args = [
        "generate",
        "--kind",
        "fairvlmed",
        "--n-train",
        "8",
        "--n-val",
        "4",
    ];
    run_ok(
        &[
            &args[..],
            &[
                "--n-test",
                "4",
                "--size",
                "16",
                "--out",
                vlmed.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let runs = planned("table2", &vlmed, &w, &dir.join("t2"), Some("paper"));
    check(&runs, &vit, Some(&w.join("bert-base-uncased")), (0.5, 0.07));
    // Without the weights, the error names the folder and where the original gets it.
    let out = common::multifair(&[
        "reproduce",
        "table1",
        "--data-dir",
        data.to_str().unwrap(),
        "--weights-dir",
        dir.join("none").to_str().unwrap(),
        "--dry-run",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("vit-base-patch16-224-in21k") && stderr.contains("from_pretrained"),
        "{stderr}"
    );
    // On the synthetic benchmark the CPU profile runs, and says so.
    let out = run_ok(&[
        "reproduce",
        "demo",
        "--out",
        dir.join("demo").to_str().unwrap(),
        "--dry-run",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("profile cpu"), "{stderr}");
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(runs[0]["config"].get("profile").is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_paper_profile_trains_on_the_cpu_with_small_pretrained_weights() {
    let dir = scratch("profile-train");
    let data = dir.join("fairvision");
    small_fairvision(&data, 1);
    let w = weights(&dir, Some(&fixture("hf-vit")), None);
    // The reference method, a phased baseline (its members under the same profile) and one
    // with its own original's optimizer.
    for method in ["multifair_ref", "umt", "mmpareto"] {
        let out = dir.join(method);
        run_ok(&[
            "train",
            "--dataset",
            "fairvision",
            "--data-dir",
            data.to_str().unwrap(),
            "--method",
            method,
            "--profile",
            "paper",
            "--weights-dir",
            w.to_str().unwrap(),
            "--epochs",
            "1",
            "--set",
            "image_size=16",
            "--set",
            "slices=2",
            "--out",
            out.to_str().unwrap(),
        ]);
        let run: Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
        let c = &run["config"];
        assert_eq!(c["profile"], "paper");
        assert_eq!(c["attribute"], "gender");
        assert_eq!(c["engine"]["image_size"], 16);
        let schedule = if method == "mmpareto" {
            "step"
        } else {
            "plateau"
        };
        assert_eq!(c["engine"]["schedule"], schedule, "{method}");
        let test: Value = serde_json::from_str(&read(&out.join("test.json"))).unwrap();
        assert!(
            test["attributes"]["gender"]["es_auc"].as_f64().is_some(),
            "{method}: {test}"
        );
        if method == "umt" {
            let member = read(&out.join("phases/oct/run.json"));
            let member: Value = serde_json::from_str(&member).unwrap();
            assert_eq!(member["config"]["profile"], "paper");
            assert_eq!(member["config"]["method"], "unimodal");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
