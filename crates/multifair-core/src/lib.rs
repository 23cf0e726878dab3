//! Training methods: one [`Method`] trait with one step, one file per method in `methods/`,
//! typed hyperparameters declared beside each method (`hparams`), and a registry by name. The engine owns the loop, the optimizer, clipping,
//! checkpoints and logging; a method says only how its step differs.

pub mod clip;
pub mod hparams;
pub mod methods;
pub mod pairwise;
pub mod scaling;
pub mod sinkhorn;
pub mod stats;

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor};
use multifair_models::{ModalityInput, MultimodalModel, Readout};

pub use methods::{MethodInfo, REGISTRY, create, info};
pub use multifair_data::loader::Cells;

/// A training batch on the device, with what methods need on the host.
#[derive(Debug, Clone)]
pub struct DeviceBatch {
    /// One input per model modality, in the model's order.
    pub inputs: Vec<ModalityInput>,
    /// Class indices [B].
    pub labels: Tensor<1, Int>,
    /// One-hot labels [B, C].
    pub onehot: Tensor<2>,
    /// Attribute codes per sample, [attribute][sample] (-1 unknown).
    pub codes: Vec<Vec<i64>>,
    /// Labels on the host (class 1 = true; the two-class methods' view).
    pub targets: Vec<bool>,
    /// Class indices on the host.
    pub label_ids: Vec<u8>,
    /// Codes of the run's attribute (the groups fairness methods balance), -1 unknown.
    pub groups: Vec<i64>,
    /// The same codes on the device [B].
    pub group_ids: Tensor<1, Int>,
    /// [B, M]: 1 where the sample has the modality, 0 where it is missing; `None` when every
    /// sample has every modality (the built-in datasets).
    pub available: Option<Tensor<2>>,
}

impl DeviceBatch {
    /// A batch of two-class `labels` (0/1) with attribute `codes` [attribute][sample], of which
    /// `attribute` is the run's.
    pub fn new(
        inputs: Vec<ModalityInput>,
        labels: &[u8],
        codes: Vec<Vec<i64>>,
        attribute: usize,
        device: &Device,
    ) -> Self {
        Self::with_classes(inputs, labels, 2, codes, attribute, device)
    }

    /// [`DeviceBatch::new`] for `classes` classes (labels 0..classes).
    pub fn with_classes(
        inputs: Vec<ModalityInput>,
        labels: &[u8],
        classes: usize,
        codes: Vec<Vec<i64>>,
        attribute: usize,
        device: &Device,
    ) -> Self {
        let n = labels.len();
        let ids: Vec<i64> = labels.iter().map(|&y| y as i64).collect();
        let onehot: Vec<f32> = labels
            .iter()
            .flat_map(|&y| (0..classes).map(move |c| (c == y as usize) as u8 as f32))
            .collect();
        let groups = codes[attribute].clone();
        DeviceBatch {
            inputs,
            labels: Tensor::<1, Int>::from_ints(ids.as_slice(), device),
            onehot: Tensor::<1>::from_floats(onehot.as_slice(), device).reshape([n, classes]),
            targets: labels.iter().map(|&y| y == 1).collect(),
            label_ids: labels.to_vec(),
            group_ids: Tensor::<1, Int>::from_ints(groups.as_slice(), device),
            groups,
            codes,
            available: None,
        }
    }

    /// Marks missing modalities: `available[modality][sample]`, in the model's order.
    pub fn with_available(mut self, available: &[Vec<bool>]) -> Self {
        if available.iter().flatten().all(|&a| a) {
            return self;
        }
        let (m, b) = (available.len(), available[0].len());
        let values: Vec<f32> = (0..b)
            .flat_map(|n| available.iter().map(move |row| row[n] as u8 as f32))
            .collect();
        let device = self.group_ids.device();
        self.available = Some(Tensor::<1>::from_floats(values.as_slice(), &device).reshape([b, m]));
        self
    }

    /// Modality `j`'s availability [B]; `None` when nothing is missing.
    pub fn available_of(&self, j: usize) -> Option<Tensor<1>> {
        self.available.as_ref().map(|a| {
            let [b, _] = a.dims();
            a.clone().slice([0..b, j..j + 1]).reshape([b])
        })
    }

