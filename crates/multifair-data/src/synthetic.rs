//! The synthetic benchmark (generative model in `datasets/synthetic.md`), written in
//! the real datasets' layouts and keys so that it exercises the same loaders.
//!
//! A latent severity drives the label and both modalities. The *easy* modality (SLO fundus, or
//! the RNFLT map for Harvard-GF) shows it as a large, local feature — except for one group
//! (race code 1), where that feature is mostly noise. The *slow* modality (OCT, or the notes)
//! shows it weakly, spread over slices or words, equally for every group.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use multifair_metrics::auc;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::datasets::{DatasetKind, Split, UNKNOWN};
use crate::npy::{ArrayData, NpyArray};
use crate::npz::write_npz;

/// The race code whose easy-modality signal is mostly noise.
pub const FAILED_RACE: i64 = 1;

/// Sizes and seed of a generated dataset.
#[derive(Debug, Clone, Serialize)]
pub struct SyntheticConfig {
    pub kind: DatasetKind,
    pub seed: u64,
    pub n_train: usize,
    pub n_val: usize,
    pub n_test: usize,
    /// Height and width of every image and B-scan.
    pub size: usize,
    /// B-scans per OCT volume.
    pub depth: usize,
    /// Share of the easy signal the failed group keeps (the rest is replaced by noise).
    pub failed_group_signal: f64,
    /// Amplitude of the slow modality's signal relative to its noise.
    pub slow_signal: f64,
}

impl SyntheticConfig {
    /// Defaults sized for the CPU demo.
    pub fn new(kind: DatasetKind, seed: u64) -> Self {
        SyntheticConfig {
            kind,
            seed,
            n_train: 1200,
            n_val: 300,
            n_test: 600,
            size: 32,
            depth: 16,
            failed_group_signal: 0.15,
            slow_signal: 0.5,
        }
    }

    fn splits(&self) -> Vec<(Split, &'static str, usize)> {
        let names = |s| self.kind.split_folders(s)[0];
        let mut splits = vec![(Split::Train, names(Split::Train), self.n_train)];
        // Harvard-GF is released with train and test folders only.
        if self.kind != DatasetKind::HarvardGf {
            splits.push((Split::Val, names(Split::Val), self.n_val));
        }
        splits.push((Split::Test, names(Split::Test), self.n_test));
        splits
    }
}

