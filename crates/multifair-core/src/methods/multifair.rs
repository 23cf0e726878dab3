//! MultiFair, generalised (ours; `multifair_ref` is the reference's step and the one to read
//! first). One forward and one backward per step, every statistic on the device:
//!
//! 1. Encode each modality; auxiliary heads on the detached tokens give probabilities u_m.
//! 2. Modality level ([`Multifair::modality_coefficients`]): AUC A_m of each head on the samples
//!    that have its modality (macro one-vs-rest), smoothed, A_m <- s A_prev + (1 - s) A_batch;
//!    D_m = |A_m - A_prev|, S = sum D + 1e-8, B_m = (S - D_m) / S.
//! 3. Group level, per attribute ([`Multifair::group_weights`]): EMA E_mg of the surrogate AUC
//!    1 - mean softplus(-(s_i - s_j)) of each head per group present in the batch;
//!    f_mg = 1 + beta (mean_g E_mg - E_mg) / max(tau, 1e-4), clipped to [1/max, max];
//!    applied while the fused prediction's group-AUC gap exceeds tau (priority).
//! 4. Per-sample weights w_{m,n} = rho B_m f_m(g_n) (levels averaged with their weights; the
//!    batch factor F_m instead with `multifair_per_sample=false`), applied to the tokens through
//!    the scaling identity (`crate::scaling`), so each encoder's gradient is scaled per sample.
//! 5. Loss = CE(fused) + lambda_f relu(surrogate group-AUC gap of the fused output - tau)
//!    + lambda_d sum_m B_m (1 - cos(G_fused, G_m)) + the auxiliary heads' CE; backward once.
//!
//! Each change from the reference is a key (defaults below), so ablations are configurations;
//! in the reference configuration (batch factor, no smoothing, clipping or fairness loss) the
//! encoder scales equal `multifair_ref`'s (tested against the golden vectors).

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use multifair_models::MultimodalModel;
use serde::{Deserialize, Serialize};

use super::MethodInfo;
use super::multifair_ref::REFERENCE;
use crate::hparams::{Hparams, Range, Valid};
use crate::pairwise::{auc_by_group, surrogate_by_group};
use crate::scaling::scale_gradient;
use crate::stats as names;
use crate::{
    DeviceBatch, Method, Setup, StepOutput, cosine, cross_entropy, hparams, last_layer_gradient,
    read_state, task_probabilities, task_targets, to_host, write_state,
};

hparams! {
    /// The generalised method's keys; the four it shares with `multifair_ref` default to the
    /// reference's values (`multifair_ref::REFERENCE`).
    pub struct MultifairHparams {
        /// Scale of the encoders' per-sample weights, rho B_m.
        rho as "multifair_rho": f64 = REFERENCE.rho, Range::Uniform(0.8, 2.0), Valid::Positive;
        /// Strength of the group factors.
        beta as "multifair_beta": f64 = REFERENCE.beta, Range::Uniform(0.1, 1.0), Valid::NonNegative;
        /// Fairness threshold on group-AUC gaps, of the factors and of the fairness loss.
        tau as "multifair_tau": f64 = REFERENCE.tau, Range::LogUniform(0.01, 0.2), Valid::Positive;
        /// Decay of the group AUCs' moving average.
        ema as "multifair_ema": f64 = REFERENCE.ema, Range::Choice(&["0.8", "0.9", "0.95"]), Valid::Fraction;
        /// The modality level (coefficients B_m); false: B_m = 1.
        modality as "multifair_modality": bool = true, Range::Fixed;
        /// The group level (factors f_mg); false: f = 1.
        group as "multifair_group": bool = true, Range::Fixed;
        /// Per-sample weights rho B_m f_m(g_n); false: the reference's batch factor F_m.
        per_sample as "multifair_per_sample": bool = true, Range::Fixed;
        /// Group factors only while the fused group-AUC gap exceeds tau.
        priority as "multifair_priority": bool = true, Range::Fixed;
        /// Smoothing of the modality AUCs before differencing (0: raw).
        smoothing as "multifair_smoothing": f64 = 0.5, Range::Uniform(0.0, 0.9), Valid::Fraction;
        /// Group factors clipped to [1/max, max] (0: unclipped).
        factor_max as "multifair_factor_max": f64 = 2.0, Range::Uniform(1.5, 4.0), Valid::NonNegative;
        /// Weight of the fairness loss with gradient (0: off).
        fairness as "multifair_fairness": f64 = 0.5, Range::LogUniform(0.05, 2.0), Valid::NonNegative;
        /// Weight of the direction term from last-layer gradients (0: off).
        direction as "multifair_direction": f64 = 0.0, Range::Fixed, Valid::NonNegative;
        /// Attributes balanced, with weights, e.g. race:1,gender:0.5 (empty: the run's, weight 1).
        attributes as "multifair_attributes": String = String::new(), Range::Fixed;
        /// Steps between logged statistics.
        log_every as "multifair_log_every": usize = 10, Range::Fixed, Valid::Closed(1.0, 1e9);
        /// Where rho B_m acts: the encoder's gradient (gradient) or its learning rate (step);
        /// the group factors act inside the batch's gradient either way.
        apply as "multifair_apply": Apply = Apply::Gradient, Range::Choice(&["gradient", "step"]);
    }
}

