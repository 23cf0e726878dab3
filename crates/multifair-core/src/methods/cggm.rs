//! CGGM (Guo et al., "Classifier-guided Gradient Modulation for Enhanced Multimodal Learning",
//! NeurIPS 2024). Auxiliary classifiers on detached features measure each modality; from the
//! signed improvement D_m of a classifier's batch accuracy since the previous step,
//! B_m = (S - D_m) / S with S = sum D + 1e-8, and encoder m's gradient is multiplied by rho B_m
//! (the faster-improving modality is slowed). A direction term lambda L_gm, as the original
//! code computes it, L_gm = (sum_m |B_m| - sum_m B_m cos(fused classifier, modality m's)) / M
//! with the previous step's B, pulls the fused classifier towards the modalities' own; the
//! classifiers are compared by their last-layer weights (`cggm_direction=weights`, the
//! original code's form, on the previous step's weights: its L_gm is built after a step and
//! added to the next step's loss) or by their closed-form last-layer cross-entropy gradients
//! (`gradients`, the paper's form). Only the fused side carries the term's gradient (the
//! original code zeroes the classifiers' share before their own step).
//! Defaults rho 1.2 and lambda 0.15 are the values the MultiFair code's `main()` passes to its
//! own modality step (`rou`, `lambda_gm`), not CGGM's; CGGM's code sets them per dataset in its
//! run scripts, which the presets carry (`run/*_run.py` and `src/*train.py`): Food-101
//! (AdamW), CMU-MOSI and IEMOCAP (Adam). Its fourth dataset, BraTS,
//! is segmentation and has no preset here.

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{Forward, finish};
use crate::clip::scale_grads;
use crate::hparams::{Hparams, Range, Valid};
use crate::{
    DeviceBatch, Method, Setup, StepOutput, cosine, cross_entropy_per_sample, hparams,
    last_layer_gradient, read_state, to_host, write_state,
};

pub const INFO: MethodInfo = MethodInfo {
    name: "cggm",
    about: "CGGM (Guo et al., NeurIPS 2024): classifier-guided gradient magnitude and direction",
    hparams: CggmHparams::HPARAMS,
    defaults: CggmHparams::defaults,
    engine_defaults: &[],
    presets: &[
        (
            "food101",
            &[
                ("optimizer", "adamw"),
                ("lr", "1e-3"),
                ("aux_lr", "5e-4"),
                ("weight_decay", "6e-3"),
                ("aux_weight_decay", "3e-3"),
                ("schedule", "plateau"),
                ("plateau_patience", "10"),
                ("plateau_factor", "0.1"),
                ("warmup_epochs", "0"),
                ("clip", "0.8"),
                ("batch_size", "128"),
                ("cggm_rho", "1.3"),
                ("cggm_lambda", "0.05"),
            ],
        ),
        ("mosi", ADAM_PRESET),
        ("iemocap", ADAM_PRESET),
    ],
    build: |h| {
        let h = CggmHparams::from_value(h)?;
        Ok(Box::new(Cggm {
            rho: h.rho,
            lambda: h.lambda,
            gradients: h.direction == Direction::Gradients,
            scale_projections: h.scale_projections,
            previous: h.previous,
            state: CggmState::default(),
        }))
    },
};

/// CMU-MOSI and IEMOCAP share their settings in the original code (torch Adam, no weight decay).
const ADAM_PRESET: &[(&str, &str)] = &[
    ("optimizer", "adam"),
    ("lr", "1e-3"),
    ("aux_lr", "5e-4"),
    ("weight_decay", "0"),
    ("aux_weight_decay", "0"),
    ("schedule", "plateau"),
    ("plateau_patience", "10"),
    ("plateau_factor", "0.1"),
    ("warmup_epochs", "0"),
    ("clip", "0.8"),
    ("batch_size", "64"),
    ("cggm_rho", "1.3"),
    ("cggm_lambda", "0.2"),
];

/// What the direction term compares the fused classifier with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The auxiliary classifiers' weights.
    Weights,
    /// Closed-form last-layer cross-entropy gradients.
    Gradients,
}

hparams! {
    pub struct CggmHparams {
        /// Scale of the encoders' gradients, rho B_m.
        rho as "cggm_rho": f64 = 1.2, Range::Uniform(1.0, 1.5), Valid::NonNegative;
        /// Weight of the direction term.
        lambda as "cggm_lambda": f64 = 0.15, Range::LogUniform(0.01, 0.5), Valid::NonNegative;
        /// weights or gradients (see the module's notes).
        direction as "cggm_direction": Direction = Direction::Weights, Range::Choice(&["weights", "gradients"]);
        /// Scale the modalities' projections too (ours); CGGM's code scales the encoders only.
        scale_projections as "cggm_scale_projections": bool = false, Range::Fixed;
        /// With `weights`: compare the previous step's classifier weights, as the original,
        /// whose L_gm is built after a step and enters the next one's loss; false: the
        /// current weights (ours).
        previous as "cggm_previous_weights": bool = true, Range::Fixed;
    }
}

