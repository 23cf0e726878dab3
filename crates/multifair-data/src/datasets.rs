//! The three datasets' on-disk layouts (docs/data-formats.md), indexed without loading images.
//!
//! Indexing reads each npz's scalars (label, attribute codes, note) and the headers of its image
//! arrays, so a bad file is found before training starts; pixels are read (and checked for NaN)
//! when a sample is loaded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::npz::{Npz, NpzError};

/// The code of an unknown attribute value; counted, never mapped to a group.
pub const UNKNOWN: i64 = -1;

/// The largest group code accepted (the datasets use 0..=4): a larger one is a damaged file, and
/// per-group state is sized by the largest code.
pub const MAX_GROUP_CODE: i64 = 255;

/// Label key of every dataset.
pub const LABEL_KEY: &str = "glaucoma";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// What an image array is, which fixes the shape it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModalityKind {
    /// A 2-D image [H, W] (SLO fundus, RNFLT map).
    Image,
    /// A 3-D volume [D, H, W], axis 0 the B-scan.
    Volume,
    /// A clinical note (0-d unicode in the npz, or a notes CSV).
    Text,
    /// A block of numeric columns of a manifest.
    Tabular,
}

impl ModalityKind {
    /// The name the model presets use for the encoder of this kind.
    pub fn name(self) -> &'static str {
        match self {
            ModalityKind::Image => "image",
            ModalityKind::Volume => "volume",
            ModalityKind::Text => "text",
            ModalityKind::Tabular => "tabular",
        }
    }
}

/// One modality of a dataset: its name in configs and the npz key it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modality {
    pub name: &'static str,
    pub key: &'static str,
    pub kind: ModalityKind,
}

/// One sensitive attribute: its name in configs and the npz key it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute {
    pub name: &'static str,
    pub key: &'static str,
}

/// Race is stored as a code or, in some releases, as one of these strings.
pub const RACE_NAMES: [(&str, i64); 5] = [
    ("Asian", 0),
    ("Black or African American", 1),
    ("Black", 1),
    ("White or Caucasian", 2),
    ("White", 2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    #[value(name = "fairvision")]
    #[serde(rename = "fairvision")]
    FairVision,
    #[value(name = "fairvlmed")]
    #[serde(rename = "fairvlmed")]
    FairVlmed,
    HarvardGf,
    /// Any dataset described by a manifest and its TOML (`datasets/manifest.md`).
    Manifest,
}

impl DatasetKind {
    pub const ALL: [DatasetKind; 4] = [
        DatasetKind::FairVision,
        DatasetKind::FairVlmed,
        DatasetKind::HarvardGf,
        DatasetKind::Manifest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::FairVision => "fairvision",
            DatasetKind::FairVlmed => "fairvlmed",
            DatasetKind::HarvardGf => "harvard-gf",
            DatasetKind::Manifest => "manifest",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, String> {
        DatasetKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown dataset '{name}'; available: fairvision, fairvlmed, harvard-gf, manifest"
                )
            })
    }

    /// Folder names accepted for each split, in the order they are tried.
    pub fn split_folders(self, split: Split) -> &'static [&'static str] {
        match (self, split) {
            (DatasetKind::FairVlmed, Split::Train) => &["Training", "train"],
            (DatasetKind::FairVlmed, Split::Val) => &["Validation", "val"],
            (DatasetKind::FairVlmed, Split::Test) => &["Test", "Testing", "test"],
            (DatasetKind::HarvardGf, Split::Train) => &["train", "Training"],
            // Harvard-GF ships train and test only; a val folder is used when present.
            (DatasetKind::HarvardGf, Split::Val) => &["val", "Validation"],
            (DatasetKind::HarvardGf, Split::Test) => &["test", "Test"],
            (DatasetKind::FairVision, Split::Train) => &["train", "Training"],
            (DatasetKind::FairVision, Split::Val) => &["val", "Validation"],
            (DatasetKind::FairVision, Split::Test) => &["test", "Test"],
            // A manifest names each row's split.
            (DatasetKind::Manifest, _) => &[],
        }
    }

    /// Whether a dataset must have this split.
    fn requires(self, split: Split) -> bool {
        !(self == DatasetKind::HarvardGf && split == Split::Val)
    }

    /// The built-in datasets' modalities (a manifest declares its own: [`Schema`]).
    pub fn modalities(self) -> &'static [Modality] {
        const SLO: Modality = Modality {
            name: "slo",
            key: "slo_fundus",
            kind: ModalityKind::Image,
        };
        const OCT: Modality = Modality {
            name: "oct",
            key: "oct_bscans",
            kind: ModalityKind::Volume,
        };
        match self {
            DatasetKind::FairVision => &[SLO, OCT],
            DatasetKind::FairVlmed => &[
                SLO,
                Modality {
                    name: "notes",
                    key: "note",
                    kind: ModalityKind::Text,
                },
            ],
            DatasetKind::HarvardGf => &[
                Modality {
                    name: "rnflt",
                    key: "rnflt",
                    kind: ModalityKind::Image,
                },
                OCT,
            ],
            DatasetKind::Manifest => &[],
        }
    }

    /// The built-in datasets' attributes (a manifest declares its own: [`Schema`]).
    pub fn attributes(self) -> &'static [Attribute] {
        const RACE: Attribute = Attribute {
            name: "race",
            key: "race",
        };
        const LANGUAGE: Attribute = Attribute {
            name: "language",
            key: "language",
        };
        const MALE: Attribute = Attribute {
            name: "gender",
            key: "male",
        };
        const GENDER: Attribute = Attribute {
            name: "gender",
            key: "gender",
        };
        const HISPANIC: Attribute = Attribute {
            name: "ethnicity",
            key: "hispanic",
        };
        const ETHNICITY: Attribute = Attribute {
            name: "ethnicity",
            key: "ethnicity",
        };
        match self {
            DatasetKind::FairVision => &[RACE, MALE, HISPANIC, LANGUAGE],
            DatasetKind::FairVlmed => &[RACE, GENDER, ETHNICITY, LANGUAGE],
            DatasetKind::HarvardGf => &[RACE, MALE, ETHNICITY, LANGUAGE],
            DatasetKind::Manifest => &[],
        }
    }

    /// Notes CSVs, tried in order; a note they hold comes before the npz's (the original reads
    /// `data_summary.csv`'s `note` column; FairVLMed's public release ships the others).
    fn notes_files(self) -> &'static [&'static str] {
        match self {
            DatasetKind::FairVlmed => &[
                "data_summary.csv",
                "gpt4_summarized_notes.csv",
                "gpt-4_summarized_notes.csv",
                "original_notes.csv",
            ],
            _ => &[],
        }
    }
}

