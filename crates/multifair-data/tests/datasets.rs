//! The dataset adapters on fixtures in the real layouts, written by numpy.

use std::path::PathBuf;

use multifair_data::datasets::read_record;
use multifair_data::{BadFilePolicy, DataError, DatasetIndex, DatasetKind, Split};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

#[test]
fn fairvision_capitalised_folders_string_race_and_unknowns() {
    let index = DatasetIndex::open(
        DatasetKind::FairVision,
        &fixture("fairvision"),
        BadFilePolicy::Fail,
    )
    .unwrap();
    let summary = index.summary();
    assert_eq!(summary[&Split::Train].n, 4);
    assert_eq!(summary[&Split::Val].n, 2);
    assert_eq!(summary[&Split::Test].n, 3);
    // Files 0..3: labels 0,1,0,1; race 0, 'White or Caucasian' -> 2, 2, 0.
    let train = &summary[&Split::Train];
    assert_eq!(train.positives, 2);
    let race = &train.attributes["race"];
    assert_eq!((race["0"], race["2"]), (2, 2));
    assert_eq!(train.attributes["ethnicity"]["-1"], 1);
    assert_eq!(train.attributes["ethnicity"]["0"], 3);
    let first = &index.split(Split::Train).unwrap().samples[1];
    assert_eq!(first.id, "data_00001");
    assert_eq!(first.codes, vec![2, 0, 0, 0]);
}

#[test]
fn fairvlmed_notes_from_either_csv_spelling_before_the_npz() {
    let index = DatasetIndex::open(
        DatasetKind::FairVlmed,
        &fixture("fairvlmed"),
        BadFilePolicy::Fail,
    )
    .unwrap();
    let test = index.split(Split::Test).unwrap();
    assert!(test.folder.ends_with("Testing"));
    let train = &index.split(Split::Train).unwrap().samples;
    // data_00009 has its note only in the CSV; data_00010 in both, and the CSV's comes
    // first, as the original reads them.
    assert_eq!(
        train[0].note.as_deref(),
        Some("patient 9: optic disc cupping, visual field loss")
    );
    assert_eq!(
        train[1].note.as_deref(),
        Some("patient 10: optic disc cupping, visual field loss")
    );
    assert_eq!(
        index.summary()[&Split::Train].attributes["ethnicity"]["-1"],
        1
    );
}

