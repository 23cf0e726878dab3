//! A run's configuration, typed and declared once: the engine's settings ([`Engine`], one line
//! per key with its default and tuning range) and the method's hyperparameters (declared beside
//! each method). Layers are applied in order by deserialising — the model size's settings, the
//! method's paper settings, a preset, then `--set` — so a misspelt key or value is refused by
//! the types with the valid ones listed.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure};
use multifair_core::hparams::{Hparam, Hparams, Range};
use multifair_core::{MethodInfo, REGISTRY, hparams};
use multifair_data::{DatasetKind, manifest};
use multifair_models::fused::{DropoutMask, LinearOp};
use multifair_models::presets::ModelSize;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::device::DeviceSpec;
use crate::profile::Profile;

/// `torch.optim`'s optimizers, with their semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Decoupled weight decay (the reference's).
    Adamw,
    /// L2 decay added to the gradient.
    Adam,
    /// With momentum (dampening 0) and optional Nesterov.
    Sgd,
}

/// The learning-rate schedule after the optional warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Cosine to 0, per step.
    Cosine,
    Constant,
    /// StepLR: times `gamma` every `step_size` epochs.
    Step,
    /// ReduceLROnPlateau on the validation loss.
    Plateau,
}

/// What model selection maximises on the validation split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// AUC of the fused class probabilities.
    Auc,
    /// AUC of the raw fused class logit (the reference selects on `preds[:, 1]`, before any
    /// softmax; it can rank samples, and so epochs, differently).
    AucLogit,
    EsAuc,
    /// Distance to the optimum (AUC 1, ES-AUC 1), negated.
    Dto,
}

impl Selection {
    pub fn name(self) -> &'static str {
        match self {
            Selection::Auc => "auc",
            Selection::AucLogit => "auc_logit",
            Selection::EsAuc => "es_auc",
            Selection::Dto => "dto",
        }
    }
}

/// The image pipeline of photographs (resize and train-time colour augmentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pipeline {
    /// Ours: torch's bilinear resize; flip, brightness and contrast within ±0.2.
    Light,
    /// The original's: Pillow's antialiased resize; flip, then RandomApply(ColorJitter(0.4,
    /// 0.4, 0.4, 0.1), p = 0.8) in random order, in 8 bits as on its PIL images.
    Original,
}