/// One modality of an opened dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ModalitySpec {
    /// Its name in configs (`fundus_weights`, `multifair_attributes`, reports).
    pub name: String,
    /// Where it comes from: the npz key (built-in datasets, a manifest volume's `key`) or the
    /// manifest column.
    pub key: String,
    pub kind: ModalityKind,
    /// Tabular modalities: the standardisation fitted on the training split.
    pub tabular: Option<crate::manifest::Standardiser>,
}

/// One sensitive attribute of an opened dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeSpec {
    pub name: String,
    /// The npz key or manifest column it comes from.
    pub key: String,
    /// Group names by code, where the dataset declares them (manifests do).
    pub groups: Vec<String>,
}

/// What an opened dataset holds: its modalities, attributes and classes. The built-in datasets'
/// schemas are fixed; a manifest's comes from its TOML.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub modalities: Vec<ModalitySpec>,
    pub attributes: Vec<AttributeSpec>,
    /// Class names by label index (two for the glaucoma datasets).
    pub classes: Vec<String>,
}

impl Schema {
    /// The fixed schema of a built-in dataset.
    pub fn builtin(kind: DatasetKind) -> Schema {
        Schema {
            modalities: kind
                .modalities()
                .iter()
                .map(|m| ModalitySpec {
                    name: m.name.into(),
                    key: m.key.into(),
                    kind: m.kind,
                    tabular: None,
                })
                .collect(),
            attributes: kind
                .attributes()
                .iter()
                .map(|a| AttributeSpec {
                    name: a.name.into(),
                    key: a.key.into(),
                    groups: Vec::new(),
                })
                .collect(),
            classes: vec!["no glaucoma".into(), "glaucoma".into()],
        }
    }

    pub fn attribute(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|a| a.name == name)
    }

    pub fn has_text(&self) -> bool {
        self.modalities.iter().any(|m| m.kind == ModalityKind::Text)
    }
}

/// A manifest row's entry for one modality.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The row has no data for this modality.
    Missing,
    /// An image or volume file, or a text file.
    File(PathBuf),
    /// Text given in the manifest itself.
    Text(String),
    /// A tabular block's values, `None` where a cell is empty.
    Values(Vec<Option<f64>>),
}

