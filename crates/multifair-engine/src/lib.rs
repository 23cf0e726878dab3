//! One training run: its configuration and profiles, the data and model it sets up, the loop
//! with its one step function, optimizers and schedules, checkpoints, scoring and the
//! prediction reports, the run folder ([`run_dir::RunDir`]), devices, weight averaging, runs
//! in phases, step timing and TensorBoard events. Many runs (sweeps, tables, the command line)
//! are `multifair-lab`'s.

pub mod average;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod diagnostics;
pub mod durable;
pub mod optim;
pub mod phases;
pub mod profile;
pub mod report;
pub mod run_dir;
pub mod score;
pub mod setup;
pub mod tensorboard;
pub mod timing;
pub mod train;
