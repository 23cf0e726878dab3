//! Seeded mutation fuzzing of the readers: valid npy, npz, notes-CSV and manifest files are
//! damaged at random (bit flips, overwritten bytes, truncation, inserted bytes, huge numbers) and
//! read; every result must be a value or an error, never a panic or an abort. Bounded in cases
//! and in time so that it fits CI; `MULTIFAIR_FUZZ_CASES` raises the count for longer runs.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multifair_data::npy::{ArrayData, NpyArray, NpyHeader};
use multifair_data::npz::{Npz, write_npz};
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TIME: Duration = Duration::from_secs(20);

fn cases() -> usize {
    std::env::var("MULTIFAIR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

fn folder(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One random damage to `bytes`.
fn mutate(bytes: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = |rng: &mut ChaCha8Rng, len: usize| rng.random_range(0..len.max(1));
    for _ in 0..rng.random_range(1..4) {
        if out.is_empty() {
            out.push(0);
        }
        match rng.random_range(0..6) {
            0 => {
                let i = at(rng, out.len());
                out[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = at(rng, out.len());
                out[i] = rng.random();
            }
            2 => out.truncate(at(rng, out.len())),
            3 => {
                let i = at(rng, out.len());
                let junk: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                out.splice(i..i, junk);
            }
            4 => {
                // A digit run replaced by a huge number (sizes, codes, shapes).
                if let Some(i) = out
                    .iter()
                    .position(|b| b.is_ascii_digit())
                    .map(|p| p + at(rng, 4))
                {
                    let i = i.min(out.len());
                    out.splice(i..i, b"99999999999999999999".iter().copied());
                }
            }
            _ => {
                let (i, j) = (at(rng, out.len()), at(rng, out.len()));
                let chunk = out[i.min(j)..i.max(j)].to_vec();
                out.extend(chunk);
            }
        }
    }
    out
}

/// Runs `read` on `cases()` mutations of `seed_bytes`; a panic fails the test with the case.
fn fuzz(name: &str, seed_bytes: &[u8], mut read: impl FnMut(&[u8])) {
    let mut rng = ChaCha8Rng::seed_from_u64(name.len() as u64 * 7919);
    let started = Instant::now();
    let mut done = 0;
    for case in 0..cases() {
        if started.elapsed() > TIME {
            break;
        }
        let bytes = mutate(seed_bytes, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| read(&bytes))).is_err() {
            let path =
                Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{name}-{case}.bin"));
            std::fs::write(&path, &bytes).unwrap();
            panic!(
                "{name}: case {case} panicked; the input is in {}",
                path.display()
            );
        }
        done += 1;
    }
    assert!(done >= 50, "{name}: only {done} cases in {TIME:?}");
}

fn arrays() -> Vec<(&'static str, NpyArray)> {
    vec![
        (
            "oct_bscans",
            NpyArray {
                shape: vec![4, 6, 6],
                data: ArrayData::U8((0..144).map(|i| i as u8).collect()),
            },
        ),
        (
            "slo_fundus",
            NpyArray {
                shape: vec![6, 6],
                data: ArrayData::F32(vec![0.5; 36]),
            },
        ),
        (
            "glaucoma",
            NpyArray {
                shape: vec![],
                data: ArrayData::I64(vec![1]),
            },
        ),
        (
            "race",
            NpyArray {
                shape: vec![],
                data: ArrayData::I64(vec![2]),
            },
        ),
        (
            "male",
            NpyArray {
                shape: vec![],
                data: ArrayData::Bool(vec![true]),
            },
        ),
        (
            "hispanic",
            NpyArray {
                shape: vec![],
                data: ArrayData::I64(vec![0]),
            },
        ),
        (
            "language",
            NpyArray {
                shape: vec![],
                data: ArrayData::I64(vec![-1]),
            },
        ),
    ]
}

#[test]
fn npy_reader_never_panics() {
    for (name, array) in arrays().iter().take(2) {
        fuzz(&format!("npy-{name}"), &array.to_bytes(), |bytes| {
            let _ = NpyHeader::parse(bytes);
            let _ = NpyArray::parse(bytes).map(|a| a.to_f32());
        });
    }
}

#[test]
fn npz_reader_never_panics() {
    let dir = folder("npz");
    for compressed in [false, true] {
        let path = dir.join(format!("data_{compressed}.npz"));
        let arrays = arrays();
        let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(k, a)| (*k, a)).collect();
        write_npz(&path, &refs, compressed).unwrap();
        let valid = std::fs::read(&path).unwrap();
        fuzz(&format!("npz-{compressed}"), &valid, |bytes| {
            let Ok(mut npz) = Npz::from_reader(Path::new("fuzz.npz"), Cursor::new(bytes.to_vec()))
            else {
                return;
            };
            for key in npz.keys() {
                let _ = npz.header(&key);
                let _ = npz.read(&key);
                let _ = npz.read_rows(&key, &[0, 3, 1]);
            }
        });
        // The same through the dataset reader, which checks every field.
        fuzz(&format!("record-{compressed}"), &valid, |bytes| {
            let path = dir.join("case.npz");
            std::fs::write(&path, bytes).unwrap();
            let _ = multifair_data::datasets::read_record(DatasetKind::FairVision, &path, None);
        });
    }
}

#[test]
fn notes_csv_reader_never_panics() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fairvlmed");
    let dir = folder("notes");
    for split in ["Training", "Validation", "Testing"] {
        std::fs::create_dir_all(dir.join(split)).unwrap();
        for entry in std::fs::read_dir(source.join(split)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(split).join(entry.file_name())).unwrap();
        }
    }
    let valid = std::fs::read(source.join("gpt-4_summarized_notes.csv")).unwrap();
    fuzz("notes", &valid, |bytes| {
        std::fs::write(dir.join("gpt-4_summarized_notes.csv"), bytes).unwrap();
        let _ = DatasetIndex::open(DatasetKind::FairVlmed, &dir, BadFilePolicy::Fail);
    });
}

#[test]
fn manifest_reader_never_panics() {
    let dir = folder("manifest");
    multifair_data::cohort::generate(&multifair_data::cohort::CohortConfig::new(3), &dir).unwrap();
    let toml = std::fs::read(dir.join("manifest.toml")).unwrap();
    let csv = std::fs::read(dir.join("manifest.csv")).unwrap();
    fuzz("manifest-csv", &csv, |bytes| {
        std::fs::write(dir.join("manifest.csv"), bytes).unwrap();
        let _ = DatasetIndex::open(DatasetKind::Manifest, &dir, BadFilePolicy::Fail);
    });
    std::fs::write(dir.join("manifest.csv"), &csv).unwrap();
    fuzz("manifest-toml", &toml, |bytes| {
        std::fs::write(dir.join("manifest.toml"), bytes).unwrap();
        let _ = DatasetIndex::open(DatasetKind::Manifest, &dir, BadFilePolicy::Fail);
    });
}
