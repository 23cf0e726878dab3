//! The `multifair` command: evaluation of prediction files, the synthetic benchmark and dataset
//! summaries, the training engine, and the demo.

pub mod cli;
pub mod compare;
pub mod demo;
pub mod device;
pub mod evaluate;
pub mod optim;
pub mod plot;
pub mod reproduce;
pub mod sweep;
pub mod table;
pub mod train;
