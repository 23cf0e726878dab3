//! The training engine: seeded runs, AdamW, global gradient clipping, a cosine schedule,
//! validation each epoch, model selection on validation only, test evaluation of the selected
//! epoch, resumable checkpoints, and the outputs of DESIGN §8.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use multifair_core::clip::clip_grad_norm;
use multifair_core::{DeviceBatch, Method, Params, REGISTRY, Setup, create, ovr_tasks, to_host};
use multifair_data::loader::{Batch, Loader, LoaderConfig, ModalityBatch};
use multifair_data::manifest::{self, training_words};
use multifair_data::preprocess::Augment;
use multifair_data::synthetic::NOTE_WORDS;
use multifair_data::tokenizer::WordPiece;
use multifair_data::{
    BadFilePolicy, DatasetIndex, DatasetKind, ModalityKind, Schema, Split, SplitIndex,
};
use multifair_metrics::{GroupFrame, Predictions};
use multifair_models::presets::ModelSize;
use multifair_models::pretrained::{
    ImportReport, WEIGHT_KEYS, bert_config, load_bert, load_vit, vit_config,
};
use multifair_models::vit::VitConfig;
use multifair_models::{Encoder, EncoderConfig, ModalityInput, ModelConfig, MultimodalModel};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::device;
use crate::evaluate::{PredictionTable, macro_mean, report_json};
use crate::optim::{Optimizers, Schedule};

/// Engine keys accepted by `--set`, with defaults (method keys come from the registry).
pub const ENGINE_KEYS: &[(&str, &str)] = &[
    ("lr", "3e-4 (tiny), 3e-5 (paper)"),
    ("encoder_lr", "lr (encoders and their projections)"),
    ("fusion_lr", "lr (fusion transformer and head)"),
    ("aux_lr", "lr / 3 (the reference: 1e-5 against 3e-5)"),
    ("optimizer", "adamw (or adam, sgd)"),
    ("momentum", "0.9 (sgd)"),
    ("nesterov", "false (sgd)"),
    ("betas", "0.9,0.999 (adam, adamw)"),
    ("eps", "1e-8 (adam, adamw)"),
    ("weight_decay", "6e-3"),
    ("aux_weight_decay", "3e-3"),
    ("schedule", "cosine (or constant, step, plateau)"),
    ("warmup_epochs", "1"),
    ("step_size", "30 (epochs, step)"),
    ("gamma", "0.1 (step)"),
    ("plateau_patience", "10 (plateau)"),
    ("plateau_factor", "0.1 (plateau)"),
    (
        "early_stopping",
        "0 (epochs without a better selection score; 0: off)",
    ),
    ("batch_size", "32"),
    ("clip", "0.8"),
    ("selection", "auc (or es_auc, dto)"),
    ("workers", "2"),
    ("image_size", "the model size's (tiny 32, paper 224)"),
    ("slices", "the model size's (tiny 8, paper 10)"),
    ("max_tokens", "128"),
    (
        "fundus_weights",
        "none (a local HF ViT folder for the image encoders)",
    ),
    (
        "oct_weights",
        "none (a local HF ViT folder for the OCT slice encoder)",
    ),
    (
        "text_weights",
        "none (a local HF BERT folder, with its tokenizer, for the notes)",
    ),
    (
        "preset",
        "none (a method's settings for one of its paper's datasets, below)",
    ),
];

/// The `--set` keys of the engine and of every method, with defaults (for `train --help`).
pub fn keys_help() -> String {
    let mut text = String::from("Engine keys (--set key=value):\n");
    for (k, v) in ENGINE_KEYS {
        text += &format!("  {k:<18} {v}\n");
    }
    for m in REGISTRY {
        text += &format!("\nMethod {} — {}\n", m.name, m.about);
        for (k, v) in m.keys {
            text += &format!("  {k:<26} {v}\n");
        }
        for (k, v) in m.defaults {
            text += &format!("  (paper default) {k}={v}\n");
        }
        for (name, pairs) in m.presets {
            let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            text += &format!("  (preset={name}) {}\n", pairs.join(" "));
        }
    }
    text
}

/// The attributes a run may select on: the built-in datasets' or those a manifest's TOML
/// declares.
pub fn attribute_names(dataset: DatasetKind, data_dir: &Path) -> anyhow::Result<Vec<String>> {
    Ok(if dataset == DatasetKind::Manifest {
        manifest::read_toml(data_dir)?
            .attributes
            .into_iter()
            .map(|a| a.name)
            .collect()
    } else {
        dataset
            .attributes()
            .iter()
            .map(|a| a.name.to_owned())
            .collect()
    })
}

