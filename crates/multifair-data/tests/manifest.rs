//! Manifest datasets: the generated cohort opens and batches, and every malformed manifest is
//! refused with every problem named by row and column.

use std::path::{Path, PathBuf};

use multifair_data::cohort::{CohortConfig, generate};
use multifair_data::loader::{Loader, LoaderConfig, ModalityBatch};
use multifair_data::manifest::training_words;
use multifair_data::tokenizer::WordPiece;
use multifair_data::{
    BadFilePolicy, DataError, DatasetIndex, DatasetKind, Entry, ModalityKind, Split,
};

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("manifest")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(dir: &Path) -> Result<DatasetIndex, DataError> {
    DatasetIndex::open(DatasetKind::Manifest, dir, BadFilePolicy::Fail)
}

#[test]
fn generated_cohort_opens_and_batches() {
    let dir = folder("cohort");
    generate(&CohortConfig::new(5), &dir).unwrap();
    let index = open(&dir).unwrap();
    let kinds: Vec<(&str, ModalityKind)> = index
        .schema
        .modalities
        .iter()
        .map(|m| (m.name.as_str(), m.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("photo", ModalityKind::Image),
            ("labs", ModalityKind::Tabular),
            ("vitals", ModalityKind::Tabular),
            ("note", ModalityKind::Text)
        ]
    );
    assert_eq!(index.schema.classes, ["benign", "malignant"]);
    let train = index.split(Split::Train).unwrap();
    assert_eq!(train.samples.len(), 160);
    assert_eq!(index.split(Split::Test).unwrap().samples.len(), 80);
    // "not recorded" is an unknown sex, counted as -1.
    let summary = index.summary();
    assert!(summary[&Split::Train].attributes["sex"]["-1"] > 0);

    // The labs' scaling comes from the train rows only: check it against the CSV.
    let mut reader = csv::Reader::from_path(dir.join("manifest.csv")).unwrap();
    let crp: Vec<f64> = reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| &r[1] == "train" && !r[6].is_empty())
        .map(|r| r[6].parse().unwrap())
        .collect();
    let labs = index.schema.modalities[1].tabular.as_ref().unwrap();
    let mean = crp.iter().sum::<f64>() / crp.len() as f64;
    assert!(
        (labs.mean[0] - mean).abs() < 1e-9,
        "{} vs {mean}",
        labs.mean[0]
    );

    let words = training_words(&train.samples, 3, 1000).unwrap();
    assert!(words.contains(&"irregular".to_string()), "{words:?}");
    let tokenizer = WordPiece::builtin(&words.iter().map(String::as_str).collect::<Vec<_>>());
    let loader = Loader::new(
        &index.schema,
        train,
        LoaderConfig::new(16, 8, 2),
        Some(tokenizer),
    )
    .unwrap();
    let mut saw_missing = [false; 4];
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        let n = batch.labels.len();
        let ModalityBatch::Float { shape, values } = &batch.modalities[0].1 else {
            panic!("photo is pixels")
        };
        assert_eq!(shape, &[n, 3, 8, 8]);
        assert!(values.iter().all(|v| v.is_finite()));
        let ModalityBatch::Float { shape, values } = &batch.modalities[1].1 else {
            panic!("labs are rows")
        };
        assert_eq!(shape, &[n, 6]);
        for (k, &i) in batch.indices.iter().enumerate() {
            for (j, saw) in saw_missing.iter_mut().enumerate() {
                let missing = train.samples[i].entries[j] == Entry::Missing;
                assert_eq!(batch.available[j][k], !missing);
                *saw |= missing;
            }
            match &train.samples[i].entries[1] {
                Entry::Values(v) => {
                    for c in 0..3 {
                        // The indicator says whether the cell was imputed (with the median).
                        assert_eq!(values[k * 6 + 3 + c], v[c].is_none() as u8 as f32);
                        if v[c].is_none() {
                            let imputed = (labs.median[c] - labs.mean[c]) / labs.std[c];
                            assert!((values[k * 6 + c] as f64 - imputed).abs() < 1e-6);
                        }
                    }
                }
                _ => assert!(values[k * 6..(k + 1) * 6].iter().all(|&v| v == 0.0)),
            }
        }
    }
    assert_eq!(
        saw_missing, [true; 4],
        "the cohort has missing entries of every kind"
    );
}

const TOML: &str = r#"
manifest = "m.csv"
labels = ["no", "yes"]
[[attribute]]
name = "sex"
groups = ["f", "m"]
[[modality]]
name = "xray"
type = "image"
[[modality]]
name = "labs"
type = "tabular"
columns = ["a", "b"]
"#;