/// The original reads `data_summary.csv`'s named columns before the npz: its note replaces
/// the npz's; a `nan` note counts as none (the npz's is read); a file with neither is refused.
#[test]
fn a_data_summary_note_comes_before_the_npz_note() {
    let dir = std::env::temp_dir().join(format!("multifair-summary-{}", std::process::id()));
    for split in ["Training", "Validation", "Testing"] {
        std::fs::create_dir_all(dir.join(split)).unwrap();
        for entry in std::fs::read_dir(fixture("fairvlmed").join(split)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(split).join(entry.file_name())).unwrap();
        }
    }
    // 9, 11 and 13 have no note in their npz; 10, 12 and 14 have one.
    let rows = "data_00009,Nine from the summary\ndata_00010.npz,Ten from the summary\n\
                data_00011,Eleven\ndata_00012,nan\ndata_00013,Thirteen\n";
    std::fs::write(
        dir.join("data_summary.csv"),
        format!("age,filename,note\n{}", rows.replace("data", "70,data")),
    )
    .unwrap();
    let index = DatasetIndex::open(DatasetKind::FairVlmed, &dir, BadFilePolicy::Fail).unwrap();
    let note = |split, id: &str| {
        let samples = &index.split(split).unwrap().samples;
        samples.iter().find(|s| s.id == id).unwrap().note.clone()
    };
    assert_eq!(
        note(Split::Train, "data_00010").as_deref(),
        Some("Ten from the summary")
    );
    assert_eq!(
        note(Split::Train, "data_00009").as_deref(),
        Some("Nine from the summary")
    );
    assert_eq!(note(Split::Val, "data_00012"), None, "nan: the npz's note");
    // Without a row for 13, whose npz has no note, the file is refused by name.
    std::fs::write(
        dir.join("data_summary.csv"),
        format!(
            "filename,note\n{}",
            &rows[..rows.find("data_00013").unwrap()]
        ),
    )
    .unwrap();
    let e = DatasetIndex::open(DatasetKind::FairVlmed, &dir, BadFilePolicy::Fail).unwrap_err();
    assert!(
        e.to_string().contains("data_00013") && e.to_string().contains("no note"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_original_note_rule_replaces_short_notes() {
    use multifair_data::loader::original_note;
    assert_eq!(original_note("  Mild CDR, IOP 21 "), "mild cdr, iop 21");
    assert_eq!(
        original_note(" ok. "),
        "no significant clinical findings reported"
    );
    // Python's len counts code points: 9 accented letters are short.
    assert_eq!(
        original_note("ééééééééé"),
        "no significant clinical findings reported"
    );
    assert_eq!(original_note("Éééééééééé"), "éééééééééé");
}

#[test]
fn harvard_gf_has_no_val_split_and_mixed_race_types() {
    let index = DatasetIndex::open(
        DatasetKind::HarvardGf,
        &fixture("harvard-gf"),
        BadFilePolicy::Fail,
    )
    .unwrap();
    assert!(index.split(Split::Val).is_none());
    let codes: Vec<i64> = index
        .split(Split::Train)
        .unwrap()
        .samples
        .iter()
        .map(|s| s.codes[0])
        .collect();
    // data_00015 stores 'Asian', data_00016 the code 2.
    assert_eq!(codes, vec![0, 2]);
}

#[test]
fn missing_split_folder_is_a_layout_error() {
    let err = DatasetIndex::open(
        DatasetKind::FairVision,
        &fixture("harvard-gf"),
        BadFilePolicy::Fail,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.ends_with("no val split: expected a folder named val or Validation"),
        "{err}"
    );
}

/// (fixture, text the error must contain). Mirrors the table in datasets/README.md.
const BAD: [(&str, &str); 10] = [
    ("truncated.npz", "not a readable zip archive"),
    ("missing_race.npz", "key 'race': missing (keys present:"),
    (
        "object_array.npz",
        "key 'race': dtype '|O' holds pickled Python objects; pickled data is not loaded",
    ),
    (
        "wrong_dtype.npz",
        "key 'oct_bscans': holds text; expected pixel values",
    ),
    (
        "empty_oct.npz",
        "key 'oct_bscans': has shape [0]; expected [D,H,W] with D > 0 (pass --skip-bad",
    ),
    (
        "empty_oct_depth.npz",
        "key 'oct_bscans': has shape [0, 6, 6]; expected [D,H,W] with D > 0",
    ),
    ("label_2.npz", "key 'glaucoma': label 2; expected 0 or 1"),
    (
        "unknown_race_string.npz",
        "key 'race': race 'Martian' is not one of",
    ),
    // Indexing reads headers only: NaN pixels and a member cut short fail when the sample is
    // loaded (see the loader tests).
    ("nan_pixels.npz", ""),
    ("short_member.npz", ""),
];

#[test]
fn every_malformed_file_names_file_and_key() {
    for (name, expected) in BAD {
        let path = fixture(&format!("bad/{name}"));
        let result = read_record(DatasetKind::FairVision, &path, None);
        if expected.is_empty() {
            assert!(result.is_ok(), "{name}: {result:?}");
            continue;
        }
        let message = result.expect_err(name).to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{name}: {message}"
        );
        assert!(message.contains(expected), "{name}: {message}");
    }
    assert!(read_record(DatasetKind::FairVision, &fixture("bad/good.npz"), None).is_ok());
}

#[test]
fn skip_bad_counts_instead_of_failing() {
    // A copy of the bad files laid out as a FairVision train split.
    let root = std::env::temp_dir().join(format!("multifair-skip-{}", std::process::id()));
    for split in ["train", "val", "test"] {
        std::fs::create_dir_all(root.join(split)).unwrap();
    }
    for (name, _) in BAD {
        std::fs::copy(
            fixture(&format!("bad/{name}")),
            root.join("train").join(name),
        )
        .unwrap();
    }
    for split in ["val", "test"] {
        std::fs::copy(fixture("bad/good.npz"), root.join(split).join("good.npz")).unwrap();
    }
    let failed = DatasetIndex::open(DatasetKind::FairVision, &root, BadFilePolicy::Fail);
    assert!(matches!(
        failed,
        Err(DataError::Npz(_) | DataError::Value { .. })
    ));
    let index = DatasetIndex::open(DatasetKind::FairVision, &root, BadFilePolicy::Skip).unwrap();
    let train = index.summary()[&Split::Train].clone();
    assert_eq!(train.skipped, BAD.len() - 2);
    assert_eq!(train.n, 2);
    std::fs::remove_dir_all(&root).unwrap();
}