    /// The mean of per-sample `values` [B] over the samples that have modality `j` (all of
    /// them when nothing is missing): a missing modality's blank input says nothing about the
    /// label.
    pub fn mean_where_available(&self, j: usize, values: Tensor<1>) -> Tensor<1> {
        match self.available_of(j) {
            None => values.mean(),
            Some(mask) => (values * mask.clone()).sum() / mask.sum().clamp_min(1.0),
        }
    }

    /// Modality `j`'s auxiliary cross-entropy over the samples that have the modality.
    pub fn aux_cross_entropy(&self, j: usize, logits: Tensor<2>) -> Tensor<1> {
        self.mean_where_available(j, cross_entropy_per_sample(logits, self.onehot.clone()))
    }

    /// The auxiliary heads' cross-entropies, summed (what trains the heads).
    pub fn aux_loss(&self, aux_logits: &[Tensor<2>]) -> Tensor<1> {
        aux_logits
            .iter()
            .enumerate()
            .map(|(j, logits)| self.aux_cross_entropy(j, logits.clone()))
            .reduce(|a, b| a + b)
            .expect("at least one modality")
    }
}

/// What the engine tells a method before training.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Modalities of the model.
    pub modalities: usize,
    /// The dataset's attributes, in the order of `DeviceBatch::codes`, and the run's.
    pub attributes: Vec<String>,
    pub attribute: usize,
    /// Training samples per group code 0..K of the run's attribute.
    pub group_counts: Vec<usize>,
    /// Training samples whose code is unknown (-1).
    pub unknown: usize,
    /// Classes of the label (2 for the glaucoma datasets; more are scored one-vs-rest).
    pub classes: usize,
}

impl Setup {
    /// The refusal of a method that balances modalities, for a one-modality setup.
    pub fn require_modalities(&self, method: &str) -> Result<(), String> {
        if self.modalities < 2 {
            return Err(format!("{method} balances modalities: it needs at least 2"));
        }
        Ok(())
    }

    /// The refusal of a method that balances groups, for a split with fewer than two.
    pub fn require_groups(&self, method: &str) -> Result<(), String> {
        if self.group_counts.len() < 2 {
            return Err(format!(
                "{method} needs at least 2 groups in the training split"
            ));
        }
        Ok(())
    }
}

/// What a step hands back to the engine: the gradients to clip and apply, the fused
/// cross-entropy on the device [1] (the engine reads it every few steps, for the NaN guard and
/// the logs, so that a step needs no host read) and method statistics.
pub struct StepOutput {
    pub grads: GradientsParams,
    pub loss: Tensor<1>,
    pub stats: BTreeMap<String, f64>,
    /// Factors on each modality encoder's learning rate, for a method that modulates the step
    /// rather than the gradient (adaptive optimizers cancel a constant gradient scale).
    pub encoder_steps: Option<Vec<f64>>,
}

/// A training method.
pub trait Method: Send {
    fn name(&self) -> &'static str;

    /// The modalities the model is built over, from those the dataset has.
    fn modalities(&self, available: &[String]) -> Result<Vec<String>, String> {
        Ok(available.to_vec())
    }

    /// Checks the setup (an error says what the method cannot do) and sizes its state.
    fn prepare(&mut self, _setup: &Setup) -> Result<(), String> {
        Ok(())
    }

    /// Called before each epoch (0-based), for methods active in some epochs only.
    fn start_epoch(&mut self, _epoch: usize) {}

    /// How the training batches are drawn.
    fn sampling(&self) -> Sampling {
        Sampling::Shuffle
    }

    /// How the model reads its prediction out of the modality tokens.
    fn readout(&self, _setup: &Setup) -> Readout {
        Readout::Fused
    }

    /// Unimodal runs this method needs before its own (UME, UMT).
    fn phases(&self) -> Phases {
        Phases::None
    }

    /// The selected unimodal models of [`Phases::Teachers`], one per modality in the model's
    /// order, handed over before training.
    fn teachers(&mut self, _teachers: Vec<MultimodalModel>) {}

    /// Optimizer steps per batch: [`Method::step`] is called this many times on each batch,
    /// the optimizers stepping after each call (MLA steps each modality in turn).
    fn substeps(&self) -> usize {
        1
    }

    /// Called before each batch: its index in the epoch and the epoch's batches.
    fn start_batch(&mut self, _index: usize, _batches: usize) {}

