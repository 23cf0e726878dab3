//! Any multimodal dataset, described by a manifest (CSV or JSONL, one row per patient) and a
//! `manifest.toml` beside it that names the columns (`datasets/manifest.md`).
//!
//! Opening a manifest checks every row before training starts and reports every problem at
//! once, each with its row, line and column: unknown splits, undeclared labels or groups, paths
//! that do not exist, unparsable numbers, rows without any modality, modalities or columns with
//! no data in the training split. Tabular standardisation is fitted here, on the training rows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::shown;

use crate::datasets::{
    AttributeSpec, DataError, DatasetIndex, DatasetKind, Entry, ModalityKind, ModalitySpec,
    SampleRecord, Schema, Split, SplitIndex, UNKNOWN,
};

/// The TOML's file name when `--data-dir` is a folder.
pub const TOML_NAME: &str = "manifest.toml";

/// Problems shown in one error; the rest are counted.
const SHOWN: usize = 50;

/// Joins problems for an error message, at most [`SHOWN`] of them.
pub(crate) fn list(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("\n  ");
    if problems.len() > SHOWN {
        text += &format!("\n  ... and {} more", problems.len() - SHOWN);
    }
    text
}

/// `manifest.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestToml {
    /// The manifest file, relative to the TOML: `.csv` or `.jsonl`.
    pub manifest: String,
    #[serde(default = "default_id")]
    pub id: String,
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_label")]
    pub label: String,
    /// The label values, in class order: the first is class 0.
    pub labels: Vec<Scalar>,
    #[serde(rename = "attribute", default)]
    pub attributes: Vec<AttributeToml>,
    #[serde(rename = "modality", default)]
    pub modalities: Vec<ModalityToml>,
    /// Allow file paths that leave the manifest's folder (`../`, absolute, links out).
    #[serde(default)]
    pub allow_outside: bool,
}

/// Whether `path` (which exists) lies inside `root`, links resolved.
fn inside(path: &Path, root: &Path) -> bool {
    match (path.canonicalize(), root.canonicalize()) {
        (Ok(path), Ok(root)) => path.starts_with(root),
        _ => false,
    }
}

fn default_id() -> String {
    "id".into()
}
fn default_split() -> String {
    "split".into()
}
fn default_label() -> String {
    "label".into()
}

/// A label or group value as written in the TOML: text or an integer.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Int(i64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Text(s) => s.trim().to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeToml {
    pub name: String,
    /// The manifest column; the name when absent.
    pub column: Option<String>,
    /// The groups, in code order: the first is group 0.
    pub groups: Vec<Scalar>,
    /// Values that mean "unknown" besides an empty cell and -1.
    #[serde(default)]
    pub unknown: Vec<Scalar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModalityToml {
    pub name: String,
    /// image | volume | text | text_file | tabular
    #[serde(rename = "type")]
    pub kind: String,
    /// The manifest column (image, volume, text, text_file); the name when absent.
    pub column: Option<String>,
    /// The numeric columns of a tabular modality.
    #[serde(default)]
    pub columns: Vec<String>,
    /// The array inside a volume's npz, when the npz holds more than one.
    pub key: Option<String>,
}

/// How a modality's entries are read from a row.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// A path to a file (image, volume, text file).
    Path(String),
    /// Text in the cell.
    Text(String),
    /// Numeric columns.
    Columns(Vec<String>),
}