/// What to do with a file that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadFilePolicy {
    /// Stop with the file's error.
    #[default]
    Fail,
    /// Skip it and count it in the split's summary (`--skip-bad`).
    Skip,
}

/// A dataset problem, naming the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Npz(#[from] NpzError),
    #[error("{}: key '{key}': {message}", file.display())]
    Value {
        file: PathBuf,
        key: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },
    /// Every problem found in a manifest, each naming its row and column.
    #[error("{}: {} problem{}:\n  {}", path.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" }, crate::manifest::list(problems))]
    Manifest {
        path: PathBuf,
        problems: Vec<String>,
    },
}

pub const SKIP_HINT: &str = "(pass --skip-bad to skip and count such files)";

/// One sample: where it is, its label (class index) and attribute codes (aligned with the
/// dataset's attributes), its note when the note lives outside the npz, and, for a manifest row,
/// one entry per modality.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRecord {
    /// The npz, or the manifest the row is in.
    pub path: PathBuf,
    pub id: String,
    pub label: u8,
    pub codes: Vec<i64>,
    pub note: Option<String>,
    /// Manifest rows: one entry per modality; empty for npz samples.
    pub entries: Vec<Entry>,
}

/// A split's usable samples and the files skipped under [`BadFilePolicy::Skip`].
#[derive(Debug, Clone)]
pub struct SplitIndex {
    pub split: Split,
    pub folder: PathBuf,
    pub samples: Vec<SampleRecord>,
    pub skipped: Vec<(PathBuf, String)>,
}

/// Every split of a dataset, indexed.
#[derive(Debug, Clone)]
pub struct DatasetIndex {
    pub kind: DatasetKind,
    pub root: PathBuf,
    pub schema: Schema,
    pub splits: Vec<SplitIndex>,
}

/// Per-split counts printed by `multifair data summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    pub n: usize,
    pub positives: usize,
    pub skipped: usize,
    /// Attribute name -> code (as a string, "-1" for unknown) -> count.
    pub attributes: BTreeMap<String, BTreeMap<String, usize>>,
}

impl DatasetIndex {
    /// Indexes the dataset under `root`.
    pub fn open(kind: DatasetKind, root: &Path, policy: BadFilePolicy) -> Result<Self, DataError> {
        if kind == DatasetKind::Manifest {
            return crate::manifest::open(root);
        }
        if !root.is_dir() {
            return Err(DataError::Layout {
                path: root.to_owned(),
                message: format!("no such folder; expected the {} data folder", kind.name()),
            });
        }
        // Every folder is found before any file is read, so a layout error comes first.
        let mut folders = Vec::new();
        for split in Split::ALL {
            let names = kind.split_folders(split);
            match names.iter().map(|f| root.join(f)).find(|p| p.is_dir()) {
                Some(folder) => folders.push((split, folder)),
                None if kind.requires(split) => {
                    return Err(DataError::Layout {
                        path: root.to_owned(),
                        message: format!(
                            "no {} split: expected a folder named {}",
                            split.name(),
                            names.join(" or ")
                        ),
                    });
                }
                None => {}
            }
        }
        let notes = read_notes(kind, root)?;
        let splits = folders
            .into_iter()
            .map(|(split, folder)| index_split(kind, split, &folder, notes.as_ref(), policy))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DatasetIndex {
            kind,
            root: root.to_owned(),
            schema: Schema::builtin(kind),
            splits,
        })
    }

    /// The train, validation and test splits. A dataset without a validation split
    /// (Harvard-GF ships train and test only) validates on every 8th training sample, so that
    /// model selection never sees the test split.
    pub fn train_val_test(&self) -> Result<[SplitIndex; 3], DataError> {
        let split = |which: Split| {
            self.split(which).cloned().ok_or_else(|| DataError::Layout {
                path: self.root.clone(),
                message: format!("{} has no {} split", self.kind.name(), which.name()),
            })
        };
        let (train, val) = match self.split(Split::Val) {
            Some(val) => (split(Split::Train)?, val.clone()),
            None => {
                let mut train = split(Split::Train)?;
                let mut val = train.clone();
                val.split = Split::Val;
                val.samples.clear();
                for (i, sample) in std::mem::take(&mut train.samples).into_iter().enumerate() {
                    match i % 8 {
                        7 => val.samples.push(sample),
                        _ => train.samples.push(sample),
                    }
                }
                (train, val)
            }
        };
        Ok([train, val, split(Split::Test)?])
    }

    pub fn split(&self, split: Split) -> Option<&SplitIndex> {
        self.splits.iter().find(|s| s.split == split)
    }

    pub fn summary(&self) -> BTreeMap<Split, SplitSummary> {
        self.splits
            .iter()
            .map(|s| (s.split, s.summary(&self.schema)))
            .collect()
    }
}

