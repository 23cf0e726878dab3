//! Data for MultiFair: a pickle-free npz reader, the FairVision / FairVLMed / Harvard-GF
//! adapters, manifests for any other multimodal dataset, preprocessing, batching, and the
//! synthetic benchmark written in the real formats.

pub mod npy;
pub mod npz;

pub use npy::{ArrayData, Dtype, NpyArray, NpyError, NpyHeader};
pub use npz::{Npz, NpzError, NpzErrorKind, write_npz};

pub mod datasets;
pub use datasets::{
    AttributeSpec, BadFilePolicy, DataError, DatasetIndex, DatasetKind, Entry, ModalityKind,
    ModalitySpec, SampleRecord, Schema, Split, SplitIndex, SplitSummary,
};

pub mod cohort;
pub mod manifest;

pub mod loader;
pub mod preprocess;
pub mod synthetic;
pub mod tokenizer;

/// `text` as an error message quotes it: cut to a few hundred bytes (a damaged file can hold a
/// gigabyte in one field).
pub fn shown(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let cut = (0..=MAX)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}... ({} bytes)", &text[..cut], text.len())
}

/// The golden ratio's 64-bit constant: the step between SplitMix64's states.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: every bit of `z` reaches every bit of the result, so nearby
/// inputs (seeds, epochs, indices) give unrelated streams. The one mixer of seeds in the
/// workspace; callers combine their inputs into `z`.
pub fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Checks that `name` can be one folder name under an output folder: 1 to 128 bytes of
/// letters, digits and `-_.+=,@`, not starting with a dot — so no separator, no `..`, no
/// absolute path, no hidden or control character. `what` names the field in the error.
pub fn path_component(what: &str, name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || "-_.+=,@".contains(c);
    if name.is_empty() || name.len() > 128 || name.starts_with('.') || !name.chars().all(allowed) {
        return Err(format!(
            "{what} '{}' cannot name a folder: use 1 to 128 letters, digits or -_.+=,@, not starting with a dot",
            shown(&name.escape_debug().to_string())
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_stay_one_folder_deep() {
        for good in [
            "erm",
            "multifair_ref",
            "seed-0",
            "race",
            "α-β",
            "a.b",
            "x=1,y@2+3",
        ] {
            assert_eq!(path_component("label", good), Ok(()), "{good}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            ".",
            "..",
            "../../escaped",
            "/abs",
            "a/b",
            "a\\b",
            ".hidden",
            "a b",
            "a\nb",
            "a\0b",
            &long,
        ] {
            let e = path_component("label", bad).unwrap_err();
            assert!(
                e.starts_with("label '") && e.contains("cannot name a folder"),
                "{bad}: {e}"
            );
        }
    }
}