/// Per-column standardisation of a tabular modality, fitted on the training rows: an empty
/// cell takes the column's median and sets its missingness indicator, then
/// `(x - mean) / std`. The encoder sees `[standardised values..., indicators...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardiser {
    pub columns: Vec<String>,
    pub median: Vec<f64>,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardiser {
    /// Fits on the observed values of each column (`values[row][column]`).
    fn fit(columns: Vec<String>, values: &[&[Option<f64>]]) -> Self {
        let k = columns.len();
        let (mut median, mut mean, mut std) = (vec![0.0; k], vec![0.0; k], vec![1.0; k]);
        for c in 0..k {
            let mut seen: Vec<f64> = values.iter().filter_map(|row| row[c]).collect();
            if seen.is_empty() {
                continue;
            }
            seen.sort_by(f64::total_cmp);
            let n = seen.len();
            median[c] = if n % 2 == 1 {
                seen[n / 2]
            } else {
                (seen[n / 2 - 1] + seen[n / 2]) / 2.0
            };
            mean[c] = seen.iter().sum::<f64>() / n as f64;
            let var = seen.iter().map(|v| (v - mean[c]).powi(2)).sum::<f64>() / n as f64;
            // A constant column stays centred rather than dividing by zero.
            std[c] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        Standardiser {
            columns,
            median,
            mean,
            std,
        }
    }

    /// Encoder inputs per row: twice the number of columns.
    pub fn width(&self) -> usize {
        2 * self.columns.len()
    }

    /// One row's features into `out` (length [`Self::width`]).
    pub fn transform_into(&self, values: &[Option<f64>], out: &mut [f32]) {
        let k = self.columns.len();
        for (c, v) in values.iter().enumerate() {
            let x = v.unwrap_or(self.median[c]);
            out[c] = ((x - self.mean[c]) / self.std[c]) as f32;
            out[k + c] = v.is_none() as u8 as f32;
        }
    }
}

/// The TOML and manifest paths for `--data-dir`: a folder holding `manifest.toml`, or the TOML
/// itself.
pub fn toml_path(data: &Path) -> PathBuf {
    if data.is_dir() {
        data.join(TOML_NAME)
    } else {
        data.to_owned()
    }
}

/// Reads `manifest.toml` (`data` is its folder or the file itself).
pub fn read_toml(data: &Path) -> Result<ManifestToml, DataError> {
    let toml_path = toml_path(data);
    let layout = |message: String| DataError::Layout {
        path: toml_path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&toml_path).map_err(|e| {
        layout(format!(
            "cannot read the manifest description ({e}); see datasets/manifest.md"
        ))
    })?;
    toml::from_str(&text).map_err(|e| layout(e.to_string()))
}

/// Reads and checks a manifest dataset.
pub fn open(data: &Path) -> Result<DatasetIndex, DataError> {
    let toml_path = toml_path(data);
    let spec = read_toml(data)?;
    let root = toml_path.parent().unwrap_or(Path::new(".")).to_owned();
    let (schema, sources) = check_spec(&spec).map_err(|problems| DataError::Manifest {
        path: toml_path.clone(),
        problems,
    })?;
    let manifest = root.join(&spec.manifest);
    if !spec.allow_outside && manifest.exists() && !inside(&manifest, &root) {
        return Err(DataError::Manifest {
            path: toml_path,
            problems: vec![format!(
                "manifest: '{}' leaves the TOML's folder (set allow_outside = true to allow it)",
                crate::shown(&spec.manifest)
            )],
        });
    }
    let table = Table::read(&manifest)?;
    let mut index = read_rows(&spec, schema, &sources, &table, &root)?;
    index.root = root;
    Ok(index)
}

/// Checks the TOML on its own: names, types, duplicate names and columns.
fn check_spec(spec: &ManifestToml) -> Result<(Schema, Vec<Source>), Vec<String>> {
    let mut problems = Vec::new();
    let classes: Vec<String> = spec.labels.iter().map(Scalar::text).collect();
    if classes.len() < 2 {
        problems.push(format!(
            "labels: {} declared; a classification needs at least 2",
            classes.len()
        ));
    }
    if classes.len() > u8::MAX as usize {
        problems.push(format!("labels: {} declared; at most 255", classes.len()));
    }
    if let Some(d) = duplicate(classes.iter()) {
        problems.push(format!("labels: '{d}' is declared twice"));
    }
    if spec.attributes.is_empty() {
        problems.push("no [[attribute]]: at least one sensitive attribute is needed".into());
    }
    if let Some(d) = duplicate(spec.attributes.iter().map(|a| &a.name)) {
        problems.push(format!("attribute '{d}' is declared twice"));
    }
    let attributes = (spec.attributes.iter())
        .map(|a| check_attribute(a, &mut problems))
        .collect();
    if spec.modalities.is_empty() {
        problems.push("no [[modality]]: at least one is needed".into());
    }
    if let Some(d) = duplicate(spec.modalities.iter().map(|m| &m.name)) {
        problems.push(format!("modality '{d}' is declared twice"));
    }
    let (modalities, sources) = (spec.modalities.iter())
        .filter_map(|m| check_modality(m, &mut problems))
        .unzip();
    match problems.is_empty() {
        true => Ok((
            Schema {
                modalities,
                attributes,
                classes,
            },
            sources,
        )),
        false => Err(problems),
    }
}

/// An attribute of the TOML: a folder-safe name, at least two distinct groups, no value both
/// a group and unknown.
fn check_attribute(a: &AttributeToml, problems: &mut Vec<String>) -> AttributeSpec {
    // Attribute names become folder names in sweeps.
    if let Err(e) = crate::path_component("attribute", &a.name) {
        problems.push(e);
    }
    let groups: Vec<String> = a.groups.iter().map(Scalar::text).collect();
    if groups.len() < 2 {
        problems.push(format!(
            "attribute '{}': {} group(s) declared; fairness needs at least 2",
            a.name,
            groups.len()
        ));
    }
    if let Some(d) = duplicate(groups.iter()) {
        problems.push(format!(
            "attribute '{}': group '{d}' is declared twice",
            a.name
        ));
    }
    for u in (a.unknown.iter().map(Scalar::text)).filter(|u| groups.contains(u)) {
        problems.push(format!(
            "attribute '{}': '{u}' is listed as unknown and declared as a group; it can be only one",
            a.name
        ));
    }
    AttributeSpec {
        name: a.name.clone(),
        key: a.column.clone().unwrap_or_else(|| a.name.clone()),
        groups,
    }
}

/// A modality of the TOML: a known type and the fields that type takes; `None` for an
/// unknown type.
fn check_modality(m: &ModalityToml, problems: &mut Vec<String>) -> Option<(ModalitySpec, Source)> {
    let column = m.column.clone().unwrap_or_else(|| m.name.clone());
    let (kind, source) = match m.kind.as_str() {
        "image" => (ModalityKind::Image, Source::Path(column.clone())),
        "volume" => (ModalityKind::Volume, Source::Path(column.clone())),
        "text" => (ModalityKind::Text, Source::Text(column.clone())),
        "text_file" => (ModalityKind::Text, Source::Path(column.clone())),
        "tabular" => (ModalityKind::Tabular, Source::Columns(m.columns.clone())),
        other => {
            problems.push(format!(
                "modality '{}': type '{other}'; expected image, volume, text, text_file or tabular",
                m.name
            ));
            return None;
        }
    };
    match &source {
        Source::Columns(c) => {
            if c.is_empty() {
                problems.push(format!(
                    "modality '{}': a tabular modality lists its numeric columns in `columns`",
                    m.name
                ));
            }
            if let Some(d) = duplicate(c.iter()) {
                problems.push(format!("modality '{}': column '{d}' listed twice", m.name));
            }
            if m.column.is_some() {
                problems.push(format!(
                    "modality '{}': a tabular modality takes `columns`, not `column`",
                    m.name
                ));
            }
        }
        _ if !m.columns.is_empty() => problems.push(format!(
            "modality '{}': `columns` is for tabular modalities; a {} takes one `column`",
            m.name, m.kind
        )),
        _ => {}
    }
    if m.key.is_some() && kind != ModalityKind::Volume {
        problems.push(format!(
            "modality '{}': `key` names the array of a volume's npz; a {} has none",
            m.name, m.kind
        ));
    }
    let spec = ModalitySpec {
        name: m.name.clone(),
        key: m.key.clone().unwrap_or(column),
        kind,
        tabular: None,
    };
    Some((spec, source))
}

fn duplicate<'a>(names: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    let mut seen = BTreeSet::new();
    names.into_iter().find(|n| !seen.insert(n.as_str()))
}

