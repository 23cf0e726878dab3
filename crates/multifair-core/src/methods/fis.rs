//! FIS, fair identity scaling (Luo et al., "FairVision", ICLR 2024), as the FairVision code's
//! `Fair_Loss_Scaler` computes it: with the batch's per-sample losses l (keeping their
//! gradient),
//!
//!   loss = mean_i( ((1 - c) softmax(l / T)_i + c softmax(d_{g(i)} / T)_i) l_i ),
//!
//! where d_g is the Sinkhorn distance (`crate::sinkhorn`, blur 0.1) between group g's losses
//! and all groups' losses, without gradient, and both softmaxes run over the batch. The
//! individual weights keep their gradient, as there. As the original, d_g is measured at every
//! step on a separate draw of each group's training samples (`fis_group_samples` of each,
//! forwarded in training mode without gradient), against all those draws together; with
//! `fis_group_samples = 0` it comes from the batch's own members of each group instead. A
//! sample of unknown group (-1), or of a group without a draw, has d = 0.

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range, Valid};
use crate::sinkhorn::sinkhorn_divergence;
use crate::{DeviceBatch, Method, StepOutput, hparams, to_host};

hparams! {
    pub struct FisHparams {
        /// Weight of the group term against the individual one (`fair_scaling_coef`).
        c as "fis_c": f64 = 0.5, Range::Uniform(0.0, 1.0), Valid::Closed(0.0, 1.0);
        /// Softmax temperature.
        t as "fis_t": f64 = 1.0, Range::LogUniform(0.1, 10.0), Valid::Positive;
        /// Sinkhorn blur.
        blur as "fis_blur": f64 = 0.1, Range::LogUniform(0.01, 1.0), Valid::Positive;
        /// Training samples of each group drawn every step to measure d_g
        /// (`fair_scaling_batchsize`); 0 measures it on the batch's own members.
        samples as "fis_group_samples": usize = 64, Range::Fixed, Valid::Closed(0.0, 65536.0);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "fis",
    about: "FIS (Luo et al., ICLR 2024): the FairVision code's loss scaling by losses and group Sinkhorn distances",
    hparams: FisHparams::HPARAMS,
    defaults: FisHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        let h = FisHparams::from_value(h)?;
        Ok(Box::new(Fis {
            c: h.c,
            t: h.t,
            blur: h.blur,
            samples: h.samples,
            draws: Vec::new(),
        }))
    },
};

pub struct Fis {
    c: f64,
    t: f64,
    blur: f64,
    samples: usize,
    /// This step's draws of each group, from [`Method::group_batches`].
    draws: Vec<(i64, DeviceBatch)>,
}

impl Fis {
    /// Each group's Sinkhorn distance between its members' losses and all the losses given.
    pub fn distances(&self, losses: &[f64], groups: &[i64]) -> BTreeMap<i64, f64> {
        let mut distance = BTreeMap::new();
        for &g in groups.iter().filter(|&&g| g >= 0) {
            distance.entry(g).or_insert_with(|| {
                let members: Vec<f64> = (losses.iter().zip(groups))
                    .filter(|&(_, &c)| c == g)
                    .map(|(&l, _)| l)
                    .collect();
                sinkhorn_divergence(&members, losses, self.blur)
            });
        }
        distance
    }

    /// The losses of this step's group draws, without gradient, and each one's group.
    fn drawn_losses(&mut self, model: &MultimodalModel) -> (Vec<f64>, Vec<i64>) {
        let (mut losses, mut groups) = (Vec::new(), Vec::new());
        for (g, batch) in std::mem::take(&mut self.draws) {
            let drawn = to_host(forward(model, &batch).per_sample.detach()).expect("losses");
            groups.extend(std::iter::repeat_n(g, drawn.len()));
            losses.extend(drawn);
        }
        (losses, groups)
    }

