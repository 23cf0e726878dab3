//! The registry: every method by name, with the hyperparameter keys it reads.

mod cggm;
mod erm;
mod fin;
mod fis;
mod group_dro;
mod multifair;
mod multifair_ref;
mod ogm_ge;
mod reweight;
mod unimodal;

pub use erm::Erm;
pub use multifair::{Modulation, Multifair, MultifairConfig};
pub use multifair_ref::{MultifairRef, RefHparams, RefState, RefStats};
pub use unimodal::Unimodal;

use crate::{Method, Params};

/// A registered method: its name, the paper it comes from, its keys, and how to build it.
pub struct MethodInfo {
    pub name: &'static str,
    pub about: &'static str,
    /// `--set` keys the method reads, with their defaults.
    pub keys: &'static [(&'static str, &'static str)],
    /// Engine settings from the method's paper (optimizer, rates, schedule), applied before
    /// the command line's `--set`.
    pub defaults: &'static [(&'static str, &'static str)],
    /// Named settings from the method's own code for each of its paper's datasets, chosen
    /// with `--set preset=NAME` and applied after `defaults`, before the command line.
    pub presets: &'static [Preset],
    pub build: fn(&Params) -> Result<Box<dyn Method>, String>,
}

/// A named group of `--set` pairs (see [`MethodInfo::presets`]).
pub type Preset = (&'static str, &'static [(&'static str, &'static str)]);

pub const REGISTRY: &[MethodInfo] = &[
    erm::INFO,
    unimodal::INFO,
    multifair_ref::INFO,
    multifair::INFO,
    ogm_ge::INFO,
    cggm::INFO,
    group_dro::INFO,
    reweight::INFO,
    fin::INFO,
    fis::INFO,
];

/// Builds the method `name` from `params`.
pub fn create(name: &str, params: &Params) -> Result<Box<dyn Method>, String> {
    let info = REGISTRY.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<_> = REGISTRY.iter().map(|m| m.name).collect();
        format!("unknown method '{name}'; available: {}", names.join(", "))
    })?;
    (info.build)(params)
}