/// A JSON object's entries in order, duplicates kept (a map would keep the last silently).
struct Pairs(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Pairs;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// The manifest's cells as text, with the line each row starts on.
struct Table {
    path: PathBuf,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    fn read(path: &Path) -> Result<Table, DataError> {
        let error = |message: String| DataError::Layout {
            path: path.to_owned(),
            message,
        };
        let (columns, rows) = match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
            "csv" => {
                let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read: {e}")))?;
                read_csv(&bytes).map_err(error)?
            }
            "jsonl" => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| error(format!("cannot read: {e}")))?;
                read_jsonl(&text).map_err(error)?
            }
            _ => {
                return Err(error(
                    "the manifest must be a .csv or a .jsonl file (see datasets/manifest.md)"
                        .into(),
                ));
            }
        };
        Ok(Table {
            path: path.to_owned(),
            columns,
            rows,
        })
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
}

/// A table's columns and its rows, each with its line in the file.
type Parsed = (Vec<String>, Vec<(usize, Vec<String>)>);

/// A CSV manifest's header and rows; an error says what is wrong where.
fn read_csv(bytes: &[u8]) -> Result<Parsed, String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let columns: Vec<String> = (reader.headers())
        .map_err(|e| format!("header: {e}"))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    if let Some(d) = duplicate(columns.iter()) {
        return Err(format!("header: column '{}' appears twice", shown(d)));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        // Counted from the record's byte offset (csv's own line count is off with Windows
        // line endings), which can point at the line ending before the record.
        let mut start = record.position().map_or(0, |p| p.byte() as usize);
        while matches!(bytes.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let line = 1 + bytes[..start].iter().filter(|&&b| b == b'\n').count();
        rows.push((line, record.iter().map(str::to_owned).collect()));
    }
    Ok((columns, rows))
}