/// Everything that decides a run's result; written to `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    pub method: String,
    /// The attribute model selection uses (ES-AUC, DTO); every attribute is evaluated.
    pub attribute: String,
    pub seed: u64,
    pub epochs: usize,
    pub model: ModelSize,
    pub device: String,
    pub lr: f64,
    /// Rates of the parameter groups (default `lr`; auxiliary heads `lr / 3`).
    pub encoder_lr: f64,
    pub fusion_lr: f64,
    pub aux_lr: f64,
    /// `adamw` (the reference's), `adam` or `sgd` (with momentum, as OGM-GE tunes).
    pub optimizer: String,
    pub momentum: f64,
    pub nesterov: bool,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// The auxiliary heads' own optimizer's weight decay.
    pub aux_weight_decay: f64,
    /// `cosine` (to 0, per step), `constant`, `step` (StepLR per epoch) or `plateau`
    /// (ReduceLROnPlateau on the validation loss), after `warmup_epochs` of linear warm-up.
    pub schedule: String,
    pub warmup_epochs: usize,
    pub step_size: usize,
    pub gamma: f64,
    pub plateau_patience: usize,
    pub plateau_factor: f64,
    /// Stop after this many epochs without a better selection score (0: never).
    pub early_stopping: usize,
    pub batch_size: usize,
    pub clip: f64,
    pub selection: String,
    pub workers: usize,
    pub image_size: usize,
    pub slices: usize,
    pub max_tokens: usize,
    /// Pretrained encoders by `--set` key (`fundus_weights`, `oct_weights`, `text_weights`):
    /// local Hugging Face folders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, PathBuf>,
    /// `--set` keys the method reads.
    pub method_params: BTreeMap<String, String>,
    /// The method preset applied (`--set preset=NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
}

impl TrainConfig {
    /// Resolves `--set` pairs over the defaults; an unknown key is an error listing the known.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        dataset: DatasetKind,
        data_dir: PathBuf,
        method: &str,
        attribute: &str,
        seed: u64,
        epochs: usize,
        model: ModelSize,
        device: &str,
        sets: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let info = REGISTRY.iter().find(|m| m.name == method).ok_or_else(|| {
            let names: Vec<_> = REGISTRY.iter().map(|m| m.name).collect();
            anyhow::anyhow!("unknown method '{method}'; available: {}", names.join(", "))
        })?;
        let names = attribute_names(dataset, &data_dir)?;
        if !names.iter().any(|a| a == attribute) {
            bail!(
                "unknown attribute '{attribute}' for {}; available: {}",
                dataset.name(),
                names.join(", ")
            );
        }
        let (image_size, slices) = model.inputs();
        let mut config = TrainConfig {
            dataset,
            data_dir,
            method: method.to_owned(),
            attribute: attribute.to_owned(),
            seed,
            epochs,
            model,
            device: device.to_owned(),
            lr: if model == ModelSize::Tiny { 3e-4 } else { 3e-5 },
            encoder_lr: f64::NAN,
            fusion_lr: f64::NAN,
            aux_lr: f64::NAN,
            optimizer: "adamw".into(),
            momentum: 0.9,
            nesterov: false,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 6e-3,
            aux_weight_decay: 3e-3,
            schedule: "cosine".into(),
            warmup_epochs: 1,
            step_size: 30,
            gamma: 0.1,
            plateau_patience: 10,
            plateau_factor: 0.1,
            early_stopping: 0,
            batch_size: 32,
            clip: 0.8,
            selection: "auc".into(),
            workers: 2,
            image_size,
            slices,
            max_tokens: 128,
            weights: BTreeMap::new(),
            method_params: BTreeMap::new(),
            preset: None,
        };
        // The method's paper defaults come first; the command line overrides them.
        let defaults = info
            .defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        // A preset (`--set preset=NAME`) comes next, then the rest of the command line.
        let preset = sets
            .iter()
            .rev()
            .find(|(k, _)| k == "preset")
            .map(|(_, v)| v.clone());
        let preset_sets: &[(&str, &str)] = match &preset {
            None => &[],
            Some(name) => {
                let names: Vec<&str> = info.presets.iter().map(|(n, _)| *n).collect();
                info.presets
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, pairs)| *pairs)
                    .ok_or_else(|| {
                        if names.is_empty() {
                            anyhow::anyhow!("--set preset={name}: method '{method}' has no presets")
                        } else {
                            anyhow::anyhow!(
                                "--set preset={name}: method '{method}' has presets {}",
                                names.join(", ")
                            )
                        }
                    })?
            }
        };
        let sets: Vec<(String, String)> = defaults
            .chain(
                preset_sets
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .chain(sets.iter().filter(|(k, _)| k != "preset").cloned())
            .collect();
        config.preset = preset;
        for (key, value) in &sets {
            let number = || {
                value
                    .parse::<f64>()
                    .with_context(|| format!("--set {key}={value}: expected a number"))
            };
            let count = || {
                value
                    .parse::<usize>()
                    .with_context(|| format!("--set {key}={value}: expected a count"))
            };
            let one_of = |options: &[&str]| {
                ensure!(
                    options.contains(&value.as_str()),
                    "--set {key}={value}: expected one of {}",
                    options.join(", ")
                );
                Ok(value.clone())
            };
            match key.as_str() {
                "lr" => config.lr = number()?,
                "encoder_lr" => config.encoder_lr = number()?,
                "fusion_lr" => config.fusion_lr = number()?,
                "aux_lr" => config.aux_lr = number()?,
                "weight_decay" => config.weight_decay = number()?,
                "aux_weight_decay" => config.aux_weight_decay = number()?,
                "momentum" => config.momentum = number()?,
                "nesterov" => config.nesterov = one_of(&["true", "false"])? == "true",
                "eps" => config.eps = number()?,
                "betas" => {
                    let parts: Vec<f64> = value
                        .split(',')
                        .map(|p| p.trim().parse::<f64>())
                        .collect::<Result<_, _>>()
                        .ok()
                        .filter(|p: &Vec<f64>| p.len() == 2)
                        .with_context(|| {
                            format!("--set betas={value}: expected two numbers, e.g. 0.9,0.999")
                        })?;
                    config.betas = (parts[0], parts[1]);
                }
                "optimizer" => config.optimizer = one_of(&["adamw", "adam", "sgd"])?,
                "schedule" => config.schedule = one_of(&["cosine", "constant", "step", "plateau"])?,
                "step_size" => config.step_size = count()?,
                "gamma" => config.gamma = number()?,
                "plateau_patience" => config.plateau_patience = count()?,
                "plateau_factor" => config.plateau_factor = number()?,
                "early_stopping" => config.early_stopping = count()?,
                "clip" => config.clip = number()?,
                "batch_size" => config.batch_size = count()?,
                "warmup_epochs" => config.warmup_epochs = count()?,
                "workers" => config.workers = count()?,
                "image_size" => config.image_size = count()?,
                "slices" => config.slices = count()?,
                "max_tokens" => config.max_tokens = count()?,
                _ if WEIGHT_KEYS.iter().any(|(k, _)| k == key) => {
                    let folder = PathBuf::from(value);
                    ensure!(
                        folder.is_dir(),
                        "--set {key}={value}: no such folder (weights are read from local folders only)"
                    );
                    config.weights.insert(key.clone(), folder);
                }
                "selection" => config.selection = one_of(&["auc", "es_auc", "dto"])?,
                _ if info.keys.iter().any(|(k, _)| k == key) => {
                    config.method_params.insert(key.clone(), value.clone());
                }
                _ => {
                    let mut known: Vec<&str> = ENGINE_KEYS.iter().map(|(k, _)| *k).collect();
                    known.extend(info.keys.iter().map(|(k, _)| *k));
                    bail!(
                        "unknown key '{key}' for method '{method}'; known keys: {}",
                        known.join(", ")
                    );
                }
            }
        }
        for (rate, default) in [
            (&mut config.encoder_lr, config.lr),
            (&mut config.fusion_lr, config.lr),
            (&mut config.aux_lr, config.lr / 3.0),
        ] {
            if rate.is_nan() {
                *rate = default;
            }
        }
        ensure!(
            config.batch_size > 0 && config.epochs > 0 && config.step_size > 0,
            "batch size, epochs and step_size must be at least 1"
        );
        Ok(config)
    }
}

