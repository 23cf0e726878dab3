//! Batches for training and evaluation: worker threads decode and preprocess samples ahead of
//! the consumer, which receives them in a fixed order.
//!
//! Determinism: the epoch's order comes from a ChaCha8 generator seeded by (seed, epoch), and
//! each sample's augmentation from one seeded by (seed, epoch, sample), so the batches do not
//! depend on the number of workers or on their timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::datasets::{
    DataError, Entry, ModalityKind, ModalitySpec, SampleRecord, Schema, SplitIndex,
};
use crate::npy::NpyArray;
use crate::npz::Npz;
use crate::preprocess::{
    Augment, ImageNorm, Resize, prepare_image_into, prepare_rgb_into, prepare_volume_into,
    slice_indices,
};
use crate::tokenizer::WordPiece;

/// How samples are prepared and batched.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    pub seed: u64,
    /// Decoding threads; 0 decodes on the consumer's thread.
    pub workers: usize,
    /// Finished batches that may wait in the queue.
    pub prefetch: usize,
    /// Train-time augmentation of images; `None` for evaluation.
    pub augment: Option<Augment>,
    /// How images (not B-scans) are resized, in every split.
    pub resize: Resize,
    /// Height and width of images and B-scans after resizing.
    pub image_size: usize,
    /// B-scans sampled per OCT volume.
    pub slices: usize,
    /// Tokens per note, [CLS] and [SEP] included.
    pub max_tokens: usize,
    /// Notes as the original prepares them ([`original_note`]); else lower-cased only.
    pub original_notes: bool,
    /// Balanced sampling on this attribute (index into the dataset's attributes) and its
    /// cells: each epoch draws as many samples as the split has, with replacement, every cell
    /// equally likely, then a member uniformly (torch's WeightedRandomSampler with weights
    /// 1 / n_cell, as MEDFAIR's resampling); samples of unknown group are not drawn.
    pub balance: Option<(usize, Cells)>,
}

/// The cells balanced sampling draws evenly (MEDFAIR's `resample_which`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cells {
    /// The groups of the attribute.
    Group,
    /// Group x label.
    Balanced,
    /// The labels (unknown groups still not drawn).
    Class,
}

impl LoaderConfig {
    /// Evaluation order and preprocessing at the given sizes.
    pub fn new(batch_size: usize, image_size: usize, slices: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            workers: 2,
            prefetch: 4,
            augment: None,
            resize: Resize::Bilinear,
            image_size,
            slices,
            max_tokens: 128,
            original_notes: false,
            balance: None,
        }
    }
}

/// One modality of a batch, flat and row-major: `TensorData::new(values, shape)` away from a
/// device tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum ModalityBatch {
    /// Images [B, 3, S, S], volumes [B, slices, S, S] or tabular rows [B, features].
    Float { shape: Vec<usize>, values: Vec<f32> },
    /// Token ids and attention mask, each [B, L].
    Tokens {
        shape: [usize; 2],
        ids: Vec<u32>,
        mask: Vec<u32>,
    },
}

impl ModalityBatch {
    /// Images or volumes ([B, C, S, S], `D` = 4) or tabular rows ([B, features], `D` = 2) as a
    /// float tensor on `device`; `None` for tokens or another rank.
    pub fn float_tensor<const D: usize>(&self, device: &Device) -> Option<Tensor<D>> {
        match self {
            ModalityBatch::Float { shape, values } => {
                let shape: [usize; D] = shape.as_slice().try_into().ok()?;
                Some(Tensor::from_data(
                    TensorData::new(values.clone(), shape),
                    device,
                ))
            }
            ModalityBatch::Tokens { .. } => None,
        }
    }

    /// Token ids and attention mask as int tensors [B, L] on `device`.
    pub fn token_tensors(&self, device: &Device) -> Option<(Tensor<2, Int>, Tensor<2, Int>)> {
        match self {
            ModalityBatch::Tokens { shape, ids, mask } => {
                let int = |v: &[u32]| {
                    let data =
                        TensorData::new(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), *shape);
                    Tensor::<2, Int>::from_data(data, device)
                };
                Some((int(ids), int(mask)))
            }
            ModalityBatch::Float { .. } => None,
        }
    }
}

