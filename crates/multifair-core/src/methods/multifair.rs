//! MultiFair, generalised (DESIGN §6): M >= 2 modalities, K >= 2 groups per attribute, one or
//! several attributes with weights (`multifair_attributes=race:1,gender:0.5`; default the run's),
//! every statistic on the device (no host read inside the step but the logged ones), and
//! per-sample modulation through the scaling identity, so that groups are reweighted inside the
//! batch. Each change to the reference step is a switch, so the ablations are configurations:
//!
//! - `multifair_modality` (on): modality coefficients B_m from the auxiliary heads' AUC progress;
//! - `multifair_group` (on): group factors f_mg from the EMA of surrogate group AUCs;
//! - `multifair_per_sample` (on): w_{n,m} = rho B_m f_m(g_n); off: the reference's batch factor;
//! - `multifair_smoothing` (0.5): EMA of the modality AUCs before differencing (0: raw);
//! - `multifair_factor_max` (2): f clipped to [1/max, max] (0: unclipped);
//! - `multifair_fairness` (0.5): weight of a fairness loss with gradient, relu(surrogate
//!   group-AUC gap of the fused output - tau) (0: off);
//! - `multifair_priority` (on): group factors only while the fused group-AUC gap exceeds tau;
//! - `multifair_direction` (0: off): weight of the direction term
//!   sum_m B_m (1 - cos(G_fused, G_m)), G the closed-form last-layer cross-entropy gradients of
//!   the fused head and of modality m's auxiliary head (the reference's L_gm, which is always 0
//!   there, made to work); only the fused side carries its gradient.
//!
//! With smoothing, clipping and the fairness loss off and batch mode on, the encoder scales
//! equal `multifair_ref`'s (tested).

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{Device, Tensor};
use multifair_models::MultimodalModel;

use super::MethodInfo;
use crate::scaling::scale_gradient;
use crate::{
    DeviceBatch, Method, Params, Setup, StepOutput, cosine, cross_entropy, last_layer_gradient,
    task_probabilities, task_targets, to_host,
};

pub const INFO: MethodInfo = MethodInfo {
    name: "multifair",
    about: "MultiFair generalised: any M and K, per-sample modulation, fairness loss with gradient",
    keys: &[
        ("multifair_rho", "1.2"),
        ("multifair_beta", "0.3"),
        ("multifair_tau", "0.04"),
        ("multifair_ema", "0.9"),
        ("multifair_modality", "true"),
        ("multifair_group", "true"),
        ("multifair_per_sample", "true"),
        ("multifair_priority", "true"),
        ("multifair_smoothing", "0.5"),
        ("multifair_factor_max", "2"),
        ("multifair_fairness", "0.5"),
        ("multifair_direction", "0"),
        (
            "multifair_attributes",
            "the run's attribute, weight 1 (e.g. race:1,gender:0.5)",
        ),
        ("multifair_log_every", "10"),
    ],
    defaults: &[],
    presets: &[],
    build: |params: &Params| {
        Ok(Box::new(Multifair::new(MultifairConfig::from_params(
            params,
        )?)))
    },
};

#[derive(Debug, Clone, PartialEq)]
pub struct MultifairConfig {
    pub rho: f64,
    pub beta: f64,
    pub tau: f64,
    pub ema: f64,
    pub modality: bool,
    pub group: bool,
    pub per_sample: bool,
    pub priority: bool,
    pub smoothing: f64,
    pub factor_max: f64,
    pub fairness: f64,
    pub direction: f64,
    /// (attribute name, weight); empty: the run's attribute alone.
    pub attributes: Vec<(String, f64)>,
    pub log_every: usize,
}

