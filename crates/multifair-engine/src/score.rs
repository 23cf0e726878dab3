//! Scoring a model on a split: its predictions, the validation summary that model selection
//! reads, and the modality x group report of the test split.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor};
use multifair_core::{Features, ovr_tasks, to_host};
use multifair_data::DatasetKind;
use multifair_data::loader::Loader;
use multifair_metrics::{GroupFrame, Predictions};
use multifair_models::{ModalityInput, MultimodalModel};
use serde_json::{Value, json};

use crate::config::Selection;
use crate::report::macro_mean;
use crate::setup::Run;

/// A split's predictions: fused and each modality's auxiliary class probabilities, labels and
/// attribute codes.
pub struct Scored {
    /// Fused class probabilities, [sample][class].
    pub probs: Vec<Vec<f64>>,
    /// The fused logits before the softmax, [sample][class].
    pub logits: Vec<Vec<f64>>,
    /// Each modality's auxiliary class probabilities, [modality][sample][class].
    pub aux: Vec<Vec<Vec<f64>>>,
    /// Class index of each sample.
    pub labels: Vec<u8>,
    /// Codes, [attribute][sample].
    pub codes: Vec<Vec<i64>>,
}

/// What scores a split: one model, or an ensemble's members (one unimodal model per modality,
/// in the model's order), whose logits are summed.
#[derive(Clone, Copy)]
pub enum Scorer<'a> {
    Model(&'a MultimodalModel),
    Ensemble(&'a [MultimodalModel]),
}

impl<'a> From<&'a MultimodalModel> for Scorer<'a> {
    fn from(model: &'a MultimodalModel) -> Self {
        Scorer::Model(model)
    }
}

/// A [`Scorer`] in evaluation mode.
enum Valid {
    Model(MultimodalModel),
    Ensemble(Vec<MultimodalModel>),
}

impl Scorer<'_> {
    fn valid(self) -> Valid {
        match self {
            Scorer::Model(m) => Valid::Model(m.valid()),
            Scorer::Ensemble(members) => {
                Valid::Ensemble(members.iter().map(Module::valid).collect())
            }
        }
    }
}