/// Where the modality coefficients act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// On each encoder's gradient (the reference's; Adam and AdamW nearly cancel it).
    Gradient,
    /// On each encoder's step: its learning rate times rho B_m, which adaptive optimizers keep.
    Step,
}

pub const INFO: MethodInfo = MethodInfo {
    name: "multifair",
    about: "MultiFair generalised: any M and K, per-sample modulation, fairness loss with gradient",
    hparams: MultifairHparams::HPARAMS,
    defaults: MultifairHparams::defaults,
    engine_defaults: &[],
    presets: &[super::multifair_ref::FAIRVLMED],
    build: |h| Ok(Box::new(Multifair::new(MultifairHparams::from_value(h)?)?)),
};

/// `race:1,gender:0.5` as (name, weight) pairs; empty: none (the run's attribute).
fn parse_attributes(list: &str) -> Result<Vec<(String, f64)>, String> {
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|item| {
            let (name, weight) = item.split_once(':').unwrap_or((item, "1"));
            let weight = weight.trim().parse().ok().filter(|w: &f64| *w > 0.0);
            let weight = weight.ok_or_else(|| {
                format!(
                    "multifair_attributes={list}: '{item}' needs a positive weight (NAME:WEIGHT)"
                )
            })?;
            Ok((name.trim().to_owned(), weight))
        })
        .collect()
}

/// One attribute's group level: its codes seen so far (column k of the EMA belongs to
/// `codes[k]`) and the EMA of the surrogate AUC per modality and group [M, K] (0.5 at first).
struct GroupLevel {
    /// Index of the attribute in the batch's codes, and its name for the logs.
    attribute: usize,
    name: String,
    weight: f64,
    codes: Vec<i64>,
    ema: Option<Tensor<2>>,
}

/// What a checkpoint keeps, on the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultifairState {
    steps: usize,
    /// The (smoothed) modality AUCs [M].
    auc: Option<Vec<f64>>,
    levels: Vec<LevelState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelState {
    codes: Vec<i64>,
    /// The EMA [M, K], row-major.
    ema: Option<Vec<f64>>,
}

/// The modulation of one step: weights [M, B] for the modalities' tokens (rho B_m times the
/// group part), the group part alone [M, B], the coefficients [M], and per attribute level its
/// group factors [M, K] and priority flag [1].
pub struct Modulation {
    pub weights: Tensor<2>,
    pub group: Tensor<2>,
    pub coeff: Tensor<1>,
    pub factors: Vec<Tensor<2>>,
    pub priority: Vec<Tensor<1>>,
}