impl SplitIndex {
    pub fn summary(&self, schema: &Schema) -> SplitSummary {
        let mut attributes: BTreeMap<String, BTreeMap<String, usize>> = schema
            .attributes
            .iter()
            .map(|a| (a.name.clone(), BTreeMap::new()))
            .collect();
        for sample in &self.samples {
            for (attribute, code) in schema.attributes.iter().zip(&sample.codes) {
                let counts = attributes
                    .get_mut(&attribute.name)
                    .expect("attribute listed");
                *counts.entry(code.to_string()).or_default() += 1;
            }
        }
        SplitSummary {
            n: self.samples.len(),
            positives: self.samples.iter().filter(|s| s.label >= 1).count(),
            skipped: self.skipped.len(),
            attributes,
        }
    }
}

fn index_split(
    kind: DatasetKind,
    split: Split,
    folder: &Path,
    notes: Option<&HashMap<String, String>>,
    policy: BadFilePolicy,
) -> Result<SplitIndex, DataError> {
    let layout = |message: String| DataError::Layout {
        path: folder.to_owned(),
        message,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| layout(format!("cannot list: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(layout("no .npz files".into()));
    }
    let mut index = SplitIndex {
        split,
        folder: folder.to_owned(),
        samples: Vec::new(),
        skipped: Vec::new(),
    };
    for path in files {
        match read_record(kind, &path, notes) {
            Ok(record) => index.samples.push(record),
            Err(e) if policy == BadFilePolicy::Skip => index.skipped.push((path, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(index)
}

fn value_error(path: &Path, key: &str, message: String) -> DataError {
    DataError::Value {
        file: path.to_owned(),
        key: key.to_owned(),
        message,
    }
}

/// Reads one sample's scalars and checks its arrays' headers.
pub fn read_record(
    kind: DatasetKind,
    path: &Path,
    notes: Option<&HashMap<String, String>>,
) -> Result<SampleRecord, DataError> {
    let mut npz = Npz::open(path)?;
    let id = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let label = npz
        .read(LABEL_KEY)?
        .scalar_i64()
        .map_err(|e| value_error(path, LABEL_KEY, e.to_string()))?;
    let label = match label {
        0 | 1 => label as u8,
        other => {
            return Err(value_error(
                path,
                LABEL_KEY,
                format!("label {other}; expected 0 or 1 {SKIP_HINT}"),
            ));
        }
    };
    let codes = (kind.attributes().iter())
        .map(|attribute| read_code(&mut npz, path, attribute))
        .collect::<Result<Vec<_>, _>>()?;
    let mut note = None;
    for modality in kind.modalities() {
        match modality.kind {
            ModalityKind::Text => note = read_note(kind, &mut npz, path, &id, modality, notes)?,
            ModalityKind::Tabular => unreachable!("npz datasets have no tabular modality"),
            ModalityKind::Image | ModalityKind::Volume => check_pixels(&mut npz, path, modality)?,
        }
    }
    Ok(SampleRecord {
        path: path.to_owned(),
        id,
        label,
        codes,
        note,
        entries: Vec::new(),
    })
}

/// One attribute's code: an integer, or for race one of [`RACE_NAMES`]; -1 unknown.
fn read_code(npz: &mut Npz, path: &Path, attribute: &Attribute) -> Result<i64, DataError> {
    let array = npz.read(attribute.key)?;
    let code = match (attribute.name, array.scalar_str()) {
        ("race", Ok(name)) => race_code(name).ok_or_else(|| {
            let known: Vec<_> = RACE_NAMES.iter().map(|(n, _)| format!("'{n}'")).collect();
            value_error(
                path,
                attribute.key,
                format!(
                    "race '{name}' is not one of {} (or an integer code)",
                    known.join(", ")
                ),
            )
        })?,
        _ => (array.scalar_i64()).map_err(|e| value_error(path, attribute.key, e.to_string()))?,
    };
    if !(UNKNOWN..=MAX_GROUP_CODE).contains(&code) {
        return Err(value_error(
            path,
            attribute.key,
            format!("code {code}; codes are 0..={MAX_GROUP_CODE}, or -1 for unknown"),
        ));
    }
    Ok(code)
}

/// The sample's note: a notes CSV's first (named with or without the extension), then the
/// npz's own, as the original reads them; an error when neither has one.
fn read_note(
    kind: DatasetKind,
    npz: &mut Npz,
    path: &Path,
    id: &str,
    modality: &Modality,
    notes: Option<&HashMap<String, String>>,
) -> Result<Option<String>, DataError> {
    let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let from_csv = notes.and_then(|n| {
        file_name
            .and_then(|f| n.get(&f))
            .or_else(|| n.get(id))
            .cloned()
    });
    if from_csv.is_some() {
        return Ok(from_csv);
    }
    if !npz.contains(modality.key) {
        return Err(value_error(
            path,
            modality.key,
            format!(
                "no note: no notes CSV ({}) lists this file and the npz has no '{}'",
                kind.notes_files().join(", "),
                modality.key,
            ),
        ));
    }
    (npz.read(modality.key)?.scalar_str())
        .map_err(|e| value_error(path, modality.key, e.to_string()))?;
    Ok(None)
}

/// Checks an image's or volume's header: pixel values of rank 2 (image) or 3 (volume), no
/// empty axis.
fn check_pixels(npz: &mut Npz, path: &Path, modality: &Modality) -> Result<(), DataError> {
    let header = npz.header(modality.key)?;
    if matches!(header.dtype, crate::npy::Dtype::Unicode(_)) {
        return Err(value_error(
            path,
            modality.key,
            "holds text; expected pixel values".into(),
        ));
    }
    let (rank, layout) = match modality.kind {
        ModalityKind::Image => (2, "[H,W]"),
        _ => (3, "[D,H,W] with D > 0"),
    };
    if header.shape.len() != rank || header.shape.contains(&0) {
        return Err(value_error(
            path,
            modality.key,
            format!(
                "has shape {:?}; expected {layout} {SKIP_HINT}",
                header.shape
            ),
        ));
    }
    Ok(())
}

/// Maps a race string to its code; `None` for a string not in [`RACE_NAMES`].
pub fn race_code(name: &str) -> Option<i64> {
    let name = name.trim();
    RACE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, c)| c)
}

/// The first notes CSV found at the root or under `ReadMe/`: file name -> text. The columns
/// are named in the header (`note`, and `filename`, `id` or `file_id`, as the original's
/// `data_summary.csv`) or else positional (the file in column 0, the note in column 2, as the
/// public release's); an empty note, `nan` or `none` counts as no note.
fn read_notes(
    kind: DatasetKind,
    root: &Path,
) -> Result<Option<HashMap<String, String>>, DataError> {
    let found = kind
        .notes_files()
        .iter()
        .flat_map(|f| [root.join(f), root.join("ReadMe").join(f)])
        .find(|p| p.is_file());
    let Some(path) = found else { return Ok(None) };
    let error = |message: String| DataError::Layout {
        path: path.clone(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(|e| error(format!("cannot read: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| error(format!("header: {e}")))?
        .clone();
    let named = |name: &str| header.iter().position(|h| h.trim() == name);
    let key_column = ["filename", "id", "file_id"].iter().find_map(|n| named(n));
    let (file_at, note_at) = match (key_column, named("note")) {
        (Some(k), Some(n)) => (k, n),
        _ => (0, 2),
    };
    let mut notes = HashMap::new();
    let mut rows: HashMap<String, usize> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| error(format!("row {}: {e}", i + 1)))?;
        let (Some(file), Some(text)) = (record.get(file_at), record.get(note_at)) else {
            return Err(error(format!(
                "row {}: expected the file name in column {file_at} and the note in column {note_at}",
                i + 1
            )));
        };
        if ["", "nan", "none"].contains(&text.trim().to_lowercase().as_str()) {
            continue;
        }
        // A number where the note belongs: the columns are not the expected ones.
        if text.trim().parse::<f64>().is_ok() {
            return Err(error(format!(
                "row {}: column 2 holds the number '{}', not a note; the file name goes in column 0 and the note in column 2",
                i + 1,
                crate::shown(text.trim())
            )));
        }
        let file = file.trim().to_owned();
        if let Some(first) = rows.insert(file.clone(), i + 1) {
            return Err(error(format!(
                "rows {first} and {}: '{}' appears twice; each file needs one note",
                i + 1,
                crate::shown(&file)
            )));
        }
        notes.insert(file, text.to_owned());
    }
    Ok(Some(notes))
}
