//! Hostile and damaged files: each is refused with the file and the field named, never a panic,
//! never silently wrong data. Files are made here, from valid ones.

use std::path::{Path, PathBuf};

use multifair_data::datasets::read_record;
use multifair_data::npy::{ArrayData, NpyArray};
use multifair_data::npz::{Npz, write_npz};
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind};

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hostile")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn scalar(v: i64) -> NpyArray {
    NpyArray {
        shape: vec![],
        data: ArrayData::I64(vec![v]),
    }
}

/// A FairVision sample with `race` = `race_code`.
fn sample(path: &Path, race_code: i64, compressed: bool) {
    let oct = NpyArray {
        shape: vec![4, 6, 6],
        data: ArrayData::U8((0..144).map(|i| i as u8).collect()),
    };
    let slo = NpyArray {
        shape: vec![6, 6],
        data: ArrayData::U8(vec![7; 36]),
    };
    let (label, race, zero) = (scalar(1), scalar(race_code), scalar(0));
    let arrays = [
        ("oct_bscans", &oct),
        ("slo_fundus", &slo),
        ("glaucoma", &label),
        ("race", &race),
        ("male", &zero),
        ("hispanic", &zero),
        ("language", &zero),
    ];
    write_npz(path, &arrays, compressed).unwrap();
}

#[test]
fn group_codes_out_of_range_are_refused_naming_file_and_key() {
    let dir = folder("codes");
    for code in [1i64 << 62, 1 << 31, 256, -2] {
        let path = dir.join(format!("data_{code}.npz"));
        sample(&path, code, true);
        let message = read_record(DatasetKind::FairVision, &path, None)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&format!("{}", path.display()))
                && message.contains("key 'race'")
                && message.contains(&format!(
                    "code {code}; codes are 0..=255, or -1 for unknown"
                )),
            "{message}"
        );
    }
}

#[test]
fn corrupted_pixels_fail_the_zip_crc_instead_of_training() {
    let dir = folder("crc");
    for compressed in [false, true] {
        let path = dir.join(format!("data_{compressed}.npz"));
        sample(&path, 0, compressed);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip one byte inside the OCT member's data (the first member, after its npy header).
        let at = bytes
            .windows(6)
            .position(|w| w == b"\x93NUMPY")
            .map(|p| p + 200);
        let at = match (compressed, at) {
            (false, Some(at)) => at,
            // Deflated: a byte in the middle of the first member's stream.
            _ => 60,
        };
        bytes[at] ^= 0x5a;
        std::fs::write(&path, &bytes).unwrap();
        let read = Npz::open(&path).and_then(|mut npz| npz.read_rows("oct_bscans", &[0, 2]));
        let message = read.map(|_| ()).unwrap_err().to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("oct_bscans"),
            "{message}"
        );
    }
}

#[test]
fn a_header_claiming_a_trillion_elements_is_refused_before_allocating() {
    let dir = folder("huge-header");
    let path = dir.join("data_huge.npz");
    sample(&path, 0, false);
    // Rewrite the OCT member's shape in place: same header length, 10^12 elements.
    let mut bytes = std::fs::read(&path).unwrap();
    let text = b"(4, 6, 6)";
    let at = bytes.windows(text.len()).position(|w| w == text).unwrap();
    let huge = b"(1000000, 1000000)";
    let mut patched = bytes[..at].to_vec();
    patched.extend_from_slice(&huge[..]);
    // Keep the header's length: take the extra bytes out of its space padding.
    let rest = &bytes[at + text.len()..];
    let pad = huge.len() - text.len();
    let spaces = rest.iter().position(|&b| b == b'}').unwrap() + 1;
    patched.extend_from_slice(&rest[..spaces]);
    patched.extend_from_slice(&rest[spaces + pad..]);
    bytes = patched;
    std::fs::write(&path, &bytes).unwrap();
    let mut npz = Npz::open(&path).unwrap();
    for result in [
        npz.read("oct_bscans").map(|_| ()),
        npz.read_rows("oct_bscans", &[0, 999_999]).map(|_| ()),
    ] {
        let message = result.unwrap_err().to_string();
        assert!(message.contains("oct_bscans"), "{message}");
    }
}

#[test]
fn notes_csv_with_swapped_columns_or_duplicate_rows_is_refused() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fairvlmed");
    for (name, csv, want) in [
        (
            "swapped",
            "filename,gpt4_summary,gpt4_summary_len\ndata_00009.npz,\"cupping\",12\n",
            "row 1: column 2 holds the number '12', not a note",
        ),
        (
            "duplicate",
            "filename,len,gpt4_summary\ndata_00009.npz,x,one\ndata_00010.npz,x,two\ndata_00009.npz,x,three\n",
            "rows 1 and 3: 'data_00009.npz' appears twice",
        ),
    ] {
        let dir = folder(name);
        for split in ["Training", "Validation", "Testing"] {
            std::fs::create_dir_all(dir.join(split)).unwrap();
            for entry in std::fs::read_dir(source.join(split)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), dir.join(split).join(entry.file_name())).unwrap();
            }
        }
        std::fs::write(dir.join("gpt-4_summarized_notes.csv"), csv).unwrap();
        let message = DatasetIndex::open(DatasetKind::FairVlmed, &dir, BadFilePolicy::Fail)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("gpt-4_summarized_notes.csv") && message.contains(want),
            "{message}"
        );
    }
}
