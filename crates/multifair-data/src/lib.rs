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