impl MultifairConfig {
    pub fn from_params(params: &Params) -> Result<Self, String> {
        let flag = |key: &str| match params.get(key) {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("--set {key}={v}: expected true or false")),
        };
        Ok(MultifairConfig {
            rho: params.f64_or("multifair_rho", 1.2)?,
            beta: params.f64_or("multifair_beta", 0.3)?,
            tau: params.f64_or("multifair_tau", 0.04)?,
            ema: params.f64_or("multifair_ema", 0.9)?,
            modality: flag("multifair_modality")?,
            group: flag("multifair_group")?,
            per_sample: flag("multifair_per_sample")?,
            priority: flag("multifair_priority")?,
            smoothing: params.f64_or("multifair_smoothing", 0.5)?,
            factor_max: params.f64_or("multifair_factor_max", 2.0)?,
            fairness: params.f64_or("multifair_fairness", 0.5)?,
            direction: params.f64_or("multifair_direction", 0.0)?,
            log_every: params.f64_or("multifair_log_every", 10.0)?.max(1.0) as usize,
            attributes: match params.get("multifair_attributes") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|item| {
                        let (name, weight) = item.split_once(':').unwrap_or((item, "1"));
                        let weight: f64 = weight.trim().parse().ok().filter(|w: &f64| *w > 0.0).ok_or_else(|| {
                            format!("--set multifair_attributes={list}: '{item}' needs a positive weight (NAME:WEIGHT)")
                        })?;
                        Ok((name.trim().to_owned(), weight))
                    })
                    .collect::<Result<_, String>>()?,
            },
        })
    }
}

/// One attribute's group level: its codes seen so far (column k of the EMA belongs to
/// `codes[k]`) and the EMA of the surrogate AUC per modality and group [M, K] (0.5 at the start).
struct GroupLevel {
    /// Index of the attribute in the batch's codes, and its name for the logs.
    attribute: usize,
    name: String,
    weight: f64,
    codes: Vec<i64>,
    ema: Option<Tensor<2>>,
}

/// The modulation of one step: weights [M, B] for the modalities' tokens, and statistics (per
/// attribute level: group factors [M, K] and the priority flag).
pub struct Modulation {
    pub weights: Tensor<2>,
    pub coeff: Tensor<1>,
    pub factors: Vec<Tensor<2>>,
    pub priority: Vec<Tensor<1>>,
}

pub struct Multifair {
    config: MultifairConfig,
    /// The attributes whose groups are balanced (the first is the run's unless configured).
    levels: Vec<GroupLevel>,
    /// (Smoothed) AUC of each auxiliary head [M], 0.5 at the start.
    auc: Option<Tensor<1>>,
    /// Host copy from a checkpoint, turned into tensors at the first step.
    restored: BTreeMap<String, f64>,
    steps: usize,
}

/// Pairwise "positive i beats negative j" statistics, per group: mean of `pair(s_i - s_j)` over
/// positive i and negative j of each group (rows of `members`), and whether the group has both
/// classes. `scores` [T, B] and `y` [T, B] (1 positive) hold one row per one-vs-rest task,
/// `members` [K, B] (1 in the group); a group's value is the mean over the tasks it has both
/// classes of (macro one-vs-rest), and it is valid when it has any.
fn pairwise_by_group(
    scores: Tensor<2>,
    y: Tensor<2>,
    members: Tensor<2>,
    pair: impl Fn(Tensor<2>) -> Tensor<2>,
) -> (Tensor<1>, Tensor<1>) {
    let [tasks, b] = scores.dims();
    let [k, _] = members.dims();
    let one_task = |t: usize| {
        let scores = scores.clone().slice([t..t + 1, 0..b]).reshape([b]);
        let y = y.clone().slice([t..t + 1, 0..b]).reshape([b]);
        let diff = scores.clone().reshape([b, 1]) - scores.reshape([1, b]); // s_i - s_j
        let values = pair(diff); // [B, B]
        let pos = members.clone() * y.clone().reshape([1, b]); // [K, B]
        let neg = members.clone() * y.neg().add_scalar(1.0).reshape([1, b]);
        let pairs = pos.clone().sum_dim(1) * neg.clone().sum_dim(1); // [K, 1]
        let total = (pos.matmul(values) * neg).sum_dim(1); // [K, 1]
        let valid = pairs.clone().greater_elem(0.0).float();
        let mean = total / pairs.clamp_min(1.0);
        (mean.reshape([k]), valid.reshape([k]))
    };
    if tasks == 1 {
        return one_task(0);
    }
    let (mut sum, mut count) = (
        Tensor::zeros([k], &members.device()),
        Tensor::zeros([k], &members.device()),
    );
    for t in 0..tasks {
        let (mean, valid) = one_task(t);
        sum = sum + mean * valid.clone();
        count = count + valid;
    }
    (
        sum / count.clone().clamp_min(1.0),
        count.greater_elem(0.0).float(),
    )
}

