//! Your own data through a manifest: a JSONL manifest with two tabular modalities, an image, a
//! volume and text files trains `multifair` and `erm` to test.json; a sweep spec runs on a
//! manifest as on a built-in dataset; a malformed manifest stops with every problem named by
//! row and column.

mod common;

use std::path::Path;

use common::{multifair, read, run_ok, scratch};
use multifair_data::npy::{ArrayData, NpyArray};
use serde_json::{Value, json};

const LABELS: [&str; 3] = ["benign", "malignant", "atypical"];

/// A small cohort written by hand: the label (of `classes`, 2 or 3) shows in the photo's
/// brightness, the first labs column, the volume's mean and the note's words; some entries of
/// every kind are missing.
fn write_cohort(dir: &Path, n: usize, classes: usize) {
    std::fs::create_dir_all(dir.join("files")).unwrap();
    let mut lines = Vec::new();
    for i in 0..n {
        let y = i % 2 + usize::from(classes == 3 && i % 3 == 0);
        let split = match i % 5 {
            0 => "val",
            1 => "test",
            _ => "train",
        };
        let id = format!("s{i}");
        let signal = y as f32 - 0.5;
        let noise = ((i * 7919) % 13) as f32 / 13.0 - 0.5;
        let photo = format!("files/{id}.png");
        let grey = (128.0 + 40.0 * (signal + noise)) as u8;
        image::RgbImage::from_pixel(12, 10, image::Rgb([grey, grey / 2, 255 - grey]))
            .save(dir.join(&photo))
            .unwrap();
        let volume = format!("files/{id}.npy");
        let values: Vec<f32> = (0..3 * 8 * 8)
            .map(|k| signal * 0.5 + ((k * 31 + i) % 17) as f32 / 17.0)
            .collect();
        let array = NpyArray {
            shape: vec![3, 8, 8],
            data: ArrayData::F32(values),
        };
        std::fs::write(dir.join(&volume), array.to_bytes()).unwrap();
        let note = format!("files/{id}.txt");
        let words = [
            "regular stable lesion",
            "irregular growing lesion",
            "unusual lesion",
        ][y];
        std::fs::write(dir.join(&note), words).unwrap();
        let missing = |k: usize| i % 7 == k;
        let sex = ["female", "male", ""][i % 3];
        let site = ["north", "south"][(i / 2) % 2];
        lines.push(json!({
            "id": id,
            "split": split,
            "diagnosis": LABELS[y],
            "sex": sex,
            "site": site,
            "photo": if missing(1) { Value::Null } else { json!(photo) },
            "volume": if missing(2) { json!("") } else { json!(volume) },
            "note": if missing(3) { Value::Null } else { json!(note) },
            "crp": if missing(4) { Value::Null } else { json!(signal + noise) },
            "age": 40 + i % 30,
            "heart_rate": if missing(5) { Value::Null } else { json!(70 + i % 11) },
            "spo2": if missing(5) { Value::Null } else { json!(97.0 - noise) },
        }));
    }
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("cohort.jsonl"), text.join("\n") + "\n").unwrap();
    let labels: Vec<String> = LABELS[..classes].iter().map(|l| format!("{l:?}")).collect();
    std::fs::write(
        dir.join("manifest.toml"),
        format!(
            "manifest = \"cohort.jsonl\"\nlabel = \"diagnosis\"\nlabels = [{}]\n",
            labels.join(", ")
        ) + r#"
[[attribute]]
name = "sex"
groups = ["female", "male"]

[[attribute]]
name = "site"
groups = ["north", "south"]

[[modality]]
name = "photo"
type = "image"

[[modality]]
name = "scan"
type = "volume"
column = "volume"

[[modality]]
name = "note"
type = "text_file"

[[modality]]
name = "labs"
type = "tabular"
columns = ["crp", "age"]

[[modality]]
name = "vitals"
type = "tabular"
columns = ["heart_rate", "spo2"]
"#,
    )
    .unwrap();
}

/// Trains `method` for 2 epochs on the manifest in `data` into `out` and returns test.json.
fn train(data: &Path, method: &str, out: &Path) -> Value {
    run_ok(&[
        "train",
        "--dataset",
        "manifest",
        "--data-dir",
        data.to_str().unwrap(),
        "--method",
        method,
        "--epochs",
        "2",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "image_size=16",
        "--set",
        "slices=2",
        "--set",
        "batch_size=16",
    ]);
    serde_json::from_str(&read(&out.join("test.json"))).unwrap()
}