    /// The scaled loss from per-sample losses [B] (with their gradient) and each sample's
    /// group distance.
    pub fn objective(&self, losses: Tensor<1>, group_distance: &[f64]) -> Tensor<1> {
        let device = losses.device();
        let d: Vec<f32> = group_distance.iter().map(|&d| d as f32).collect();
        let d = Tensor::<1>::from_floats(d.as_slice(), &device);
        let individual = softmax(losses.clone().div_scalar(self.t), 0);
        let group = softmax(d.div_scalar(self.t), 0);
        let weights = individual.mul_scalar(1.0 - self.c) + group.mul_scalar(self.c);
        (weights * losses).mean()
    }
}

impl Method for Fis {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn group_samples(&self) -> usize {
        self.samples
    }

    fn group_batches(&mut self, batches: Vec<(i64, DeviceBatch)>) {
        self.draws = batches;
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        let distance = match self.draws.is_empty() {
            true => {
                let losses = to_host(f.per_sample.clone().detach()).expect("losses");
                self.distances(&losses, &batch.groups)
            }
            false => {
                let (losses, groups) = self.drawn_losses(model);
                self.distances(&losses, &groups)
            }
        };
        let per_sample: Vec<f64> = (batch.groups.iter())
            .map(|g| distance.get(g).copied().unwrap_or(0.0))
            .collect();
        let objective = self.objective(f.per_sample.clone(), &per_sample);
        let stats = distance
            .into_iter()
            .map(|(g, d)| (format!("sinkhorn_group_{g}"), d))
            .collect();
        finish(model, f, objective, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn the_scaled_loss_by_hand() {
        let fis = Fis {
            c: 0.5,
            t: 1.0,
            blur: 0.1,
            samples: 0,
            draws: Vec::new(),
        };
        // One group holding the whole batch is at distance 0 from it.
        let d = fis.distances(&[0.0, 4f64.ln()], &[0, 0]);
        assert!(d[&0].abs() < 1e-9);
        // l = [0, ln 4], group distances [0, ln 3]: individual softmax(l) = [1/5, 4/5], group
        // softmax(d) = [1/4, 3/4]; weights (1/2)(those) = [9/40, 31/40]; the mean of w l is
        // (31/40 ln 4) / 2.
        let device = Device::flex().autodiff();
        let l = Tensor::<1>::from_floats([0.0, 4f32.ln()], &device).require_grad();
        let loss = fis.objective(l.clone(), &[0.0, 3f64.ln()]);
        let want = 31.0 / 40.0 * 4f64.ln() / 2.0;
        assert!((loss.clone().into_scalar::<f32>() as f64 - want).abs() < 1e-6);
        // The individual weights keep their gradient: d loss / d l_2 is not the weight / B.
        let grad = l
            .grad(&loss.backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let detached = 31.0 / 40.0 / 2.0;
        assert!((grad[1] as f64 - detached).abs() > 1e-3, "{grad:?}");
        // By hand: d/dl_2 of (1/2)[(1/2) s_2 l_2 + ... ] with s = softmax(l): the individual
        // term's derivative adds (1/2)(1/2)(s_2(1 - s_2) l_2 - s_1 s_2 l_1) = (1/4)(4/25) ln 4.
        let by_hand = detached + 0.25 * (4.0 / 25.0) * 4f64.ln();
        assert!((grad[1] as f64 - by_hand).abs() < 1e-6, "{grad:?}");
    }

    #[test]
    fn groups_apart_from_the_batch_are_farther() {
        let fis = Fis {
            c: 0.5,
            t: 1.0,
            blur: 0.1,
            samples: 0,
            draws: Vec::new(),
        };
        // Two single-sample groups with losses 0 and 1 and an unknown sample at 0.5: the batch
        // {0, 0.5, 1} is symmetric about 0.5, so both groups sit at the same distance from it.
        let d = fis.distances(&[0.0, 1.0, 0.5], &[0, 1, -1]);
        assert!((d[&0] - d[&1]).abs() < 1e-9 && d[&0] > 0.0);
        assert!(!d.contains_key(&-1));
    }
}
