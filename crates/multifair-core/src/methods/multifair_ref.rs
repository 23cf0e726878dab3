//! MultiFair as the reference implementation's training step really behaves (Zubair et al.,
//! IEEE TMI 2026; docs/algorithm.md, steps 1–5), two modalities and two or more groups:
//!
//! 1. auxiliary heads on detached features (their own AdamW, in the engine);
//! 2. batch AUC A_m of each head (the previous one when the batch has one class),
//!    D_m = A_m - A_prev, S = sum |D| + 1e-8, B_m = (S - |D_m|) / S;
//! 3. surrogate group AUC per modality and group, 1 - mean log(1 + exp(-(s_i - s_j))) over
//!    positive i and negative j (0.5 for a group lacking a class), EMA 0.9 from 0.5;
//! 4. f_mg = 1 + beta (mean_g E_mg - E_mg) / max(tau, 1e-4), F_m = sum_g (n_g / n) f_mg;
//!    priority when the fused prediction's group-AUC gap exceeds tau;
//! 5. loss = CE(fused); encoder m's gradient times rho B_m, and times F_m under priority (the
//!    encoder's own parameters: its projection into the fusion is left as it is).
//!
//! The reference also adds lambda_gm L_gm and lambda_f G to the loss, but both are constants
//! without gradient (L_gm is always 0: a parameter-name lookup never matches), so this step
//! leaves them out; G is still reported as `fairness_gap`.

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use multifair_metrics::auc;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use crate::clip::scale_grads;
use crate::hparams::{Hparams, Range, Valid};
use crate::stats as names;
use crate::{
    DeviceBatch, Method, Setup, StepOutput, cross_entropy, hparams, positive_probability,
    read_state, to_host, write_state,
};

/// The reference's training function as its `main()` calls it: AdamW, aux heads 1e-5 against
/// 3e-5 (the engine's `paper` rates), weight decay 6e-3 / 3e-3, ReduceLROnPlateau(10, 0.1) on
/// the main optimizer only and no warm-up, clipping to 0.8 over the model but not the heads,
/// and the epoch chosen on the validation AUC of the raw class-1 logit. `multifair_ref`'s
/// engine defaults, and part of the `paper` profile.
pub const ORIGINAL_ENGINE: &[(&str, &str)] = &[
    ("optimizer", "adamw"),
    ("weight_decay", "6e-3"),
    ("aux_weight_decay", "3e-3"),
    ("schedule", "plateau"),
    ("plateau_patience", "10"),
    ("plateau_factor", "0.1"),
    ("warmup_epochs", "0"),
    ("schedule_aux", "false"),
    ("clip", "0.8"),
    ("clip_aux", "false"),
    ("selection", "auc_logit"),
];

pub const INFO: MethodInfo = MethodInfo {
    name: "multifair_ref",
    about: "MultiFair, the reference implementation's step (two modalities)",
    hparams: RefHparams::HPARAMS,
    defaults: RefHparams::defaults,
    engine_defaults: ORIGINAL_ENGINE,
    // The FairCLIP script's main() (FairVLMed): beta 0.5, tau 0.07; applied on that dataset.
    presets: &[FAIRVLMED],
    build: |h| {
        Ok(Box::new(MultifairRef {
            hparams: RefHparams::from_value(h)?,
            state: RefState::default(),
        }))
    },
};

/// The FairCLIP script's settings for FairVLMed (`main()`: fairness_modulation 0.5,
/// fairness_threshold 0.07); a preset named after a dataset applies on it by itself.
pub const FAIRVLMED: super::Preset = (
    "fairvlmed",
    &[("multifair_beta", "0.5"), ("multifair_tau", "0.07")],
);

/// The reference's values (its FairVision `main()`: rou 1.2, fairness_modulation 0.3,
/// fairness_threshold 0.04, EMA 0.9): the defaults of both MultiFair methods, declared once.
pub const REFERENCE: RefHparams = RefHparams {
    rho: 1.2,
    beta: 0.3,
    tau: 0.04,
    ema: 0.9,
    scale_projections: false,
};