    /// The share of the training split held out from training, whose per-head losses the
    /// engine reports after each epoch ([`EpochEnd::holdout`]); 0 for none.
    fn holdout(&self) -> f64 {
        0.0
    }

    /// The share of the training batches whose tokens the method wants before each epoch
    /// (PMR's prototypes); 0 for none.
    fn feature_share(&self) -> f64 {
        0.0
    }

    /// The tokens [`Method::feature_share`] asks for, before epoch `epoch` (0-based); an error
    /// stops the run.
    fn features(&mut self, _epoch: usize, _features: Features) -> Result<(), String> {
        Ok(())
    }

    /// Whether the engine averages each epoch's weights into a segment ([`Method::end_epoch`]
    /// sees them by epoch) and tests [`Method::average`] instead of the selected epoch.
    fn averages_weights(&self) -> bool {
        false
    }

    /// After an epoch's validation; returns whether training stops here.
    fn end_epoch(&mut self, _end: &EpochEnd) -> bool {
        false
    }

    /// The epochs' segments whose mean is the model to test, each with its count (an epoch
    /// can count more than once), for a method that [`Method::averages_weights`].
    fn average(&self) -> Vec<(usize, usize)> {
        Vec::new()
    }

    /// Whether the model carries a FIN layer before its final linear layer.
    fn fair_norm(&self) -> bool {
        false
    }

    /// Samples of each group the method wants drawn from the training set beside every batch
    /// (FIS measures its group distances on them); 0 for none.
    fn group_samples(&self) -> usize {
        0
    }

    /// The draws [`Method::group_samples`] asks for, (group code, batch) per group with training
    /// samples, handed over before each step.
    fn group_batches(&mut self, _batches: Vec<(i64, DeviceBatch)>) {}

    /// One step: forward, loss, backward. Gradients come back unclipped.
    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput;

    /// Method state to keep in checkpoints (statistics carried across steps): the method's own
    /// serde struct as JSON ([`write_state`]).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores what [`Method::state`] wrote ([`read_state`]).
    fn load_state(&mut self, _state: serde_json::Value) -> Result<(), String> {
        Ok(())
    }
}

/// How training batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Every sample once per epoch, shuffled.
    Shuffle,
    /// As many draws as samples, with replacement, each cell of the run's attribute equally
    /// likely, then a member uniformly (torch's WeightedRandomSampler with weights 1 / n_cell).
    Balanced(Cells),
}

/// The runs a method trains before its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    None,
    /// One `unimodal` run per modality, then their summed logits are the prediction: no
    /// training of its own.
    Ensemble,
    /// One `unimodal` run per modality, whose selected models teach the method's own run
    /// ([`Method::teachers`]).
    Teachers,
}

/// Tokens of training samples in evaluation mode ([`Method::feature_share`]).
pub struct Features {
    /// Per modality, [sample][p].
    pub tokens: Vec<Vec<Vec<f32>>>,
    /// Per modality, whether each sample has it.
    pub available: Vec<Vec<bool>>,
    pub labels: Vec<u8>,
}

/// What the engine measured at the end of an epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochEnd {
    /// 0-based.
    pub epoch: usize,
    /// Mean cross-entropy of the fused prediction on the validation split.
    pub val_loss: f64,
    /// The lowest group AUC of the run's attribute on the validation split.
    pub val_worst_group_auc: Option<f64>,
    /// Mean cross-entropies on the held-out part of training ([`Method::holdout`]): each
    /// modality's auxiliary head, then the fused prediction.
    pub holdout: Option<Vec<f64>>,
}

