//! Pretrained encoders from local Hugging Face folders (`config.json` + `model.safetensors`, or
//! `pytorch_model.bin`): ViT (`ViTModel`) into [`Vit`], BERT (`BertModel`, MiniLM) into
//! [`TextEncoder`]. Names map explicitly (HF key -> our parameter); every missing, unexpected
//! or mis-shaped tensor is listed in one error, never skipped. No network access, ever.

use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use burn::tensor::Device;
use serde_json::Value;

use crate::model::{Encoder, EncoderConfig};
use crate::text::{TextConfig, TextEncoder};
use crate::vit::{Vit, VitConfig};

/// HF ViTModel names -> ours (the adapter then turns LayerNorm weight/bias into gamma/beta and
/// transposes Linear weights). Pre-LN: `layernorm_before` is burn's `norm_2`, `layernorm_after`
/// its `norm_1`.
const VIT_KEYS: &[(&str, &str)] = &[
    (r"^vit\.(.*)$", "$1"),
    (r"^embeddings\.cls_token$", "cls"),
    (r"^embeddings\.position_embeddings$", "position"),
    (
        r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$",
        "patch.$1",
    ),
    (
        r"^encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)$",
        "encoder.layers.$1.norm_2.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)$",
        "encoder.layers.$1.norm_1.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$",
        "encoder.layers.$1.mha.$2.$3",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$",
        "encoder.layers.$1.mha.output.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$",
        "encoder.layers.$1.pwff.linear_inner.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$",
        "encoder.layers.$1.pwff.linear_outer.$2",
    ),
    (r"^layernorm\.(weight|bias)$", "norm.$1"),
    (r"^pooler\.dense\.(weight|bias)$", "pooler.$1"),
];

/// HF BertModel names -> ours. Post-LN: the attention block's LayerNorm is burn's `norm_1`,
/// the feed-forward block's `norm_2`.
const BERT_KEYS: &[(&str, &str)] = &[
    (r"^bert\.(.*)$", "$1"),
    (r"^embeddings\.word_embeddings\.weight$", "tokens.weight"),
    (
        r"^embeddings\.position_embeddings\.weight$",
        "positions.weight",
    ),
    (
        r"^embeddings\.token_type_embeddings\.weight$",
        "segments.weight",
    ),
    (r"^embeddings\.LayerNorm\.(weight|bias)$", "norm.$1"),
    (
        r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$",
        "encoder.layers.$1.mha.$2.$3",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$",
        "encoder.layers.$1.mha.output.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)$",
        "encoder.layers.$1.norm_1.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$",
        "encoder.layers.$1.pwff.linear_inner.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$",
        "encoder.layers.$1.pwff.linear_outer.$2",
    ),
    (
        r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)$",
        "encoder.layers.$1.norm_2.$2",
    ),
];

/// HF tensors we know and do not use: BERT's pooler (the text encoder reads the [CLS] hidden
/// state, as the reference does) and the position-id buffer some checkpoints carry.
const BERT_IGNORED: &[&str] = &[
    "pooler.",
    "embeddings.position_ids",
    "bert.pooler.",
    "bert.embeddings.position_ids",
];

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    pub file: PathBuf,
    pub applied: usize,
    /// Known HF tensors the encoder does not use.
    pub ignored: Vec<String>,
}

fn read_config(folder: &Path) -> Result<(PathBuf, Value), String> {
    if !folder.is_dir() {
        return Err(format!(
            "weights folder {} does not exist (weights are read from local folders only)",
            folder.display()
        ));
    }
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (the HF config.json is needed)", path.display()))?;
    let value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, value))
}

fn count(config: &(PathBuf, Value), key: &str) -> Result<usize, String> {
    config.1[key].as_u64().map(|v| v as usize).ok_or_else(|| {
        format!(
            "{}: field '{key}' missing or not a count",
            config.0.display()
        )
    })
}

fn number(config: &(PathBuf, Value), key: &str, default: f64) -> Result<f64, String> {
    match &config.1[key] {
        Value::Null => Ok(default),
        v => v
            .as_f64()
            .ok_or_else(|| format!("{}: field '{key}' is not a number", config.0.display())),
    }
}

/// Our encoders use the exact (erf) GELU, which HF calls "gelu".
fn check_activation(config: &(PathBuf, Value)) -> Result<(), String> {
    match config.1["hidden_act"].as_str() {
        None | Some("gelu") => Ok(()),
        Some(other) => Err(format!(
            "{}: hidden_act '{other}' is not supported (only 'gelu', the exact GELU)",
            config.0.display()
        )),
    }
}