hparams! {
    /// The reference's hyperparameters (its FairVision `main()`; FairVLMed: beta 0.5, tau 0.07).
    #[derive(Copy)]
    pub struct RefHparams {
        /// Scale of the encoders' gradients, rho B_m.
        rho as "multifair_rho": f64 = REFERENCE.rho, Range::Uniform(0.8, 1.6), Valid::Positive;
        /// Strength of the group factors.
        beta as "multifair_beta": f64 = REFERENCE.beta, Range::Uniform(0.1, 1.0), Valid::NonNegative;
        /// Fairness threshold on the fused group-AUC gap (and the factors' scale).
        tau as "multifair_tau": f64 = REFERENCE.tau, Range::LogUniform(0.01, 0.2), Valid::Positive;
        /// Decay of the group AUCs' moving average.
        ema as "multifair_ema": f64 = REFERENCE.ema, Range::Choice(&["0.8", "0.9", "0.95"]), Valid::Fraction;
        /// Scale the modalities' projections too (ours); the reference scales the encoders'
        /// parameters only (it matches their names: fundus_encoder, oct_slice_encoder, ...).
        scale_projections as "multifair_scale_projections": bool = false, Range::Fixed;
    }
}

/// What the reference carries from step to step (and a checkpoint keeps).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefState {
    /// Previous batch AUC per modality (0.5 before the first batch).
    pub auc_prev: Vec<f64>,
    /// EMA of the surrogate group AUC, per modality, by group code (0.5 before a group is seen).
    pub ema: Vec<BTreeMap<i64, f64>>,
}

/// Every quantity of one reference step (the golden vectors check each).
#[derive(Debug, Clone, PartialEq)]
pub struct RefStats {
    pub batch_auc: Vec<f64>,
    pub coeff: Vec<f64>,
    pub surrogate_group_auc: Vec<BTreeMap<i64, f64>>,
    pub ema_group_auc: Vec<BTreeMap<i64, f64>>,
    /// Mean over modalities and groups of |mean_g E_mg - E_mg|.
    pub fairness_gap: f64,
    pub modulation_factor: Vec<BTreeMap<i64, f64>>,
    pub batch_factor: Vec<f64>,
    pub fused_group_auc: BTreeMap<i64, f64>,
    pub fused_gap: f64,
    pub fairness_priority: bool,
    pub encoder_grad_scale: Vec<f64>,
}

/// The surrogate AUC of one group: 1 - mean softplus(-(s_i - s_j)); 0.5 without both classes.
fn surrogate_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let positives: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|&(_, &y)| y)
        .map(|(&s, _)| s)
        .collect();
    let negatives: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|&(_, &y)| !y)
        .map(|(&s, _)| s)
        .collect();
    if positives.is_empty() || negatives.is_empty() {
        return 0.5;
    }
    let mut total = 0.0;
    for &p in &positives {
        for &n in &negatives {
            let x = -(p - n);
            // log(1 + e^x), stable for either sign.
            total += x.max(0.0) + (-x.abs()).exp().ln_1p();
        }
    }
    1.0 - total / (positives.len() * negatives.len()) as f64
}

/// Scores and labels of the samples whose code is `group`.
fn select(scores: &[f64], labels: &[bool], groups: &[i64], group: i64) -> (Vec<f64>, Vec<bool>) {
    scores
        .iter()
        .zip(labels)
        .zip(groups)
        .filter(|(_, g)| **g == group)
        .map(|((&s, &y), _)| (s, y))
        .unzip()
}

impl RefState {
    /// Declares the run's groups: each is updated in every step from then on, 0.5 when the
    /// batch lacks it, as the reference does with its two groups.
    pub fn declare(&mut self, modalities: usize, codes: impl IntoIterator<Item = i64> + Clone) {
        self.ema.resize(modalities, BTreeMap::new());
        for ema in &mut self.ema {
            for code in codes.clone() {
                ema.entry(code).or_insert(0.5);
            }
        }
    }

