//! GroupDRO (Sagawa et al., ICLR 2020): minimise the q-weighted group losses, with q updated by
//! exponentiated gradient ascent on the groups' batch losses, q_g <- q_g exp(eta L_g), then
//! normalised. Groups are, as in the original code, each (label, attribute group) pair,
//! index y K + g (`group_dro_groups=attribute`: the attribute's codes alone); samples of
//! unknown group (-1) leave the objective (counted in the statistics).

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use multifair_models::MultimodalModel;

use super::MethodInfo;
use super::erm::{finish, forward};
use crate::hparams::{Hparams, Range, Valid};
use crate::{DeviceBatch, Method, Setup, StepOutput, hparams, read_state, to_host, write_state};

/// What GroupDRO's groups are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DroGroups {
    /// Each (label, attribute group) pair, as the original code forms its groups.
    LabelAttribute,
    /// The attribute's groups alone (ours).
    Attribute,
}

hparams! {
    pub struct GroupDroHparams {
        /// Step size of the exponentiated-gradient update of q.
        eta as "group_dro_eta": f64 = 0.01, Range::LogUniform(1e-3, 1e-1), Valid::Positive;
        /// label_attribute (the original's) or attribute.
        groups as "group_dro_groups": DroGroups = DroGroups::LabelAttribute, Range::Fixed;
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
        let h = GroupDroHparams::from_value(h)?;
        Ok(Box::new(GroupDro {
            eta: h.eta,
            groups: h.groups,
            attribute_groups: 0,
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
    groups: DroGroups,
    /// The attribute's groups K (a (label, group) pair is y K + g).
    attribute_groups: usize,
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

impl GroupDro {
    /// Each sample's group: its (label, attribute group) pair or its attribute group; -1 when
    /// the attribute's code is unknown.
    fn group_ids(&self, batch: &DeviceBatch) -> Vec<i64> {
        let k = self.attribute_groups as i64;
        (batch.groups.iter().zip(&batch.label_ids))
            .map(|(&g, &y)| match self.groups {
                _ if g < 0 => -1,
                DroGroups::LabelAttribute if k > 0 => y as i64 * k + g,
                _ => g,
            })
            .collect()
    }
}

impl Method for GroupDro {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn prepare(&mut self, setup: &Setup) -> Result<(), String> {
        let attribute = setup.group_counts.len();
        if attribute < 2 {
            return Err(format!(
                "group_dro needs at least 2 groups; the attribute has {attribute}"
            ));
        }
        self.attribute_groups = attribute;
        let k = match self.groups {
            DroGroups::LabelAttribute => attribute * setup.classes,
            DroGroups::Attribute => attribute,
        };
        if self.q.len() != k {
            self.q = vec![1.0 / k as f64; k];
        }
        Ok(())
    }

    fn step(&mut self, model: &MultimodalModel, batch: &DeviceBatch) -> StepOutput {
        let f = forward(model, batch);
        let k = self.q.len();
        let losses = to_host(f.per_sample.clone().detach()).expect("losses");
        let groups = self.group_ids(batch);
        self.q = update_weights(&self.q, &group_losses(&losses, &groups, k), self.eta);
        // sum_g q_g L_g = sum_i q_{g(i)} / n_{g(i)} l_i: one weight per sample.
        let mut counts = vec![0usize; k];
        for &g in groups.iter().filter(|&&g| g >= 0 && (g as usize) < k) {
            counts[g as usize] += 1;
        }
        let weights: Vec<f32> = groups
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
    fn groups_are_label_attribute_pairs_as_in_the_original() {
        let device = burn::tensor::Device::flex();
        let batch = DeviceBatch::new(
            Vec::new(),
            &[0, 1, 1, 0],
            vec![vec![0, 1, 2, -1]],
            0,
            &device,
        );
        let setup = Setup {
            modalities: 2,
            attributes: vec!["race".into()],
            attribute: 0,
            group_counts: vec![5, 5, 5],
            unknown: 1,
            classes: 2,
        };
        let ids = |groups: &str| {
            let mut m = GroupDro {
                eta: 0.01,
                groups: GroupDroHparams::from_value(
                    &serde_json::json!({"group_dro_groups": groups}),
                )
                .unwrap()
                .groups,
                attribute_groups: 0,
                q: Vec::new(),
            };
            m.prepare(&setup).unwrap();
            (m.group_ids(&batch), m.q.len())
        };
        // (label, group) pairs: y * 3 + g, six groups; unknown codes stay out.
        assert_eq!(ids("label_attribute"), (vec![0, 4, 5, -1], 6));
        assert_eq!(ids("attribute"), (vec![0, 1, 2, -1], 3));
    }

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