/// A ViT's configuration from an HF `config.json`.
pub fn vit_config(folder: &Path) -> Result<VitConfig, String> {
    let c = read_config(folder)?;
    check_activation(&c)?;
    Ok(VitConfig {
        image_size: count(&c, "image_size")?,
        patch_size: count(&c, "patch_size")?,
        in_channels: c.1["num_channels"].as_u64().unwrap_or(3) as usize,
        hidden: count(&c, "hidden_size")?,
        layers: count(&c, "num_hidden_layers")?,
        heads: count(&c, "num_attention_heads")?,
        mlp: count(&c, "intermediate_size")?,
        dropout: number(&c, "hidden_dropout_prob", 0.0)?,
        layer_norm_eps: number(&c, "layer_norm_eps", 1e-12)?,
    })
}

/// A BERT encoder's configuration from an HF `config.json`.
pub fn bert_config(folder: &Path) -> Result<TextConfig, String> {
    let c = read_config(folder)?;
    check_activation(&c)?;
    Ok(TextConfig {
        vocab_size: count(&c, "vocab_size")?,
        max_positions: count(&c, "max_position_embeddings")?,
        type_vocab_size: count(&c, "type_vocab_size")?,
        hidden: count(&c, "hidden_size")?,
        layers: count(&c, "num_hidden_layers")?,
        heads: count(&c, "num_attention_heads")?,
        intermediate: count(&c, "intermediate_size")?,
        dropout: number(&c, "hidden_dropout_prob", 0.1)?,
        layer_norm_eps: number(&c, "layer_norm_eps", 1e-12)?,
        cls_dropout: 0.0,
    })
}

/// `folder`'s weights (model.safetensors, else pytorch_model.bin) into `module` through
/// `remapper`, partially; the file, what applied, and the file's own tensor names (to name
/// unused tensors).
fn load_file<M: ModuleSnapshot>(
    module: &mut M,
    folder: &Path,
    remapper: &KeyRemapper,
) -> Result<(PathBuf, ApplyResult, Vec<String>), String> {
    let safetensors = folder.join("model.safetensors");
    let bin = folder.join("pytorch_model.bin");
    let (file, result, keys) = if safetensors.is_file() {
        let mut store = SafetensorsStore::from_file(&safetensors)
            .with_from_adapter(PyTorchToBurnAdapter)
            .remap(remapper.clone())
            .allow_partial(true)
            .validate(false);
        let result = module.load_from(&mut store).map_err(|e| e.to_string());
        let keys = (SafetensorsStore::from_file(&safetensors).keys()).map_err(|e| e.to_string());
        (safetensors, result, keys)
    } else if bin.is_file() {
        let mut store = PytorchStore::from_file(&bin)
            .remap(remapper.clone())
            .allow_partial(true)
            .validate(false);
        let result = module.load_from(&mut store).map_err(|e| e.to_string());
        let keys = PytorchStore::from_file(&bin)
            .keys()
            .map_err(|e| e.to_string());
        (bin, result, keys)
    } else {
        return Err(format!(
            "{}: neither model.safetensors nor pytorch_model.bin",
            folder.display()
        ));
    };
    let in_file = |e: String| format!("{}: {e}", file.display());
    let (result, keys) = (result.map_err(in_file)?, keys.map_err(in_file)?);
    Ok((file, result, keys))
}

/// Loads `folder`'s weights into `module` through `keys`; any tensor ours lacks, any HF tensor
/// neither mapped nor in `ignored`, and any shape mismatch make one error listing them all.
fn import<M: ModuleSnapshot>(
    module: &mut M,
    folder: &Path,
    keys: &[(&str, &str)],
    ignored: &[&str],
) -> Result<ImportReport, String> {
    let remapper =
        KeyRemapper::from_patterns(keys.to_vec()).map_err(|e| format!("key map: {e}"))?;
    let (file, result, source_keys) = load_file(module, folder, &remapper)?;
    // Unused tensors come back under their mapped names: report the file's own names.
    let pairs = remapper.to_regex_pairs();
    let mapped = |key: &str| {
        pairs.iter().fold(key.to_owned(), |k, (re, to)| {
            re.replace(&k, to.as_str()).into_owned()
        })
    };
    let original = |unused: &str| {
        let plain = unused
            .replace(".gamma", ".weight")
            .replace(".beta", ".bias");
        source_keys
            .iter()
            .find(|k| mapped(k) == unused || mapped(k) == plain)
            .cloned()
            .unwrap_or_else(|| unused.to_owned())
    };
    let (ignored_keys, unexpected): (Vec<String>, Vec<String>) = result
        .unused
        .iter()
        .map(|k| original(k))
        .partition(|k| ignored.iter().any(|i| k.starts_with(i)));
    let mut problems = Vec::new();
    for (path, _) in &result.missing {
        problems.push(format!("missing: {path} (no HF tensor maps to it)"));
    }
    for key in &unexpected {
        problems.push(format!("unexpected: {key} (no parameter of ours takes it)"));
    }
    for e in &result.errors {
        // Named by the file's own tensor name, with ours beside it.
        problems.push(match e {
            ApplyError::ShapeMismatch {
                path,
                expected,
                found,
            } => format!(
                "mismatch: {} has shape {:?} in the file; ours ({path}) needs {:?}",
                original(path),
                found.as_slice(),
                expected.as_slice()
            ),
            ApplyError::DTypeMismatch {
                path,
                expected,
                found,
            } => format!(
                "mismatch: {} is {found:?} in the file; ours ({path}) needs {expected:?}",
                original(path)
            ),
            other => format!("mismatch: {other}"),
        });
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}: {} problem(s) importing into our encoder:\n  {}",
            file.display(),
            problems.len(),
            problems.join("\n  ")
        ));
    }
    Ok(ImportReport {
        file,
        applied: result.applied.len(),
        ignored: ignored_keys,
    })
}