    /// Steps 2–4 and the encoder scales of step 5, from each auxiliary head's positive-class
    /// probability, the fused one, labels and group codes (-1 unknown: in no group).
    pub fn step(
        &mut self,
        hp: &RefHparams,
        aux_probs: &[Vec<f64>],
        fused_probs: &[f64],
        labels: &[bool],
        groups: &[i64],
    ) -> RefStats {
        let m = aux_probs.len();
        self.auc_prev.resize(m, 0.5);
        self.ema.resize(m, BTreeMap::new());
        // Every group declared or seen so far, as the reference updates both of its groups in
        // every step (0.5 where the batch cannot score one).
        let mut codes: Vec<i64> = groups.iter().copied().filter(|&g| g >= 0).collect();
        codes.extend(self.ema.iter().flat_map(|e| e.keys().copied()));
        codes.sort_unstable();
        codes.dedup();
        let (batch_auc, coeff) = self.modality_coefficients(aux_probs, labels);
        let surrogate = self.group_emas(hp, aux_probs, labels, groups, &codes);
        let (factors, batch_factor, deviation) = self.group_factors(hp, groups, &codes);
        let (fused_group_auc, fused_gap) = fused_gap(fused_probs, labels, groups, &codes);
        let scored = fused_group_auc.len() == codes.len() && codes.len() >= 2;
        let priority = scored && fused_gap > hp.tau;
        let encoder_grad_scale = (coeff.iter().zip(&batch_factor))
            .map(|(b, f)| hp.rho * b * if priority { *f } else { 1.0 })
            .collect();
        RefStats {
            batch_auc,
            coeff,
            surrogate_group_auc: surrogate,
            ema_group_auc: self.ema.clone(),
            fairness_gap: deviation / m.max(1) as f64,
            modulation_factor: factors,
            batch_factor,
            fused_group_auc,
            fused_gap,
            fairness_priority: priority,
            encoder_grad_scale,
        }
    }

    /// Step 2: each head's batch AUC (the previous one when the batch has one class), its
    /// change D_m, and B_m = (S - |D_m|) / S with S = sum |D| + 1e-8.
    fn modality_coefficients(
        &mut self,
        aux_probs: &[Vec<f64>],
        labels: &[bool],
    ) -> (Vec<f64>, Vec<f64>) {
        let batch_auc: Vec<f64> = (aux_probs.iter().zip(&self.auc_prev))
            .map(|(p, &prev)| auc(p, labels).unwrap_or(prev))
            .collect();
        let deltas: Vec<f64> = (batch_auc.iter().zip(&self.auc_prev))
            .map(|(a, p)| a - p)
            .collect();
        let s = deltas.iter().map(|d| d.abs()).sum::<f64>() + 1e-8;
        let coeff = deltas.iter().map(|d| (s - d.abs()) / s).collect();
        self.auc_prev = batch_auc.clone();
        (batch_auc, coeff)
    }

    /// Step 3: each head's surrogate AUC per group, folded into the EMA; returns the values.
    fn group_emas(
        &mut self,
        hp: &RefHparams,
        aux_probs: &[Vec<f64>],
        labels: &[bool],
        groups: &[i64],
        codes: &[i64],
    ) -> Vec<BTreeMap<i64, f64>> {
        let mut surrogate = Vec::with_capacity(aux_probs.len());
        for (probs, ema) in aux_probs.iter().zip(self.ema.iter_mut()) {
            let mut values = BTreeMap::new();
            for &g in codes {
                let (s, y) = select(probs, labels, groups, g);
                let value = surrogate_auc(&s, &y);
                let e = ema.entry(g).or_insert(0.5);
                *e = hp.ema * *e + (1.0 - hp.ema) * value;
                values.insert(g, value);
            }
            surrogate.push(values);
        }
        surrogate
    }

    /// Step 4: f_mg = 1 + beta (mean_g E - E_mg) / max(tau, 1e-4), the batch factor
    /// F_m = sum_g (n_g / n) f_mg, and the heads' mean absolute EMA deviation (summed).
    #[allow(clippy::type_complexity)]
    fn group_factors(
        &self,
        hp: &RefHparams,
        groups: &[i64],
        codes: &[i64],
    ) -> (Vec<BTreeMap<i64, f64>>, Vec<f64>, f64) {
        let known = groups.iter().filter(|&&g| g >= 0).count().max(1) as f64;
        let (mut factors, mut batch_factor) = (Vec::new(), Vec::new());
        let mut deviation = 0.0;
        for ema in &self.ema {
            let seen: Vec<f64> = codes.iter().map(|g| ema[g]).collect();
            let mean = seen.iter().sum::<f64>() / seen.len().max(1) as f64;
            let f: BTreeMap<i64, f64> = (codes.iter())
                .map(|g| (*g, 1.0 + hp.beta * (mean - ema[g]) / hp.tau.max(1e-4)))
                .collect();
            deviation +=
                seen.iter().map(|e| (mean - e).abs()).sum::<f64>() / seen.len().max(1) as f64;
            batch_factor.push(
                (codes.iter())
                    .map(|g| groups.iter().filter(|&&c| c == *g).count() as f64 / known * f[g])
                    .sum(),
            );
            factors.push(f);
        }
        (factors, batch_factor, deviation)
    }
}