impl Valid {
    /// The fused logits [B, C] and each modality's own [B, C]: the auxiliary heads' for a
    /// model, each member's prediction for an ensemble.
    fn predict(
        &self,
        inputs: Vec<ModalityInput>,
        groups: &Tensor<1, Int>,
        available: Option<&Tensor<2>>,
    ) -> (Tensor<2>, Vec<Tensor<2>>) {
        match self {
            Valid::Model(model) => {
                let tokens = model.encode(inputs);
                let fused = model.fuse(&tokens, Some(groups), available);
                (fused, model.aux_logits(&tokens))
            }
            Valid::Ensemble(members) => {
                let logits: Vec<Tensor<2>> = (members.iter().zip(inputs))
                    .map(|(member, input)| {
                        let tokens = member.encode(vec![input]);
                        member.fuse(&tokens, Some(groups), None)
                    })
                    .collect();
                let present: Vec<Option<Tensor<1>>> = (0..logits.len())
                    .map(|j| {
                        available.map(|a| {
                            let [b, _] = a.dims();
                            a.clone().slice([0..b, j..j + 1]).reshape([b])
                        })
                    })
                    .collect();
                (multifair_core::methods::ensemble(&logits, &present), logits)
            }
        }
    }
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

/// The AUC of the raw fused logit of each one-vs-rest task's class, macro-averaged.
fn logit_auc(logits: &[Vec<f64>], labels: &[u8], classes: usize) -> anyhow::Result<Option<f64>> {
    let per_task = ovr_tasks(classes).map(|c| {
        let scores: Vec<f64> = logits.iter().map(|l| l[c]).collect();
        let y: Vec<bool> = labels.iter().map(|&l| l as usize == c).collect();
        multifair_metrics::auc(&scores, &y)
    });
    Ok(macro_mean(per_task))
}

/// Group code -> the group's AUC, macro-averaged over the tasks' frames.
fn group_aucs(frames: &[GroupFrame]) -> BTreeMap<String, Option<f64>> {
    (frames[0].groups.keys())
        .map(|c| {
            let per_task = frames.iter().map(|f| f.groups.get(c).and_then(|g| g.auc));
            (c.to_string(), macro_mean(per_task))
        })
        .collect()
}

/// Cross-entropy of fused probabilities (what ReduceLROnPlateau watches); for two classes from
/// the positive probability, as the binary reports read it.
pub fn mean_loss(probs: &[Vec<f64>], labels: &[u8]) -> f64 {
    let total: f64 = (probs.iter().zip(labels))
        .map(|(p, &y)| {
            let p_true = if p.len() == 2 && y == 0 {
                1.0 - p[1]
            } else {
                p[y as usize]
            };
            -p_true.clamp(1e-7, 1.0).ln()
        })
        .sum();
    total / probs.len().max(1) as f64
}

impl Run {
    /// Scores every sample of `loader` in evaluation mode; `zero` takes one modality out (for
    /// the modality x group report): as missing where the model learned with missing
    /// modalities (manifests), else as a blank input.
    pub fn score(
        &self,
        scorer: Scorer,
        loader: &Loader,
        zero: Option<usize>,
    ) -> anyhow::Result<Scored> {
        let scorer = scorer.valid();
        let classes = self.model_config.classes;
        let mut scored = Scored {
            probs: Vec::new(),
            logits: Vec::new(),
            aux: vec![Vec::new(); self.modality_slots.len()],
            labels: Vec::new(),
            codes: vec![Vec::new(); self.schema.attributes.len()],
        };
        let rows = |values: Tensor<2>| -> anyhow::Result<Vec<Vec<f64>>> {
            let flat = to_host(values.flatten::<1>(0, 1)).map_err(anyhow::Error::msg)?;
            Ok(flat.chunks(classes).map(<[f64]>::to_vec).collect())
        };
        let host = |logits: Tensor<2>| rows(softmax(logits, 1));
        let masked = self.config.dataset == DatasetKind::Manifest;
        let (drop, blank) = (zero.filter(|_| masked), zero.filter(|_| !masked));
        // Inputs move to the evaluation (non-autodiff) device with the model.
        let plain = self.device.clone().inner();
        for batch in loader.epoch(0) {
            let batch = batch?;
            let db = self.device_batch(&batch, drop)?;
            let inputs = (db.inputs.into_iter().enumerate())
                .map(|(j, input)| input.to_device(&plain, blank == Some(j)))
                .collect();
            let groups = db.group_ids.to_device(&plain);
            let available = db.available.map(|a| a.to_device(&plain));
            let (fused, aux) = scorer.predict(inputs, &groups, available.as_ref());
            scored.logits.extend(rows(fused.clone())?);
            scored.probs.extend(host(fused)?);
            for (j, logits) in aux.into_iter().enumerate() {
                scored.aux[j].extend(host(logits)?);
            }
            scored.labels.extend(&batch.labels);
            for (a, codes) in batch.codes.into_iter().enumerate() {
                scored.codes[a].extend(codes);
            }
        }
        Ok(scored)
    }

    /// The tokens of a `share` of the training batches (at least one), in evaluation mode, for
    /// a method's pass before `epoch` ([`multifair_core::Method::feature_share`]): the first
    /// batches of a shuffled pass of its own, augmented as in training.
    pub fn features(
        &self,
        model: &MultimodalModel,
        epoch: usize,
        share: f64,
    ) -> anyhow::Result<Features> {
        let model = model.valid();
        let plain = self.device.clone().inner();
        let m = self.modality_slots.len();
        let mut features = Features {
            tokens: vec![Vec::new(); m],
            available: vec![Vec::new(); m],
            labels: Vec::new(),
        };
        let batches = ((self.train.len() as f64 * share) as usize).max(1);
        // An order of its own, never one a training epoch draws.
        for batch in self.train.epoch(u64::MAX - epoch as u64).take(batches) {
            let batch = batch?;
            let db = self.device_batch(&batch, None)?;
            let n = batch.labels.len();
            let inputs = (db.inputs.into_iter())
                .map(|input| input.to_device(&plain, false))
                .collect();
            for (j, token) in model.encode(inputs).into_iter().enumerate() {
                let [_, p] = token.dims();
                let flat = to_host(token.flatten::<1>(0, 1)).map_err(anyhow::Error::msg)?;
                (features.tokens[j]).extend(
                    flat.chunks(p)
                        .map(|r| r.iter().map(|&v| v as f32).collect()),
                );
                let present = batch.available[self.modality_slots[j]].iter().copied();
                features.available[j].extend(present.take(n));
            }
            features.labels.extend(&batch.labels);
        }
        Ok(features)
    }