/// Writes a manifest from rows of (id, split, label, sex, xray, a, b), with one real image.
fn write(name: &str, toml: &str, rows: &[[&str; 7]]) -> PathBuf {
    let dir = folder(name);
    std::fs::write(dir.join("manifest.toml"), toml).unwrap();
    image::RgbImage::new(4, 4).save(dir.join("x.png")).unwrap();
    let mut w = csv::Writer::from_path(dir.join("m.csv")).unwrap();
    w.write_record(["id", "split", "label", "sex", "xray", "a", "b"])
        .unwrap();
    for row in rows {
        w.write_record(row).unwrap();
    }
    w.flush().unwrap();
    dir
}

const GOOD: [[&str; 7]; 3] = [
    ["1", "train", "yes", "f", "x.png", "1.5", "2"],
    ["2", "val", "no", "m", "x.png", "", "3"],
    ["3", "test", "no", "", "", "2", ""],
];

fn problems(dir: &Path) -> Vec<String> {
    match open(dir) {
        Err(DataError::Manifest { problems, .. }) => problems,
        Err(e) => panic!("expected manifest problems, got: {e}"),
        Ok(_) => panic!("expected manifest problems, the manifest opened"),
    }
}

#[test]
fn a_good_small_manifest_opens() {
    let index = open(&write("good", TOML, &GOOD)).unwrap();
    let test = index.split(Split::Test).unwrap();
    assert_eq!(test.samples[0].codes, [-1]);
    assert_eq!(test.samples[0].entries[0], Entry::Missing);
    assert_eq!(
        test.samples[0].entries[1],
        Entry::Values(vec![Some(2.0), None])
    );
}

#[test]
fn jsonl_manifests_read_like_csv() {
    let dir = folder("jsonl");
    std::fs::write(dir.join("manifest.toml"), TOML.replace("m.csv", "m.jsonl")).unwrap();
    image::RgbImage::new(4, 4).save(dir.join("x.png")).unwrap();
    std::fs::write(
        dir.join("m.jsonl"),
        r#"{"id": 1, "split": "train", "label": "yes", "sex": "f", "xray": "x.png", "a": 1.5, "b": 2}
{"id": 2, "split": "val", "label": "no", "sex": "m", "xray": "x.png", "a": null, "b": 3}
{"id": 3, "split": "test", "label": "bogus", "sex": null, "xray": null, "a": 2}
"#,
    )
    .unwrap();
    let problems = problems(&dir);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("row 3 (line 3), column 'label': label 'bogus'"),
        "{problems:?}"
    );
}

#[test]
fn every_problem_is_named_by_row_and_column_at_once() {
    let rows = [
        ["1", "tran", "yes", "f", "x.png", "1", "2"],
        ["2", "val", "maybe", "m", "missing.png", "1", "2"],
        ["3", "test", "no", "x", "gone.png", "one", "2"],
        ["4", "val", "no", "f", "", "", ""],
    ];
    let dir = write("many", TOML, &rows);
    let problems = problems(&dir);
    let expected = [
        "row 1 (line 2), column 'split': unknown split 'tran'; expected train, val or test",
        "row 2 (line 3), column 'label': label 'maybe' is not one of the declared labels (no, yes)",
        &format!(
            "row 2 (line 3), column 'xray': no such file {}",
            dir.join("missing.png").display()
        ),
        "row 3 (line 4), column 'sex': group 'x' is not declared for attribute 'sex'",
        &format!(
            "row 3 (line 4), column 'xray': no such file {}",
            dir.join("gone.png").display()
        ),
        "row 3 (line 4), column 'a': 'one' is not a finite number",
        "row 4 (line 5): no modality has data",
    ];
    for e in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(e)),
            "missing '{e}' in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    // The error names the manifest and counts the problems.
    let message = open(&dir).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: 7 problems:", dir.join("m.csv").display())),
        "{message}"
    );
    // The same lines with Windows line endings (and a quoted field spanning two lines).
    let csv = std::fs::read_to_string(dir.join("m.csv")).unwrap();
    let crlf = csv
        .replacen("1,tran,", "\"1\r\n\",tran,", 1)
        .replace('\n', "\r\n");
    std::fs::write(dir.join("m.csv"), crlf.replace("\r\r\n", "\r\n")).unwrap();
    let windows = self::problems(&dir);
    assert!(
        windows
            .iter()
            .any(|p| p.starts_with("row 4 (line 6): no modality has data")),
        "{windows:#?}"
    );
}