/// What a checkpoint records besides the model and optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    config: TrainConfig,
    epochs_done: usize,
    best_epoch: Option<usize>,
    best_score: f64,
    method_state: BTreeMap<String, f64>,
    schedule: Schedule,
    /// Early stopping ended the run after this epoch.
    stopped_early: Option<usize>,
}

/// Validation or test predictions: fused probability, each modality's auxiliary probability,
/// labels and codes.
struct Scored {
    /// Fused class probabilities, [sample][class].
    probs: Vec<Vec<f64>>,
    /// Each modality's auxiliary class probabilities, [modality][sample][class].
    aux: Vec<Vec<Vec<f64>>>,
    /// Class index of each sample.
    labels: Vec<u8>,
    codes: Vec<Vec<i64>>,
}

/// One one-vs-rest task of scored samples: class `c`'s probabilities and who has class `c`
/// (for two classes the only task is class 1: the usual binary problem).
fn task(probs: &[Vec<f64>], labels: &[u8], c: usize) -> anyhow::Result<Predictions> {
    let p = probs.iter().map(|p| p[c]).collect();
    let y = labels.iter().map(|&l| l as usize == c).collect();
    Ok(Predictions::new(p, y, 0.5)?)
}

/// Each one-vs-rest task's group frame over `codes`.
fn task_frames(
    probs: &[Vec<f64>],
    labels: &[u8],
    codes: &[i64],
    classes: usize,
) -> anyhow::Result<Vec<GroupFrame>> {
    ovr_tasks(classes)
        .map(|c| Ok(GroupFrame::new(&task(probs, labels, c)?, codes)?))
        .collect()
}