hparams! {
    /// The engine's settings (`--set` keys). Defaults are the CPU (`tiny`) profile's.
    pub struct Engine {
        /// Base learning rate (the paper size: 3e-5).
        lr as "lr": f64 = 3e-4, Range::LogUniform(1e-5, 1e-2);
        /// Rate of the encoders and their projections (null: lr).
        encoder_lr as "encoder_lr": Option<f64> = None, Range::Fixed;
        /// Rate of the fusion transformer and head (null: lr).
        fusion_lr as "fusion_lr": Option<f64> = None, Range::Fixed;
        /// Rate of the auxiliary heads (null: lr / 3, the reference's 1e-5 against 3e-5).
        aux_lr as "aux_lr": Option<f64> = None, Range::Fixed;
        /// adamw, adam or sgd.
        optimizer as "optimizer": Optimizer = Optimizer::Adamw, Range::Choice(&["adamw", "sgd"]);
        /// SGD's momentum.
        momentum as "momentum": f64 = 0.9, Range::Fixed;
        /// SGD's Nesterov momentum.
        nesterov as "nesterov": bool = false, Range::Fixed;
        /// Adam's betas, e.g. 0.9,0.999.
        betas as "betas": (f64, f64) = (0.9, 0.999), Range::Fixed;
        /// Adam's epsilon.
        eps as "eps": f64 = 1e-8, Range::Fixed;
        /// Weight decay of the model's optimizer.
        weight_decay as "weight_decay": f64 = 6e-3, Range::LogUniform(1e-4, 1e-1);
        /// Weight decay of the auxiliary heads' own optimizer.
        aux_weight_decay as "aux_weight_decay": f64 = 3e-3, Range::Fixed;
        /// cosine, constant, step or plateau.
        schedule as "schedule": Schedule = Schedule::Cosine, Range::Fixed;
        /// Epochs of linear warm-up.
        warmup_epochs as "warmup_epochs": usize = 1, Range::Fixed;
        /// StepLR's period in epochs.
        step_size as "step_size": usize = 30, Range::Fixed;
        /// StepLR's factor.
        gamma as "gamma": f64 = 0.1, Range::Fixed;
        /// ReduceLROnPlateau's patience in epochs.
        plateau_patience as "plateau_patience": usize = 10, Range::Fixed;
        /// ReduceLROnPlateau's factor.
        plateau_factor as "plateau_factor": f64 = 0.1, Range::Fixed;
        /// Stop after this many epochs without a better selection score (0: never).
        early_stopping as "early_stopping": usize = 0, Range::Fixed;
        /// Samples per batch.
        batch_size as "batch_size": usize = 32, Range::Fixed;
        /// Global gradient-norm clipping.
        clip as "clip": f64 = 0.8, Range::Fixed;
        /// Clip the auxiliary heads' gradients together with the model's (ours); false: the
        /// model's only, as the reference's clip_grad_norm_(model.parameters()).
        clip_aux as "clip_aux": bool = true, Range::Fixed;
        /// The auxiliary heads follow the schedule too (ours); false: their rate stays constant,
        /// as the reference schedules its main optimizer only.
        schedule_aux as "schedule_aux": bool = true, Range::Fixed;
        /// auc, auc_logit, es_auc or dto on the validation split.
        selection as "selection": Selection = Selection::Auc, Range::Fixed;
        /// Photographs' pipeline: light (ours: bilinear, brightness and contrast ±0.2) or
        /// original (Pillow's antialiased resize, ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8).
        augment as "augment": Pipeline = Pipeline::Light, Range::Fixed;
        /// Dropout masks: hashed (a seed per layer call, hashed per element; fast on flex) or
        /// sampled (burn's, element by element from the generator; runs made before hashed).
        dropout_mask as "dropout_mask": DropoutMask = DropoutMask::Hashed, Range::Fixed;
        /// The transformers' linear layers: fused (one recorded operation, the weight gradient
        /// one product over all rows) or burn (its Linear; runs made before fused).
        linear_op as "linear_op": LinearOp = LinearOp::Fused, Range::Fixed;
        /// Loader threads (0: batches are read in the training thread).
        workers as "workers": usize = 2, Range::Fixed;
        /// Image and B-scan size in pixels (the paper size: 224).
        image_size as "image_size": usize = ModelSize::Tiny.inputs().0, Range::Fixed;
        /// OCT slices per volume (the paper size: 10).
        slices as "slices": usize = ModelSize::Tiny.inputs().1, Range::Fixed;
        /// Tokens per note.
        max_tokens as "max_tokens": usize = 128, Range::Fixed;
        /// Notes as the original prepares them: stripped, lower-cased, and one under 10
        /// characters replaced by "no significant clinical findings reported".
        original_notes as "original_notes": bool = false, Range::Fixed;
        /// Steps between modulation diagnostics (encoder update / parameter norm, real and
        /// unmodulated); 0: off. The counterfactual step draws its own dropout masks.
        diagnostics_every as "diagnostics_every": usize = 0, Range::Fixed;
        /// A local Hugging Face ViT folder for the image encoders.
        fundus_weights as "fundus_weights": Option<PathBuf> = None, Range::Fixed;
        /// A local Hugging Face ViT folder for the OCT slice encoder.
        oct_weights as "oct_weights": Option<PathBuf> = None, Range::Fixed;
        /// A local Hugging Face BERT folder, with its tokenizer, for the notes.
        text_weights as "text_weights": Option<PathBuf> = None, Range::Fixed;
    }
}

impl Engine {
    pub fn encoder_lr(&self) -> f64 {
        self.encoder_lr.unwrap_or(self.lr)
    }

    pub fn fusion_lr(&self) -> f64 {
        self.fusion_lr.unwrap_or(self.lr)
    }

    pub fn aux_lr(&self) -> f64 {
        self.aux_lr.unwrap_or(self.lr / 3.0)
    }

    /// The pretrained folders by key (`fundus_weights`, `oct_weights`, `text_weights`).
    pub fn weights(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("fundus_weights", &self.fundus_weights),
            ("oct_weights", &self.oct_weights),
            ("text_weights", &self.text_weights),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_deref()?)))
    }
}

/// Every `--set` key: the engine's and every registered method's.
pub fn known_keys() -> Vec<&'static str> {
    (Engine::HPARAMS.iter())
        .chain(REGISTRY.iter().flat_map(|m| m.hparams))
        .map(|h| h.key)
        .chain(["preset"])
        .collect()
}

/// Bounds on input sizes: far above any real use, far below an allocation that fails.
const MAX_IMAGE_SIZE: usize = 2048;
const MAX_SLICES: usize = 512;
const MAX_TOKENS: usize = 8192;