#[test]
fn a_modality_or_column_without_training_data_is_refused() {
    let rows = [
        ["1", "train", "yes", "f", "", "1", ""],
        ["2", "train", "no", "m", "", "2", ""],
        ["3", "val", "no", "m", "x.png", "1", "2"],
        ["4", "test", "no", "f", "x.png", "1", "2"],
    ];
    let problems = problems(&write("no-train", TOML, &rows));
    assert_eq!(
        problems,
        [
            "modality 'xray': no row of the train split has data for it",
            "column 'b' (modality 'labs'): no value in the train split, so no median or scale can be fitted",
        ]
    );
}

#[test]
fn a_split_without_rows_is_refused() {
    let problems = problems(&write("no-val", TOML, &[GOOD[0], GOOD[2]]));
    assert_eq!(
        problems,
        ["column 'split': no row is in the val split; train, val and test each need rows"]
    );
}

#[test]
fn the_toml_is_checked_before_the_rows() {
    let bad = TOML
        .replace("type = \"image\"", "type = \"picture\"")
        .replace("groups = [\"f\", \"m\"]", "groups = [\"f\"]");
    let found = problems(&write("bad-toml", &bad, &GOOD));
    assert_eq!(
        found,
        [
            "attribute 'sex': 1 group(s) declared; fairness needs at least 2",
            "modality 'xray': type 'picture'; expected image, volume, text, text_file or tabular",
        ]
    );
    // A column the TOML names must be in the manifest.
    let found = problems(&write("no-column", &TOML.replace("\"b\"", "\"c\""), &GOOD));
    assert_eq!(found, ["modality 'labs': no column 'c' in the manifest"]);
    // Unknown TOML keys are refused by serde, naming the key.
    let message = open(&write(
        "typo",
        &format!("{TOML}\nlabel_column = \"y\"\n"),
        &GOOD,
    ))
    .unwrap_err()
    .to_string();
    assert!(message.contains("label_column"), "{message}");
}

#[test]
fn jpeg_images_and_npz_volumes_load() {
    let dir = folder("kinds");
    image::RgbImage::from_pixel(9, 7, image::Rgb([200, 100, 50]))
        .save(dir.join("x.jpg"))
        .unwrap();
    let volume = |value: f32| multifair_data::NpyArray {
        shape: vec![4, 5, 5],
        data: multifair_data::ArrayData::F32((0..100).map(|i| value + i as f32).collect()),
    };
    multifair_data::write_npz(&dir.join("one.npz"), &[("v", &volume(0.0))], false).unwrap();
    multifair_data::write_npz(
        &dir.join("two.npz"),
        &[("a", &volume(0.0)), ("b", &volume(1.0))],
        true,
    )
    .unwrap();
    let toml = |key: &str| {
        format!(
            "manifest = \"m.csv\"\nlabels = [0, 1]\n[[attribute]]\nname = \"sex\"\ngroups = [\"f\", \"m\"]\n\
             [[modality]]\nname = \"photo\"\ntype = \"image\"\n\
             [[modality]]\nname = \"scan\"\ntype = \"volume\"\n{key}"
        )
    };
    let rows = "id,split,label,sex,photo,scan\n1,train,1,f,x.jpg,one.npz\n2,val,0,m,x.jpg,two.npz\n3,test,0,m,,one.npz\n";
    std::fs::write(dir.join("m.csv"), rows).unwrap();
    let load = |toml: String, row: usize| {
        std::fs::write(dir.join("manifest.toml"), toml).unwrap();
        let index = open(&dir).unwrap();
        let split = &index.splits[row];
        let loader = Loader::new(&index.schema, split, LoaderConfig::new(1, 6, 2), None).unwrap();
        loader.load(0, 0)
    };
    let batch = load(toml(""), 0).unwrap();
    let ModalityBatch::Float { shape, values } = &batch.modalities[0].1 else {
        panic!("pixels")
    };
    assert_eq!(shape, &[1, 3, 6, 6]);
    // A flat colour: each channel is its own constant after ImageNet normalisation (JPEG
    // rounding aside), red above blue.
    assert!(values[0] > values[36 * 2] + 1.0, "{values:?}");
    let ModalityBatch::Float { shape, .. } = &batch.modalities[1].1 else {
        panic!("volume")
    };
    assert_eq!(shape, &[1, 2, 6, 6]);
    // Two arrays and no `key`: the error names the file and the arrays.
    let err = load(toml(""), 1).unwrap_err().to_string();
    assert!(
        err.starts_with(&dir.join("two.npz").display().to_string())
            && err.contains("the npz holds 2 arrays (a, b); name the volume's with `key`"),
        "{err}"
    );
    assert!(load(toml("key = \"b\"\n"), 1).is_ok());
    // The test row has no photo: unavailable, zeros.
    let batch = load(toml(""), 2).unwrap();
    assert_eq!(batch.available[0], [false]);
    assert_eq!(batch.available[1], [true]);
}

