//! Many runs: sweeps of a spec (locally, as shell commands or a Slurm array), equal-budget
//! tuning, comparisons, the demo and the paper tables with their built-in specs, listings of a
//! sweep's runs, tables, figures, the MLflow export, and the `multifair` command line as a thin
//! layer over them. One run is `multifair-engine`'s.

pub mod cli;
pub mod compare;
pub mod demo;
pub mod doctor;
pub mod mlflow;
pub mod plot;
pub mod reproduce;
pub mod runs;
pub mod specs;
pub mod sweep;
pub mod table;
pub mod tune;
