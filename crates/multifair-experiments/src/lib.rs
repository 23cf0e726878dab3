//! The `multifair` command: evaluation of prediction files today; runs, sweeps, tables and
//! figures build on the same pieces.

pub mod cli;
pub mod demo;
pub mod device;
pub mod evaluate;
pub mod train;