/// A batch: every modality (in the dataset's order), which samples have it, labels and the
/// codes of every attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Positions of the samples in the split.
    pub indices: Vec<usize>,
    pub modalities: Vec<(String, ModalityBatch)>,
    /// [modality][sample]: false where the sample lacks the modality (its values are zeros).
    pub available: Vec<Vec<bool>>,
    pub labels: Vec<u8>,
    /// [attribute][sample], aligned with the dataset's attributes; -1 unknown.
    pub codes: Vec<Vec<i64>>,
}

struct Shared {
    schema: Schema,
    samples: Vec<SampleRecord>,
    config: LoaderConfig,
    tokenizer: Option<WordPiece>,
}

/// Loads one split in batches.
#[derive(Clone)]
pub struct Loader {
    shared: Arc<Shared>,
}

/// The stream of seed `a` at epoch `b`: distinct streams for nearby seeds and epochs.
fn mix(a: u64, b: u64) -> u64 {
    crate::splitmix64(
        a.wrapping_add(b.wrapping_mul(crate::GOLDEN))
            .wrapping_add(crate::GOLDEN),
    )
}

impl Loader {
    /// A loader over `split` of a dataset with `schema`; datasets with text need a
    /// `tokenizer`.
    pub fn new(
        schema: &Schema,
        split: &SplitIndex,
        config: LoaderConfig,
        tokenizer: Option<WordPiece>,
    ) -> Result<Self, String> {
        if config.batch_size == 0 {
            return Err("batch size must be at least 1".into());
        }
        if schema.has_text() && tokenizer.is_none() {
            return Err("the dataset has text: a tokenizer is needed".into());
        }
        Ok(Loader {
            shared: Arc::new(Shared {
                schema: schema.clone(),
                samples: split.samples.clone(),
                config,
                tokenizer,
            }),
        })
    }

    pub fn samples(&self) -> &[SampleRecord] {
        &self.shared.samples
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.shared.samples.len(), self.shared.config.batch_size);
        if self.shared.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let samples = &self.shared.samples;
        if let Some((a, cells)) = self.shared.config.balance {
            let mut groups: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
            for (i, s) in samples.iter().enumerate() {
                let (g, y) = (s.codes[a], s.label as i64);
                let cell = match cells {
                    Cells::Group => (g, 0),
                    Cells::Balanced => (g, y),
                    Cells::Class => (y, 0),
                };
                if g >= 0 {
                    groups.entry(cell).or_default().push(i);
                }
            }
            let groups: Vec<Vec<usize>> = groups.into_values().collect();
            if groups.is_empty() {
                return Vec::new();
            }
            let mut rng = ChaCha8Rng::seed_from_u64(mix(self.shared.config.seed, epoch));
            return (0..samples.len())
                .map(|_| {
                    let members = &groups[rng.random_range(0..groups.len())];
                    members[rng.random_range(0..members.len())]
                })
                .collect();
        }
        let mut order: Vec<usize> = (0..samples.len()).collect();
        if self.shared.config.shuffle {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                self.shared.config.seed,
                epoch,
            )));
        }
        order
    }

    /// The batches of `epoch`, in order; the first error ends the epoch.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let order = Arc::new(self.order(epoch));
        let n_batches = self.len();
        let workers = self.shared.config.workers;
        let mut iter = EpochIter {
            shared: self.shared.clone(),
            order: order.clone(),
            epoch,
            n_batches,
            next: 0,
            pending: BTreeMap::new(),
            receiver: None,
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
            failed: false,
        };
        if workers > 0 && n_batches > 0 {
            let (tx, rx) = sync_channel(self.shared.config.prefetch.max(1));
            let claim = Arc::new(AtomicUsize::new(0));
            for _ in 0..workers.min(n_batches) {
                let (tx, claim, stop) = (tx.clone(), claim.clone(), iter.stop.clone());
                let (shared, order) = (self.shared.clone(), order.clone());
                iter.handles.push(std::thread::spawn(move || {
                    loop {
                        let b = claim.fetch_add(1, Ordering::Relaxed);
                        if b >= n_batches || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let batch = build_batch(&shared, &order, epoch, b);
                        if tx.send((b, batch)).is_err() {
                            break;
                        }
                    }
                }));
            }
            iter.receiver = Some(rx);
        }
        iter
    }

    /// Loads and prepares the sample at `index` of the split as in `epoch`.
    pub fn load(&self, index: usize, epoch: u64) -> Result<Batch, DataError> {
        build_from_indices(&self.shared, &[index], epoch)
    }
}