/// A JSON-lines manifest: one object per line, the columns in order of first appearance, a
/// missing or null value empty.
fn read_jsonl(text: &str) -> Result<Parsed, String> {
    let mut columns: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let pairs: Pairs = serde_json::from_str(line)
            .map_err(|e| format!("line {}: {e} (expected one JSON object per line)", i + 1))?;
        if let Some(d) = duplicate(pairs.0.iter().map(|(k, _)| k)) {
            return Err(format!("line {}: key '{}' appears twice", i + 1, shown(d)));
        }
        let object: serde_json::Map<String, serde_json::Value> = pairs.0.into_iter().collect();
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
        objects.push((i + 1, object));
    }
    let rows = (objects.into_iter())
        .map(|(line, object)| {
            let cells = (columns.iter())
                .map(|c| match object.get(c) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                })
                .collect();
            (line, cells)
        })
        .collect();
    Ok((columns, rows))
}

/// Every row into a sample, or every problem at once.
fn read_rows(
    spec: &ManifestToml,
    mut schema: Schema,
    sources: &[Source],
    table: &Table,
    root: &Path,
) -> Result<DatasetIndex, DataError> {
    let columns = Columns::find(spec, &schema, sources, table)?;
    let rows = Rows {
        spec,
        schema: &schema,
        sources,
        columns: &columns,
        unknown: (spec.attributes.iter())
            .map(|a| a.unknown.iter().map(Scalar::text).collect())
            .collect(),
        root,
        path: &table.path,
    };
    let mut splits: Vec<SplitIndex> = (Split::ALL.into_iter())
        .map(|split| SplitIndex {
            split,
            folder: table.path.clone(),
            samples: Vec::new(),
            skipped: Vec::new(),
        })
        .collect();
    let (mut problems, mut ids) = (Vec::new(), BTreeSet::new());
    for (r, (line, cells)) in table.rows.iter().enumerate() {
        if let Some((split, record)) = rows.row(r, *line, cells, &mut ids, &mut problems) {
            splits[split as usize].samples.push(record);
        }
    }
    for split in &splits {
        if split.samples.is_empty() && problems.is_empty() {
            problems.push(format!(
                "column '{}': no row is in the {} split; train, val and test each need rows",
                spec.split,
                split.split.name()
            ));
        }
    }
    fit_modalities(
        &mut schema,
        sources,
        &splits[Split::Train as usize].samples,
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(DataError::Manifest {
            path: table.path.clone(),
            problems,
        });
    }
    Ok(DatasetIndex {
        kind: DatasetKind::Manifest,
        root: PathBuf::new(),
        schema,
        splits,
    })
}

/// Where the manifest holds what the TOML names: id, split, label, each attribute, each
/// modality's columns.
struct Columns {
    id: usize,
    split: usize,
    label: usize,
    attributes: Vec<usize>,
    sources: Vec<Vec<usize>>,
}