/// ROC-AUC per group on the device, ties half; invalid groups get 0.
fn auc_by_group(scores: Tensor<2>, y: Tensor<2>, members: Tensor<2>) -> (Tensor<1>, Tensor<1>) {
    pairwise_by_group(scores, y, members, |d| {
        d.sign().add_scalar(1.0).mul_scalar(0.5)
    })
}

/// The reference's surrogate AUC per group: 1 - mean log(1 + exp(-(s_i - s_j))); 0.5 where a
/// group lacks a class.
fn surrogate_by_group(
    scores: Tensor<2>,
    y: Tensor<2>,
    members: Tensor<2>,
) -> (Tensor<1>, Tensor<1>) {
    let (loss, valid) = pairwise_by_group(scores, y, members, |d| softplus(d.neg(), 1.0));
    let value = loss.neg().add_scalar(1.0);
    (
        value.clone() * valid.clone() + valid.clone().neg().add_scalar(1.0).mul_scalar(0.5),
        valid,
    )
}

impl Multifair {
    pub fn new(config: MultifairConfig) -> Self {
        Multifair {
            config,
            levels: Vec::new(),
            auc: None,
            restored: BTreeMap::new(),
            steps: 0,
        }
    }

    /// Checkpoint keys of level `l`: the first level keeps the single-attribute names.
    fn key(l: usize, what: &str) -> String {
        if l == 0 {
            what.to_owned()
        } else {
            format!("{what}@{l}")
        }
    }

    /// The single-attribute level used when no setup named the attributes (direct use).
    fn ensure_levels(&mut self) {
        if self.levels.is_empty() {
            self.levels.push(GroupLevel {
                attribute: 0,
                name: "group".into(),
                weight: 1.0,
                codes: Vec::new(),
                ema: None,
            });
            self.restore_codes();
        }
    }

    fn restore_codes(&mut self) {
        for (l, level) in self.levels.iter_mut().enumerate() {
            level.codes = (0..)
                .map_while(|i| {
                    self.restored
                        .get(&format!("{}.{i}", Multifair::key(l, "code")))
                        .map(|&c| c as i64)
                })
                .collect();
        }
    }

    /// Registers level `l`'s codes in the batch; returns its membership matrix [K, B] (unknown
    /// codes belong to no group) and the mask of groups present in the batch [K].
    fn members(&mut self, l: usize, groups: &[i64], device: &Device) -> (Tensor<2>, Tensor<1>) {
        let level = &mut self.levels[l];
        for &g in groups {
            if g >= 0 && !level.codes.contains(&g) {
                level.codes.push(g);
                if let Some(ema) = level.ema.take() {
                    let [m, _] = ema.dims();
                    let column = Tensor::<2>::full([m, 1], 0.5, device);
                    level.ema = Some(Tensor::cat(vec![ema, column], 1));
                }
            }
        }
        let (k, b) = (level.codes.len(), groups.len());
        let mut m = vec![0.0f32; k * b];
        let mut present = vec![0.0f32; k];
        for (n, g) in groups.iter().enumerate() {
            if let Some(i) = level.codes.iter().position(|c| c == g) {
                m[i * b + n] = 1.0;
                present[i] = 1.0;
            }
        }
        (
            Tensor::<1>::from_floats(m.as_slice(), device).reshape([k, b]),
            Tensor::<1>::from_floats(present.as_slice(), device),
        )
    }

    /// The modality AUCs [M], from the checkpoint at the first step.
    fn auc_state(&mut self, modalities: usize, device: &Device) -> Tensor<1> {
        let restored = &self.restored;
        self.auc.take().unwrap_or_else(|| {
            let auc: Vec<f32> = (0..modalities)
                .map(|m| restored.get(&format!("auc.{m}")).copied().unwrap_or(0.5) as f32)
                .collect();
            Tensor::<1>::from_floats(auc.as_slice(), device)
        })
    }