/// Which pretrained folder an encoder of each kind reads: the `--set` keys of the engine.
pub const WEIGHT_KEYS: &[(&str, &str)] = &[
    ("fundus_weights", "image"),
    ("oct_weights", "volume"),
    ("text_weights", "text"),
];

/// Sizes `encoder` from the pretrained folder of `--set key=folder` (its config.json), when
/// the key is for this kind of encoder; returns whether it was. A ViT must have been pretrained
/// at the run's `image_size`; a BERT's vocabulary must match its tokenizer's `vocab`.
pub fn size_encoder(
    encoder: &mut EncoderConfig,
    key: &str,
    folder: &Path,
    image_size: usize,
    vocab: usize,
    max_tokens: usize,
) -> Result<bool, String> {
    let kind = WEIGHT_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, kind)| *kind);
    let vit = |channels: usize| -> Result<VitConfig, String> {
        let mut c = vit_config(folder)?;
        if c.image_size != image_size {
            return Err(format!(
                "--set {key}={}: the model was pretrained at {} px, the run uses {image_size} (--set image_size={})",
                folder.display(),
                c.image_size,
                c.image_size
            ));
        }
        c.in_channels = channels;
        Ok(c)
    };
    match (kind, encoder) {
        (Some("image"), EncoderConfig::Image(c)) => *c = vit(3)?,
        (Some("volume"), EncoderConfig::Volume(c)) => c.slice = vit(c.slice.in_channels)?,
        (Some("text"), EncoderConfig::Text(c)) => {
            let cls_dropout = c.cls_dropout;
            *c = bert_config(folder)?;
            c.cls_dropout = cls_dropout;
            if c.vocab_size != vocab {
                return Err(format!(
                    "--set {key}={}: config.json has {} tokens, its tokenizer {vocab}",
                    folder.display(),
                    c.vocab_size
                ));
            }
            if c.max_positions < max_tokens {
                return Err(format!(
                    "--set {key}={}: the model has {} positions (max_position_embeddings), fewer than max_tokens={max_tokens}; set --set max_tokens={} or less",
                    folder.display(),
                    c.max_positions,
                    c.max_positions
                ));
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `encoder` rebuilt from the Hugging Face folder: a ViT for images, the OCT branch's slice
/// encoder (as it is: three channels, or one with the filters summed over RGB), or the text
/// encoder (keeping its [CLS] dropout).
pub fn load_encoder(
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
            let vit = match oct.slice_channels() {
                1 => vit.single_channel(),
                _ => vit,
            };
            (Encoder::Volume(oct.clone().with_slice_encoder(vit)), report)
        }
        Encoder::Text(text) => {
            let (bert, report) = load_bert(folder, device)?;
            (
                Encoder::Text(bert.with_cls_dropout(text.cls_dropout())),
                report,
            )
        }
        Encoder::Tabular(_) => return Err("tabular encoders have no pretrained weights".into()),
    })
}

/// A ViT built from `folder`'s config with its weights.
pub fn load_vit(folder: &Path, device: &Device) -> Result<(Vit, ImportReport), String> {
    let mut vit = vit_config(folder)?.init(device);
    let report = import(&mut vit, folder, VIT_KEYS, &[])?;
    Ok((vit, report))
}

/// A BERT text encoder built from `folder`'s config with its weights.
pub fn load_bert(folder: &Path, device: &Device) -> Result<(TextEncoder, ImportReport), String> {
    let mut bert = bert_config(folder)?.init(device);
    let report = import(&mut bert, folder, BERT_KEYS, BERT_IGNORED)?;
    Ok((bert, report))
}
