//! The registry: every method by name, with the hyperparameter keys it reads.

mod agm;
mod cggm;
mod domain_ind;
mod erm;
mod fin;
mod fis;
mod gblending;
mod group_dro;
mod mla;
mod mmpareto;
mod multifair;
mod multifair_ref;
mod ogm_ge;
mod pmr;
mod resample;
mod reweight;
mod sam;
mod swad;
mod ume;
mod umt;
mod unimodal;

pub use erm::Erm;
pub use multifair::{Modulation, Multifair, MultifairHparams};
pub use multifair_ref::{MultifairRef, ORIGINAL_ENGINE, RefHparams, RefState, RefStats};
pub use ume::ensemble;
pub use unimodal::Unimodal;

use serde_json::Value;

use crate::Method;
use crate::hparams::{Hparam, Hparams, NoHparams};

/// A registered method: its name, the paper it comes from, its hyperparameters, and how to
/// build it.
pub struct MethodInfo {
    pub name: &'static str,
    pub about: &'static str,
    /// The `--set` keys the method reads, with their tuning ranges (see [`crate::hparams`]).
    pub hparams: &'static [Hparam],
    /// The keys' defaults, one JSON entry per key.
    pub defaults: fn() -> Value,
    /// Engine settings from the method's paper (optimizer, rates, schedule), applied over the
    /// engine's defaults and under the command line's `--set`.
    pub engine_defaults: &'static [(&'static str, &'static str)],
    /// Named settings from the method's own code for each of its paper's datasets, chosen
    /// with `--set preset=NAME` and applied after `engine_defaults`, before the command line.
    pub presets: &'static [Preset],
    /// Builds the method from resolved hyperparameters (missing keys take their defaults).
    pub build: fn(&Value) -> Result<Box<dyn Method>, String>,
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
    ume::INFO,
    umt::INFO,
    gblending::INFO,
    mla::INFO,
    pmr::INFO,
    agm::INFO,
    mmpareto::INFO,
    resample::INFO,
    domain_ind::INFO,
    swad::INFO,
    sam::INFO,
];

/// The registry entry of a method without hyperparameters, paper settings or presets; `build`
/// still refuses any key (`NoHparams`).
const fn plain(
    name: &'static str,
    about: &'static str,
    build: fn(&Value) -> Result<Box<dyn Method>, String>,
) -> MethodInfo {
    MethodInfo {
        name,
        about,
        hparams: NoHparams::HPARAMS,
        defaults: NoHparams::defaults,
        engine_defaults: &[],
        presets: &[],
        build,
    }
}

/// The registered method `name`; an unknown name is an error listing the registered ones.
pub fn info(name: &str) -> Result<&'static MethodInfo, String> {
    REGISTRY.iter().find(|m| m.name == name).ok_or_else(|| {
        let names: Vec<_> = REGISTRY.iter().map(|m| m.name).collect();
        format!("unknown method '{name}'; available: {}", names.join(", "))
    })
}

/// Builds the method `name` from its hyperparameters (`{}`: all defaults).
pub fn create(name: &str, hparams: &Value) -> Result<Box<dyn Method>, String> {
    (info(name)?.build)(hparams)
}