/// What a checkpoint keeps: the previous step's accuracies, coefficients and classifier
/// weights (the fused classifier's, then each modality's, with their shapes).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CggmState {
    prev_acc: Vec<f64>,
    prev_b: Vec<f64>,
    #[serde(default)]
    prev_weights: Vec<([usize; 2], Vec<f32>)>,
}

pub struct Cggm {
    rho: f64,
    lambda: f64,
    gradients: bool,
    scale_projections: bool,
    previous: bool,
    state: CggmState,
}

/// B_m = (S - D_m) / S, S = sum D + 1e-8, from signed improvements D.
pub fn coefficients(improvements: &[f64]) -> Vec<f64> {
    let s = improvements.iter().sum::<f64>() + 1e-8;
    improvements.iter().map(|d| (s - d) / s).collect()
}

/// Modality m's share of the original code's L_gm = (sum |B| - sum B cos) / M:
/// (|B_m| - B_m cos_m) / M.
fn direction_term(cos: Tensor<1>, b: f64, modalities: usize) -> Tensor<1> {
    let m = modalities as f64;
    cos.mul_scalar(-b / m).add_scalar(b.abs() / m)
}

/// `then`'s values with `now`'s gradient path: a function of it differentiated at `then` and
/// the gradient credited to the parameter `now` (the original's L_gm is built from one step's
/// weights and back-propagated at the next).
fn at_previous(then: Tensor<2>, now: Tensor<2>) -> Tensor<2> {
    then + (now.clone() - now.detach())
}

/// Batch accuracy of each modality's classifier over the samples that have the modality (one
/// host read).
fn accuracies(aux_logits: &[Tensor<2>], batch: &DeviceBatch) -> Vec<f64> {
    let correct: Vec<Tensor<1>> = (aux_logits.iter().enumerate())
        .map(|(j, u)| {
            let predicted = u.clone().detach().argmax(1).flatten::<1>(0, 1);
            batch.mean_where_available(j, predicted.equal(batch.labels.clone()).float())
        })
        .collect();
    to_host(Tensor::cat(correct, 0)).expect("accuracies")
}

/// What the direction term reads of a step's forward pass.
struct Heads {
    hidden: Tensor<2>,
    fused_logits: Tensor<2>,
    aux_hidden: Vec<Tensor<2>>,
    aux_logits: Vec<Tensor<2>>,
}

impl Cggm {
    /// The direction term (sum|B| - sum B cos) / M against the previous step's coefficients,
    /// on the classifiers' weights — this step's, or in the original's form the previous
    /// step's (the fused side's gradient evaluated there and applied to the current parameter;
    /// none at the first step) — or on closed-form last-layer gradients; `None` when off.
    fn direction(
        &mut self,
        model: &MultimodalModel,
        heads: &Heads,
        batch: &DeviceBatch,
    ) -> Option<Tensor<1>> {
        let weights: Vec<Tensor<2>> = std::iter::once(model.head.classifier_weight())
            .chain(model.aux.iter().map(|a| a.classifier_weight()))
            .collect();
        // Only the direction term reads them: no host read of the weights without it.
        let previous = self.previous && !self.gradients && self.lambda != 0.0;
        let compared: Option<Vec<Tensor<2>>> = match previous {
            false => Some(weights.clone()),
            true if self.state.prev_weights.len() == weights.len() => Some(
                (self.state.prev_weights.iter().zip(&weights))
                    .map(|((shape, values), now)| {
                        let data = TensorData::new(values.clone(), shape.to_vec());
                        at_previous(Tensor::from_data(data, &now.device()), now.clone())
                    })
                    .collect(),
            ),
            true => None,
        };
        if previous {
            self.state.prev_weights = (weights.into_iter())
                .map(|w| {
                    let [r, c] = w.dims();
                    let values = w.detach().into_data().try_to_vec::<f32>();
                    ([r, c], values.expect("classifier weights"))
                })
                .collect();
        }
        let compared = compared.filter(|_| self.lambda != 0.0)?;
        let onehot = || batch.onehot.clone();
        let fused_side = match self.gradients {
            true => last_layer_gradient(heads.hidden.clone(), heads.fused_logits.clone(), onehot()),
            false => compared[0].clone(),
        };
        let m = self.state.prev_b.len();
        (self.state.prev_b.iter().enumerate())
            .map(|(j, prev)| {
                let own = match self.gradients {
                    true => last_layer_gradient(
                        heads.aux_hidden[j].clone(),
                        heads.aux_logits[j].clone(),
                        onehot(),
                    ),
                    false => compared[j + 1].clone(),
                };
                direction_term(cosine(fused_side.clone(), own.detach()), *prev, m)
            })
            .reduce(|a, b| a + b)
    }
}

