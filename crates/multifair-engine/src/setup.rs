//! A run's setup: the dataset's splits and loaders, the method's view of the data, the model's
//! configuration (pretrained encoders sized from their folders), and device batches.

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::Device;
use multifair_core::{DeviceBatch, Method, Sampling, Setup};
use multifair_data::loader::{Batch, Loader, LoaderConfig, ModalityBatch};
use multifair_data::preprocess::{Augment, Resize};
use multifair_data::tokenizer;
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind, Schema, SplitIndex};
use multifair_models::pretrained::size_encoder;
use multifair_models::{EncoderConfig, ModalityInput, ModelConfig};

use crate::config::{Pipeline, TrainConfig};

/// A run's data, model configuration and device.
pub struct Run {
    pub config: TrainConfig,
    pub device: Device,
    pub schema: Schema,
    /// Positions of the model's modalities in the dataset's batches.
    pub modality_slots: Vec<usize>,
    pub model_config: ModelConfig,
    /// Training samples per group of the run's attribute, and how many have an unknown code.
    pub setup: Setup,
    /// (model modality index, name, folder) of each pretrained encoder.
    pub pretrained: Vec<(usize, String, PathBuf)>,
    pub train: Loader,
    pub val: Loader,
    pub test: Loader,
    /// A shuffled loader over each group's training samples, for a method that wants every
    /// group drawn beside each batch ([`Method::group_samples`]); empty otherwise.
    pub groups: Vec<(i64, Loader)>,
    /// The share of training held out from it ([`Method::holdout`]), in evaluation order.
    pub holdout: Option<Loader>,
    /// The text modality's tokenizer, when the dataset has text.
    pub tokenizer: Option<tokenizer::WordPiece>,
}

/// Splits `train` into a training part and a held-out `share` of its samples, drawn with
/// `seed` (the same samples for every run of the seed).
fn hold_out(train: SplitIndex, share: f64, seed: u64) -> anyhow::Result<(SplitIndex, SplitIndex)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let n = train.samples.len();
    anyhow::ensure!(
        n >= 2,
        "the training split has {n} sample(s): nothing to hold out"
    );
    let held = ((n as f64 * share).round() as usize).clamp(1, n - 1);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ 0x686f_6c64,
    ));
    let mut out = vec![false; n];
    for &i in &order[..held] {
        out[i] = true;
    }
    let (mut kept, mut held_out) = (train.clone(), train);
    let samples = std::mem::take(&mut kept.samples);
    held_out.samples.clear();
    for (sample, out) in samples.into_iter().zip(out) {
        match out {
            true => held_out.samples.push(sample),
            false => kept.samples.push(sample),
        }
    }
    Ok((kept, held_out))
}

/// The evaluation loader's settings (no shuffle, no augmentation) from the engine's.
fn base_loader(config: &TrainConfig) -> LoaderConfig {
    let engine = &config.engine;
    let mut base = LoaderConfig::new(engine.batch_size, engine.image_size, engine.slices);
    (
        base.seed,
        base.workers,
        base.max_tokens,
        base.original_notes,
    ) = (
        config.seed,
        engine.workers,
        engine.max_tokens,
        engine.original_notes,
    );
    if engine.augment == Pipeline::Original {
        base.resize = Resize::Pillow;
    }
    base
}

/// What every loader of a run shares.
struct Loaders<'a> {
    schema: &'a Schema,
    tokenizer: &'a Option<tokenizer::WordPiece>,
    base: LoaderConfig,
}

impl Loaders<'_> {
    fn load(&self, split: &SplitIndex, config: LoaderConfig) -> anyhow::Result<Loader> {
        Loader::new(self.schema, split, config, self.tokenizer.clone()).map_err(anyhow::Error::msg)
    }

    /// The training loader's settings: shuffled, augmented, drawn as the method asks.
    fn train(&self, config: &TrainConfig, method: &dyn Method, attribute: usize) -> LoaderConfig {
        let mut train = self.base.clone();
        let augment = match config.engine.augment {
            Pipeline::Light => Augment::default(),
            Pipeline::Original => Augment::ORIGINAL,
        };
        (train.shuffle, train.augment) = (true, Some(augment));
        if let Sampling::Balanced(cells) = method.sampling() {
            train.balance = Some((attribute, cells));
        }
        train
    }
}