/// The settings a model size brings over the engine's defaults.
fn model_layer(model: ModelSize) -> Vec<(&'static str, String)> {
    match model {
        ModelSize::Tiny => Vec::new(),
        ModelSize::Paper => {
            let (image_size, slices) = model.inputs();
            vec![
                ("lr", "3e-5".into()),
                ("image_size", image_size.to_string()),
                ("slices", slices.to_string()),
            ]
        }
    }
}

/// Everything that decides a run's result; written to `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    pub method: String,
    /// The attribute model selection uses (ES-AUC, DTO); every attribute is evaluated.
    pub attribute: String,
    pub seed: u64,
    pub epochs: usize,
    pub model: ModelSize,
    pub device: DeviceSpec,
    pub engine: Engine,
    /// The method's hyperparameters, every key resolved.
    pub hparams: Value,
    /// The method preset applied (`--set preset=NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The protocol the settings were layered on (absent: `cpu`).
    #[serde(default, skip_serializing_if = "Profile::is_cpu")]
    pub profile: Profile,
}

/// What a run is asked for, before layering: the command line's or a sweep row's.
#[derive(Debug, Clone)]
pub struct Request {
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    pub method: String,
    /// None: the profile's (the original's), a manifest's first, else race.
    pub attribute: Option<String>,
    pub seed: u64,
    /// None: the profile's, else 10.
    pub epochs: Option<usize>,
    /// None: the profile's, else tiny.
    pub model: Option<ModelSize>,
    pub device: DeviceSpec,
    pub profile: Profile,
    /// The folder of pretrained folders for `--profile paper`.
    pub weights_dir: Option<PathBuf>,
    /// `--set` pairs, in order.
    pub sets: Vec<(String, String)>,
}

impl Request {
    /// A request with the defaults: seed 0, flex, the `cpu` profile, nothing set.
    pub fn new(dataset: DatasetKind, data_dir: impl Into<PathBuf>, method: &str) -> Self {
        Request {
            dataset,
            data_dir: data_dir.into(),
            method: method.to_owned(),
            attribute: None,
            seed: 0,
            epochs: None,
            model: None,
            device: DeviceSpec::Flex,
            profile: Profile::Cpu,
            weights_dir: None,
            sets: Vec::new(),
        }
    }
}

/// A `--set` value as JSON: a number, a boolean, `a,b` of numbers as a list, else a string.
pub fn set_value(text: &str) -> Value {
    let numbers: Option<Vec<f64>> = text.split(',').map(|p| p.trim().parse().ok()).collect();
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => match numbers {
            Some(list) if list.len() > 1 => Value::from(list),
            _ => Value::String(text.to_owned()),
        },
    }
}

/// Reads `values` into `T`, naming the `--set` key and value of an error.
fn typed<T: Hparams>(values: Map<String, Value>, sets: &Map<String, Value>) -> anyhow::Result<T> {
    T::from_value(&Value::Object(values)).map_err(|e| {
        let key = e.split(':').next().unwrap_or_default();
        match sets.get(key) {
            Some(v) => anyhow::anyhow!("--set {key}={}: {}", show(v), e[key.len() + 1..].trim()),
            None => anyhow::anyhow!("{e}"),
        }
    })
}