/// One level's contribution: per-sample group weights [M, B], factors [M, K], priority [1].
struct LevelWeights {
    weights: Tensor<2>,
    factors: Tensor<2>,
    priority: Tensor<1>,
}

pub struct Multifair {
    h: MultifairHparams,
    /// The parsed `multifair_attributes`.
    attributes: Vec<(String, f64)>,
    /// The attributes whose groups are balanced (the first is the run's unless configured).
    levels: Vec<GroupLevel>,
    /// (Smoothed) AUC of each auxiliary head [M], 0.5 at the start.
    auc: Option<Tensor<1>>,
    /// Host copy from a checkpoint, turned into tensors at the first step.
    restored: MultifairState,
    steps: usize,
}

/// `values` where `mask` is 1, `otherwise` where it is 0.
fn select(mask: Tensor<2>, values: Tensor<2>, otherwise: Tensor<2>) -> Tensor<2> {
    values * mask.clone() + otherwise * mask.neg().add_scalar(1.0)
}

impl Multifair {
    pub fn new(h: MultifairHparams) -> Result<Self, String> {
        Ok(Multifair {
            attributes: parse_attributes(&h.attributes)?,
            h,
            levels: Vec::new(),
            auc: None,
            restored: MultifairState::default(),
            steps: 0,
        })
    }

    /// The single-attribute level used when no setup named the attributes (direct use).
    fn ensure_levels(&mut self) {
        if self.levels.is_empty() {
            self.levels.push(GroupLevel {
                attribute: 0,
                name: names::FIRST_LEVEL.into(),
                weight: 1.0,
                codes: Vec::new(),
                ema: None,
            });
            self.restore_codes();
        }
    }