/// Group code -> the group's AUC, macro-averaged over the tasks' frames.
fn group_aucs(frames: &[GroupFrame]) -> BTreeMap<String, Option<f64>> {
    frames[0]
        .groups
        .keys()
        .map(|c| {
            let per_task = frames.iter().map(|f| f.groups.get(c).and_then(|g| g.auc));
            (c.to_string(), macro_mean(per_task))
        })
        .collect()
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Steps between host reads of the training loss.
const LOSS_READ_EVERY: usize = 20;

/// A run in progress.
struct Run {
    config: TrainConfig,
    device: Device,
    schema: Schema,
    /// Positions of the model's modalities in the dataset's batches.
    modality_slots: Vec<usize>,
    model_config: ModelConfig,
    /// Training samples per group of the run's attribute, and how many have an unknown code.
    setup: Setup,
    /// (model modality index, name, folder) of each pretrained encoder.
    pretrained: Vec<(usize, String, PathBuf)>,
    train: Loader,
    val: Loader,
    test: Loader,
}

/// Words kept in a manifest's own vocabulary (when its text has no `text_weights`).
const MANIFEST_WORDS: usize = 5000;

impl Run {
    fn new(config: TrainConfig, method: &mut dyn Method) -> anyhow::Result<Self> {
        let kind = config.dataset;
        let index = DatasetIndex::open(kind, &config.data_dir, BadFilePolicy::Fail)?;
        let split = |which: Split| {
            index
                .split(which)
                .cloned()
                .with_context(|| format!("{} has no {} split", kind.name(), which.name()))
        };
        let (train_split, val_split) = match index.split(Split::Val) {
            Some(val) => (split(Split::Train)?, val.clone()),
            // Harvard-GF ships train and test only: every 8th training sample validates,
            // so that model selection never sees the test split.
            None => {
                let mut train = split(Split::Train)?;
                let mut val = train.clone();
                val.split = Split::Val;
                val.samples.clear();
                for (i, sample) in std::mem::take(&mut train.samples).into_iter().enumerate() {
                    if i % 8 == 7 {
                        val.samples.push(sample)
                    } else {
                        train.samples.push(sample)
                    }
                }
                (train, val)
            }
        };
        let schema = index.schema.clone();
        let tokenizer = match config.weights.get("text_weights") {
            _ if !schema.has_text() => None,
            Some(folder) => Some(
                WordPiece::from_folder(folder)
                    .with_context(|| format!("--set text_weights={}", folder.display()))?,
            ),
            // A manifest's texts get a word vocabulary of their training rows.
            None if kind == DatasetKind::Manifest => {
                let (mut words, mut seen) = (Vec::new(), std::collections::HashSet::new());
                for (j, m) in schema.modalities.iter().enumerate() {
                    if m.kind == ModalityKind::Text {
                        for word in training_words(&train_split.samples, j, MANIFEST_WORDS)? {
                            if seen.insert(word.clone()) {
                                words.push(word);
                            }
                        }
                    }
                }
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                Some(WordPiece::builtin(&words))
            }
            None => Some(WordPiece::builtin(&NOTE_WORDS)),
        };
        let vocab = tokenizer.as_ref().map_or(0, |t| t.vocab_size());
        let mut base = LoaderConfig::new(config.batch_size, config.image_size, config.slices);
        (base.seed, base.workers, base.max_tokens) =
            (config.seed, config.workers, config.max_tokens);
        let attribute = schema.attribute(&config.attribute).with_context(|| {
            let names: Vec<&str> = schema.attributes.iter().map(|a| a.name.as_str()).collect();
            format!(
                "unknown attribute '{}'; available: {}",
                config.attribute,
                names.join(", ")
            )
        })?;
        let mut train_config = base.clone();
        (train_config.shuffle, train_config.augment) = (true, Some(Augment::default()));
        if method.balanced_sampling() {
            train_config.balance_attribute = Some(attribute);
        }
        let loader = |s: &SplitIndex, cfg: LoaderConfig| -> anyhow::Result<Loader> {
            Loader::new(&schema, s, cfg, tokenizer.clone()).map_err(anyhow::Error::msg)
        };
        let names: Vec<String> = schema.modalities.iter().map(|m| m.name.clone()).collect();
        let chosen = method.modalities(&names).map_err(anyhow::Error::msg)?;
        let modality_slots: Vec<usize> = chosen
            .iter()
            .map(|c| {
                names
                    .iter()
                    .position(|n| n == c)
                    .expect("chosen from names")
            })
            .collect();
        let kinds: Vec<(&str, &str)> = modality_slots
            .iter()
            .map(|&i| {
                let m = &schema.modalities[i];
                (m.name.as_str(), m.kind.name())
            })
            .collect();
        let mut group_counts = Vec::new();
        let mut unknown = 0;
        for sample in &train_split.samples {
            match usize::try_from(sample.codes[attribute]) {
                Ok(g) => {
                    group_counts.resize(group_counts.len().max(g + 1), 0);
                    group_counts[g] += 1;
                }
                Err(_) => unknown += 1,
            }
        }
        let setup = Setup {
            modalities: modality_slots.len(),
            attributes: schema.attributes.iter().map(|a| a.name.clone()).collect(),
            attribute,
            group_counts,
            unknown,
            classes: schema.classes.len(),
        };
        method
            .prepare(&setup)
            .map_err(|e| anyhow::anyhow!("{} on {}: {e}", config.method, kind.name()))?;
        let mut model_config = config.model.model(
            &kinds,
            config.image_size,
            config.slices,
            vocab,
            schema.classes.len(),
        );
        if method.fair_norm() {
            model_config.fin_groups = Some(setup.group_counts.len());
        }
        // Tabular encoders take the standardised columns and their missingness indicators.
        for ((_, encoder), &i) in model_config.modalities.iter_mut().zip(&modality_slots) {
            if let (EncoderConfig::Tabular(c), Some(t)) = (encoder, &schema.modalities[i].tabular) {
                c.inputs = t.width();
            }
        }
        // Pretrained encoders take their shapes from the folder's config.json.
        let mut pretrained = Vec::new();
        for (j, (name, encoder)) in model_config.modalities.iter_mut().enumerate() {
            for (key, encoder_kind) in WEIGHT_KEYS {
                let Some(folder) = config.weights.get(*key) else {
                    continue;
                };
                let vit = |channels: usize| -> anyhow::Result<VitConfig> {
                    let mut c = vit_config(folder).map_err(anyhow::Error::msg)?;
                    ensure!(
                        c.image_size == config.image_size,
                        "--set {key}={}: the model was pretrained at {} px, the run uses {} (--set image_size={})",
                        folder.display(),
                        c.image_size,
                        config.image_size,
                        c.image_size
                    );
                    c.in_channels = channels;
                    Ok(c)
                };
                match (*encoder_kind, &mut *encoder) {
                    ("image", EncoderConfig::Image(c)) => *c = vit(3)?,
                    ("volume", EncoderConfig::Volume(c)) => c.slice = vit(1)?,
                    ("text", EncoderConfig::Text(c)) => {
                        *c = bert_config(folder).map_err(anyhow::Error::msg)?;
                        ensure!(
                            c.vocab_size == vocab,
                            "--set text_weights={}: config.json has {} tokens, its tokenizer {}",
                            folder.display(),
                            c.vocab_size,
                            vocab
                        );
                    }
                    _ => continue,
                }
                pretrained.push((j, name.clone(), folder.clone()));
            }
        }
        let device = device::parse(&config.device)?.autodiff();
        Ok(Run {
            train: loader(&train_split, train_config)?,
            val: loader(&val_split, base.clone())?,
            test: loader(&split(Split::Test)?, base)?,
            config,
            device,
            schema,
            modality_slots,
            model_config,
            setup,
            pretrained,
        })
    }

    /// The model's inputs from a loader batch, on the device; `drop` marks one model modality
    /// missing for every sample.
    fn device_batch(&self, batch: &Batch, drop: Option<usize>) -> DeviceBatch {
        let device = &self.device;
        let inputs = self
            .modality_slots
            .iter()
            .map(|&i| match &batch.modalities[i].1 {
                m @ ModalityBatch::Float { shape, .. } if shape.len() == 2 => {
                    ModalityInput::Rows(m.float_tensor(device).expect("rows"))
                }
                m @ ModalityBatch::Float { .. } => {
                    ModalityInput::Pixels(m.float_tensor(device).expect("float"))
                }
                m @ ModalityBatch::Tokens { .. } => {
                    let (ids, mask) = m.token_tensors(device).expect("tokens");
                    ModalityInput::Tokens(ids, mask)
                }
            })
            .collect();
        let available: Vec<Vec<bool>> = self
            .modality_slots
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let dropped = drop == Some(j);
                batch.available[i].iter().map(|&a| a && !dropped).collect()
            })
            .collect();
        DeviceBatch::with_classes(
            inputs,
            &batch.labels,
            self.schema.classes.len(),
            batch.codes.clone(),
            self.attribute_index(),
            device,
        )
        .with_available(&available)
    }

    /// Scores every sample of `loader` with the model in evaluation mode; `zero` takes one
    /// modality out (for the modality x group report): as missing where the model learned with
    /// missing modalities (manifests), else as a blank input.
    fn score(
        &self,
        model: &MultimodalModel,
        loader: &Loader,
        zero: Option<usize>,
    ) -> anyhow::Result<Scored> {
        let model = model.valid();
        let m = self.modality_slots.len();
        let mut scored = Scored {
            probs: Vec::new(),
            aux: vec![Vec::new(); m],
            labels: Vec::new(),
            codes: vec![Vec::new(); self.schema.attributes.len()],
        };
        let classes = self.model_config.classes;
        let host = |logits: Tensor<2>| -> anyhow::Result<Vec<Vec<f64>>> {
            let flat =
                to_host(softmax(logits, 1).flatten::<1>(0, 1)).map_err(anyhow::Error::msg)?;
            Ok(flat.chunks(classes).map(<[f64]>::to_vec).collect())
        };
        let masked = self.config.dataset == DatasetKind::Manifest;
        let (drop, zero) = (zero.filter(|_| masked), zero.filter(|_| !masked));
        for batch in loader.epoch(0) {
            let batch = batch?;
            let mut db = self.device_batch(&batch, drop);
            // Inputs move to the evaluation (non-autodiff) device with the model.
            let plain = self.device.clone().inner();
            db.inputs = db
                .inputs
                .into_iter()
                .enumerate()
                .map(|(j, input)| match input {
                    ModalityInput::Pixels(x) => {
                        let x = x.to_device(&plain);
                        ModalityInput::Pixels(if zero == Some(j) { x.zeros_like() } else { x })
                    }
                    ModalityInput::Tokens(ids, mask) => {
                        let (ids, mask) = (ids.to_device(&plain), mask.to_device(&plain));
                        if zero == Some(j) {
                            ModalityInput::Tokens(ids.zeros_like(), mask)
                        } else {
                            ModalityInput::Tokens(ids, mask)
                        }
                    }
                    ModalityInput::Rows(x) => ModalityInput::Rows(x.to_device(&plain)),
                })
                .collect();
            let groups = db.group_ids.to_device(&plain);
            let available = db.available.map(|a| a.to_device(&plain));
            let tokens = model.encode(db.inputs);
            scored.probs.extend(host(model.fuse(
                &tokens,
                Some(&groups),
                available.as_ref(),
            ))?);
            for (j, logits) in model.aux_logits(&tokens).into_iter().enumerate() {
                scored.aux[j].extend(host(logits)?);
            }
            scored.labels.extend(&batch.labels);
            for (a, codes) in batch.codes.into_iter().enumerate() {
                scored.codes[a].extend(codes);
            }
        }
        Ok(scored)
    }

    fn attribute_index(&self) -> usize {
        self.schema
            .attribute(&self.config.attribute)
            .expect("checked in Run::new")
    }

    /// The selection score (higher is better) and the validation summary for `metrics.jsonl`.
    fn validate(&self, scored: &Scored) -> anyhow::Result<(f64, Value)> {
        let classes = self.model_config.classes;
        let frames =
            |a: usize| task_frames(&scored.probs, &scored.labels, &scored.codes[a], classes);
        let selected = frames(self.attribute_index())?;
        let auc = macro_mean(selected.iter().map(|f| f.overall.auc));
        let es_auc = macro_mean(selected.iter().map(GroupFrame::es_auc));
        let dto =
            ((1.0 - auc.unwrap_or(0.5)).powi(2) + (1.0 - es_auc.unwrap_or(0.0)).powi(2)).sqrt();
        // Cross-entropy of the fused prediction (what ReduceLROnPlateau watches).
        let loss = scored
            .probs
            .iter()
            .zip(&scored.labels)
            .map(|(p, &y)| {
                // Two classes: from the positive probability, as the binary reports read it.
                let p_true = match (p.len(), y) {
                    (2, 0) => 1.0 - p[1],
                    _ => p[y as usize],
                };
                -p_true.clamp(1e-7, 1.0).ln()
            })
            .sum::<f64>()
            / scored.probs.len().max(1) as f64;
        let score = match self.config.selection.as_str() {
            "es_auc" => es_auc.unwrap_or(0.0),
            "dto" => -dto,
            _ => auc.unwrap_or(0.5),
        };
        let mut gaps = serde_json::Map::new();
        for (a, attribute) in self.schema.attributes.iter().enumerate() {
            let gap = macro_mean(frames(a)?.iter().map(GroupFrame::auc_gap));
            gaps.insert(attribute.name.clone(), json!(gap));
        }
        let mut aux = serde_json::Map::new();
        for (name, probs) in self.model_config.names().iter().zip(&scored.aux) {
            let per_task = ovr_tasks(self.model_config.classes)
                .map(|c| Ok(task(probs, &scored.labels, c)?.auc()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            aux.insert(name.to_string(), json!(macro_mean(per_task)));
        }
        let group_auc = group_aucs(&selected);
        Ok((
            score,
            json!({
                "loss": loss, "auc": auc, "es_auc": es_auc, "dto": dto,
                "group_auc": group_auc, "auc_gap": gaps, "aux_auc": aux,
            }),
        ))
    }
}

/// Options that control a run but not its result.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many epochs, leaving a checkpoint to resume from (as if killed).
    pub stop_after: Option<usize>,
    /// Print nothing but errors.
    pub quiet: bool,
}

fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Trains `config` into `out`, resuming from `out/checkpoint` when it holds a run of the same
/// config. Returns the test report.
pub fn train(config: TrainConfig, out: &Path, options: &RunOptions) -> anyhow::Result<Value> {
    let mut method = create(&config.method, &Params(config.method_params.clone()))
        .map_err(anyhow::Error::msg)?;
    let run = Run::new(config.clone(), method.as_mut())?;
    std::fs::create_dir_all(out.join("checkpoint"))
        .with_context(|| format!("creating {}", out.display()))?;
    let say = |line: String| {
        if !options.quiet {
            eprintln!("{line}");
        }
    };

    let device = run.device.clone();
    device.seed(config.seed);
    let mut model = run.model_config.init(&device);
    let mut imported = Vec::new();
    if !out.join("checkpoint/state.json").is_file() {
        for (j, name, folder) in &run.pretrained {
            let (encoder, report) = load_pretrained(&model.encoders[*j], folder, &device)
                .map_err(anyhow::Error::msg)?;
            model.encoders[*j] = encoder;
            say(format!(
                "{name}: {} tensors from {}{}",
                report.applied,
                report.file.display(),
                if report.ignored.is_empty() {
                    String::new()
                } else {
                    format!(" (not used: {})", report.ignored.join(", "))
                }
            ));
            imported.push(
                json!({"modality": name, "file": report.file, "tensors": report.applied,
                                 "not_used": report.ignored}),
            );
        }
    }
    let mut optim = Optimizers::new(&config);
    let state_path = out.join("checkpoint/state.json");
    let mut state = CheckpointState {
        config: config.clone(),
        epochs_done: 0,
        best_epoch: None,
        best_score: f64::NEG_INFINITY,
        method_state: BTreeMap::new(),
        schedule: Schedule::default(),
        stopped_early: None,
    };
    if state_path.is_file() {
        let saved: CheckpointState =
            serde_json::from_str(&std::fs::read_to_string(&state_path)?)
                .with_context(|| format!("reading {}", state_path.display()))?;
        ensure!(
            saved.config == config,
            "{} holds a checkpoint of a different configuration; use another --out",
            out.display()
        );
        model = model
            .try_load_file(out.join("checkpoint/model.bpk"))
            .map_err(|e| {
                anyhow::anyhow!(
                    "loading {}: {e:?}",
                    out.join("checkpoint/model.bpk").display()
                )
            })?;
        optim = optim.load(&out.join("checkpoint"))?;
        method.load_state(&saved.method_state);
        state = saved;
        say(format!(
            "resuming {} after epoch {}",
            out.display(),
            state.epochs_done
        ));
    } else {
        // A fresh run: earlier logs in this folder belong to another run.
        let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    }
    write_json(
        &out.join("run.json"),
        &json!({
            "config": &config,
            "model": &run.model_config,
            "modalities": run.model_config.names(),
            "train_groups": {
                "attribute": &config.attribute,
                "counts": &run.setup.group_counts,
                "unknown": run.setup.unknown,
            },
            "pretrained": imported,
            "git_commit": git_commit(),
            "versions": {"multifair": env!("CARGO_PKG_VERSION"), "burn": "0.22.1"},
        }),
    )?;

    let steps_per_epoch = run.train.len();
    let terminal = std::io::stderr().is_terminal() && !options.quiet;
    let last_epoch = state.stopped_early.unwrap_or(config.epochs);
    for epoch in state.epochs_done..last_epoch {
        if options.stop_after.is_some_and(|n| epoch >= n) {
            say(format!(
                "stopping after epoch {epoch} as asked; rerun the same command to resume"
            ));
            return Ok(Value::Null);
        }
        let started = Instant::now();
        method.start_epoch(epoch);
        // Dropout draws from the device generator: reseeding per epoch makes a resumed run
        // continue exactly as an uninterrupted one.
        device.seed(mix(config.seed, epoch as u64 + 1));
        let bar = if terminal {
            let bar = ProgressBar::new(steps_per_epoch as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {msg} {bar:30} {pos}/{len} {elapsed}<{eta}")
                    .expect("template"),
            );
            bar.set_message(format!("{}/{}", epoch + 1, config.epochs));
            bar
        } else {
            ProgressBar::hidden()
        };
        let (mut loss_sum, mut steps) = (0.0, 0usize);
        // Methods may log every k steps: each statistic is averaged over the steps that logged it.
        let mut stats_sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        // Per-step lines (`{"step", "epoch", "stats"}`), written with the epoch's line so that a
        // resumed run does not repeat them.
        let mut step_lines = String::new();
        // Losses stay on the device and are read every LOSS_READ_EVERY steps (one host read,
        // not one per step); the NaN guard then names the first bad step exactly.
        let mut pending: Vec<(usize, usize, Tensor<1>)> = Vec::new();
        let check = |pending: &mut Vec<(usize, usize, Tensor<1>)>| -> anyhow::Result<f64> {
            if pending.is_empty() {
                return Ok(0.0);
            }
            let losses = to_host(Tensor::cat(
                pending.iter().map(|(_, _, l)| l.clone()).collect(),
                0,
            ))
            .map_err(anyhow::Error::msg)?;
            for ((step, b, _), loss) in pending.iter().zip(&losses) {
                if !loss.is_finite() {
                    bail!(
                        "loss is {loss} at epoch {} step {step} (batch {b} of the epoch); the run stops here ({})",
                        epoch + 1,
                        if epoch == 0 {
                            "no epoch had finished, so there is no checkpoint".to_owned()
                        } else {
                            format!(
                                "epoch {epoch}'s checkpoint is in {}",
                                out.join("checkpoint").display()
                            )
                        }
                    );
                }
            }
            pending.clear();
            Ok(losses.iter().sum())
        };
        for (b, batch) in run.train.epoch(epoch as u64).enumerate() {
            let batch = batch?;
            let step = epoch * steps_per_epoch + b;
            let db = run.device_batch(&batch, None);
            let mut output = method.step(&model, &db);
            clip_grad_norm(&model, &mut output.grads, config.clip);
            let factor = state.schedule.factor(&config, step, steps_per_epoch);
            model = optim.step(&config, factor, model, output.grads);
            pending.push((step, b, output.loss));
            if pending.len() == LOSS_READ_EVERY {
                loss_sum += check(&mut pending)?;
            }
            steps += 1;
            if !output.stats.is_empty() {
                step_lines +=
                    &json!({"step": step + 1, "epoch": epoch + 1, "stats": &output.stats})
                        .to_string();
                step_lines.push('\n');
            }
            for (k, v) in output.stats {
                let entry = stats_sum.entry(k).or_default();
                (entry.0, entry.1) = (entry.0 + v, entry.1 + 1);
            }
            bar.inc(1);
        }
        loss_sum += check(&mut pending)?;
        bar.finish_and_clear();
        let scored = run.score(&model, &run.val, None)?;
        let (score, val) = run.validate(&scored)?;
        let lr = config.lr
            * state
                .schedule
                .factor(&config, (epoch + 1) * steps_per_epoch - 1, steps_per_epoch);
        state
            .schedule
            .end_epoch(&config, val["loss"].as_f64().unwrap_or(f64::NAN));
        let improved = score > state.best_score;
        if improved {
            state.best_score = score;
            state.best_epoch = Some(epoch + 1);
            model
                .save_into(
                    &mut SafetensorsStore::from_file(out.join("model.safetensors")).overwrite(true),
                )
                .map_err(|e| anyhow::anyhow!("writing model.safetensors: {e:?}"))?;
        }
        let train_loss = loss_sum / steps.max(1) as f64;
        let stats: BTreeMap<String, f64> = stats_sum
            .into_iter()
            .map(|(k, (sum, n))| (k, sum / n as f64))
            .collect();
        let without_improvement = epoch + 1 - state.best_epoch.unwrap_or(0);
        let stop = config.early_stopping > 0 && without_improvement >= config.early_stopping;
        let line = json!({
            "epoch": epoch + 1, "train_loss": train_loss, "lr": lr,
            "val": val, "method": stats, "selected": improved,
            "epochs_without_improvement": without_improvement, "early_stop": stop,
            "seconds": started.elapsed().as_secs_f64(),
        });
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out.join("metrics.jsonl"))?;
        write!(log, "{step_lines}")?;
        writeln!(log, "{line}")?;
        say(format!(
            "epoch {}/{}: train loss {train_loss:.4}, val AUC {:.4}, {} {:.4}{} ({:.1} s)",
            epoch + 1,
            config.epochs,
            val["auc"].as_f64().unwrap_or(f64::NAN),
            config.selection,
            score.abs(),
            if improved { " (best)" } else { "" },
            started.elapsed().as_secs_f64()
        ));
        // Checkpoint: model, optimizer and the state that decides what comes next.
        state.epochs_done = epoch + 1;
        state.method_state = method.state();
        model
            .clone()
            .save_file(out.join("checkpoint/model.bpk"))
            .map_err(|e| anyhow::anyhow!("writing the model checkpoint: {e:?}"))?;
        optim.save(&out.join("checkpoint"))?;
        if stop {
            state.stopped_early = Some(epoch + 1);
        }
        write_json(&state_path, &state)?;
        if stop {
            say(format!(
                "early stopping: {without_improvement} epochs without a better validation {}",
                config.selection
            ));
            break;
        }
    }

    // Test the selected epoch's model.
    let mut best = run.model_config.init(&device);
    best.load_from(&mut SafetensorsStore::from_file(
        out.join("model.safetensors"),
    ))
    .map_err(|e| anyhow::anyhow!("reading model.safetensors: {e:?}"))?;
    let scored = run.score(&best, &run.test, None)?;
    let attributes: Vec<&str> = run
        .schema
        .attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    let classes = &run.schema.classes;
    // Two classes: `prob` is class 1's probability (what `multifair evaluate` reads); more:
    // one `prob_C` column per class.
    let prob_columns: Vec<String> = if classes.len() == 2 {
        vec!["prob".into()]
    } else {
        (0..classes.len()).map(|c| format!("prob_{c}")).collect()
    };
    let mut csv = format!(
        "{},label,{}\n",
        prob_columns.join(","),
        attributes.join(",")
    );
    for i in 0..scored.probs.len() {
        let probs: Vec<String> = ovr_tasks(classes.len())
            .map(|c| scored.probs[i][c].to_string())
            .collect();
        let codes: Vec<String> = scored.codes.iter().map(|c| c[i].to_string()).collect();
        csv += &format!(
            "{},{},{}\n",
            probs.join(","),
            scored.labels[i],
            codes.join(",")
        );
    }
    let predictions_path = out.join("predictions.csv");
    std::fs::write(&predictions_path, &csv)?;
    let table = PredictionTable::parse(&predictions_path, &csv, 0.5)?;
    let mut test_json = report_json(&table, None)?;
    if classes.len() > 2 {
        test_json["classes"] = json!(classes);
    }
    // A manifest names its groups; tables use the names.
    let named: BTreeMap<&str, &[String]> = run
        .schema
        .attributes
        .iter()
        .filter(|a| !a.groups.is_empty())
        .map(|a| (a.name.as_str(), a.groups.as_slice()))
        .collect();
    if !named.is_empty() {
        test_json["group_names"] = json!(named);
    }
    test_json["selected_epoch"] = json!(state.best_epoch);
    test_json["selection"] =
        json!({"metric": config.selection, "attribute": config.attribute, "split": "val"});
    test_json["modality_group_report"] = modality_group_report(&run, &best, &scored, &attributes)?;
    write_json(&out.join("test.json"), &test_json)?;
    say(format!(
        "test AUC {:.4} (epoch {} selected on validation); outputs in {}",
        test_json["auc"].as_f64().unwrap_or(f64::NAN),
        state.best_epoch.unwrap_or(0),
        out.display()
    ));
    Ok(test_json)
}