/// Iterator over one epoch's batches.
pub struct EpochIter {
    shared: Arc<Shared>,
    order: Arc<Vec<usize>>,
    epoch: u64,
    n_batches: usize,
    next: usize,
    pending: BTreeMap<usize, Result<Batch, DataError>>,
    receiver: Option<Receiver<(usize, Result<Batch, DataError>)>>,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
    failed: bool,
}

impl Iterator for EpochIter {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.n_batches || self.failed {
            return None;
        }
        let result = match &self.receiver {
            None => build_batch(&self.shared, &self.order, self.epoch, self.next),
            Some(rx) => loop {
                if let Some(batch) = self.pending.remove(&self.next) {
                    break batch;
                }
                match rx.recv() {
                    Ok((b, batch)) => {
                        self.pending.insert(b, batch);
                    }
                    Err(_) => unreachable!("workers exit only after sending every claimed batch"),
                }
            },
        };
        self.next += 1;
        self.failed = result.is_err();
        Some(result)
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver unblocks workers waiting to send.
        self.receiver = None;
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

fn build_batch(shared: &Shared, order: &[usize], epoch: u64, b: usize) -> Result<Batch, DataError> {
    let size = shared.config.batch_size;
    let indices = &order[b * size..((b + 1) * size).min(order.len())];
    build_from_indices(shared, indices, epoch)
}

/// Floats per sample of modality `m` (0 for text, which is tokens).
fn width(cfg: &LoaderConfig, m: &ModalitySpec) -> usize {
    let area = cfg.image_size * cfg.image_size;
    match m.kind {
        ModalityKind::Image => 3 * area,
        ModalityKind::Volume => cfg.slices * area,
        ModalityKind::Text => 0,
        ModalityKind::Tabular => m.tabular.as_ref().map_or(0, |t| t.width()),
    }
}

/// A batch being filled: each modality's floats, each text modality's token ids and mask,
/// and which samples have each modality.
struct Filling {
    floats: Vec<Vec<f32>>,
    tokens: Vec<(Vec<u32>, Vec<u32>)>,
    available: Vec<Vec<bool>>,
}

fn build_from_indices(shared: &Shared, indices: &[usize], epoch: u64) -> Result<Batch, DataError> {
    let modalities = &shared.schema.modalities;
    let cfg = &shared.config;
    let n = indices.len();
    // Samples are prepared straight into their slot of the batch: no per-sample buffers. A
    // missing modality keeps its zeros and is marked unavailable.
    let mut filling = Filling {
        floats: modalities
            .iter()
            .map(|m| vec![0.0; n * width(cfg, m)])
            .collect(),
        tokens: modalities.iter().map(|_| Default::default()).collect(),
        available: vec![vec![true; n]; modalities.len()],
    };
    for (k, &i) in indices.iter().enumerate() {
        let record = &shared.samples[i];
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(cfg.seed, epoch), i as u64));
        match record.entries.is_empty() {
            true => fill_npz(shared, record, k, &mut rng, &mut filling)?,
            false => fill_entries(shared, record, k, &mut rng, &mut filling)?,
        }
    }
    let batches = (modalities
        .iter()
        .zip(filling.floats.into_iter().zip(filling.tokens)))
    .map(|(m, (values, (ids, mask)))| {
        let batch = match m.kind {
            ModalityKind::Text => ModalityBatch::Tokens {
                shape: [n, cfg.max_tokens],
                ids,
                mask,
            },
            ModalityKind::Tabular => ModalityBatch::Float {
                shape: vec![n, width(cfg, m)],
                values,
            },
            ModalityKind::Image => ModalityBatch::Float {
                shape: vec![n, 3, cfg.image_size, cfg.image_size],
                values,
            },
            ModalityKind::Volume => ModalityBatch::Float {
                shape: vec![n, cfg.slices, cfg.image_size, cfg.image_size],
                values,
            },
        };
        (m.name.clone(), batch)
    })
    .collect();
    let samples: Vec<&SampleRecord> = indices.iter().map(|&i| &shared.samples[i]).collect();
    Ok(Batch {
        indices: indices.to_vec(),
        modalities: batches,
        available: filling.available,
        labels: samples.iter().map(|s| s.label).collect(),
        codes: (0..shared.schema.attributes.len())
            .map(|a| samples.iter().map(|s| s.codes[a]).collect())
            .collect(),
    })
}