fn show(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

impl TrainConfig {
    /// Resolves the layers over the defaults; an unknown key or value is an error listing the
    /// valid ones.
    pub fn resolve(request: &Request) -> anyhow::Result<Self> {
        let Request {
            dataset,
            method,
            profile,
            ..
        } = request;
        let (dataset, method, profile) = (*dataset, method.as_str(), *profile);
        let data_dir = request.data_dir.clone();
        let names = attribute_names(dataset, &data_dir)?;
        let attribute = match (&request.attribute, profile.attribute(dataset)) {
            (Some(a), _) => a.clone(),
            (None, Some(a)) => a.to_owned(),
            (None, None) if dataset == DatasetKind::Manifest => (names.first().cloned())
                .ok_or_else(|| anyhow::anyhow!("the manifest declares no attribute"))?,
            (None, None) => "race".to_owned(),
        };
        let attribute = attribute.as_str();
        let epochs = (request.epochs.or(profile.epochs())).unwrap_or(10);
        let model = (request.model.or(profile.model())).unwrap_or(ModelSize::Tiny);
        let (seed, device, sets) = (request.seed, request.device, &request.sets[..]);
        let info = multifair_core::info(method).map_err(anyhow::Error::msg)?;
        if !names.iter().any(|a| a == attribute) {
            let known = names.join(", ");
            bail!(
                "unknown attribute '{attribute}' for {}; available: {known}",
                dataset.name()
            );
        }
        // A preset named after the dataset applies by itself unless one is given.
        let preset = sets.iter().rev().find(|(k, _)| k == "preset");
        let own = info.presets.iter().find(|(n, _)| *n == dataset.name());
        let preset = (preset.map(|(_, v)| v.clone())).or_else(|| own.map(|(n, _)| n.to_string()));
        let first = match profile {
            Profile::Cpu => model_layer(model),
            Profile::Paper => profile.layer(dataset, request.weights_dir.as_deref())?,
        };
        let layers = layers(first, info, preset.as_deref(), sets)?;
        let (engine, hparams, given) = split(layers);
        let engine: Engine = typed(engine, &given)?;
        let defaults = (info.defaults)().as_object().cloned().unwrap_or_default();
        let hparams: Map<String, Value> = defaults.into_iter().chain(hparams).collect();
        (info.build)(&Value::Object(hparams.clone()))
            .map_err(|e| method_error(method, &e, &given))?;
        let config = TrainConfig {
            dataset,
            data_dir,
            method: method.to_owned(),
            attribute: attribute.to_owned(),
            seed,
            epochs,
            model,
            device,
            engine,
            hparams: Value::Object(hparams),
            preset,
            profile,
        };
        config.check()?;
        Ok(config)
    }

    /// Checks what the types cannot: ranges of counts and rates, and folders.
    fn check(&self) -> anyhow::Result<()> {
        let e = &self.engine;
        ensure!(self.epochs > 0, "--epochs must be at least 1");
        let rates = [
            ("lr", Some(e.lr)),
            ("encoder_lr", e.encoder_lr),
            ("fusion_lr", e.fusion_lr),
            ("aux_lr", e.aux_lr),
        ];
        let rates = rates.into_iter().filter_map(|(k, v)| Some((k, v?)));
        let non_negative = [
            ("weight_decay", e.weight_decay),
            ("aux_weight_decay", e.aux_weight_decay),
            ("clip", e.clip),
        ];
        for (key, value) in rates.chain(non_negative) {
            ensure!(
                value.is_finite() && value >= 0.0,
                "--set {key}={value}: must be a finite number >= 0"
            );
        }
        let open_unit = [
            ("momentum", e.momentum),
            ("betas", e.betas.0),
            ("betas", e.betas.1),
        ];
        for (key, value) in open_unit {
            ensure!(
                (0.0..1.0).contains(&value),
                "--set {key}: {value} must lie in [0, 1)"
            );
        }
        for (key, value) in [
            ("eps", e.eps),
            ("gamma", e.gamma),
            ("plateau_factor", e.plateau_factor),
        ] {
            ensure!(
                value.is_finite() && value > 0.0,
                "--set {key}={value}: must be a finite number > 0"
            );
        }
        let counts = [
            ("batch_size", e.batch_size, 65_536),
            ("step_size", e.step_size, usize::MAX),
            ("image_size", e.image_size, MAX_IMAGE_SIZE),
            ("slices", e.slices, MAX_SLICES),
            ("max_tokens", e.max_tokens, MAX_TOKENS),
            ("workers", e.workers.max(1), 256),
        ];
        for (key, value, max) in counts {
            ensure!(
                (1..=max).contains(&value),
                "--set {key}={value}: must lie in 1..={max}"
            );
        }
        for (key, folder) in e.weights() {
            ensure!(
                folder.is_dir(),
                "--set {key}={}: no such folder (weights are read from local folders only)",
                folder.display()
            );
        }
        Ok(())
    }
}

/// The layers in order, as (key, `--set` text): the profile's (or the model size's) settings,
/// the method's paper settings, the preset's, then the command line's.
fn layers<'a>(
    first: Vec<(&'static str, String)>,
    info: &MethodInfo,
    preset: Option<&str>,
    sets: &'a [(String, String)],
) -> anyhow::Result<Vec<(&'a str, String)>> {
    let preset = match preset {
        None => &[][..],
        Some(name) => preset_pairs(info, name)?,
    };
    let fixed = info.engine_defaults.iter().chain(preset);
    Ok(first
        .into_iter()
        .chain(fixed.map(|(k, v)| (*k, v.to_string())))
        .chain((sets.iter().filter(|(k, _)| k != "preset")).map(|(k, v)| (k.as_str(), v.clone())))
        .collect())
}

/// Layered pairs as JSON: the engine's keys, the rest (the method's type refuses unknown
/// ones), and the last value given for every key (to name it in errors).
fn split(
    layers: Vec<(&str, String)>,
) -> (Map<String, Value>, Map<String, Value>, Map<String, Value>) {
    let (mut engine, mut method, mut given) = (Map::new(), Map::new(), Map::new());
    for (key, text) in layers {
        let value = set_value(&text);
        given.insert(key.to_owned(), value.clone());
        let target = match Engine::HPARAMS.iter().any(|h| h.key == key) {
            true => &mut engine,
            false => &mut method,
        };
        target.insert(key.to_owned(), value);
    }
    (engine, method, given)
}

/// A method's refusal of its hyperparameters, with the `--set` pair that caused it and, for
/// an unknown key, the engine's keys too.
fn method_error(method: &str, e: &str, given: &Map<String, Value>) -> anyhow::Error {
    let key = e.split(':').next().unwrap_or_default();
    let e = e.strip_prefix(&format!("{key}: ")).unwrap_or(e);
    let context = match given.get(key) {
        Some(v) => format!("--set {key}={}: method '{method}'", show(v)),
        None => format!("method '{method}'"),
    };
    let hint = match e.contains("unknown field") {
        true => {
            let keys: Vec<&str> = Engine::HPARAMS.iter().map(|h| h.key).collect();
            format!("; engine keys: {}", keys.join(", "))
        }
        false => String::new(),
    };
    anyhow::anyhow!("{context}: {e}{hint}")
}

/// The `--set` pairs of `info`'s preset `name`.
fn preset_pairs(
    info: &MethodInfo,
    name: &str,
) -> anyhow::Result<&'static [(&'static str, &'static str)]> {
    let names: Vec<&str> = info.presets.iter().map(|(n, _)| *n).collect();
    match info.presets.iter().find(|(n, _)| *n == name) {
        Some((_, pairs)) => Ok(pairs),
        None if names.is_empty() => {
            bail!("--set preset={name}: method '{}' has no presets", info.name)
        }
        None => bail!(
            "--set preset={name}: method '{}' has presets {}",
            info.name,
            names.join(", ")
        ),
    }
}