/// Refuses a split with fewer than two classes: training would learn one answer, and an AUC
/// (the selection on validation, the report on test) is undefined.
fn check_classes(split: &SplitIndex, classes: &[String]) -> anyhow::Result<()> {
    let mut counts = vec![0usize; classes.len().max(1)];
    for s in &split.samples {
        if let Some(c) = counts.get_mut(s.label as usize) {
            *c += 1;
        }
    }
    let present: Vec<String> = (counts.iter().enumerate())
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{} ({n})", classes.get(c).map_or("?", String::as_str)))
        .collect();
    anyhow::ensure!(
        present.len() >= 2,
        "the {} split ({}) has {} of {} classes{}: every split needs at least two, or its AUC is undefined",
        split.split.name(),
        split.folder.display(),
        present.len(),
        classes.len(),
        match present.is_empty() {
            true => String::new(),
            false => format!(", only {}", present.join(", ")),
        }
    );
    Ok(())
}

/// The training split cut by `attribute`'s known codes, one split per group.
fn group_splits(train: &SplitIndex, attribute: usize) -> Vec<(i64, SplitIndex)> {
    let mut by_group: std::collections::BTreeMap<i64, Vec<_>> = Default::default();
    for sample in train.samples.iter().filter(|s| s.codes[attribute] >= 0) {
        by_group
            .entry(sample.codes[attribute])
            .or_default()
            .push(sample.clone());
    }
    (by_group.into_iter())
        .map(|(g, samples)| {
            let split = SplitIndex {
                split: train.split,
                folder: train.folder.clone(),
                samples,
                skipped: Vec::new(),
            };
            (g, split)
        })
        .collect()
}

/// Training samples per group code of `attribute`, and how many have an unknown code.
fn group_counts(train: &SplitIndex, attribute: usize) -> (Vec<usize>, usize) {
    let (mut counts, mut unknown) = (Vec::new(), 0);
    for sample in &train.samples {
        match usize::try_from(sample.codes[attribute]) {
            Ok(g) => {
                counts.resize(counts.len().max(g + 1), 0);
                counts[g] += 1;
            }
            Err(_) => unknown += 1,
        }
    }
    (counts, unknown)
}