    /// Level `l`'s EMA [M, K], from the checkpoint at the first step.
    fn ema_state(&mut self, l: usize, modalities: usize, device: &Device) -> Tensor<2> {
        let restored = &self.restored;
        let level = &mut self.levels[l];
        let k = level.codes.len();
        level.ema.take().unwrap_or_else(|| {
            let prefix = Multifair::key(l, "ema");
            let ema: Vec<f32> = (0..modalities)
                .flat_map(|m| {
                    let prefix = &prefix;
                    level.codes.iter().map(move |g| {
                        restored
                            .get(&format!("{prefix}.{m}.{g}"))
                            .copied()
                            .unwrap_or(0.5) as f32
                    })
                })
                .collect();
            Tensor::<1>::from_floats(ema.as_slice(), device).reshape([modalities, k])
        })
    }

    /// The step's modulation for a two-class label and one attribute whose codes are `groups`
    /// (direct use, as in the golden tests): positive-class probabilities of the heads [M, B]
    /// and of the fusion [B], labels y [B]; see [`Multifair::modulate_levels`].
    pub fn modulate(
        &mut self,
        aux: Tensor<2>,
        fused: Tensor<1>,
        y: Tensor<1>,
        groups: &[i64],
    ) -> Modulation {
        self.ensure_levels();
        let ([m, b], t) = (aux.dims(), 1);
        self.modulate_levels(
            aux.reshape([m, t, b]),
            fused.reshape([t, b]),
            y.reshape([t, b]),
            &[groups],
            None,
        )
    }

    /// The step's modulation from each auxiliary head's and the fused probabilities of every
    /// one-vs-rest task ([M, T, B] and [T, B], no gradient; T = 1 for two classes), the tasks'
    /// targets y [T, B] and, per attribute level, the batch's codes. AUCs are macro averages
    /// over the tasks. The per-sample group factors of the levels are averaged with their
    /// weights. With `available` [B, M] (missing modalities), each head's AUCs count only the
    /// samples that have its modality.
    pub fn modulate_levels(
        &mut self,
        aux: Tensor<3>,
        fused: Tensor<2>,
        y: Tensor<2>,
        groups: &[&[i64]],
        available: Option<Tensor<2>>,
    ) -> Modulation {
        let device = aux.device();
        let cfg = self.config.clone();
        let [m, t, b] = aux.dims();
        let head = |i: usize| aux.clone().slice([i..i + 1, 0..t, 0..b]).reshape([t, b]);
        // [M, B]: the samples each head is judged on.
        let judged = match available {
            Some(a) => a.transpose(),
            None => Tensor::<2>::ones([m, b], &device),
        };
        let judged_row = |i: usize| judged.clone().slice([i..i + 1, 0..b]);

        // Modality level: AUC progress of each head (the previous value where a class is missing).
        let mut raw = Vec::with_capacity(m);
        for i in 0..m {
            raw.push(auc_by_group(head(i), y.clone(), judged_row(i)));
        }
        let prev = self.auc_state(m, &device);
        let batch_auc = Tensor::cat(raw.iter().map(|(a, _)| a.clone()).collect(), 0);
        let valid = Tensor::cat(raw.into_iter().map(|(_, v)| v).collect(), 0);
        let batch_auc = batch_auc * valid.clone() + prev.clone() * valid.neg().add_scalar(1.0);
        let auc =
            prev.clone().mul_scalar(cfg.smoothing) + batch_auc.mul_scalar(1.0 - cfg.smoothing);
        let delta = (auc.clone() - prev).abs();
        let s = delta.clone().sum().add_scalar(1e-8);
        let coeff = if cfg.modality {
            (s.clone().expand([m]) - delta) / s.expand([m])
        } else {
            Tensor::ones([m], &device)
        };
        self.auc = Some(auc);

        // Group level, per attribute: EMA of surrogate group AUCs for the groups in the batch.
        let mut combined = Tensor::<2>::zeros([m, b], &device);
        let mut total_weight = 0.0;
        let (mut all_factors, mut priorities) = (Vec::new(), Vec::new());
        for (l, codes) in groups.iter().enumerate() {
            let (members, present) = self.members(l, codes, &device);
            let k = self.levels[l].codes.len();
            let ema_prev = self.ema_state(l, m, &device);
            let surrogate: Vec<Tensor<1>> = (0..m)
                .map(|i| {
                    let judged = members.clone() * judged_row(i).expand([k, b]);
                    surrogate_by_group(head(i), y.clone(), judged).0
                })
                .collect();
            let surrogate = Tensor::stack::<2>(surrogate, 0); // [M, K]
            let present_mk = present.clone().reshape([1, k]).expand([m, k]);
            let updated =
                ema_prev.clone().mul_scalar(cfg.ema) + surrogate.mul_scalar(1.0 - cfg.ema);
            let ema =
                updated * present_mk.clone() + ema_prev * present_mk.clone().neg().add_scalar(1.0);
            let n_present = present.clone().sum().clamp_min(1.0).reshape([1, 1]);
            let mean = (ema.clone() * present_mk.clone()).sum_dim(1) / n_present.expand([m, 1]); // [M, 1]
            let mut factors = (mean.expand([m, k]) - ema.clone())
                .mul_scalar(cfg.beta / cfg.tau.max(1e-4))
                .add_scalar(1.0);
            if cfg.factor_max > 0.0 {
                factors = factors.clamp(1.0 / cfg.factor_max, cfg.factor_max);
            }
            if !cfg.group {
                factors = Tensor::ones([m, k], &device);
            }
            self.levels[l].ema = Some(ema);

            // Priority: the fused prediction's group-AUC gap over the groups in the batch.
            let (fused_auc, fused_valid) = auc_by_group(fused.clone(), y.clone(), members.clone());
            let fused_auc =
                fused_auc * fused_valid.clone() + fused_valid.neg().add_scalar(1.0).mul_scalar(0.5);
            let high =
                (fused_auc.clone() + present.clone().neg().add_scalar(1.0).mul_scalar(-1e9)).max();
            let low = (fused_auc + present.clone().neg().add_scalar(1.0).mul_scalar(1e9)).min();
            let priority = if cfg.priority {
                (high - low).greater_elem(cfg.tau).float()
            } else {
                Tensor::ones([1], &device)
            };

            // Per-sample factor f_m(g_n) (1 for unknown codes), or the batch factor F_m.
            let known = members.clone().sum_dim(0); // [1, B]
            let per_sample = factors.clone().matmul(members)
                + known.clone().neg().add_scalar(1.0).expand([m, b]);
            let group_weight = if cfg.per_sample {
                per_sample
            } else {
                let n_known = known.clone().sum().clamp_min(1.0).reshape([1, 1]);
                (per_sample * known.expand([m, b]))
                    .sum_dim(1)
                    .div(n_known.expand([m, 1]))
                    .expand([m, b])
            };
            let p = priority.clone().reshape([1, 1]).expand([m, b]);
            let group_weight = group_weight * p.clone() + p.neg().add_scalar(1.0);
            let w = self.levels[l].weight;
            combined = combined + group_weight.mul_scalar(w);
            total_weight += w;
            all_factors.push(factors);
            priorities.push(priority);
        }
        let weights = combined.div_scalar(total_weight.max(1e-12))
            * coeff
                .clone()
                .reshape([m, 1])
                .expand([m, b])
                .mul_scalar(cfg.rho);
        Modulation {
            weights,
            coeff,
            factors: all_factors,
            priority: priorities,
        }
    }

