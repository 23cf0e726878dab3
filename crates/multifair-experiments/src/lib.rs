//! The `multifair` command: evaluation of prediction files, the synthetic benchmark and dataset
//! summaries, the training engine, and the demo.

pub mod average;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod config;
pub mod demo;
pub mod device;
pub mod diagnostics;
pub mod durable;
pub mod evaluate;
pub mod mlflow;
pub mod optim;
pub mod outputs;
pub mod phases;
pub mod plot;
pub mod profile;
pub mod reproduce;
pub mod runs;
pub mod score;
pub mod setup;
pub mod sweep;
pub mod table;
pub mod tensorboard;
pub mod timing;
pub mod train;
pub mod tune;