/// What `meta.json` records: the generator, per-split counts, and the oracle AUC (the AUC of
/// the latent severity itself) on the test split, overall and per group.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub generator: SyntheticConfig,
    pub modalities: BTreeMap<&'static str, &'static str>,
    pub splits: BTreeMap<Split, SplitCounts>,
    pub oracle_auc: OracleAuc,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitCounts {
    pub n: usize,
    pub positives: usize,
    pub attributes: BTreeMap<String, BTreeMap<String, usize>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OracleAuc {
    pub split: Split,
    pub overall: Option<f64>,
    /// Attribute -> group code -> AUC (null for a group lacking a class).
    pub attributes: BTreeMap<String, BTreeMap<String, Option<f64>>>,
}

/// One generated patient before it is written.
struct Patient {
    severity: f64,
    label: u8,
    /// Aligned with `DatasetKind::attributes()`.
    codes: Vec<i64>,
    maritalstatus: i64,
    age: f64,
}

/// Draws demographic codes with the real data's marginals and a few unknowns.
fn demographics(kind: DatasetKind, rng: &mut ChaCha8Rng) -> (Vec<i64>, i64) {
    let mut pick = |weights: &[(i64, f64)]| {
        let total: f64 = weights.iter().map(|w| w.1).sum();
        let mut u = rng.random::<f64>() * total;
        for &(code, w) in weights {
            if u < w {
                return code;
            }
            u -= w;
        }
        weights[weights.len() - 1].0
    };
    // race: about 8/15/77 Asian/Black/White; ~1% unknown on every attribute but gender.
    let race = pick(&[(0, 8.0), (1, 15.0), (2, 76.0), (UNKNOWN, 1.0)]);
    let gender = pick(&[(0, 55.0), (1, 45.0)]);
    let ethnicity = pick(&[(0, 94.0), (1, 5.0), (UNKNOWN, 1.0)]);
    let language = pick(&[(0, 91.0), (1, 4.0), (2, 4.0), (UNKNOWN, 1.0)]);
    let marital = pick(&[(0, 60.0), (1, 20.0), (2, 10.0), (3, 5.0), (4, 5.0)]);
    let codes = kind
        .attributes()
        .iter()
        .map(|a| match a.name {
            "race" => race,
            "gender" => gender,
            "ethnicity" => ethnicity,
            _ => language,
        })
        .collect();
    (codes, marital)
}

/// The prevalence threshold: P(severity + N(0, LABEL_NOISE^2) > t) = 0.485.
const LABEL_NOISE: f64 = 0.6;
const LABEL_THRESHOLD: f64 = 0.0438; // 0.0376 * sqrt(1 + 0.6^2)

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box–Muller: rand 0.9 has no normal distribution without rand_distr.
    let (u, v) = (rng.random::<f64>().max(1e-12), rng.random::<f64>());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn patient(kind: DatasetKind, rng: &mut ChaCha8Rng) -> Patient {
    let (codes, maritalstatus) = demographics(kind, rng);
    let severity = normal(rng);
    let label = u8::from(severity + LABEL_NOISE * normal(rng) > LABEL_THRESHOLD);
    Patient {
        severity,
        label,
        codes,
        maritalstatus,
        age: 45.0 + 25.0 * rng.random::<f64>(),
    }
}

fn race(kind: DatasetKind, p: &Patient) -> i64 {
    let i = kind
        .attributes()
        .iter()
        .position(|a| a.name == "race")
        .expect("race");
    p.codes[i]
}

/// The severity the easy modality shows: mostly noise for the failed group.
fn easy_severity(config: &SyntheticConfig, p: &Patient, rng: &mut ChaCha8Rng) -> f64 {
    if race(config.kind, p) == FAILED_RACE {
        let keep = config.failed_group_signal;
        keep * p.severity + (1.0 - keep * keep).sqrt() * normal(rng)
    } else {
        p.severity
    }
}

/// SLO fundus [size, size] u8: textured background with an optic disc whose cup grows with
/// the (easy) severity.
fn fundus(size: usize, severity: f64, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let s = size as f64;
    let (cx, cy) = (
        s / 2.0 + (rng.random::<f64>() - 0.5) * s / 8.0,
        s / 2.0 + (rng.random::<f64>() - 0.5) * s / 8.0,
    );
    let disc = s / 5.0;
    let cup = disc * (0.45 + 0.18 * severity.clamp(-2.0, 2.0));
    let (fx, fy, phase) = (
        rng.random::<f64>() * 0.3,
        rng.random::<f64>() * 0.3,
        rng.random::<f64>() * 6.3,
    );
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let r = (dx * dx + dy * dy).sqrt();
            let mut v =
                0.35 + 0.05 * (fx * x as f64 + fy * y as f64 + phase).cos() + 0.06 * normal(rng);
            if r < disc {
                v += 0.25;
            }
            if r < cup {
                v += 0.3;
            }
            out.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
        }
    }
    out
}

