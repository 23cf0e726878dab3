//! GroupDRO (Sagawa et al., ICLR 2020): minimise the q-weighted group losses, with q updated by
//! exponentiated gradient ascent on the groups' batch losses, q_g <- q_g exp(eta L_g), then
//! normalised. Groups are the codes of the run's attribute; samples of unknown group (-1)
//! leave the objective (counted in the statistics).

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range};
use crate::{DeviceBatch, Method, Setup, StepOutput, hparams, read_state, to_host, write_state};

hparams! {
    pub struct GroupDroHparams {
        /// Step size of the exponentiated-gradient update of q.
        eta as "group_dro_eta": f64 = 0.01, Range::LogUniform(1e-3, 1e-1);
    }
}

pub const INFO: MethodInfo = MethodInfo {
    name: "group_dro",
    about: "GroupDRO (Sagawa et al., ICLR 2020): exponentiated-gradient group weights",
    hparams: GroupDroHparams::HPARAMS,
    defaults: GroupDroHparams::defaults,
    engine_defaults: &[],
    presets: &[],
    build: |h| {
        Ok(Box::new(GroupDro {
            eta: GroupDroHparams::from_value(h)?.eta,
            q: Vec::new(),
        }))
    },
};

/// What a checkpoint keeps: the group weights.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDroState {
    q: Vec<f64>,
}

pub struct GroupDro {
    eta: f64,
    /// Group weights q (sum 1), one per code.
    q: Vec<f64>,
}

/// Sagawa et al.'s update: q_g <- q_g exp(eta L_g) for the groups present in the batch (an
/// absent group's loss counts as 0, as in their code), then normalised.
pub fn update_weights(q: &[f64], group_loss: &[Option<f64>], eta: f64) -> Vec<f64> {
    let raised: Vec<f64> = q
        .iter()
        .zip(group_loss)
        .map(|(q, l)| q * (eta * l.unwrap_or(0.0)).exp())
        .collect();
    let total: f64 = raised.iter().sum();
    raised.iter().map(|r| r / total).collect()
}

/// Mean loss per group code 0..K (None: no sample of that group).
pub fn group_losses(losses: &[f64], groups: &[i64], k: usize) -> Vec<Option<f64>> {
    let mut sum = vec![0.0; k];
    let mut count = vec![0usize; k];
    for (&l, &g) in losses.iter().zip(groups) {
        if g >= 0 && (g as usize) < k {
            sum[g as usize] += l;
            count[g as usize] += 1;
        }
    }
    sum.iter()
        .zip(&count)
        .map(|(s, &c)| (c > 0).then(|| s / c as f64))
        .collect()
}

impl Method for GroupDro {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        let k = setup.group_counts.len();
        if k < 2 {
            return Err(format!(
                "group_dro needs at least 2 groups; the attribute has {k}"
            ));
        }
        if self.q.len() != k {
            self.q = vec![1.0 / k as f64; k];
        }
        Ok(())
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        let k = self.q.len();
        let losses = to_host(f.per_sample.clone().detach()).expect("losses");
        self.q = update_weights(&self.q, &group_losses(&losses, &batch.groups, k), self.eta);
        // sum_g q_g L_g = sum_i q_{g(i)} / n_{g(i)} l_i: one weight per sample.
        let mut counts = vec![0usize; k];
        for &g in batch.groups.iter().filter(|&&g| g >= 0 && (g as usize) < k) {
            counts[g as usize] += 1;
        }
        let weights: Vec<f32> = batch
            .groups
            .iter()
            .map(|&g| match usize::try_from(g) {
                Ok(g) if g < k => (self.q[g] / counts[g] as f64) as f32,
                _ => 0.0,
            })
            .collect();
        let device = f.per_sample.device();
        let w = Tensor::<1>::from_floats(weights.as_slice(), &device);
        let objective = (f.per_sample.clone() * w).sum();
        let mut stats: BTreeMap<String, f64> = self
            .q
            .iter()
            .enumerate()
            .map(|(g, q)| (format!("q_group_{g}"), *q))
            .collect();
        stats.insert(
            "unknown_group".into(),
            batch.groups.iter().filter(|&&g| g < 0).count() as f64,
        );
        finish(model, f, objective, stats)
    }

    fn state(&self) -> serde_json::Value {
        write_state(&GroupDroState { q: self.q.clone() })
    }

    fn load_state(&mut self, state: serde_json::Value) -> Result<(), String> {
        let q = read_state::<GroupDroState>(state)?.q;
        if !q.is_empty() {
            self.q = q;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponentiated_gradient_update_by_hand() {
        // q = [1/2, 1/2], losses [1, 0], eta 1: raised [e/2, 1/2], q' = [e/(e+1), 1/(e+1)].
        let e = std::f64::consts::E;
        let q = update_weights(&[0.5, 0.5], &[Some(1.0), Some(0.0)], 1.0);
        assert!((q[0] - e / (e + 1.0)).abs() < 1e-12 && (q[1] - 1.0 / (e + 1.0)).abs() < 1e-12);
        // An absent group keeps its raw weight before normalisation: [1/3 e^0.2, 1/3, 1/3].
        let q = update_weights(&[1.0 / 3.0; 3], &[Some(2.0), None, Some(0.0)], 0.1);
        let z = 0.2f64.exp() + 2.0;
        assert!((q[0] - 0.2f64.exp() / z).abs() < 1e-12 && (q[1] - 1.0 / z).abs() < 1e-12);
    }

    #[test]
    fn group_losses_skip_unknown_codes() {
        let l = group_losses(&[1.0, 3.0, 5.0, 7.0], &[0, 0, -1, 2], 3);
        assert_eq!(l, vec![Some(2.0), None, Some(7.0)]);
    }
}