/// The fused prediction's AUC per group (sklearn-style, 0.5 for one class; a group needs more
/// than one sample) and their gap (0 with none).
fn fused_gap(
    fused_probs: &[f64],
    labels: &[bool],
    groups: &[i64],
    codes: &[i64],
) -> (BTreeMap<i64, f64>, f64) {
    let size = |g: i64| groups.iter().filter(|&&c| c == g).count();
    let fused_group_auc: BTreeMap<i64, f64> = (codes.iter())
        .filter(|&&g| size(g) > 1)
        .map(|&g| {
            let (s, y) = select(fused_probs, labels, groups, g);
            (g, auc(&s, &y).unwrap_or(0.5))
        })
        .collect();
    let values = || fused_group_auc.values().cloned();
    let gap = match fused_group_auc.is_empty() {
        true => 0.0,
        false => {
            values().fold(f64::NEG_INFINITY, f64::max) - values().fold(f64::INFINITY, f64::min)
        }
    };
    (fused_group_auc, gap)
}

pub struct MultifairRef {
    hparams: RefHparams,
    state: RefState,
}

/// Positive-class probabilities of logits [B, 2], on the host.
fn positive_probs(logits: Tensor<2>) -> Vec<f64> {
    to_host(positive_probability(logits.detach())).unwrap_or_default()
}

impl Method for MultifairRef {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn modalities(&self, available: &[String]) -> Result<Vec<String>, String> {
        if available.len() != 2 {
            return Err(format!(
                "multifair_ref is the reference's two-modality step; this dataset has {} (use multifair)",
                available.len()
            ));
        }
        Ok(available.to_vec())
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        self.state
            .declare(setup.modalities, 0..setup.group_counts.len() as i64);
        if setup.classes != 2 {
            return Err(format!(
                "multifair_ref is the reference's two-class step; this label has {} classes (use multifair, which scores them one-vs-rest)",
                setup.classes
            ));
        }
        Ok(())
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let tokens = model.encode(batch.inputs.clone());
        let fused_logits = model.fuse(&tokens, Some(&batch.group_ids), batch.available.as_ref());
        let aux_logits = model.aux_logits(&tokens);
        // The reference computes its statistics on the CPU each step.
        let aux_probs: Vec<Vec<f64>> = aux_logits
            .iter()
            .map(|l| positive_probs(l.clone()))
            .collect();
        let fused_probs = positive_probs(fused_logits.clone());
        let stats = self.state.step(
            &self.hparams,
            &aux_probs,
            &fused_probs,
            &batch.targets,
            &batch.groups,
        );

        let fused = cross_entropy(fused_logits, batch.onehot.clone());
        let aux = aux_logits
            .into_iter()
            .map(|l| cross_entropy(l, batch.onehot.clone()))
            .reduce(|a, b| a + b)
            .expect("two modalities");
        let mut grads = GradientsParams::from_grads((fused.clone() + aux).backward(), model);
        for (m, &scale) in stats.encoder_grad_scale.iter().enumerate() {
            scale_grads(&model.encoders[m], &mut grads, scale);
            if self.hparams.scale_projections {
                scale_grads(&model.projections[m], &mut grads, scale);
            }
        }
        let mut out = BTreeMap::new();
        for (m, (b, s)) in stats
            .coeff
            .iter()
            .zip(&stats.encoder_grad_scale)
            .enumerate()
        {
            out.insert(names::coeff(m), *b);
            out.insert(format!("encoder_scale_{m}"), *s);
        }
        for (m, factors) in stats.modulation_factor.iter().enumerate() {
            for (g, f) in factors {
                out.insert(names::factor(m, names::FIRST_LEVEL, *g), *f);
            }
        }
        out.insert(names::PRIORITY.into(), stats.fairness_priority as u8 as f64);
        out.insert("fairness_gap".into(), stats.fairness_gap);
        out.insert("fused_gap".into(), stats.fused_gap);
        StepOutput {
            encoder_steps: None,
            grads,
            loss: fused.detach(),
            stats: out,
        }
    }

    fn state(&self) -> serde_json::Value {
        write_state(&self.state)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.state = read_state(state)?;
        Ok(())
    }
}