#[test]
fn the_shipped_example_is_what_the_generator_writes() {
    let dir = folder("shipped");
    generate(&CohortConfig::new(0), &dir).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/examples/skin-cohort");
    for file in ["manifest.toml", "manifest.csv"] {
        let read = |d: &Path| std::fs::read_to_string(d.join(file)).unwrap();
        assert_eq!(read(&dir), read(&shipped), "{file}");
    }
    for photo in ["photos/p0000.png", "photos/p0123.png", "photos/p0279.png"] {
        let pixels = |d: &Path| image::open(d.join(photo)).unwrap().to_rgb8().into_raw();
        assert_eq!(pixels(&dir), pixels(&shipped), "{photo}");
    }
}

#[test]
fn a_value_both_unknown_and_a_declared_group_is_refused() {
    let toml = TOML.replace(
        "groups = [\"f\", \"m\"]",
        "groups = [\"f\", \"m\"]\nunknown = [\"m\", \"?\"]",
    );
    let found = problems(&write("unknown-group", &toml, &GOOD));
    assert!(
        found.iter().any(|p| p == "attribute 'sex': 'm' is listed as unknown and declared as a group; it can be only one"),
        "{found:?}"
    );
}

#[test]
fn duplicate_columns_and_keys_are_refused_not_first_wins() {
    let dir = write("dup-column", TOML, &GOOD);
    let text = std::fs::read_to_string(dir.join("m.csv")).unwrap();
    std::fs::write(
        dir.join("m.csv"),
        text.replacen(
            "id,split,label,sex,xray,a,b",
            "id,split,label,sex,xray,a,a",
            1,
        ),
    )
    .unwrap();
    let message = open(&dir).unwrap_err().to_string();
    assert!(
        message.contains("header: column 'a' appears twice"),
        "{message}"
    );

    let dir = folder("dup-key");
    std::fs::write(dir.join("manifest.toml"), TOML.replace("m.csv", "m.jsonl")).unwrap();
    std::fs::write(
        dir.join("m.jsonl"),
        "{\"id\": \"1\", \"split\": \"train\", \"label\": \"yes\", \"sex\": \"f\", \"sex\": \"m\", \"a\": 1}\n",
    )
    .unwrap();
    let message = open(&dir).unwrap_err().to_string();
    assert!(
        message.contains("line 1: key 'sex' appears twice"),
        "{message}"
    );
}

#[test]
fn paths_that_leave_the_folder_are_refused_unless_allowed() {
    let outside = folder("outside-target");
    image::RgbImage::new(4, 4)
        .save(outside.join("y.png"))
        .unwrap();
    let mut rows = GOOD;
    rows[0][4] = "../outside-target/y.png";
    let absolute = outside.join("y.png").display().to_string();
    rows[1][4] = &absolute;
    let dir = write("outside", TOML, &rows);
    let found = problems(&dir);
    for (row, path) in [(1, "../outside-target/y.png"), (2, absolute.as_str())] {
        let want = format!(
            "row {row} (line {}), column 'xray': '{path}' leaves the manifest's folder",
            row + 1
        );
        assert!(
            found.iter().any(|p| p.starts_with(&want)),
            "{want}: {found:?}"
        );
    }
    // A link out of the folder is caught too.
    #[cfg(unix)]
    {
        let mut rows = GOOD;
        rows[0][4] = "link.png";
        let dir = write("outside-link", TOML, &rows);
        std::os::unix::fs::symlink(outside.join("y.png"), dir.join("link.png")).unwrap();
        assert!(
            problems(&dir)
                .iter()
                .any(|p| p.contains("'link.png' leaves the manifest's folder"))
        );
    }
    let dir = write(
        "outside-allowed",
        &format!("allow_outside = true\n{TOML}"),
        &rows,
    );
    open(&dir).unwrap();
}

#[test]
fn a_huge_field_is_quoted_cut() {
    let mut rows = GOOD;
    let huge = "z".repeat(100_000);
    rows[0][1] = &huge;
    let found = problems(&write("huge-field", TOML, &rows));
    let split = found.iter().find(|p| p.contains("unknown split")).unwrap();
    assert!(
        split.len() < 600 && split.contains("... (100000 bytes)"),
        "{}",
        split.len()
    );
}
