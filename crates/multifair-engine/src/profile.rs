//! Profiles: whole protocols chosen by one word. `cpu` is the small setting every command
//! runs by default on the synthetic benchmark; `paper` is the original code's protocol for
//! FairVision and FairVLMed, as its `main()`s and training functions set it (docs/fidelity.md
//! cites each value's file and line).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure};
use multifair_core::methods::ORIGINAL_ENGINE;
use multifair_data::DatasetKind;
use multifair_models::presets::ModelSize;
use serde::{Deserialize, Serialize};

/// The environment variable naming the folder of pretrained weights for `--profile paper`.
pub const WEIGHTS_ENV: &str = "MULTIFAIR_WEIGHTS_DIR";

/// The pretrained folders the paper profile expects inside the weights folder, with the Hugging
/// Face model the original loads with `from_pretrained`.
pub const VIT_FOLDER: (&str, &str) = (
    "vit-base-patch16-224-in21k",
    "google/vit-base-patch16-224-in21k",
);
pub const BERT_FOLDER: (&str, &str) = ("bert-base-uncased", "bert-base-uncased");

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The small CPU setting (`tiny` model, 32 px, 4 slices); the spec's epochs and model.
    #[default]
    Cpu,
    /// The original's protocol: ViT-B/16 and BERT from local weights, 224 px, 10 slices,
    /// 512 tokens, batch 32, 10 epochs, AdamW 3e-5 / 1e-5, plateau schedule, gender.
    Paper,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Cpu => "cpu",
            Profile::Paper => "paper",
        }
    }

    pub fn is_cpu(&self) -> bool {
        *self == Profile::Cpu
    }

    /// The original's epochs (`num_epochs = 10` in both `main()`s); none for `cpu`.
    pub fn epochs(self) -> Option<usize> {
        (self == Profile::Paper).then_some(10)
    }

    /// The model size the profile trains.
    pub fn model(self) -> Option<ModelSize> {
        (self == Profile::Paper).then_some(ModelSize::Paper)
    }

    /// The attribute the original groups by (`demographic_key` in both `main()`s).
    pub fn attribute(self, dataset: DatasetKind) -> Option<&'static str> {
        match (self, dataset) {
            (Profile::Paper, DatasetKind::FairVision | DatasetKind::FairVlmed) => Some("gender"),
            _ => None,
        }
    }

    /// The engine settings of the profile as `--set` pairs, applied before the method's own
    /// settings, its preset and the command line. For `paper`, the pretrained folders inside
    /// `weights` (else [`WEIGHTS_ENV`]), each checked to exist.
    pub fn layer(
        self,
        dataset: DatasetKind,
        weights: Option<&Path>,
    ) -> anyhow::Result<Vec<(&'static str, String)>> {
        if self == Profile::Cpu {
            return Ok(Vec::new());
        }
        ensure!(
            matches!(dataset, DatasetKind::FairVision | DatasetKind::FairVlmed),
            "--profile paper is the original code's protocol for fairvision and fairvlmed; \
             {} has no such protocol (use --profile cpu with --model paper and --set)",
            dataset.name()
        );
        // The reference's training function's settings, then the run's around it.
        let protocol = [
            ("lr", "3e-5"),
            ("aux_lr", "1e-5"),
            ("batch_size", "32"),
            ("image_size", "224"),
            ("slices", "10"),
            ("max_tokens", "512"),
            ("augment", "original"),
            ("original_notes", "true"),
        ];
        let mut pairs: Vec<(&'static str, String)> = (ORIGINAL_ENGINE.iter().copied())
            .chain(protocol)
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        let vit = weights_folder(weights, VIT_FOLDER)?;
        pairs.push(("fundus_weights", vit.display().to_string()));
        match dataset {
            DatasetKind::FairVision => pairs.push(("oct_weights", vit.display().to_string())),
            _ => {
                let bert = weights_folder(weights, BERT_FOLDER)?;
                pairs.push(("text_weights", bert.display().to_string()));
            }
        }
        Ok(pairs)
    }
}

/// `folder` inside the weights folder (`--weights-dir`, else [`WEIGHTS_ENV`]), which must exist.
fn weights_folder(weights: Option<&Path>, (folder, hub): (&str, &str)) -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os(WEIGHTS_ENV).map(PathBuf::from);
    let Some(root) = weights.map(Path::to_path_buf).or(from_env) else {
        bail!(
            "--profile paper fine-tunes pretrained encoders, read from local folders only: give \
             --weights-dir DIR (or set {WEIGHTS_ENV}) holding {folder}/ (Hugging Face's {hub}, \
             which the original loads with from_pretrained; e.g. `huggingface-cli download {hub} \
             --local-dir DIR/{folder}`)"
        )
    };
    let path = root.join(folder);
    ensure!(
        path.is_dir(),
        "--profile paper needs {}: no such folder (a local copy of Hugging Face's {hub}, which \
         the original loads with from_pretrained; e.g. `huggingface-cli download {hub} \
         --local-dir {}`)",
        path.display(),
        path.display()
    );
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_names_the_missing_weights_folder_and_where_the_original_gets_it() {
        let dir = std::env::temp_dir().join(format!("multifair-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Profile::Paper
            .layer(DatasetKind::FairVlmed, Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vit-base-patch16-224-in21k"), "{e}");
        assert!(e.contains("google/vit-base-patch16-224-in21k"), "{e}");
        std::fs::create_dir_all(dir.join(VIT_FOLDER.0)).unwrap();
        let e = Profile::Paper
            .layer(DatasetKind::FairVlmed, Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bert-base-uncased"), "{e}");
        // FairVision needs the ViT only.
        assert!(
            Profile::Paper
                .layer(DatasetKind::FairVision, Some(&dir))
                .is_ok()
        );
        assert!(
            Profile::Cpu
                .layer(DatasetKind::FairVision, None)
                .unwrap()
                .is_empty()
        );
        let e = Profile::Paper.layer(DatasetKind::Manifest, Some(&dir));
        assert!(e.unwrap_err().to_string().contains("no such protocol"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
