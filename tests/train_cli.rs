//! End-to-end training: outputs, determinism, resume, and the libtorch path.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{multifair, ok, read, scratch, small_fairvision};
use serde_json::Value;

/// A small FairVision-format dataset, generated once per test.
fn data(name: &str) -> PathBuf {
    let dir = scratch(name);
    small_fairvision(&dir, 2);
    dir
}

fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--dataset",
        "fairvision",
        "--data-dir",
        data.to_str().unwrap(),
        "--seed",
        "7",
        "--set",
        "batch_size=16",
        "--set",
        "image_size=16",
        "--set",
        "slices=4",
        "--out",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--epochs") {
        args.extend(["--epochs", "2"]);
    }
    if !extra.contains(&"--method") {
        args.extend(["--method", "erm"]);
    }
    args.extend_from_slice(extra);
    multifair(&args)
}

#[test]
fn two_epochs_write_every_output_and_predictions_reevaluate_to_test_json() {
    let data = data("outputs");
    let out = scratch("outputs-run");
    ok(train(&data, &out, &[]));
    let run: Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
    assert_eq!(run["config"]["seed"], 7);
    assert_eq!(run["modalities"], serde_json::json!(["slo", "oct"]));
    let lines: Vec<Value> = read(&out.join("metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1]["val"]["aux_auc"]["oct"].is_number());
    assert!(out.join("model.safetensors").is_file());
    assert_eq!(read(&out.join("checkpoint/LATEST")), "epoch-0002");
    assert!(out.join("checkpoint/epoch-0002/state.json").is_file());
    assert!(!out.join("lock").exists());

    let test: Value = serde_json::from_str(&read(&out.join("test.json"))).unwrap();
    assert_eq!(test["n"], 32);
    for attribute in ["race", "gender", "ethnicity", "language"] {
        for key in [
            "groups",
            "es_auc",
            "dpd",
            "deodds",
            "worst_group_auc",
            "auc_gap",
            "unknown",
        ] {
            assert!(
                test["attributes"][attribute].get(key).is_some(),
                "{attribute}.{key}"
            );
        }
    }
    assert!(test["selected_epoch"].as_u64().unwrap() >= 1);
    assert!(test["modality_group_report"]["oct"]["fused_without"]["race"]["groups"].is_object());

    let evaluated = ok(multifair(&[
        "evaluate",
        "--predictions",
        out.join("predictions.csv").to_str().unwrap(),
    ]));
    let evaluated: Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    assert_eq!(evaluated["auc"], test["auc"]);
    assert_eq!(evaluated["attributes"], test["attributes"]);
}

#[test]
fn same_seed_same_results_and_resume_is_exact() {
    let data = data("determinism");
    let (a, b, c) = (scratch("det-a"), scratch("det-b"), scratch("det-c"));
    ok(train(&data, &a, &[]));
    ok(train(&data, &b, &[]));
    assert_eq!(read(&a.join("test.json")), read(&b.join("test.json")));
    assert_eq!(
        read(&a.join("predictions.csv")),
        read(&b.join("predictions.csv"))
    );

    // Stopped after epoch 1 (as if killed), then the same command again.
    ok(train(&data, &c, &["--stop-after", "1"]));
    assert!(!c.join("test.json").exists());
    assert_eq!(read(&c.join("metrics.jsonl")).lines().count(), 1);
    ok(train(&data, &c, &[]));
    assert_eq!(read(&a.join("test.json")), read(&c.join("test.json")));
    assert_eq!(
        read(&a.join("metrics.jsonl")).lines().count(),
        read(&c.join("metrics.jsonl")).lines().count()
    );
}

#[test]
fn burns_dropout_and_linear_layers_repeat_and_differ_from_the_defaults() {
    let data = data("masks");
    let (hashed, sampled, again) = (scratch("mask-h"), scratch("mask-s"), scratch("mask-s2"));
    let pinned = ["--set", "dropout_mask=sampled", "--set", "linear_op=burn"];
    ok(train(&data, &hashed, &[]));
    ok(train(&data, &sampled, &pinned));
    ok(train(&data, &again, &pinned));
    let run: Value = serde_json::from_str(&read(&sampled.join("run.json"))).unwrap();
    assert_eq!(run["config"]["engine"]["dropout_mask"], "sampled");
    assert_eq!(run["config"]["engine"]["linear_op"], "burn");
    let predictions = |dir: &Path| read(&dir.join("predictions.csv"));
    assert_eq!(predictions(&sampled), predictions(&again));
    assert_ne!(predictions(&sampled), predictions(&hashed));
    for (setting, key) in [
        ("dropout_mask=bernoulli", "dropout_mask"),
        ("linear_op=tch", "linear_op"),
    ] {
        let refused = train(&data, &scratch(key), &["--set", setting]);
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains(key));
    }
}

#[test]
fn sgd_with_momentum_trains_and_resumes_exactly() {
    let data = data("sgd");
    let (a, b) = (scratch("sgd-a"), scratch("sgd-b"));
    let sgd = [
        "--set",
        "optimizer=sgd",
        "--set",
        "lr=0.02",
        "--set",
        "momentum=0.9",
    ];
    ok(train(&data, &a, &sgd));
    let run: Value = serde_json::from_str(&read(&a.join("run.json"))).unwrap();
    assert_eq!(run["config"]["engine"]["optimizer"], "sgd");
    let mut stopped = sgd.to_vec();
    stopped.extend(["--stop-after", "1"]);
    ok(train(&data, &b, &stopped));
    ok(train(&data, &b, &sgd));
    assert_eq!(read(&a.join("test.json")), read(&b.join("test.json")));
    let err = String::from_utf8_lossy(
        &train(&data, &scratch("sgd-c"), &["--set", "optimizer=lbfgs"]).stderr,
    )
    .into_owned();
    assert!(
        err.contains(
            "--set optimizer=lbfgs: unknown variant `lbfgs`, expected one of `adamw`, `adam`, `sgd`"
        ),
        "{err}"
    );
}

#[test]
fn plateau_schedule_state_resumes_exactly_and_early_stopping_is_logged() {
    let data = data("plateau");
    let (a, b) = (scratch("plateau-a"), scratch("plateau-b"));
    let adam = [
        "--epochs",
        "3",
        "--set",
        "optimizer=adam",
        "--set",
        "betas=0.8,0.99",
        "--set",
        "schedule=plateau",
        "--set",
        "plateau_patience=0",
        "--set",
        "plateau_factor=0.5",
        "--set",
        "encoder_lr=1e-3",
    ];
    ok(train(&data, &a, &adam));
    let mut stopped = adam.to_vec();
    stopped.extend(["--stop-after", "1"]);
    ok(train(&data, &b, &stopped));
    ok(train(&data, &b, &adam));
    assert_eq!(read(&a.join("test.json")), read(&b.join("test.json")));
    let rates = |dir: &Path| -> Vec<Value> {
        read(&dir.join("metrics.jsonl"))
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["lr"].clone())
            .collect()
    };
    assert_eq!(rates(&a), rates(&b));
    let run: Value = serde_json::from_str(&read(&a.join("run.json"))).unwrap();
    assert_eq!(run["config"]["engine"]["optimizer"], "adam");
    assert_eq!(run["config"]["engine"]["schedule"], "plateau");
    assert_eq!(
        run["config"]["engine"]["betas"],
        serde_json::json!([0.8, 0.99])
    );
    assert_eq!(run["config"]["engine"]["encoder_lr"], 1e-3);

    // With every rate at 0 the validation score never improves after epoch 1, so patience 1
    // stops the run after epoch 2, and rerunning the command trains no further.
    let c = scratch("plateau-c");
    let frozen = [
        "--epochs",
        "5",
        "--set",
        "lr=0",
        "--set",
        "early_stopping=1",
    ];
    ok(train(&data, &c, &frozen));
    let lines: Vec<Value> = read(&c.join("metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["epochs_without_improvement"], 1);
    assert_eq!(lines[1]["early_stop"], true);
    let test: Value = serde_json::from_str(&read(&c.join("test.json"))).unwrap();
    assert_eq!(test["selected_epoch"], 1);
    ok(train(&data, &c, &frozen));
    assert_eq!(read(&c.join("metrics.jsonl")).lines().count(), 2);
}

#[test]
fn every_method_trains_on_the_synthetic_benchmark() {
    let data = data("methods");
    let methods = [
        ("erm", vec![]),
        ("unimodal", vec!["--set", "unimodal_modality=oct"]),
        ("multifair_ref", vec![]),
        ("multifair", vec!["--set", "multifair_direction=0.15"]),
        ("ogm_ge", vec![]),
        ("cggm", vec!["--set", "cggm_direction=gradients"]),
        ("group_dro", vec![]),
        ("reweight", vec!["--set", "reweight_mode=sample"]),
        ("fin", vec![]),
        ("fis", vec![]),
        ("ume", vec![]),
        ("umt", vec![]),
        ("gblending", vec!["--set", "gblend_super_epoch=2"]),
        ("mla", vec![]),
        ("pmr", vec![]),
        ("agm", vec![]),
        ("mmpareto", vec![]),
        ("resample", vec!["--set", "resample_which=balanced"]),
        ("domain_ind", vec![]),
        (
            "swad",
            vec!["--set", "swad_converge=1", "--set", "swad_tolerance=2"],
        ),
        ("sam", vec!["--set", "preset=medfair"]),
    ];
    let help = String::from_utf8_lossy(&ok(multifair(&["train", "--help"])).stdout).into_owned();
    for (name, extra) in &methods {
        assert!(
            help.contains(&format!("Method {name} ")),
            "{name} not in --help"
        );
        let out = scratch(&format!("method-{name}"));
        let mut args = vec!["--method", name, "--epochs", "2"];
        args.extend(extra);
        let output = train(&data, &out, &args);
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let run: Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
        assert_eq!(run["config"]["method"], *name);
        // Unknown race codes are counted, never assigned a group.
        let groups = &run["train_groups"];
        let known: u64 = groups["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        // G-Blend holds 8% of the 48 training samples out.
        let trained = if *name == "gblending" { 44 } else { 48 };
        assert_eq!(
            known + groups["unknown"].as_u64().unwrap(),
            trained,
            "{name}"
        );
        let test: Value = serde_json::from_str(&read(&out.join("test.json"))).unwrap();
        assert!(test["auc"].as_f64().is_some_and(f64::is_finite), "{name}");
        let race = &test["attributes"]["race"];
        assert!(
            race["es_auc"].as_f64().is_some_and(f64::is_finite),
            "{name}: {race}"
        );
        // What each kind of run leaves: the members of a phased run, the averaged epochs of
        // a weight average, the held-out losses of G-Blend.
        match *name {
            "ume" | "umt" => {
                for m in ["slo", "oct"] {
                    let member = out.join("phases").join(m).join("test.json");
                    assert!(member.is_file(), "{name}: no {}", member.display());
                }
                if *name == "ume" {
                    assert_eq!(
                        test["ensemble"],
                        serde_json::json!(["phases/slo", "phases/oct"])
                    );
                }
            }
            "swad" => {
                let average = test["average"].as_array().unwrap();
                assert!(
                    !average.is_empty() && test["selected_epoch"].is_null(),
                    "{test}"
                );
                assert!(out.join("segments/epoch-0002.safetensors").is_file());
            }
            "gblending" => {
                let last = read(&out.join("metrics.jsonl"));
                let line: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
                assert_eq!(line["holdout_loss"].as_array().unwrap().len(), 3, "{line}");
                // Two epochs, a super-epoch of two: the weights were estimated once.
                assert_eq!(
                    line["method"]["blend_0"].as_f64().map(|w| w > 0.0),
                    Some(true)
                );
            }
            _ => {}
        }
        if *name == "multifair_ref" {
            // Per-step statistics lines, before each epoch's line: 48 samples, batches of 16.
            let steps: Vec<Value> = read(&out.join("metrics.jsonl"))
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|l| l.get("step").is_some())
                .collect();
            assert_eq!(steps.len(), 6);
            assert!(
                steps[5]["stats"]["coeff_1"].is_f64() && steps[5]["stats"]["priority"].is_f64()
            );
        }
    }
    // OGM-GE's paper settings apply unless the command line says otherwise.
    let out = scratch("method-ogm-defaults");
    ok(train(
        &data,
        &out,
        &["--method", "ogm_ge", "--epochs", "1", "--set", "lr=0.02"],
    ));
    let run: Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
    assert_eq!(run["config"]["engine"]["optimizer"], "sgd");
    assert_eq!(run["config"]["engine"]["schedule"], "step");
    assert_eq!(run["config"]["engine"]["lr"], 0.02);
    // Every registered method is covered here.
    assert_eq!(help.matches("\nMethod ").count(), methods.len());
}

#[test]
fn pretrained_vit_weights_start_both_image_encoders() {
    let data = data("pretrained");
    let vit =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/multifair-models/tests/fixtures/hf-vit");
    let vit = vit.to_str().unwrap();
    let out = scratch("pretrained-run");
    let fundus = format!("fundus_weights={vit}");
    let oct = format!("oct_weights={vit}");
    ok(train(
        &data,
        &out,
        &["--epochs", "1", "--set", &fundus, "--set", &oct],
    ));
    let run: Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
    let imported = run["pretrained"].as_array().unwrap();
    assert_eq!(imported.len(), 2);
    for (entry, name) in imported.iter().zip(["slo", "oct"]) {
        assert_eq!(entry["modality"], name);
        assert!(entry["tensors"].as_u64().unwrap() > 20);
    }
    // The encoders take the checkpoint's shapes: hidden 32, 3 channels for the fundus, 1 for
    // the OCT slices.
    let encoders = &run["model"]["modalities"];
    assert_eq!(encoders[0][1]["image"]["hidden"], 32);
    assert_eq!(encoders[0][1]["image"]["in_channels"], 3);
    assert_eq!(encoders[1][1]["volume"]["slice"]["in_channels"], 1);

    let err = |extra: &[&str]| {
        String::from_utf8_lossy(&train(&data, &scratch("pretrained-bad"), extra).stderr)
            .into_owned()
    };
    let msg = err(&["--set", &fundus, "--set", "image_size=32"]);
    assert!(
        msg.contains("the model was pretrained at 16 px, the run uses 32"),
        "{msg}"
    );
    let msg = err(&["--set", "oct_weights=/nonexistent/vit"]);
    assert!(
        msg.contains("--set oct_weights=/nonexistent/vit: no such folder"),
        "{msg}"
    );
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let data = data("bad-config");
    let out = scratch("bad-config-run");
    let err =
        |extra: &[&str]| String::from_utf8_lossy(&train(&data, &out, extra).stderr).into_owned();
    let msg = err(&["--set", "lr=fast"]);
    assert!(
        msg.contains("--set lr=fast: invalid type: string \"fast\", expected f64"),
        "{msg}"
    );
    let msg = err(&["--set", "colour=blue"]);
    assert!(
        msg.contains("--set colour=blue: method 'erm': unknown field `colour`")
            && msg.contains("engine keys: lr, encoder_lr,"),
        "{msg}"
    );
    // Misspelt values and keys, refused by the types with the valid ones listed.
    for (set, want) in [
        ("optimizer=sgdd", "expected one of `adamw`, `adam`, `sgd`"),
        (
            "schedule=cosin",
            "expected one of `cosine`, `constant`, `step`, `plateau`",
        ),
        (
            "selection=aucc",
            "expected one of `auc`, `auc_logit`, `es_auc`, `dto`",
        ),
    ] {
        let msg = err(&["--set", set]);
        assert!(
            msg.contains(&format!("--set {set}: unknown variant")) && msg.contains(want),
            "{msg}"
        );
    }
    let msg = err(&["--method", "multifair", "--set", "multifair_rhoo=1"]);
    assert!(
        msg.contains(
            "unknown field `multifair_rhoo`, expected one of `multifair_rho`, `multifair_beta`"
        ),
        "{msg}"
    );
    let out2 = multifair(&[
        "train",
        "--dataset",
        "fairvision",
        "--data-dir",
        data.to_str().unwrap(),
        "--method",
        "magic",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out2.stderr)
            .contains("unknown method 'magic'; available: erm, unimodal, multifair_ref, multifair, ogm_ge, cggm, group_dro, reweight, fin, fis")
    );
}

#[test]
fn a_diverging_run_stops_naming_epoch_step_and_batch() {
    let data = data("nan");
    let out = scratch("nan-run");
    let result = train(&data, &out, &["--set", "lr=1e30", "--set", "clip=1e30"]);
    assert!(!result.status.success());
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(
        err.contains("diverged at epoch 1 (loss NaN at step")
            || err.contains("diverged at epoch 1 (loss inf at step"),
        "{err}"
    );
    assert!(
        err.contains(", batch ") && err.contains("no epoch had finished"),
        "{err}"
    );
    assert!(!out.join("test.json").exists());
}

#[cfg(feature = "tch")]
#[test]
fn trains_on_libtorch_cpu() {
    let data = data("libtorch");
    let out = scratch("libtorch-run");
    ok(train(&data, &out, &["--device", "libtorch"]));
    let test: Value = serde_json::from_str(&read(&out.join("test.json"))).unwrap();
    assert!(test["auc"].is_number());
}

/// A whole bf16 model steps on libtorch (the GPU path's) with a finite loss. A device's float
/// type is set once per process, before its first tensor, hence a process of its own.
#[cfg(feature = "tch")]
#[test]
fn time_step_runs_a_bf16_model_on_libtorch() {
    let result = ok(multifair(&[
        "time-step",
        "--model",
        "tiny",
        "--method",
        "multifair_ref",
        "--batch",
        "4",
        "--image-size",
        "16",
        "--slices",
        "2",
        "--steps",
        "1",
        "--device",
        "libtorch",
        "--dtype",
        "bf16",
    ]));
    let report: Value = serde_json::from_slice(&result.stdout).unwrap();
    assert_eq!(report["dtype"], "bf16");
    assert!(
        report["last_loss"].as_f64().is_some_and(f64::is_finite),
        "{report}"
    );
}

#[test]
fn demo_at_a_small_scale_prints_the_tables_and_the_two_checks() {
    let out = scratch("demo");
    let result = ok(multifair(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--samples",
        "40",
    ]));
    let text = String::from_utf8_lossy(&result.stdout);
    for needle in [
        "| method | AUC | ES-AUC | AUC race=0 |",
        "| erm |",
        "| slo |",
        "| oct |",
        "| multifair |",
        "Oracle (latent severity): AUC",
        "Modality imbalance:",
        "Unfairness:",
        "MultiFair against fusion ERM:",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert_eq!(read(&out.join("summary.md")).trim(), text.trim());
    // The demo is a sweep: its plan names the four runs, each finished.
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let runs = plan["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let folder = out.join(run["folder"].as_str().unwrap());
        assert!(folder.join("test.json").is_file(), "{run}");
        assert_eq!(run["seed"], 0);
    }
}

#[test]
fn step_mode_and_modulation_diagnostics_are_logged_and_plotted() {
    let data = data("diagnostics");
    let dir = scratch("diagnostics-sweep");
    let spec = dir.join("spec.toml");
    let runs = "[[runs]]\nlabel = 'mf'\nmethod = 'multifair'\n\
                set = { multifair_apply = 'step', multifair_log_every = 1, diagnostics_every = 1 }\n";
    std::fs::write(&spec, common::small_spec("diag", 1, 2, runs)).unwrap();
    let out = dir.join("results");
    ok(multifair(&[
        "sweep",
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let folder = out.join(plan["runs"][0]["folder"].as_str().unwrap());
    let lines: Vec<Value> = read(&folder.join("metrics.jsonl"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epoch = lines.iter().find(|l| l.get("step").is_none()).unwrap();
    for key in [
        "update_0",
        "update_1",
        "update_unmodulated_0",
        "update_unmodulated_1",
        "coeff_0",
    ] {
        let v = epoch["method"][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {epoch}"));
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
    }
    let run: Value = serde_json::from_str(&read(&folder.join("run.json"))).unwrap();
    assert_eq!(run["config"]["hparams"]["multifair_apply"], "step");
    let figures = dir.join("figures");
    ok(multifair(&[
        "plot",
        out.to_str().unwrap(),
        "--out",
        figures.to_str().unwrap(),
    ]));
    let png = std::fs::read(figures.join("modulation-mf.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