impl Method for Cggm {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        setup.require_modalities(INFO.name)?;
        self.state.prev_acc.resize(setup.modalities, 0.0);
        self.state.prev_b.resize(setup.modalities, 0.0);
        Ok(())
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let m = model.encoders.len();
        self.state.prev_acc.resize(m, 0.0);
        self.state.prev_b.resize(m, 0.0);
        let tokens = model.encode(batch.inputs.clone());
        let hidden = model.fused_hidden(&tokens, Some(&batch.group_ids), batch.available.as_ref());
        let fused_logits = model.head.classify(hidden.clone());
        let per_sample = cross_entropy_per_sample(fused_logits.clone(), batch.onehot.clone());
        let aux_hidden = model.aux_hidden(&tokens);
        let aux_logits = model.aux_classify(&aux_hidden);
        let aux_loss = batch.aux_loss(&aux_logits);

        let acc = accuracies(&aux_logits, batch);
        let improvement: Vec<f64> = (acc.iter().zip(&self.state.prev_acc))
            .map(|(a, p)| a - p)
            .collect();
        let b = coefficients(&improvement);
        let heads = Heads {
            hidden,
            fused_logits: fused_logits.clone(),
            aux_hidden,
            aux_logits: aux_logits.clone(),
        };
        let direction = self.direction(model, &heads, batch);
        let mut objective = per_sample.clone().mean();
        if let Some(d) = direction {
            objective = objective + d.mul_scalar(self.lambda);
        }
        let forward = Forward {
            per_sample,
            aux_logits,
            aux_loss,
        };
        let mut out = finish(model, forward, objective, BTreeMap::new());
        for (j, bj) in b.iter().enumerate() {
            scale_grads(&model.encoders[j], &mut out.grads, self.rho * bj);
            if self.scale_projections {
                scale_grads(&model.projections[j], &mut out.grads, self.rho * bj);
            }
            out.stats.insert(crate::stats::coeff(j), *bj);
            out.stats.insert(format!("accuracy_{j}"), acc[j]);
        }
        self.state.prev_acc = acc;
        self.state.prev_b = b;
        out
    }

    fn state(&self) -> serde_json::Value {
        write_state(&self.state)
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.state = read_state(state)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn coefficients_by_hand() {
        // D = [0.2, 0.05]: S = 0.25 (+1e-8), B = [0.05, 0.2] / 0.25 = [0.2, 0.8].
        let b = coefficients(&[0.2, 0.05]);
        assert!((b[0] - 0.2).abs() < 1e-7 && (b[1] - 0.8).abs() < 1e-7);
        // A modality that got worse gets more than 1: D = [0.3, -0.1], S = 0.2, B = [-0.5, 1.5].
        let b = coefficients(&[0.3, -0.1]);
        assert!((b[0] + 0.5).abs() < 1e-6 && (b[1] - 1.5).abs() < 1e-6);
    }

    #[test]
    fn direction_loss_is_the_original_codes() {
        // B = [0.8, -0.3], cos = [0.5, 0.2]: (0.8 + 0.3 - (0.4 - 0.06)) / 2 = 0.38.
        let device = Device::flex();
        let total: f32 = [(0.5, 0.8), (0.2, -0.3)]
            .into_iter()
            .map(|(c, b)| {
                direction_term(Tensor::<1>::from_floats([c], &device), b, 2).into_scalar::<f32>()
            })
            .sum();
        assert!((total - 0.38).abs() < 1e-6, "{total}");
    }

    #[test]
    fn the_previous_weights_term_is_differentiated_at_the_previous_weights() {
        let device = Device::flex().autodiff();
        let other = Tensor::<2>::from_floats([[0.3, -0.2], [0.1, 0.4]], &device);
        let then = [[0.5f32, 0.1], [-0.3, 0.2]];
        let now = Tensor::<2>::from_floats([[0.9, -0.4], [0.2, 0.7]], &device).require_grad();
        let term = cosine(
            at_previous(Tensor::from_floats(then, &device), now.clone()),
            other.clone(),
        );
        let shifted = now.grad(&term.backward()).unwrap();
        let direct = Tensor::<2>::from_floats(then, &device).require_grad();
        let grads = cosine(direct.clone(), other).backward();
        let at_then = direct.grad(&grads).unwrap();
        let (a, b): (Vec<f32>, Vec<f32>) = (
            shifted.into_data().try_to_vec().unwrap(),
            at_then.into_data().try_to_vec().unwrap(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn last_layer_gradient_matches_autodiff() {
        let device = Device::flex().autodiff();
        let hidden = Tensor::<2>::from_floats([[1.0, -2.0, 0.5], [0.3, 0.1, -1.0]], &device);
        let w = Tensor::<2>::from_floats([[0.2, -0.1], [0.4, 0.3], [-0.5, 0.1]], &device)
            .require_grad();
        let onehot = Tensor::<2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
        let logits = hidden.clone().matmul(w.clone());
        let closed = last_layer_gradient(hidden, logits.clone(), onehot.clone());
        let grads = crate::cross_entropy(logits, onehot).backward();
        let auto = w.grad(&grads).unwrap();
        let (a, c): (Vec<f32>, Vec<f32>) = (
            auto.into_data().try_to_vec::<f32>().unwrap(),
            closed.inner().into_data().try_to_vec::<f32>().unwrap(),
        );
        for (x, y) in a.iter().zip(&c) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {c:?}");
        }
    }
}