    fn restore_codes(&mut self) {
        for (level, saved) in self.levels.iter_mut().zip(&self.restored.levels) {
            level.codes = saved.codes.clone();
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
        let restored = self.restored.auc.as_deref().unwrap_or(&[]);
        self.auc.take().unwrap_or_else(|| {
            let auc: Vec<f32> = (0..modalities)
                .map(|m| restored.get(m).copied().unwrap_or(0.5) as f32)
                .collect();
            Tensor::<1>::from_floats(auc.as_slice(), device)
        })
    }

    /// Level `l`'s EMA [M, K], from the checkpoint at the first step (0.5 for groups it lacks).
    fn ema_state(&mut self, l: usize, modalities: usize, device: &Device) -> Tensor<2> {
        let saved = self.restored.levels.get(l).cloned().unwrap_or_default();
        let level = &mut self.levels[l];
        let k = level.codes.len();
        level.ema.take().unwrap_or_else(|| {
            let (saved_k, values) = (saved.codes.len(), saved.ema.unwrap_or_default());
            let ema: Vec<f32> = (0..modalities)
                .flat_map(|m| {
                    let (codes, values) = (&saved.codes, &values);
                    level.codes.iter().map(move |g| {
                        let j = codes.iter().position(|c| c == g);
                        j.and_then(|j| values.get(m * saved_k + j))
                            .copied()
                            .unwrap_or(0.5) as f32
                    })
                })
                .collect();
            Tensor::<1>::from_floats(ema.as_slice(), device).reshape([modalities, k])
        })
    }

    /// Step 2: B_m [M] from each head's AUC progress; `judged` [M, B] marks the samples each
    /// head is judged on. A head whose batch lacks a class keeps its previous AUC.
    fn modality_coefficients(
        &mut self,
        aux: &Tensor<3>,
        y: &Tensor<2>,
        judged: &Tensor<2>,
    ) -> Tensor<1> {
        let [m, t, b] = aux.dims();
        let device = aux.device();
        let (batch_auc, valid): (Vec<_>, Vec<_>) = (0..m)
            .map(|i| {
                let head = aux.clone().slice([i..i + 1, 0..t, 0..b]).reshape([t, b]);
                auc_by_group(head, y.clone(), judged.clone().slice([i..i + 1, 0..b]))
            })
            .unzip();
        let prev = self.auc_state(m, &device);
        let (batch_auc, valid) = (Tensor::cat(batch_auc, 0), Tensor::cat(valid, 0));
        let batch_auc = batch_auc * valid.clone() + prev.clone() * valid.neg().add_scalar(1.0);
        let s = self.h.smoothing;
        let auc = prev.clone().mul_scalar(s) + batch_auc.mul_scalar(1.0 - s);
        let delta = (auc.clone() - prev).abs();
        let total = delta.clone().sum().add_scalar(1e-8);
        self.auc = Some(auc);
        if !self.h.modality {
            return Tensor::ones([m], &device);
        }
        (total.clone().expand([m]) - delta) / total.expand([m])
    }

    /// Step 3 for level `l` with the batch's `codes`: the EMA update, the group factors, the
    /// priority, and the per-sample (or batch) group weights.
    fn group_weights(
        &mut self,
        l: usize,
        codes: &[i64],
        aux: &Tensor<3>,
        fused: &Tensor<2>,
        y: &Tensor<2>,
        judged: &Tensor<2>,
    ) -> LevelWeights {
        let (h, device, [m, t, b]) = (self.h.clone(), aux.device(), aux.dims());
        let (members, present) = self.members(l, codes, &device);
        let k = self.levels[l].codes.len();
        let ema_prev = self.ema_state(l, m, &device);
        let surrogate: Vec<Tensor<1>> = (0..m)
            .map(|i| {
                let head = aux.clone().slice([i..i + 1, 0..t, 0..b]).reshape([t, b]);
                let judged =
                    members.clone() * judged.clone().slice([i..i + 1, 0..b]).expand([k, b]);
                surrogate_by_group(head, y.clone(), judged).0
            })
            .collect();
        let surrogate = Tensor::stack::<2>(surrogate, 0); // [M, K]
        let present_mk = present.clone().reshape([1, k]).expand([m, k]);
        let updated = ema_prev.clone().mul_scalar(h.ema) + surrogate.mul_scalar(1.0 - h.ema);
        let ema = select(present_mk.clone(), updated, ema_prev);
        let n_present = present.clone().sum().clamp_min(1.0).reshape([1, 1]);
        let mean = (ema.clone() * present_mk).sum_dim(1) / n_present.expand([m, 1]); // [M, 1]
        let mut factors = (mean.expand([m, k]) - ema.clone())
            .mul_scalar(h.beta / h.tau.max(1e-4))
            .add_scalar(1.0);
        if h.factor_max > 0.0 {
            factors = factors.clamp(1.0 / h.factor_max, h.factor_max);
        }
        if !h.group {
            factors = Tensor::ones([m, k], &device);
        }
        self.levels[l].ema = Some(ema);

        // Priority: the fused prediction's group-AUC gap over the groups in the batch.
        let (fused_auc, fused_valid) = auc_by_group(fused.clone(), y.clone(), members.clone());
        let fused_auc =
            fused_auc * fused_valid.clone() + fused_valid.neg().add_scalar(1.0).mul_scalar(0.5);
        let absent = present.neg().add_scalar(1.0);
        let high = (fused_auc.clone() + absent.clone().mul_scalar(-1e9)).max();
        let low = (fused_auc + absent.mul_scalar(1e9)).min();
        let priority = if h.priority {
            (high - low).greater_elem(h.tau).float()
        } else {
            Tensor::ones([1], &device)
        };

        // Per-sample factor f_m(g_n) (1 for unknown codes), or the batch factor F_m.
        let known = members.clone().sum_dim(0); // [1, B]
        let per_sample =
            factors.clone().matmul(members) + known.clone().neg().add_scalar(1.0).expand([m, b]);
        let weights = if h.per_sample {
            per_sample
        } else {
            let n_known = known.clone().sum().clamp_min(1.0).reshape([1, 1]);
            (per_sample * known.expand([m, b]))
                .sum_dim(1)
                .div(n_known.expand([m, 1]))
                .expand([m, b])
        };
        let p = priority.clone().reshape([1, 1]).expand([m, b]);
        LevelWeights {
            weights: weights * p.clone() + p.neg().add_scalar(1.0),
            factors,
            priority,
        }
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
        let (aux, fused, y) = (
            aux.reshape([m, t, b]),
            fused.reshape([t, b]),
            y.reshape([t, b]),
        );
        self.modulate_levels(aux, fused, y, &[groups], None)
    }

    /// Steps 2–4 from each auxiliary head's and the fused probabilities of every one-vs-rest
    /// task ([M, T, B] and [T, B], no gradient; T = 1 for two classes), the tasks' targets y
    /// [T, B] and, per attribute level, the batch's codes. With `available` [B, M] (missing
    /// modalities), each head is judged only on the samples that have its modality.
    pub fn modulate_levels(
        &mut self,
        aux: Tensor<3>,
        fused: Tensor<2>,
        y: Tensor<2>,
        groups: &[&[i64]],
        available: Option<Tensor<2>>,
    ) -> Modulation {
        let [m, _, b] = aux.dims();
        let judged =
            available.map_or_else(|| Tensor::ones([m, b], &aux.device()), |a| a.transpose());
        let coeff = self.modality_coefficients(&aux, &y, &judged);
        let mut combined = Tensor::<2>::zeros([m, b], &aux.device());
        let (mut factors, mut priority, mut total_weight) = (Vec::new(), Vec::new(), 0.0);
        for (l, codes) in groups.iter().enumerate() {
            let level = self.group_weights(l, codes, &aux, &fused, &y, &judged);
            let w = self.levels[l].weight;
            combined = combined + level.weights.mul_scalar(w);
            total_weight += w;
            factors.push(level.factors);
            priority.push(level.priority);
        }
        let rho_b = coeff
            .clone()
            .reshape([m, 1])
            .expand([m, b])
            .mul_scalar(self.h.rho);
        let group = combined.div_scalar(total_weight.max(1e-12));
        Modulation {
            weights: group.clone() * rho_b,
            group,
            coeff,
            factors,
            priority,
        }
    }

    /// relu(surrogate group-AUC gap of the fused probabilities - tau), with gradient.
    fn fairness_loss(&self, fused: Tensor<2>, y: Tensor<2>, members: Tensor<2>) -> Tensor<1> {
        let (value, valid) = surrogate_by_group(fused, y, members);
        let high = (value.clone() + valid.clone().neg().add_scalar(1.0).mul_scalar(-1e9)).max();
        let low = (value + valid.clone().neg().add_scalar(1.0).mul_scalar(1e9)).min();
        let two_groups = valid.sum().greater_elem(1.5).float();
        relu((high - low).sub_scalar(self.h.tau)) * two_groups
    }

    /// The fairness loss of each level, averaged with the levels' weights.
    fn levels_fairness_loss(
        &mut self,
        probs: Tensor<2>,
        y: &Tensor<2>,
        codes: &[&[i64]],
    ) -> Tensor<1> {
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
    }

    /// Step 5's direction term: sum_m B_m (1 - cos(G_fused, G_m)) over closed-form last-layer
    /// gradients; only the fused side carries gradient.
    fn direction_term(
        hidden: Tensor<2>,
        fused_logits: Tensor<2>,
        aux_hidden: Vec<Tensor<2>>,
        aux_logits: &[Tensor<2>],
        coeff: &Tensor<1>,
        onehot: &Tensor<2>,
    ) -> Tensor<1> {
        let g_fused = last_layer_gradient(hidden, fused_logits, onehot.clone());
        let terms: Vec<Tensor<1>> = aux_hidden
            .into_iter()
            .zip(aux_logits)
            .enumerate()
            .map(|(i, (h, u))| {
                let g = last_layer_gradient(h, u.clone(), onehot.clone()).detach();
                let b_m = coeff.clone().slice([i..i + 1]).detach();
                cosine(g_fused.clone(), g).neg().add_scalar(1.0) * b_m
            })
            .collect();
        Tensor::cat(terms, 0).sum()
    }

    /// Every `log_every` steps: coefficients, each level's factors and priority, and the
    /// extra losses, read back to the host.
    fn log_stats(
        &self,
        modulation: Modulation,
        extra: [(&str, Option<Tensor<1>>); 2],
    ) -> BTreeMap<String, f64> {
        let mut stats = BTreeMap::new();
        if self.steps % self.h.log_every.max(1) != 0 {
            return stats;
        }
        let host = |t: Tensor<1>| to_host(t).unwrap_or_default();
        let m = modulation.coeff.dims()[0];
        for (i, c) in host(modulation.coeff).iter().enumerate() {
            stats.insert(names::coeff(i), *c);
        }
        let levels = modulation.factors.into_iter().zip(modulation.priority);
        for (l, (factors, priority)) in levels.enumerate() {
            let level = &self.levels[l];
            let tag = if l == 0 {
                names::FIRST_LEVEL
            } else {
                level.name.as_str()
            };
            let k = level.codes.len();
            let factors = host(factors.reshape([m * k]));
            for i in 0..m {
                for (j, &code) in level.codes.iter().enumerate() {
                    stats.insert(names::factor(i, tag, code), factors[i * k + j]);
                }
            }
            let name = if l == 0 {
                names::PRIORITY.to_owned()
            } else {
                format!("{}_{tag}", names::PRIORITY)
            };
            stats.insert(name, host(priority)[0]);
        }
        for (name, value) in extra {
            if let Some(value) = value {
                stats.insert(name.to_owned(), host(value)[0]);
            }
        }
        stats
    }
}

impl Multifair {
    /// The batch's codes of each attribute level.
    fn level_codes<'a>(&self, batch: &'a DeviceBatch) -> Vec<&'a [i64]> {
        (self.levels.iter())
            .map(|level| (batch.codes.get(level.attribute)).map_or(&batch.groups[..], |c| &c[..]))
            .collect()
    }

    /// Steps 2–4 on this batch: statistics from the heads' probabilities and a detached pass
    /// of the fusion (the same forward values, no second graph).
    fn batch_modulation(
        &mut self,
        model: &MultimodalModel,
        batch: &DeviceBatch,
        tokens: &[Tensor<2>],
        aux_logits: &[Tensor<2>],
        y: &Tensor<2>,
    ) -> Modulation {
        let available = batch.available.as_ref();
        let detached: Vec<Tensor<2>> = tokens.iter().map(|t| t.clone().detach()).collect();
        let fused = model
            .fuse(&detached, Some(&batch.group_ids), available)
            .detach();
        let aux = (aux_logits.iter())
            .map(|l| task_probabilities(l.clone().detach()))
            .collect();
        self.ensure_levels();
        let codes = self.level_codes(batch);
        let (aux, fused) = (Tensor::stack::<3>(aux, 0), task_probabilities(fused));
        self.modulate_levels(aux, fused, y.clone(), &codes, available.cloned())
    }

    /// Where the modulation acts: the tokens' weights, and in step mode rho B_m as the
    /// encoders' learning-rate factors (one host read).
    fn applied(&self, modulation: &Modulation) -> (Tensor<2>, Option<Vec<f64>>) {
        match self.h.apply {
            Apply::Gradient => (modulation.weights.clone(), None),
            Apply::Step => {
                let coeff = to_host(modulation.coeff.clone()).unwrap_or_default();
                let steps = coeff.iter().map(|c| c * self.h.rho).collect();
                (modulation.group.clone(), Some(steps))
            }
        }
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
        let named = match self.attributes.is_empty() {
            true => vec![(setup.attributes[setup.attribute].clone(), 1.0)],
            false => self.attributes.clone(),
        };
        self.levels =
            named
                .into_iter()
                .map(|(name, weight)| {
                    let attribute = setup.attributes.iter().position(|a| *a == name).ok_or_else(|| {
                    let known = setup.attributes.join(", ");
                    format!("--set multifair_attributes: no attribute '{name}'; available: {known}")
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
        // 1. Encode; the auxiliary heads on the detached tokens.
        let tokens = model.encode(batch.inputs.clone());
        let aux_hidden = model.aux_hidden(&tokens);
        let aux_logits = model.aux_classify(&aux_hidden);
        let y = task_targets(batch.onehot.clone());
        // 2–4. The modulation, applied to the tokens through the scaling identity.
        let modulation = self.batch_modulation(model, batch, &tokens, &aux_logits, &y);
        let (weights, encoder_steps) = self.applied(&modulation);
        let b = y.dims()[1];
        let scaled: Vec<Tensor<2>> = (tokens.iter().enumerate())
            .map(|(i, t)| {
                let w = weights.clone().slice([i..i + 1, 0..b]).reshape([b, 1]);
                scale_gradient(t.clone(), w)
            })
            .collect();
        // 5. The loss and its one backward pass.
        let available = batch.available.as_ref();
        let hidden = model.fused_hidden(&scaled, Some(&batch.group_ids), available);
        let fused_logits = model.head.classify(hidden.clone());
        let fused = cross_entropy(fused_logits.clone(), batch.onehot.clone());
        let direction = (self.h.direction > 0.0).then(|| {
            let (logits, coeff) = (fused_logits.clone(), &modulation.coeff);
            Self::direction_term(
                hidden,
                logits,
                aux_hidden,
                &aux_logits,
                coeff,
                &batch.onehot,
            )
        });
        let fairness = (self.h.fairness > 0.0).then(|| {
            let codes = self.level_codes(batch);
            self.levels_fairness_loss(task_probabilities(fused_logits), &y, &codes)
        });
        let mut total = fused.clone();
        if let Some(term) = &direction {
            total = total + term.clone().mul_scalar(self.h.direction);
        }
        if let Some(loss) = &fairness {
            total = total + loss.clone().mul_scalar(self.h.fairness);
        }
        total = total + batch.aux_loss(&aux_logits);
        let grads = GradientsParams::from_grads(total.backward(), model);
        self.steps += 1;
        let extra = [
            (names::FAIRNESS_LOSS, fairness),
            (names::DIRECTION_LOSS, direction),
        ];
        let stats = self.log_stats(modulation, extra);
        let loss = fused.detach();
        StepOutput {
            grads,
            loss,
            stats,
            encoder_steps,
        }
    }

    fn state(&self) -> serde_json::Value {
        let host = |t: Tensor<1>| to_host(t).unwrap_or_default();
        let mut state = self.restored.clone();
        state.steps = self.steps;
        if let Some(auc) = &self.auc {
            state.auc = Some(host(auc.clone()));
        }
        state
            .levels
            .resize(self.levels.len(), LevelState::default());
        for (saved, level) in state.levels.iter_mut().zip(&self.levels) {
            // Codes grow only inside a step, after which the EMA is on the device.
            saved.codes = level.codes.clone();
            if let Some(ema) = &level.ema {
                let [m, k] = ema.dims();
                saved.ema = Some(host(ema.clone().reshape([m * k])));
            }
        }
        write_state(&state)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.restored = read_state(state)?;
        self.steps = self.restored.steps;
        self.auc = None;
        for level in &mut self.levels {
            level.ema = None;
        }
        self.restore_codes();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host2(t: Tensor<2>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn hparams(pairs: serde_json::Value) -> Result<MultifairHparams, String> {
        MultifairHparams::from_value(&pairs)
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
            let h = hparams(serde_json::json!({
                "multifair_attributes": attributes, "multifair_priority": false
            }));
            let mut method = Multifair::new(h.unwrap()).unwrap();
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

        let h = hparams(serde_json::json!({"multifair_attributes": "race:1,income:2"}));
        let mut method = Multifair::new(h.unwrap()).unwrap();
        let err = method.prepare(&setup).err().unwrap();
        assert!(
            err.contains("no attribute 'income'; available: race, gender"),
            "{err}"
        );
        let h = hparams(serde_json::json!({"multifair_attributes": "race:-1"}));
        assert!(Multifair::new(h.unwrap()).is_err());
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
            let mut method = Multifair::new(MultifairHparams::default()).unwrap();
            method.ensure_levels();
            let available = masked.then(|| mask.clone());
            let m = method.modulate_levels(aux, fused.clone(), y.clone(), &[&groups], available);
            (host2(m.weights), host2(m.factors[0].clone()))
        };
        assert_eq!(run([0.0, 1.0], true), run([1.0, 0.0], true));
        assert_ne!(run([0.0, 1.0], false), run([1.0, 0.0], false));
    }

    #[test]
    fn the_weights_are_the_group_part_times_rho_b() {
        let device = Device::flex();
        let aux = Tensor::<1>::from_floats([0.9, 0.2, 0.8, 0.3, 0.6, 0.7, 0.2, 0.9], &device)
            .reshape([2, 4]);
        let fused = Tensor::<1>::from_floats([0.8, 0.3, 0.7, 0.4], &device);
        let y = Tensor::<1>::from_floats([1.0, 0.0, 1.0, 0.0], &device);
        let mut method = Multifair::new(MultifairHparams::default()).unwrap();
        let m = method.modulate(aux, fused, y, &[0, 1, 1, 0]);
        let coeff = to_host(m.coeff.clone()).unwrap();
        let (weights, group) = (host2(m.weights), host2(m.group));
        for i in 0..2 {
            for n in 0..4 {
                let want = group[i * 4 + n] as f64 * 1.2 * coeff[i];
                assert!((weights[i * 4 + n] as f64 - want).abs() < 1e-6);
            }
        }
        let h =
            MultifairHparams::from_value(&serde_json::json!({"multifair_apply": "step"})).unwrap();
        assert_eq!(h.apply, Apply::Step);
        assert!(
            MultifairHparams::from_value(&serde_json::json!({"multifair_apply": "steps"})).is_err()
        );
    }

    #[test]
    fn state_round_trips_through_a_checkpoint() {
        let device = Device::flex();
        let aux = Tensor::<1>::from_floats([0.9, 0.2, 0.8, 0.3, 0.6, 0.7, 0.2, 0.9], &device)
            .reshape([2, 4]);
        let fused = Tensor::<1>::from_floats([0.8, 0.3, 0.7, 0.4], &device);
        let y = Tensor::<1>::from_floats([1.0, 0.0, 1.0, 0.0], &device);
        let mut a = Multifair::new(MultifairHparams::default()).unwrap();
        a.modulate(aux.clone(), fused.clone(), y.clone(), &[0, 1, 1, 0]);
        let mut b = Multifair::new(MultifairHparams::default()).unwrap();
        b.load_state(a.state()).unwrap();
        let next = |m: &mut Multifair| {
            host2(
                m.modulate(aux.clone(), fused.clone(), y.clone(), &[1, 0, 2, 0])
                    .weights,
            )
        };
        assert_eq!(next(&mut a), next(&mut b));
        assert!(
            b.load_state(serde_json::json!({"steps": 1, "aucs": []}))
                .is_err()
        );
    }
}