    /// The selection score (higher is better) and the validation summary for `metrics.jsonl`.
    pub fn validate(&self, scored: &Scored) -> anyhow::Result<(f64, Value)> {
        let classes = self.model_config.classes;
        let frames =
            |a: usize| task_frames(&scored.probs, &scored.labels, &scored.codes[a], classes);
        let selected = frames(self.setup.attribute)?;
        let auc = macro_mean(selected.iter().map(|f| f.overall.auc));
        let es_auc = macro_mean(selected.iter().map(GroupFrame::es_auc));
        let dto =
            ((1.0 - auc.unwrap_or(0.5)).powi(2) + (1.0 - es_auc.unwrap_or(0.0)).powi(2)).sqrt();
        let auc_logit = logit_auc(&scored.logits, &scored.labels, classes)?;
        let score = match self.config.engine.selection {
            Selection::Auc => auc.unwrap_or(0.5),
            Selection::AucLogit => auc_logit.unwrap_or(0.5),
            Selection::EsAuc => es_auc.unwrap_or(0.0),
            Selection::Dto => -dto,
        };
        let mut gaps = serde_json::Map::new();
        for (a, attribute) in self.schema.attributes.iter().enumerate() {
            let gap = macro_mean(frames(a)?.iter().map(GroupFrame::auc_gap));
            gaps.insert(attribute.name.clone(), json!(gap));
        }
        let mut aux = serde_json::Map::new();
        for (name, probs) in self.model_config.names().iter().zip(&scored.aux) {
            let per_task = ovr_tasks(classes)
                .map(|c| Ok(task(probs, &scored.labels, c)?.auc()))
                .collect::<anyhow::Result<Vec<_>>>()?;
            aux.insert(name.to_string(), json!(macro_mean(per_task)));
        }
        let summary = json!({
            "loss": mean_loss(&scored.probs, &scored.labels), "auc": auc, "auc_logit": auc_logit, "es_auc": es_auc,
            "dto": dto, "group_auc": group_aucs(&selected), "auc_gap": gaps, "aux_auc": aux,
        });
        Ok((score, summary))
    }

    /// Per modality: its auxiliary head's AUC per group, and the fused AUC per group with that
    /// modality taken out — which modality fails which group.
    pub fn modality_group_report(&self, scorer: Scorer, scored: &Scored) -> anyhow::Result<Value> {
        let groups = |probs: &[Vec<f64>]| -> anyhow::Result<Value> {
            let mut out = serde_json::Map::new();
            for (a, attribute) in self.schema.attributes.iter().enumerate() {
                let frames = task_frames(
                    probs,
                    &scored.labels,
                    &scored.codes[a],
                    self.model_config.classes,
                )?;
                let overall = macro_mean(frames.iter().map(|f| f.overall.auc));
                out.insert(
                    attribute.name.clone(),
                    json!({"overall": overall, "groups": group_aucs(&frames)}),
                );
            }
            Ok(Value::Object(out))
        };
        let mut report = serde_json::Map::new();
        for (j, name) in self.model_config.names().iter().enumerate() {
            let without = self.score(scorer, &self.test, Some(j))?;
            let entry =
                json!({"aux": groups(&scored.aux[j])?, "fused_without": groups(&without.probs)?});
            report.insert(name.to_string(), entry);
        }
        Ok(Value::Object(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference selects on the raw class-1 logit; softmax(z)[1] = sigmoid(z1 - z0) ranks
    /// samples by the difference instead, so the two rules can choose different epochs.
    #[test]
    fn selection_on_the_raw_logit_can_choose_another_epoch_than_on_the_softmax() {
        let labels = [1u8, 0, 1, 0];
        let softmax = |z: &[Vec<f64>]| -> Vec<Vec<f64>> {
            z.iter()
                .map(|z| {
                    let (a, b) = (z[0].exp(), z[1].exp());
                    vec![a / (a + b), b / (a + b)]
                })
                .collect()
        };
        // Epoch 1: the positives have the larger logit difference, not the larger class-1 logit.
        let epoch1 = vec![
            vec![-5.0, 0.5],
            vec![0.0, 1.0],
            vec![-4.0, 0.4],
            vec![0.0, 0.9],
        ];
        // Epoch 2: the class-1 logit ranks the positives first, the difference does not.
        let epoch2 = vec![
            vec![2.0, 1.2],
            vec![0.0, 0.5],
            vec![2.0, 1.1],
            vec![-1.0, 0.6],
        ];
        let by_softmax = |z: &Vec<Vec<f64>>| task(&softmax(z), &labels, 1).unwrap().auc().unwrap();
        let by_logit = |z: &Vec<Vec<f64>>| logit_auc(z, &labels, 2).unwrap().unwrap();
        assert!(by_softmax(&epoch1) > by_softmax(&epoch2));
        assert!(by_logit(&epoch2) > by_logit(&epoch1));
        assert_eq!((by_logit(&epoch1), by_logit(&epoch2)), (0.0, 1.0));
    }
}
