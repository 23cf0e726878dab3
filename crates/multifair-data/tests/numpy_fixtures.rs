//! Arrays written by numpy's own `np.savez`, `np.savez_compressed` and `write_array` (see
//! `fixtures/make_fixtures.py`) decode to the values numpy wrote.

use std::path::PathBuf;

use half::f16;
use multifair_data::{ArrayData, NpyArray, NpyError, Npz, NpzErrorKind};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

#[test]
fn savez_and_savez_compressed_decode_every_dtype() {
    for file in ["npy/savez.npz", "npy/savez_compressed.npz"] {
        let mut npz = Npz::open(&fixture(file)).unwrap();
        let mut read = |key: &str| npz.read(key).unwrap();
        let u8s = read("u8");
        assert_eq!(u8s.shape, vec![2, 3, 4]);
        assert_eq!(u8s.data, ArrayData::U8((0..24).collect()));
        assert_eq!(read("i8").data, ArrayData::I8((-3..3).collect()));
        assert_eq!(
            read("i16").data,
            ArrayData::I16(vec![-300, -200, -100, 0, 100, 200])
        );
        assert_eq!(
            read("u16").data,
            ArrayData::U16(vec![0, 10000, 20000, 30000, 40000, 50000])
        );
        assert_eq!(read("i32").data, ArrayData::I32((0..6).collect()));
        let i64s = read("i64");
        assert!(i64s.shape.is_empty());
        assert_eq!(i64s.scalar_i64().unwrap(), -1);
        assert_eq!(
            read("f16").data,
            ArrayData::F16((0..4).map(|i| f16::from_f32(i as f32 / 4.0)).collect())
        );
        assert_eq!(
            read("f32").data,
            ArrayData::F32((0..6).map(|i| i as f32 / 8.0).collect())
        );
        assert_eq!(
            read("f64").data,
            ArrayData::F64((0..6).map(|i| i as f64 / 3.0).collect())
        );
        assert_eq!(
            read("boolean").data,
            ArrayData::Bool(vec![true, false, true])
        );
        // Fortran order comes back in C order, as numpy indexes it.
        let fortran = read("fortran");
        assert_eq!(fortran.shape, vec![2, 3]);
        assert_eq!(
            fortran.data,
            ArrayData::F64((0..6).map(f64::from).collect())
        );
        assert_eq!(read("big_endian").data, ArrayData::I32(vec![0, 1, 2, 3]));
        assert_eq!(
            read("note").scalar_str().unwrap(),
            "Glaucoma suspect; cup-to-disc ratio 0.7, ëlevated IOP"
        );
        assert_eq!(
            read("race").scalar_str().unwrap(),
            "Black or African American"
        );
    }
}

#[test]
fn header_versions_one_to_three() {
    for version in 1..=3 {
        let bytes = std::fs::read(fixture(&format!("npy/v{version}.npy"))).unwrap();
        assert_eq!(bytes[6], version);
        let array = NpyArray::parse(&bytes).unwrap();
        assert_eq!(
            array.data,
            ArrayData::F64((0..6).map(|i| i as f64 / 3.0).collect())
        );
    }
}

#[test]
fn object_arrays_are_refused_without_unpickling() {
    let path = fixture("npy/object.npz");
    let err = Npz::open(&path).unwrap().read("notes").unwrap_err();
    assert!(matches!(err.kind, NpzErrorKind::Npy(NpyError::Pickled)));
    let message = err.to_string();
    assert!(
        message.contains("object.npz") && message.contains("key 'notes'"),
        "{message}"
    );
    assert!(message.contains("pickled data is not loaded"), "{message}");
}