/// The attributes a run may select on: the built-in datasets' or those a manifest's TOML
/// declares.
pub fn attribute_names(dataset: DatasetKind, data_dir: &Path) -> anyhow::Result<Vec<String>> {
    Ok(if dataset == DatasetKind::Manifest {
        let toml = manifest::read_toml(data_dir)?;
        toml.attributes.into_iter().map(|a| a.name).collect()
    } else {
        dataset
            .attributes()
            .iter()
            .map(|a| a.name.to_owned())
            .collect()
    })
}

/// One block of help: each key with its default, tuning range and doc.
fn help_block(hparams: &[Hparam], defaults: &Value) -> String {
    let mut text = String::new();
    for h in hparams {
        let default = show(&defaults[h.key]);
        text += &format!(
            "  {:<22} {:<12} {} [{}]\n",
            h.key,
            default,
            h.doc.trim(),
            h.range.describe()
        );
    }
    text
}

/// The `--set` keys of the engine and of every method, generated from their declarations
/// (for `train --help`).
pub fn keys_help() -> String {
    let mut text = String::from("Engine keys (--set key=value; default, meaning, tuning range):\n");
    text += &help_block(Engine::HPARAMS, &Engine::defaults());
    text += "  preset                 none         a method's settings for one of its paper's datasets\n";
    for m in REGISTRY {
        text += &format!("\nMethod {} — {}\n", m.name, m.about);
        text += &help_block(m.hparams, &(m.defaults)());
        for (k, v) in m.engine_defaults {
            text += &format!("  (paper default) {k}={v}\n");
        }
        for (name, pairs) in m.presets {
            let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let own = DatasetKind::ALL.iter().any(|d| d.name() == *name);
            let when = if own {
                ", applied on that dataset by itself"
            } else {
                ""
            };
            text += &format!("  (preset={name}{when}) {}\n", pairs.join(" "));
        }
    }
    text
}