/// A manifest row into slot `k`: each modality's entry, a missing one marked unavailable.
fn fill_entries(
    shared: &Shared,
    record: &SampleRecord,
    k: usize,
    rng: &mut ChaCha8Rng,
    filling: &mut Filling,
) -> Result<(), DataError> {
    let augment = shared.config.augment.as_ref();
    for (j, m) in shared.schema.modalities.iter().enumerate() {
        let w = width(&shared.config, m);
        let slot = &mut filling.floats[j][k * w..(k + 1) * w];
        let text = load_entry(
            shared,
            m,
            &record.entries[j],
            slot,
            augment.map(|a| (a, &mut *rng)),
        )?;
        filling.available[j][k] = record.entries[j] != Entry::Missing;
        if m.kind == ModalityKind::Text {
            push_tokens(shared, &text.unwrap_or_default(), &mut filling.tokens[j]);
        }
    }
    Ok(())
}

/// An npz sample into slot `k`: its volume (only the kept B-scans read), images (fundus
/// photographs with ImageNet statistics, measurement maps z-scored) and note.
fn fill_npz(
    shared: &Shared,
    record: &SampleRecord,
    k: usize,
    rng: &mut ChaCha8Rng,
    filling: &mut Filling,
) -> Result<(), DataError> {
    let cfg = &shared.config;
    let mut npz = Npz::open(&record.path)?;
    let value_error = |key: &str, message: String| DataError::Value {
        file: record.path.clone(),
        key: key.to_owned(),
        message,
    };
    for (j, m) in shared.schema.modalities.iter().enumerate() {
        let w = width(cfg, m);
        let slot = &mut filling.floats[j][k * w..(k + 1) * w];
        match m.kind {
            ModalityKind::Volume => {
                let depth = npz.header(&m.key)?.shape.first().copied().unwrap_or(0);
                let kept = npz.read_rows(&m.key, &slice_indices(depth, cfg.slices))?;
                prepare_volume_into(&kept, cfg.slices, cfg.image_size, slot)
                    .map_err(|e| value_error(&m.key, e.to_string()))?;
            }
            ModalityKind::Image => {
                let norm = match m.key == "slo_fundus" {
                    true => ImageNorm::ImageNet,
                    false => ImageNorm::ZScore,
                };
                let augment = cfg.augment.as_ref().map(|a| (a, &mut *rng));
                let array = npz.read(&m.key)?;
                prepare_image_into(&array, cfg.image_size, norm, cfg.resize, augment, slot)
                    .map_err(|e| value_error(&m.key, e.to_string()))?;
            }
            ModalityKind::Text => {
                let text = match &record.note {
                    Some(note) => note.clone(),
                    None => (npz.read(&m.key)?.scalar_str())
                        .map_err(|e| value_error(&m.key, e.to_string()))?
                        .to_owned(),
                };
                push_tokens(shared, &text, &mut filling.tokens[j]);
            }
            ModalityKind::Tabular => unreachable!("npz datasets have no tabular modality"),
        }
    }
    Ok(())
}