impl Columns {
    /// Every column the TOML names, or every one missing from the manifest at once.
    fn find(
        spec: &ManifestToml,
        schema: &Schema,
        sources: &[Source],
        table: &Table,
    ) -> Result<Columns, DataError> {
        let mut problems = Vec::new();
        let mut find = |what: String, name: &str| -> usize {
            table.column(name).unwrap_or_else(|| {
                problems.push(format!("{what}: no column '{name}' in the manifest"));
                usize::MAX
            })
        };
        let (id, split, label) = (
            find("id".into(), &spec.id),
            find("split".into(), &spec.split),
            find("label".into(), &spec.label),
        );
        let attributes = (schema.attributes.iter())
            .map(|a| find(format!("attribute '{}'", a.name), &a.key))
            .collect();
        let sources = (sources.iter().zip(&schema.modalities))
            .map(|(source, m)| match source {
                Source::Path(c) | Source::Text(c) => {
                    vec![find(format!("modality '{}'", m.name), c)]
                }
                Source::Columns(cs) => (cs.iter())
                    .map(|c| find(format!("modality '{}'", m.name), c))
                    .collect(),
            })
            .collect();
        match problems.is_empty() {
            true => Ok(Columns {
                id,
                split,
                label,
                attributes,
                sources,
            }),
            false => Err(DataError::Manifest {
                path: table.path.clone(),
                problems,
            }),
        }
    }
}

/// What reading a row needs: the TOML, the schema, the columns, each attribute's unknown
/// values, the folder paths are relative to.
struct Rows<'a> {
    spec: &'a ManifestToml,
    schema: &'a Schema,
    sources: &'a [Source],
    columns: &'a Columns,
    unknown: Vec<Vec<String>>,
    root: &'a Path,
    path: &'a Path,
}

impl Rows<'_> {
    /// Row `r` (on `line`) as a sample of its split; its problems, each naming the row, line
    /// and column, go to `problems`.
    fn row(
        &self,
        r: usize,
        line: usize,
        cells: &[String],
        ids: &mut BTreeSet<String>,
        problems: &mut Vec<String>,
    ) -> Option<(Split, SampleRecord)> {
        let (spec, c) = (self.spec, self.columns);
        let at = |column: &str| format!("row {} (line {line}), column '{column}'", r + 1);
        let cell = |i: usize| cells.get(i).map_or("", |s| s.trim());
        let id = cell(c.id).to_owned();
        if id.is_empty() {
            problems.push(format!("{}: empty id", at(&spec.id)));
        } else if !ids.insert(id.clone()) {
            problems.push(format!(
                "{}: id '{}' appears twice",
                at(&spec.id),
                shown(&id)
            ));
        }
        let split = match cell(c.split) {
            "train" => Some(Split::Train),
            "val" => Some(Split::Val),
            "test" => Some(Split::Test),
            other => {
                problems.push(format!(
                    "{}: unknown split '{}'; expected train, val or test",
                    at(&spec.split),
                    shown(other)
                ));
                None
            }
        };
        let label = cell(c.label);
        let classes = &self.schema.classes;
        let label = match classes.iter().position(|class| class == label) {
            Some(i) => i as u8,
            None => {
                problems.push(format!(
                    "{}: label '{}' is not one of the declared labels ({})",
                    at(&spec.label),
                    shown(label),
                    classes.join(", ")
                ));
                0
            }
        };
        let codes = self.codes(cells, &at, problems);
        let entries: Vec<Entry> = (self.sources.iter().zip(&c.sources))
            .map(|(source, cols)| self.entry(source, cols, cells, &at, problems))
            .collect();
        if entries.iter().all(|e| *e == Entry::Missing) {
            problems.push(format!(
                "row {} (line {line}): no modality has data; a row needs at least one",
                r + 1
            ));
        }
        let record = SampleRecord {
            path: self.path.to_owned(),
            id,
            label,
            codes,
            note: None,
            entries,
        };
        split.map(|split| (split, record))
    }

    /// The row's code of each attribute: a declared group's index, -1 for empty, `-1` or a
    /// declared unknown value.
    fn codes(
        &self,
        cells: &[String],
        at: &dyn Fn(&str) -> String,
        problems: &mut Vec<String>,
    ) -> Vec<i64> {
        let cell = |i: usize| cells.get(i).map_or("", |s| s.trim());
        let attributes = self.schema.attributes.iter().enumerate();
        attributes
            .map(|(a, attribute)| {
                let value = cell(self.columns.attributes[a]);
                if value.is_empty() || value == "-1" || self.unknown[a].iter().any(|u| u == value) {
                    UNKNOWN
                } else if let Some(g) = attribute.groups.iter().position(|g| g == value) {
                    g as i64
                } else {
                    problems.push(format!(
                        "{}: group '{}' is not declared for attribute '{}' (declared: {}; empty or -1 = unknown)",
                        at(&attribute.key),
                        shown(value),
                        attribute.name,
                        attribute.groups.join(", ")
                    ));
                    UNKNOWN
                }
            })
            .collect()
    }

    /// One modality's entry of the row: missing, a text, a file (that exists, inside the
    /// folder unless allowed) or numbers (finite, empty or `nan` missing).
    fn entry(
        &self,
        source: &Source,
        cols: &[usize],
        cells: &[String],
        at: &dyn Fn(&str) -> String,
        problems: &mut Vec<String>,
    ) -> Entry {
        let cell = |i: usize| cells.get(i).map_or("", |s| s.trim());
        match source {
            Source::Text(_) => match cell(cols[0]) {
                "" => Entry::Missing,
                // Text keeps its own spacing.
                _ => Entry::Text(cells[cols[0]].clone()),
            },
            Source::Path(c) => match cell(cols[0]) {
                "" => Entry::Missing,
                relative => {
                    let path = self.root.join(relative);
                    if !path.is_file() {
                        problems.push(format!(
                            "{}: no such file {}",
                            at(c),
                            shown(&path.display().to_string())
                        ));
                    } else if !self.spec.allow_outside && !inside(&path, self.root) {
                        problems.push(format!(
                            "{}: '{}' leaves the manifest's folder (set allow_outside = true in the TOML to allow paths outside it)",
                            at(c),
                            shown(relative)
                        ));
                    }
                    Entry::File(path)
                }
            },
            Source::Columns(names) => {
                let values: Vec<Option<f64>> = (cols.iter().zip(names))
                    .map(|(&c, name)| {
                        let text = cell(c);
                        if text.is_empty() || text.eq_ignore_ascii_case("nan") {
                            return None;
                        }
                        match text.parse::<f64>() {
                            Ok(v) if v.is_finite() => Some(v),
                            _ => {
                                problems.push(format!(
                                    "{}: '{}' is not a finite number (leave the cell empty for a missing value)",
                                    at(name),
                                    shown(text)
                                ));
                                None
                            }
                        }
                    })
                    .collect();
                match values.iter().all(Option::is_none) {
                    true => Entry::Missing,
                    false => Entry::Values(values),
                }
            }
        }
    }
}