/// A FairVision configuration of `method` (race, seed 0, 10 epochs, tiny, flex) with `sets`,
/// for the unit tests.
#[cfg(test)]
pub(crate) fn for_tests(method: &str, sets: &[(&str, &str)]) -> anyhow::Result<TrainConfig> {
    let mut request = Request::new(DatasetKind::FairVision, "unused", method);
    request.sets = (sets.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TrainConfig::resolve(&request)
}

#[cfg(test)]
mod tests {
    use super::for_tests as resolve;
    use super::*;

    fn refused(method: &str, key: &str, value: &str, wants: &[&str]) {
        let e = resolve(method, &[(key, value)]).unwrap_err().to_string();
        for want in wants {
            assert!(e.contains(want), "{key}={value}: {e}");
        }
    }

    #[test]
    fn misspelt_keys_and_values_are_refused_by_the_types_with_the_valid_ones() {
        refused(
            "erm",
            "optimizer",
            "sgdd",
            &[
                "--set optimizer=sgdd",
                "unknown variant `sgdd`, expected one of `adamw`, `adam`, `sgd`",
            ],
        );
        refused(
            "erm",
            "schedule",
            "cosin",
            &[
                "--set schedule=cosin",
                "expected one of `cosine`, `constant`, `step`, `plateau`",
            ],
        );
        refused(
            "erm",
            "selection",
            "aucc",
            &["expected one of `auc`, `auc_logit`, `es_auc`, `dto`"],
        );
        refused(
            "multifair",
            "multifair_rhoo",
            "1",
            &[
                "--set multifair_rhoo=1",
                "unknown field `multifair_rhoo`, expected one of `multifair_rho`",
                "engine keys: lr, encoder_lr",
            ],
        );
        refused(
            "multifair",
            "multifair_modality",
            "maybe",
            &["--set multifair_modality=maybe", "expected a boolean"],
        );
        refused(
            "erm",
            "batch_size",
            "many",
            &["--set batch_size=many", "expected usize"],
        );
        refused(
            "cggm",
            "preset",
            "imagenet",
            &["has presets food101, mosi, iemocap"],
        );
    }

    #[test]
    fn layers_apply_in_order_and_values_are_typed() {
        let c = resolve(
            "ogm_ge",
            &[
                ("lr", "0.02"),
                ("betas", "0.8,0.99"),
                ("ogm_noise", "false"),
            ],
        )
        .unwrap();
        // The method's paper settings over the engine's defaults, the command line over both.
        assert_eq!(
            (c.engine.optimizer, c.engine.schedule, c.engine.lr),
            (Optimizer::Sgd, Schedule::Step, 0.02)
        );
        assert_eq!(c.engine.betas, (0.8, 0.99));
        assert_eq!(c.hparams["ogm_noise"], Value::Bool(false));
        assert_eq!(c.hparams["ogm_alpha"], serde_json::json!(0.1));
        assert_eq!(c.engine.aux_lr(), 0.02 / 3.0);
        // A preset between the paper settings and the command line.
        let c = resolve("cggm", &[("preset", "mosi"), ("batch_size", "8")]).unwrap();
        assert_eq!(
            (c.engine.optimizer, c.engine.batch_size),
            (Optimizer::Adam, 8)
        );
        assert_eq!(c.hparams["cggm_rho"], serde_json::json!(1.3));
        assert_eq!(c.preset.as_deref(), Some("mosi"));
        // The config reads back from its JSON (run.json, checkpoints).
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), c);
    }

    #[test]
    fn a_preset_named_after_the_dataset_applies_by_itself() {
        let on = |dataset, sets: &[(&str, &str)]| {
            let mut request = Request::new(dataset, "unused", "multifair_ref");
            request.sets = (sets.iter())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let c = TrainConfig::resolve(&request).unwrap();
            (
                c.hparams["multifair_beta"].as_f64(),
                c.hparams["multifair_tau"].as_f64(),
                c.preset,
            )
        };
        assert_eq!(
            on(DatasetKind::FairVlmed, &[]),
            (Some(0.5), Some(0.07), Some("fairvlmed".into()))
        );
        assert_eq!(
            on(DatasetKind::FairVision, &[]),
            (Some(0.3), Some(0.04), None)
        );
        assert_eq!(
            on(DatasetKind::FairVlmed, &[("multifair_tau", "0.1")]).1,
            Some(0.1)
        );
    }

    #[test]
    fn help_lists_every_declared_key_with_its_default() {
        let help = keys_help();
        for h in Engine::HPARAMS
            .iter()
            .chain(REGISTRY.iter().flat_map(|m| m.hparams))
        {
            assert!(help.contains(h.key), "{}", h.key);
        }
        let rho = help
            .lines()
            .find(|l| l.trim_start().starts_with("multifair_rho "))
            .unwrap();
        assert!(
            rho.contains(" 1.2 ") && rho.contains("[uniform [0.8, 1.6]]"),
            "{rho}"
        );
    }
}