/// Tokenises one text (lower-cased, as the uncased vocabularies expect) onto a batch.
fn push_tokens(shared: &Shared, text: &str, out: &mut (Vec<u32>, Vec<u32>)) {
    let tokenizer = shared.tokenizer.as_ref().expect("checked in Loader::new");
    let text = match shared.config.original_notes {
        true => original_note(text),
        false => text.to_lowercase(),
    };
    let encoding = tokenizer.encode(&text, shared.config.max_tokens);
    out.0.extend(encoding.ids);
    out.1.extend(encoding.mask);
}

/// A note as the original prepares it: stripped and lower-cased, and one under 10 characters
/// (Python's count: code points) replaced by a fixed sentence.
pub fn original_note(text: &str) -> String {
    let text = text.trim().to_lowercase();
    match text.chars().count() < 10 {
        true => "no significant clinical findings reported".to_owned(),
        false => text,
    }
}

/// Prepares one manifest entry into `slot`; a text entry's text is returned for tokenising
/// (empty for a missing one, whose mask then covers [CLS] and [SEP] only).
fn load_entry(
    shared: &Shared,
    m: &ModalitySpec,
    entry: &Entry,
    slot: &mut [f32],
    augment: Option<(&Augment, &mut ChaCha8Rng)>,
) -> Result<Option<String>, DataError> {
    let cfg = &shared.config;
    let path = match entry {
        Entry::Missing => return Ok(None),
        Entry::Text(text) => return Ok(Some(text.clone())),
        Entry::Values(values) => {
            let standardiser = m
                .tabular
                .as_ref()
                .expect("fitted when the manifest is opened");
            standardiser.transform_into(values, slot);
            return Ok(None);
        }
        Entry::File(path) => path,
    };
    let error = |message: String| DataError::Value {
        file: path.clone(),
        key: m.name.clone(),
        message,
    };
    match m.kind {
        ModalityKind::Text => std::fs::read_to_string(path)
            .map(Some)
            .map_err(|e| error(format!("cannot read the text file: {e}"))),
        ModalityKind::Image => {
            let image = image::open(path)
                .map_err(|e| error(format!("cannot decode the image: {e}")))?
                .to_rgb8();
            let (w, h) = (image.width() as usize, image.height() as usize);
            let mut planes = vec![0.0f32; 3 * h * w];
            for (p, pixel) in image.pixels().enumerate() {
                for c in 0..3 {
                    planes[c * h * w + p] = pixel.0[c] as f32 / 255.0;
                }
            }
            prepare_rgb_into(&planes, h, w, cfg.image_size, cfg.resize, augment, slot);
            Ok(None)
        }
        ModalityKind::Volume => {
            let is_npz = path.extension().is_some_and(|e| e == "npz");
            let volume = if is_npz {
                let mut npz = Npz::open(path)?;
                let key = if npz.contains(&m.key) {
                    m.key.clone()
                } else {
                    match npz.keys().as_slice() {
                        [only] => only.clone(),
                        keys => {
                            return Err(error(format!(
                                "the npz holds {} arrays ({}); name the volume's with `key` in manifest.toml",
                                keys.len(),
                                keys.join(", ")
                            )));
                        }
                    }
                };
                let depth = npz.header(&key)?.shape.first().copied().unwrap_or(0);
                npz.read_rows(&key, &slice_indices(depth, cfg.slices))?
            } else {
                let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read: {e}")))?;
                NpyArray::parse(&bytes).map_err(|e| error(e.to_string()))?
            };
            prepare_volume_into(&volume, cfg.slices, cfg.image_size, slot)
                .map_err(|e| error(e.to_string()))?;
            Ok(None)
        }
        ModalityKind::Tabular => unreachable!("tabular entries hold values"),
    }
}