#[test]
fn multifair_and_erm_train_on_a_manifest() {
    let dir = scratch("manifest-train");
    let data = dir.join("data");
    write_cohort(&data, 60, 2);
    for method in ["multifair", "erm"] {
        let out = dir.join(method);
        let test = train(&data, method, &out);
        assert_eq!(test["n"], 12, "{method}: every test row is scored");
        let auc = test["auc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auc), "{method}: {auc}");
        // The first declared attribute selects; both are evaluated, unknown sexes counted.
        assert_eq!(test["selection"]["attribute"], "sex");
        assert_eq!(test["attributes"]["sex"]["unknown"], 4, "{method}");
        assert!(test["attributes"]["site"]["groups"]["1"]["auc"].is_number());
        let report = &test["modality_group_report"];
        for modality in ["photo", "scan", "note", "labs", "vitals"] {
            assert!(
                report[modality]["aux"]["sex"]["overall"].is_number(),
                "{method} {modality}"
            );
        }
        let run: Value = serde_json::from_str(&read(&out.join("run.json"))).unwrap();
        assert_eq!(run["config"]["dataset"], "manifest", "{run}");
    }
}

#[test]
fn a_sweep_runs_on_a_manifest() {
    let dir = scratch("manifest-sweep");
    let data = dir.join("data");
    write_cohort(&data, 40, 2);
    let spec = dir.join("mine.toml");
    std::fs::write(
        &spec,
        r#"
name = "mine"
dataset = "manifest"
attributes = ["sex", "site"]
seeds = 1
epochs = 1
[set]
image_size = 16
slices = 2
batch_size = 16
[[runs]]
label = "erm"
method = "erm"
[[runs]]
label = "labs"
method = "unimodal"
set = { unimodal_modality = "labs" }
"#,
    )
    .unwrap();
    let out = dir.join("results");
    run_ok(&[
        "sweep",
        spec.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let table = run_ok(&["table", out.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    for row in ["erm", "labs"] {
        assert!(table.contains(&format!("| {row} ")), "{table}");
    }
    // Columns carry the manifest's group names.
    assert!(
        table.contains("| AUC sex=female | AUC sex=male |"),
        "{table}"
    );
    assert!(
        table.contains("| AUC site=north | AUC site=south |"),
        "{table}"
    );
    // And so do the figures.
    let figures = dir.join("figures");
    run_ok(&[
        "plot",
        out.to_str().unwrap(),
        "--out",
        figures.to_str().unwrap(),
    ]);
    let bars = read(&figures.join("group-auc-sex.svg"));
    assert!(bars.contains("sex=1 (male)"), "group names in the legend");
}

#[test]
fn a_malformed_manifest_names_rows_and_columns() {
    let dir = scratch("manifest-bad");
    let data = dir.join("data");
    write_cohort(&data, 20, 2);
    let text = read(&data.join("cohort.jsonl"))
        .replacen("\"split\":\"train\"", "\"split\":\"training\"", 1)
        .replacen("\"sex\":\"male\"", "\"sex\":\"other\"", 1);
    std::fs::write(data.join("cohort.jsonl"), text).unwrap();
    let out = multifair(&[
        "train",
        "--dataset",
        "manifest",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        dir.join("run").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 problems"), "{err}");
    assert!(
        err.contains("row 3 (line 3), column 'split': unknown split 'training'"),
        "{err}"
    );
    assert!(
        err.contains("row 2 (line 2), column 'sex': group 'other' is not declared"),
        "{err}"
    );
}

#[test]
fn three_classes_train_and_report_one_vs_rest() {
    let dir = scratch("manifest-classes");
    let data = dir.join("data");
    write_cohort(&data, 60, 3);
    for method in ["multifair", "erm"] {
        let out = dir.join(method);
        let test = train(&data, method, &out);
        assert_eq!(test["classes"], json!(LABELS), "{method}");
        // The top level is the mean of the classes' one-vs-rest reports.
        let per_class: Vec<f64> = (0..3)
            .map(|c| test["one_vs_rest"][c]["auc"].as_f64().unwrap())
            .collect();
        let mean = per_class.iter().sum::<f64>() / 3.0;
        assert!(
            (test["auc"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{method}"
        );
        // `multifair evaluate` reads the run's predictions to the same report.
        let evaluated = run_ok(&[
            "evaluate",
            "--predictions",
            out.join("predictions.csv").to_str().unwrap(),
        ]);
        let evaluated: Value = serde_json::from_slice(&evaluated.stdout).unwrap();
        assert_eq!(evaluated["auc"], test["auc"], "{method}");
        assert_eq!(evaluated["one_vs_rest"], test["one_vs_rest"], "{method}");
        let header = read(&out.join("predictions.csv"));
        assert!(
            header.starts_with("prob_0,prob_1,prob_2,label,sex,site\n"),
            "{header}"
        );
    }
}