/// `encoder` rebuilt from the HF folder: a ViT for images, the OCT branch's slice encoder
/// (one channel: filters summed over RGB), or the text encoder.
fn load_pretrained(
    encoder: &Encoder,
    folder: &Path,
    device: &Device,
) -> Result<(Encoder, ImportReport), String> {
    Ok(match encoder {
        Encoder::Image(_) => {
            let (vit, report) = load_vit(folder, device)?;
            (Encoder::Image(vit), report)
        }
        Encoder::Volume(oct) => {
            let (vit, report) = load_vit(folder, device)?;
            (
                Encoder::Volume(oct.clone().with_slice_encoder(vit.single_channel())),
                report,
            )
        }
        Encoder::Text(_) => {
            let (bert, report) = load_bert(folder, device)?;
            (Encoder::Text(bert), report)
        }
        Encoder::Tabular(_) => return Err("tabular encoders have no pretrained weights".into()),
    })
}

/// Per modality: its auxiliary head's AUC per group, and the fused AUC per group with that
/// modality's input zeroed — which modality fails which group.
fn modality_group_report(
    run: &Run,
    model: &MultimodalModel,
    scored: &Scored,
    attributes: &[&str],
) -> anyhow::Result<Value> {
    let groups = |probs: &[Vec<f64>]| -> anyhow::Result<Value> {
        let mut out = serde_json::Map::new();
        for (a, name) in attributes.iter().enumerate() {
            let frames = task_frames(
                probs,
                &scored.labels,
                &scored.codes[a],
                run.model_config.classes,
            )?;
            let per = group_aucs(&frames);
            let overall = macro_mean(frames.iter().map(|f| f.overall.auc));
            out.insert(name.to_string(), json!({"overall": overall, "groups": per}));
        }
        Ok(Value::Object(out))
    };
    let mut report = serde_json::Map::new();
    for (j, name) in run.model_config.names().iter().enumerate() {
        let zeroed = run.score(model, &run.test, Some(j))?;
        report.insert(
            name.to_string(),
            json!({"aux": groups(&scored.aux[j])?, "fused_without": groups(&zeroed.probs)?}),
        );
    }
    Ok(Value::Object(report))
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