    /// relu(surrogate group-AUC gap of the fused probabilities - tau), with gradient.
    fn fairness_loss(&self, fused: Tensor<2>, y: Tensor<2>, members: Tensor<2>) -> Tensor<1> {
        let (value, valid) = surrogate_by_group(fused, y, members);
        let high = (value.clone() + valid.clone().neg().add_scalar(1.0).mul_scalar(-1e9)).max();
        let low = (value + valid.clone().neg().add_scalar(1.0).mul_scalar(1e9)).min();
        let two_groups = valid.sum().greater_elem(1.5).float();
        relu((high - low).sub_scalar(self.config.tau)) * two_groups
    }
}

impl Method for Multifair {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn modalities(&self, available: &[String]) -> Result<Vec<String>, String> {
        if available.len() < 2 {
            return Err("multifair needs at least two modalities".into());
        }
        Ok(available.to_vec())
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        let named: Vec<(String, f64)> = if self.config.attributes.is_empty() {
            vec![(setup.attributes[setup.attribute].clone(), 1.0)]
        } else {
            self.config.attributes.clone()
        };
        self.levels = named
            .into_iter()
            .map(|(name, weight)| {
                let attribute = setup
                    .attributes
                    .iter()
                    .position(|a| *a == name)
                    .ok_or_else(|| {
                        format!(
                            "--set multifair_attributes: no attribute '{name}'; available: {}",
                            setup.attributes.join(", ")
                        )
                    })?;
                Ok(GroupLevel {
                    attribute,
                    name,
                    weight,
                    codes: Vec::new(),
                    ema: None,
                })
            })
            .collect::<Result<_, String>>()?;
        self.restore_codes();
        Ok(())
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let tokens = model.encode(batch.inputs.clone());
        let aux_hidden = model.aux_hidden(&tokens);
        let aux_logits = model.aux_classify(&aux_hidden);
        let [b, _] = batch.onehot.dims();
        let y = task_targets(batch.onehot.clone()); // [T, B]
        // Statistics from a detached pass of the fusion (same forward values, no second graph).
        let detached: Vec<Tensor<2>> = tokens.iter().map(|t| t.clone().detach()).collect();
        let available = batch.available.as_ref();
        let fused_plain = task_probabilities(
            model
                .fuse(&detached, Some(&batch.group_ids), available)
                .detach(),
        );
        let aux = Tensor::stack::<3>(
            aux_logits
                .iter()
                .map(|l| task_probabilities(l.clone().detach()))
                .collect(),
            0,
        );
        self.ensure_levels();
        let codes: Vec<&[i64]> = self
            .levels
            .iter()
            .map(|level| {
                batch
                    .codes
                    .get(level.attribute)
                    .map_or(&batch.groups[..], |c| &c[..])
            })
            .collect();
        let modulation =
            self.modulate_levels(aux, fused_plain, y.clone(), &codes, available.cloned());
        let m = tokens.len();
        let scaled: Vec<Tensor<2>> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let w = modulation
                    .weights
                    .clone()
                    .slice([i..i + 1, 0..b])
                    .reshape([b, 1]);
                scale_gradient(t.clone(), w)
            })
            .collect();
        let hidden = model.fused_hidden(&scaled, Some(&batch.group_ids), available);
        let fused_logits = model.head.classify(hidden.clone());
        let fused = cross_entropy(fused_logits.clone(), batch.onehot.clone());
        let mut total = fused.clone();
        let direction = (self.config.direction > 0.0).then(|| {
            let g_fused = last_layer_gradient(hidden, fused_logits.clone(), batch.onehot.clone());
            let terms: Vec<Tensor<1>> = aux_hidden
                .into_iter()
                .zip(&aux_logits)
                .enumerate()
                .map(|(i, (h, u))| {
                    let g = last_layer_gradient(h, u.clone(), batch.onehot.clone()).detach();
                    let b_m = modulation.coeff.clone().slice([i..i + 1]).detach();
                    cosine(g_fused.clone(), g).neg().add_scalar(1.0) * b_m
                })
                .collect();
            Tensor::cat(terms, 0).sum()
        });
        if let Some(term) = &direction {
            total = total + term.clone().mul_scalar(self.config.direction);
        }
        // The fairness loss of each level, averaged with the levels' weights.
        let fairness = (self.config.fairness > 0.0).then(|| {
            let probs = task_probabilities(fused_logits);
            let total_weight: f64 = self.levels.iter().map(|l| l.weight).sum();
            let mut loss = Tensor::<1>::zeros([1], &y.device());
            for (l, level_codes) in codes.iter().enumerate() {
                let (members, _) = self.members(l, level_codes, &y.device());
                let weight = self.levels[l].weight / total_weight;
                loss = loss
                    + self
                        .fairness_loss(probs.clone(), y.clone(), members)
                        .mul_scalar(weight);
            }
            loss
        });
        if let Some(loss) = &fairness {
            total = total + loss.clone().mul_scalar(self.config.fairness);
        }
        total = total + batch.aux_loss(&aux_logits);
        let grads = GradientsParams::from_grads(total.backward(), model);
        self.steps += 1;
        let mut stats = BTreeMap::new();
        if self.steps % self.config.log_every == 0 {
            let host = |t: Tensor<1>| to_host(t).unwrap_or_default();
            for (i, c) in host(modulation.coeff).iter().enumerate() {
                stats.insert(format!("coeff_{i}"), *c);
            }
            // The first level keeps the single-attribute names (`factor_M_group_G`, `priority`).
            for (l, (factors, priority)) in modulation
                .factors
                .into_iter()
                .zip(modulation.priority)
                .enumerate()
            {
                let level = &self.levels[l];
                let tag = if l == 0 {
                    "group".to_owned()
                } else {
                    level.name.clone()
                };
                let k = level.codes.len();
                let factors = host(factors.reshape([m * k]));
                for i in 0..m {
                    for (j, code) in level.codes.iter().enumerate() {
                        stats.insert(format!("factor_{i}_{tag}_{code}"), factors[i * k + j]);
                    }
                }
                let name = if l == 0 {
                    "priority".to_owned()
                } else {
                    format!("priority_{tag}")
                };
                stats.insert(name, host(priority)[0]);
            }
            if let Some(loss) = fairness {
                stats.insert("fairness_loss".into(), host(loss)[0]);
            }
            if let Some(term) = direction {
                stats.insert("direction_loss".into(), host(term)[0]);
            }
        }
        StepOutput {
            grads,
            loss: fused.detach(),
            stats,
        }
    }

    fn state(&self) -> BTreeMap<String, f64> {
        let mut out = self.restored.clone();
        let host = |t: Tensor<1>| to_host(t).unwrap_or_default();
        if let Some(auc) = &self.auc {
            for (m, a) in host(auc.clone()).iter().enumerate() {
                out.insert(format!("auc.{m}"), *a);
            }
        }
        for (l, level) in self.levels.iter().enumerate() {
            if let Some(ema) = &level.ema {
                let [m, k] = ema.dims();
                let values = host(ema.clone().reshape([m * k]));
                for i in 0..m {
                    for (j, code) in level.codes.iter().enumerate() {
                        out.insert(
                            format!("{}.{i}.{code}", Multifair::key(l, "ema")),
                            values[i * k + j],
                        );
                    }
                }
            }
            for (i, code) in level.codes.iter().enumerate() {
                out.insert(format!("{}.{i}", Multifair::key(l, "code")), *code as f64);
            }
        }
        out.insert("steps".into(), self.steps as f64);
        out
    }

    fn load_state(&mut self, state: &BTreeMap<String, f64>) {
        self.steps = state.get("steps").copied().unwrap_or(0.0) as usize;
        self.restored = state.clone();
        self.auc = None;
        for level in &mut self.levels {
            level.ema = None;
        }
        self.restore_codes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host2(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn attribute_levels_average_their_per_sample_factors_with_their_weights() {
        let device = Device::flex();
        let aux = Tensor::<1>::from_floats(
            [
                0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.1, 0.4, 0.6, 0.7, 0.2, 0.9, 0.4, 0.3, 0.8, 0.5,
            ],
            &device,
        )
        .reshape([2, 1, 8]);
        let fused = Tensor::<1>::from_floats([0.8, 0.3, 0.7, 0.4, 0.6, 0.2, 0.9, 0.5], &device)
            .reshape([1, 8]);
        let y = Tensor::<1>::from_floats([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &device)
            .reshape([1, 8]);
        let race = [0i64, 0, 1, 1, 2, 2, 0, -1];
        let gender = [0i64, 1, 0, 1, 0, 1, 1, 0];
        let setup = Setup {
            modalities: 2,
            attributes: vec!["race".into(), "gender".into()],
            attribute: 0,
            group_counts: vec![3, 2, 2],
            unknown: 1,
            classes: 2,
        };
        let weights = |attributes: &str, codes: &[&[i64]]| {
            let mut params = Params::default();
            params
                .0
                .insert("multifair_attributes".into(), attributes.into());
            params.0.insert("multifair_priority".into(), "false".into());
            let mut method = Multifair::new(MultifairConfig::from_params(&params).unwrap());
            method.prepare(&setup).unwrap();
            host2(
                method
                    .modulate_levels(aux.clone(), fused.clone(), y.clone(), codes, None)
                    .weights,
            )
        };
        let r = weights("race:1", &[&race]);
        let g = weights("gender:1", &[&gender]);
        let both = weights("race:1,gender:3", &[&race, &gender]);
        for i in 0..16 {
            let want = (r[i] + 3.0 * g[i]) / 4.0;
            assert!((both[i] - want).abs() < 1e-6, "{i}: {} vs {want}", both[i]);
        }
        // The levels differ, so the average is not either one.
        assert!(r.iter().zip(&g).any(|(a, b)| (a - b).abs() > 1e-3));

        let mut params = Params::default();
        params
            .0
            .insert("multifair_attributes".into(), "race:1,income:2".into());
        let mut method = Multifair::new(MultifairConfig::from_params(&params).unwrap());
        let err = method.prepare(&setup).err().unwrap();
        assert!(
            err.contains("no attribute 'income'; available: race, gender"),
            "{err}"
        );
        params
            .0
            .insert("multifair_attributes".into(), "race:-1".into());
        assert!(MultifairConfig::from_params(&params).is_err());
    }

    #[test]
    fn multi_class_aucs_are_macro_one_vs_rest() {
        let device = Device::flex();
        // Three classes, six samples: each task's scores are the class's probabilities.
        let labels = [0usize, 1, 2, 0, 1, 2];
        let probs = [
            [0.7, 0.2, 0.1],
            [0.3, 0.4, 0.3],
            [0.2, 0.3, 0.5],
            [0.4, 0.5, 0.1],
            [0.1, 0.8, 0.1],
            [0.5, 0.1, 0.4],
        ];
        let scores: Vec<f32> = (0..3)
            .flat_map(|c| probs.iter().map(move |p| p[c] as f32))
            .collect();
        let targets: Vec<f32> = (0..3)
            .flat_map(|c| labels.iter().map(move |&y| (y == c) as u8 as f32))
            .collect();
        let scores = Tensor::<1>::from_floats(scores.as_slice(), &device).reshape([3, 6]);
        let targets = Tensor::<1>::from_floats(targets.as_slice(), &device).reshape([3, 6]);
        let everyone = Tensor::<2>::ones([1, 6], &device);
        let (auc, valid) = auc_by_group(scores, targets, everyone);
        let macro_auc = (0..3)
            .map(|c| {
                let s: Vec<f64> = probs.iter().map(|p| p[c]).collect();
                let y: Vec<bool> = labels.iter().map(|&l| l == c).collect();
                multifair_metrics::auc(&s, &y).unwrap()
            })
            .sum::<f64>()
            / 3.0;
        assert!((host2(auc.reshape([1, 1]))[0] as f64 - macro_auc).abs() < 1e-6);
        assert_eq!(host2(valid.reshape([1, 1])), [1.0]);
    }

    #[test]
    fn a_head_is_judged_only_on_samples_that_have_its_modality() {
        let device = Device::flex();
        let y = Tensor::<1>::from_floats([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &device)
            .reshape([1, 8]);
        let fused = Tensor::<1>::from_floats([0.8, 0.3, 0.7, 0.4, 0.6, 0.2, 0.9, 0.5], &device)
            .reshape([1, 8]);
        let groups = [0i64, 0, 0, 0, 1, 1, 1, 1];
        // Modality 1 is missing for samples 3 and 6; what its head says there must not matter.
        let available: Vec<Vec<bool>> =
            vec![vec![true; 8], (0..8).map(|n| n != 3 && n != 6).collect()];
        let mask: Vec<f32> = (0..8)
            .flat_map(|n| available.iter().map(move |a| a[n] as u8 as f32))
            .collect();
        let mask = Tensor::<1>::from_floats(mask.as_slice(), &device).reshape([8, 2]);
        let run = |missing_scores: [f32; 2], masked: bool| {
            let mut aux = vec![
                0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.1, 0.4, // modality 0
                0.6, 0.7, 0.2, 0.9, 0.4, 0.3, 0.8, 0.5, // modality 1
            ];
            (aux[8 + 3], aux[8 + 6]) = (missing_scores[0], missing_scores[1]);
            let aux = Tensor::<1>::from_floats(aux.as_slice(), &device).reshape([2, 1, 8]);
            let config = MultifairConfig::from_params(&Params::default()).unwrap();
            let mut method = Multifair::new(config);
            method.ensure_levels();
            let available = masked.then(|| mask.clone());
            let m = method.modulate_levels(aux, fused.clone(), y.clone(), &[&groups], available);
            (host2(m.weights), host2(m.factors[0].clone()))
        };
        assert_eq!(run([0.0, 1.0], true), run([1.0, 0.0], true));
        assert_ne!(run([0.0, 1.0], false), run([1.0, 0.0], false));
    }
}