/// Every modality, and every numeric column, needs data in the training split; each numeric
/// modality's standardiser is fitted there.
fn fit_modalities(
    schema: &mut Schema,
    sources: &[Source],
    train: &[SampleRecord],
    problems: &mut Vec<String>,
) {
    for (j, (m, source)) in schema.modalities.iter_mut().zip(sources).enumerate() {
        let present: Vec<&[Option<f64>]> = (train.iter())
            .filter_map(|s| match &s.entries[j] {
                Entry::Values(v) => Some(v.as_slice()),
                _ => None,
            })
            .collect();
        let any = train.iter().any(|s| s.entries[j] != Entry::Missing);
        if !any && !train.is_empty() {
            problems.push(format!(
                "modality '{}': no row of the train split has data for it",
                m.name
            ));
        }
        if let Source::Columns(names) = source {
            for (c, name) in names.iter().enumerate() {
                if any && present.iter().all(|row| row[c].is_none()) {
                    problems.push(format!(
                        "column '{name}' (modality '{}'): no value in the train split, so no median or scale can be fitted",
                        m.name
                    ));
                }
            }
            m.tabular = Some(Standardiser::fit(names.clone(), &present));
        }
    }
}

/// A word vocabulary for manifests whose text has no tokenizer of its own: the words (lower
/// case, split as the basic tokenizer splits them) of modality `j`'s training texts that occur
/// at least twice, most frequent first, at most `limit`.
pub fn training_words(
    train: &[SampleRecord],
    j: usize,
    limit: usize,
) -> Result<Vec<String>, DataError> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for sample in train {
        let text = match &sample.entries[j] {
            Entry::Text(text) => text.clone(),
            Entry::File(path) => std::fs::read_to_string(path).map_err(|e| DataError::Value {
                file: path.clone(),
                key: "text".into(),
                message: format!("cannot read the text file: {e}"),
            })?,
            _ => continue,
        };
        for word in text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.chars().count() > 1)
        {
            *counts.entry(word.to_owned()).or_default() += 1;
        }
    }
    let mut words: Vec<(String, usize)> = counts.into_iter().filter(|(_, n)| *n >= 2).collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(words.into_iter().take(limit).map(|(w, _)| w).collect())
}