/// OCT volume [depth, size, size] u8: a retinal layer band that thins slightly with severity in
/// every B-scan, under heavy speckle.
fn oct(size: usize, depth: usize, severity: f64, amplitude: f64, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let s = size as f64;
    let top = s * 0.35 + (rng.random::<f64>() - 0.5) * s * 0.1;
    let mut out = Vec::with_capacity(depth * size * size);
    for _ in 0..depth {
        let thickness = s * 0.18 * (1.0 - 0.1 * amplitude * severity + 0.08 * normal(rng));
        for y in 0..size {
            let in_layer = (y as f64) >= top && (y as f64) < top + thickness;
            for _ in 0..size {
                let v = if in_layer { 0.6 } else { 0.25 } + 0.18 * normal(rng);
                out.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    out
}

/// RNFLT map [size, size] f32 in microns: arcs that thin with the (easy) severity.
fn rnflt(size: usize, severity: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let s = size as f64;
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = ((x as f64 - s / 2.0) / s, (y as f64 - s / 2.0) / s);
            let arc = (-((dx * dx + dy * dy).sqrt() - 0.3).powi(2) / 0.01).exp() * dy.abs() * 4.0;
            let v =
                80.0 + 40.0 * arc * (1.0 - 0.35 * severity.clamp(-2.0, 2.0)) + 6.0 * normal(rng);
            out.push(v.max(0.0) as f32);
        }
    }
    out
}

/// Words of the synthetic notes; the built-in tokenizer vocabulary covers them.
pub const NOTE_WORDS: [&str; 38] = [
    "patient",
    "presents",
    "for",
    "follow",
    "up",
    "exam",
    "of",
    "both",
    "eyes",
    "history",
    "reports",
    "no",
    "visual",
    "complaints",
    "iop",
    "cup",
    "disc",
    "ratio",
    "is",
    "and",
    "with",
    "stable",
    "normal",
    "healthy",
    "rim",
    "fields",
    "full",
    "thinning",
    "notching",
    "cupping",
    "loss",
    "elevated",
    "defect",
    "progression",
    "suspect",
    "glaucoma",
    "a",
    "noted",
];
const SEVERE: [&str; 7] = [
    "thinning",
    "notching",
    "cupping",
    "loss",
    "elevated",
    "defect",
    "progression",
];
const BENIGN: [&str; 5] = ["stable", "normal", "healthy", "full", "no"];
const FILLER: [&str; 9] = [
    "patient", "presents", "for", "follow", "up", "exam", "of", "both", "eyes",
];
const FINDINGS: [&str; 4] = ["cup", "disc", "rim", "fields"];

/// A clinical note: filler sentences and a few findings, each severe with a probability that
/// rises weakly with severity.
fn note(severity: f64, amplitude: f64, rng: &mut ChaCha8Rng) -> String {
    let mut words: Vec<&str> = FILLER.to_vec();
    let p_severe = 1.0 / (1.0 + (-amplitude * severity).exp());
    for _ in 0..8 {
        words.push(FINDINGS[rng.random_range(0..FINDINGS.len())]);
        words.push("is");
        words.push(if rng.random::<f64>() < p_severe {
            SEVERE[rng.random_range(0..SEVERE.len())]
        } else {
            BENIGN[rng.random_range(0..BENIGN.len())]
        });
        words.push(",");
    }
    words.push("history");
    words.push("noted");
    words.join(" ").replace(" ,", ",") + "."
}

fn scalar(v: i64) -> NpyArray {
    NpyArray {
        shape: vec![],
        data: ArrayData::I64(vec![v]),
    }
}

/// Writes the dataset under `out` and returns (and writes) its `meta.json`.
/// Sample `index`'s patient, note and arrays (labels, codes, each modality's image, volume or
/// note). One generator per sample: any sample can be regenerated alone.
fn sample(
    config: &SyntheticConfig,
    index: usize,
    (size, depth): (usize, usize),
) -> (Patient, String, Vec<(&'static str, NpyArray)>) {
    let kind = config.kind;
    let mut rng =
        ChaCha8Rng::seed_from_u64(config.seed ^ (index as u64).wrapping_mul(crate::GOLDEN));
    let p = patient(kind, &mut rng);
    let easy = easy_severity(config, &p, &mut rng);
    let mut arrays: Vec<(&str, NpyArray)> = vec![("glaucoma", scalar(p.label as i64))];
    for (attribute, &code) in kind.attributes().iter().zip(&p.codes) {
        arrays.push((attribute.key, scalar(code)));
    }
    arrays.push(("maritalstatus", scalar(p.maritalstatus)));
    let age = NpyArray {
        shape: vec![],
        data: ArrayData::F64(vec![p.age]),
    };
    arrays.push(("age", age));
    let text = note(p.severity, config.slow_signal * 2.0, &mut rng);
    // Each modality's array from its generator: the easy ones see `easy`, the slow ones the
    // patient's severity.
    for modality in kind.modalities() {
        let (shape, data) = match modality.key {
            "slo_fundus" => (
                vec![size, size],
                ArrayData::U8(fundus(size, easy, &mut rng)),
            ),
            "rnflt" => (
                vec![size, size],
                ArrayData::F32(rnflt(size, easy, &mut rng)),
            ),
            "oct_bscans" => (
                vec![depth, size, size],
                ArrayData::U8(oct(size, depth, p.severity, config.slow_signal, &mut rng)),
            ),
            "note" => (vec![], ArrayData::Unicode(vec![text.clone()])),
            other => unreachable!("no generator for modality key '{other}'"),
        };
        arrays.push((modality.key, NpyArray { shape, data }));
    }
    (p, text, arrays)
}

pub fn generate(config: &SyntheticConfig, out: &Path) -> std::io::Result<Meta> {
    let kind = config.kind;
    if kind == DatasetKind::Manifest {
        return Err(std::io::Error::other(
            "the synthetic benchmark has the built-in layouts; a manifest example comes from multifair_data::cohort",
        ));
    }
    let (size, depth) = (config.size.max(2), config.depth.max(1));
    let mut splits = BTreeMap::new();
    let mut oracle = None;
    let mut summary_rows = Vec::new();
    let mut notes_rows = Vec::new();
    let mut index = 0usize;
    for (split, folder, n) in config.splits() {
        std::fs::create_dir_all(out.join(folder))?;
        let mut counts = SplitCounts {
            n,
            positives: 0,
            attributes: kind
                .attributes()
                .iter()
                .map(|a| (a.name.to_owned(), BTreeMap::new()))
                .collect(),
        };
        let (mut severities, mut labels, mut all_codes) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let file = format!("data_{index:05}.npz");
            let (p, text, arrays) = sample(config, index, (size, depth));
            if kind.modalities().iter().any(|m| m.key == "note") {
                notes_rows.push((file.clone(), text.clone()));
            }
            let refs: Vec<(&str, &NpyArray)> = arrays.iter().map(|(k, a)| (*k, a)).collect();
            write_npz(&out.join(folder).join(&file), &refs, false)?;

            counts.positives += p.label as usize;
            for (attribute, code) in kind.attributes().iter().zip(&p.codes) {
                *counts
                    .attributes
                    .get_mut(attribute.name)
                    .expect("listed")
                    .entry(code.to_string())
                    .or_default() += 1;
            }
            summary_rows.push((
                file,
                split,
                p.label,
                p.codes.clone(),
                p.maritalstatus,
                p.age,
                text,
            ));
            severities.push(p.severity);
            labels.push(p.label == 1);
            all_codes.push(p.codes);
            index += 1;
        }
        if split == Split::Test {
            oracle = Some(oracle_auc(kind, &severities, &labels, &all_codes));
        }
        splits.insert(split, counts);
    }
    write_summary(config, out, &summary_rows)?;
    if kind == DatasetKind::FairVlmed {
        write_notes(&out.join("gpt4_summarized_notes.csv"), &notes_rows)?;
        write_notes(&out.join("original_notes.csv"), &notes_rows)?;
    }
    let modalities = kind.modalities().iter().map(|m| (m.name, m.key)).collect();
    let meta = Meta {
        generator: config.clone(),
        modalities,
        splits,
        oracle_auc: oracle.expect("every kind has a test split"),
    };
    let json = serde_json::to_string_pretty(&meta).map_err(std::io::Error::other)?;
    std::fs::write(out.join("meta.json"), json + "\n")?;
    Ok(meta)
}

fn oracle_auc(
    kind: DatasetKind,
    severity: &[f64],
    labels: &[bool],
    codes: &[Vec<i64>],
) -> OracleAuc {
    let mut attributes = BTreeMap::new();
    for (i, attribute) in kind.attributes().iter().enumerate() {
        let mut groups: BTreeMap<i64, (Vec<f64>, Vec<bool>)> = BTreeMap::new();
        for ((s, &y), c) in severity.iter().zip(labels).zip(codes) {
            if c[i] != UNKNOWN {
                let g = groups.entry(c[i]).or_default();
                g.0.push(*s);
                g.1.push(y);
            }
        }
        let aucs = groups
            .into_iter()
            .map(|(code, (s, y))| (code.to_string(), auc(&s, &y)))
            .collect();
        attributes.insert(attribute.name.to_owned(), aucs);
    }
    OracleAuc {
        split: Split::Test,
        overall: auc(severity, labels),
        attributes,
    }
}

type SummaryRow = (String, Split, u8, Vec<i64>, i64, f64, String);

/// The summary CSV each release ships (`data_summary_glaucoma.csv` / `data_summary.csv`).
fn write_summary(config: &SyntheticConfig, out: &Path, rows: &[SummaryRow]) -> std::io::Result<()> {
    let kind = config.kind;
    let (name, with_note): (PathBuf, bool) = match kind {
        DatasetKind::FairVision => (out.join("data_summary_glaucoma.csv"), false),
        DatasetKind::FairVlmed => (out.join("data_summary.csv"), true),
        DatasetKind::HarvardGf => (out.join("data_summary.csv"), false),
        DatasetKind::Manifest => unreachable!("refused in generate"),
    };
    let mut f = std::io::BufWriter::new(std::fs::File::create(name)?);
    let keys: Vec<&str> = kind.attributes().iter().map(|a| a.key).collect();
    write!(
        f,
        "filename,age,{},maritalstatus,glaucoma,use",
        keys.join(",")
    )?;
    writeln!(f, "{}", if with_note { ",note,gpt4_summary" } else { "" })?;
    for (file, split, label, codes, marital, age, text) in rows {
        let codes: Vec<String> = codes.iter().map(i64::to_string).collect();
        let use_ = match split {
            Split::Train => "training",
            Split::Val => "validation",
            Split::Test => "test",
        };
        write!(
            f,
            "{file},{age:.1},{},{marital},{label},{use_}",
            codes.join(",")
        )?;
        writeln!(
            f,
            "{}",
            if with_note {
                format!(",\"{text}\",\"{text}\"")
            } else {
                String::new()
            }
        )?;
    }
    f.flush()
}

/// Notes CSV: file name in column 0, the text in column 2.
fn write_notes(path: &Path, rows: &[(String, String)]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "filename,words,note")?;
    for (file, text) in rows {
        writeln!(f, "{file},{},\"{text}\"", text.split_whitespace().count())?;
    }
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prevalence_threshold_gives_about_48_5_percent() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let n = 40_000;
        let positives = (0..n)
            .filter(|_| patient(DatasetKind::FairVision, &mut rng).label == 1)
            .count();
        assert!(
            (positives as f64 / n as f64 - 0.485).abs() < 0.01,
            "{positives}"
        );
    }

    #[test]
    fn notes_use_only_builtin_words() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let tokenizer = crate::tokenizer::WordPiece::builtin(&NOTE_WORDS);
        for _ in 0..20 {
            let text = note(normal(&mut rng), 1.0, &mut rng);
            assert!(
                !tokenizer.tokenize(&text).contains(&1),
                "unknown word in {text}"
            );
        }
    }
}