/// A model from `config` ready for `method`'s steps outside a run (timing, benchmarks, tests):
/// read out as the method asks, and with what a run would hand it first — fresh teachers (one
/// single-modality model per encoder) and prototypes of made-up tokens of every class. A real
/// run hands over trained teachers and real tokens. (UME's step on it trains its members side
/// by side, as its runs do one at a time.)
pub fn model_for_steps(
    method: &mut dyn Method,
    config: &multifair_models::ModelConfig,
    setup: &Setup,
    device: &Device,
) -> Result<MultimodalModel, String> {
    let config = config.clone().with_readout(method.readout(setup));
    if method.phases() == Phases::Teachers {
        let teachers = (config.modalities.iter())
            .map(|m| {
                let one = multifair_models::ModelConfig {
                    modalities: vec![m.clone()],
                    fusion_layers: 0,
                    readout: Readout::Fused,
                    ..config.clone()
                };
                one.init(device)
            })
            .collect();
        method.teachers(teachers);
    }
    if method.feature_share() > 0.0 {
        let (m, n, p) = (
            config.modalities.len(),
            4 * setup.classes,
            config.fusion_dim,
        );
        let labels: Vec<u8> = (0..n).map(|i| (i % setup.classes) as u8).collect();
        let tokens = (0..m)
            .map(|j| {
                (0..n)
                    .map(|i| vec![((i + j) % 5) as f32 / 5.0; p])
                    .collect()
            })
            .collect();
        let features = Features {
            tokens,
            available: vec![vec![true; n]; m],
            labels,
        };
        method.features(0, features)?;
    }
    Ok(config.init(device))
}

/// A method's state struct as checkpoint JSON.
pub fn write_state(state: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(state).expect("method state serialises")
}

/// A method's state struct from checkpoint JSON; a mismatch names the field.
pub fn read_state<S: serde::de::DeserializeOwned>(state: serde_json::Value) -> Result<S, String> {
    serde_path_to_error::deserialize(state)
        .map_err(|e| format!("method state, {}: {}", e.path(), e.inner()))
}

/// softmax(logits)[:, 1]: the positive-class probability of two-class logits [B, 2] -> [B].
pub fn positive_probability(logits: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    softmax(logits, 1).slice([0..b, 1..2]).reshape([b])
}

/// The one-vs-rest tasks of a C-class label: class 1 alone for two classes (class 0's task is
/// its mirror image, with the same AUC), every class for more.
pub fn ovr_tasks(classes: usize) -> std::ops::Range<usize> {
    if classes == 2 { 1..2 } else { 0..classes }
}

/// Each one-vs-rest task's probability, [T, B] from logits [B, C] (see [`ovr_tasks`]).
pub fn task_probabilities(logits: Tensor<2>) -> Tensor<2> {
    let [b, c] = logits.dims();
    let tasks = ovr_tasks(c);
    softmax(logits, 1).slice([0..b, tasks]).transpose()
}

/// Each one-vs-rest task's targets, [T, B] from one-hot labels [B, C].
pub fn task_targets(onehot: Tensor<2>) -> Tensor<2> {
    let [b, c] = onehot.dims();
    onehot.slice([0..b, ovr_tasks(c)]).transpose()
}

/// A 1-D tensor's values, read back to the host (one sync).
pub fn to_host(values: Tensor<1>) -> Result<Vec<f64>, String> {
    let data = values.into_data().convert::<f32>();
    let v = data
        .try_to_vec::<f32>()
        .map_err(|e| format!("reading a tensor back: {e:?}"))?;
    Ok(v.into_iter().map(f64::from).collect())
}

/// Per-sample cross-entropy [B] of `logits` [B, C] against one-hot targets.
pub fn cross_entropy_per_sample(logits: Tensor<2>, onehot: Tensor<2>) -> Tensor<1> {
    let [b, _] = logits.dims();
    (log_softmax(logits, 1) * onehot)
        .sum_dim(1)
        .reshape([b])
        .neg()
}

/// Cosine similarity of two matrices seen as vectors, a scalar tensor [1].
pub fn cosine(a: Tensor<2>, b: Tensor<2>) -> Tensor<1> {
    let dot = (a.clone() * b.clone()).sum();
    let norms = (a.powf_scalar(2.0).sum() * b.powf_scalar(2.0).sum()).sqrt();
    dot / norms.add_scalar(1e-12)
}

/// The cross-entropy gradient of a linear last layer with input `hidden` [B, p] and logits
/// [B, C]: hidden^T (softmax(logits) - Y) / B, [p, C].
pub fn last_layer_gradient(hidden: Tensor<2>, logits: Tensor<2>, onehot: Tensor<2>) -> Tensor<2> {
    let [b, _] = logits.dims();
    hidden
        .transpose()
        .matmul(softmax(logits, 1) - onehot)
        .div_scalar(b as f64)
}

/// Mean cross-entropy, a scalar tensor [1].
pub fn cross_entropy(logits: Tensor<2>, onehot: Tensor<2>) -> Tensor<1> {
    cross_entropy_per_sample(logits, onehot).mean()
}