impl Run {
    pub fn new(config: TrainConfig, method: &mut dyn Method) -> anyhow::Result<Self> {
        let kind = config.dataset;
        let index = DatasetIndex::open(kind, &config.data_dir, BadFilePolicy::Fail)?;
        let [train_split, val_split, test_split] = index.train_val_test()?;
        for split in [&train_split, &val_split, &test_split] {
            check_classes(split, &index.schema.classes)?;
        }
        let (train_split, holdout_split) = match method.holdout() {
            share if share > 0.0 => {
                let (kept, held) = hold_out(train_split, share, config.seed)?;
                (kept, Some(held))
            }
            _ => (train_split, None),
        };
        let schema = index.schema.clone();
        let tokenizer = tokenizer::for_dataset(
            &schema,
            &train_split,
            config.engine.text_weights.as_deref(),
            kind == DatasetKind::Manifest,
        )
        .map_err(anyhow::Error::msg)?;
        let vocab = tokenizer.as_ref().map_or(0, |t| t.vocab_size());
        let (modality_slots, setup) = Self::setup(&config, &schema, &train_split, method)?;
        let loaders = Loaders {
            schema: &schema,
            tokenizer: &tokenizer,
            base: base_loader(&config),
        };
        let train = loaders.train(&config, method, setup.attribute);
        let groups = match method.group_samples() {
            0 => Vec::new(),
            n => (group_splits(&train_split, setup.attribute).into_iter())
                .map(|(g, split)| {
                    let mut cfg = train.clone();
                    (cfg.batch_size, cfg.drop_last, cfg.balance) = (n, false, None);
                    cfg.seed = config.seed.wrapping_add(g as u64 + 1);
                    Ok((g, loaders.load(&split, cfg)?))
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let (model_config, pretrained) =
            Self::model_config(&config, &schema, &modality_slots, &setup, method, vocab)?;
        let holdout = (holdout_split.as_ref())
            .map(|split| loaders.load(split, loaders.base.clone()))
            .transpose()?;
        let base = loaders.base.clone();
        Ok(Run {
            holdout,
            train: loaders.load(&train_split, train)?,
            val: loaders.load(&val_split, loaders.base.clone())?,
            test: loaders.load(&test_split, base)?,
            groups,
            tokenizer,
            device: config.device.device()?.autodiff(),
            config,
            schema,
            modality_slots,
            model_config,
            setup,
            pretrained,
        })
    }

    /// The method's modalities (their positions in the dataset's) and what it is told before
    /// training; its refusal names the method and the dataset.
    fn setup(
        config: &TrainConfig,
        schema: &Schema,
        train: &SplitIndex,
        method: &mut dyn Method,
    ) -> anyhow::Result<(Vec<usize>, Setup)> {
        let attribute = schema.attribute(&config.attribute).with_context(|| {
            let names: Vec<&str> = schema.attributes.iter().map(|a| a.name.as_str()).collect();
            format!(
                "unknown attribute '{}'; available: {}",
                config.attribute,
                names.join(", ")
            )
        })?;
        let names: Vec<String> = schema.modalities.iter().map(|m| m.name.clone()).collect();
        let chosen = method.modalities(&names).map_err(anyhow::Error::msg)?;
        let slots: Vec<usize> = (chosen.iter())
            .map(|c| {
                names
                    .iter()
                    .position(|n| n == c)
                    .expect("chosen from names")
            })
            .collect();
        let (group_counts, unknown) = group_counts(train, attribute);
        let setup = Setup {
            modalities: slots.len(),
            attributes: schema.attributes.iter().map(|a| a.name.clone()).collect(),
            attribute,
            group_counts,
            unknown,
            classes: schema.classes.len(),
        };
        (method.prepare(&setup))
            .map_err(|e| anyhow::anyhow!("{} on {}: {e}", config.method, config.dataset.name()))?;
        Ok((slots, setup))
    }

    /// The model over the chosen modalities: a FIN layer if the method asks, tabular widths
    /// from the data, and pretrained encoders sized from their folders' config.json.
    fn model_config(
        config: &TrainConfig,
        schema: &Schema,
        slots: &[usize],
        setup: &Setup,
        method: &dyn Method,
        vocab: usize,
    ) -> anyhow::Result<(ModelConfig, Vec<(usize, String, PathBuf)>)> {
        let engine = &config.engine;
        let kinds: Vec<(&str, &str)> = (slots.iter())
            .map(|&i| {
                (
                    schema.modalities[i].name.as_str(),
                    schema.modalities[i].kind.name(),
                )
            })
            .collect();
        let classes = schema.classes.len();
        let mut model =
            config
                .model
                .model(&kinds, engine.image_size, engine.slices, vocab, classes);
        if method.fair_norm() {
            model.fin_groups = Some(setup.group_counts.len());
        }
        let mut model = model.with_readout(method.readout(setup));
        for ((_, encoder), &i) in model.modalities.iter_mut().zip(slots) {
            if let (EncoderConfig::Tabular(c), Some(t)) = (encoder, &schema.modalities[i].tabular) {
                c.inputs = t.width();
            }
        }
        let mut pretrained = Vec::new();
        for (j, (name, encoder)) in model.modalities.iter_mut().enumerate() {
            for (key, folder) in engine.weights() {
                if size_encoder(
                    encoder,
                    key,
                    folder,
                    engine.image_size,
                    vocab,
                    engine.max_tokens,
                )
                .map_err(anyhow::Error::msg)?
                {
                    pretrained.push((j, name.clone(), folder.to_path_buf()));
                }
            }
            encoder
                .check_inputs(engine.max_tokens)
                .map_err(anyhow::Error::msg)?;
        }
        Ok((model, pretrained))
    }

    /// An evaluation loader over `split` (a run's preprocessing and tokenizer): what reads
    /// samples for a check outside training.
    pub fn loader(&self, split: &SplitIndex) -> anyhow::Result<Loader> {
        let mut config = base_loader(&self.config);
        config.batch_size = 1;
        Loader::new(&self.schema, split, config, self.tokenizer.clone()).map_err(anyhow::Error::msg)
    }

    /// The model's inputs from a loader batch, on the device; `drop` marks one model modality
    /// missing for every sample.
    pub fn device_batch(&self, batch: &Batch, drop: Option<usize>) -> anyhow::Result<DeviceBatch> {
        let device = &self.device;
        let inputs = (self.modality_slots.iter())
            .map(|&i| {
                let (name, modality) = &batch.modalities[i];
                let input = match modality {
                    m @ ModalityBatch::Float { shape, .. } if shape.len() == 2 => {
                        m.float_tensor(device).map(ModalityInput::Rows)
                    }
                    m @ ModalityBatch::Float { .. } => {
                        m.float_tensor(device).map(ModalityInput::Pixels)
                    }
                    m @ ModalityBatch::Tokens { .. } => m
                        .token_tensors(device)
                        .map(|(ids, mask)| ModalityInput::Tokens(ids, mask)),
                };
                input.with_context(|| format!("modality {name}: a batch of unexpected shape"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let available: Vec<Vec<bool>> = (self.modality_slots.iter().enumerate())
            .map(|(j, &i)| {
                batch.available[i]
                    .iter()
                    .map(|&a| a && drop != Some(j))
                    .collect()
            })
            .collect();
        let classes = self.schema.classes.len();
        let (labels, codes) = (&batch.labels, batch.codes.clone());
        let db =
            DeviceBatch::with_classes(inputs, labels, classes, codes, self.setup.attribute, device);
        Ok(db.with_available(&available))
    }
}
