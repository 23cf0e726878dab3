//! The training loop: seeded runs, the method's step, global gradient clipping, the schedule,
//! validation each epoch, model selection on validation only, a checkpoint each epoch, and the
//! test report of the selected epoch. Setup, scoring, checkpoints and outputs live in their own
//! modules; this file reads top to bottom.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use multifair_core::{EpochEnd, Method, Phases, create, to_host};
use multifair_data::loader::{Batch, EpochIter, Loader};
use multifair_models::MultimodalModel;
use multifair_models::pretrained::load_encoder;
use serde_json::{Value, json};

use crate::average::{self, Average};
use crate::checkpoint::{Checkpoint, CheckpointState};
pub use crate::config::TrainConfig;
use crate::diagnostics::diagnose;
use crate::durable::{self, RunLock};
use crate::optim::{Optimizers, train_step};
use crate::phases;
use crate::run_dir::RunDir;
use crate::score::{Scored, Scorer, mean_loss};
use crate::setup::Run;
use crate::tensorboard::{EventWriter, flatten_numbers};

/// Options that control a run but not its result.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many epochs, leaving a checkpoint to resume from (as if killed).
    pub stop_after: Option<usize>,
    /// Print nothing but errors.
    pub quiet: bool,
}

impl RunOptions {
    pub(crate) fn say(&self, line: String) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }
}

/// Endless draws from each group's loader, as the original's `endless_loader`: a loader that
/// runs out starts over, reshuffled. Each epoch starts its own cycles, so a resumed run draws
/// what an uninterrupted one would.
struct GroupDraws<'a> {
    epoch: u64,
    groups: Vec<(i64, &'a Loader, u64, EpochIter)>,
}

impl<'a> GroupDraws<'a> {
    fn new(loaders: &'a [(i64, Loader)], epoch: usize) -> Self {
        let epoch = (epoch as u64) << 32;
        let groups = (loaders.iter())
            .map(|(g, loader)| (*g, loader, 0, loader.epoch(epoch)))
            .collect();
        GroupDraws { epoch, groups }
    }

    /// One batch of every group.
    fn next(&mut self) -> anyhow::Result<Vec<(i64, Batch)>> {
        let epoch = self.epoch;
        (self.groups.iter_mut())
            .map(|(g, loader, cycle, iter)| {
                let batch = match iter.next() {
                    Some(batch) => batch,
                    None => {
                        *cycle += 1;
                        *iter = loader.epoch(epoch + *cycle);
                        iter.next()
                            .context("a group's training samples are empty")?
                    }
                };
                Ok((*g, batch.with_context(|| format!("a draw of group {g}"))?))
            })
            .collect()
    }
}

/// The device generator's seed for `seed` at epoch `b`.
fn mix(a: u64, b: u64) -> u64 {
    multifair_data::splitmix64(a ^ b.wrapping_mul(multifair_data::GOLDEN))
}

/// Steps between host reads of the training loss.
const LOSS_READ_EVERY: usize = 20;

/// Trains `config` into `out`, resuming from `out/checkpoint` when it holds a run of the same
/// config. Returns the test report (`Null` when stopped early as asked).
pub fn train(config: TrainConfig, out: &Path, options: &RunOptions) -> anyhow::Result<Value> {
    let mut method = create(&config.method, &config.hparams).map_err(anyhow::Error::msg)?;
    let run = Run::new(config.clone(), method.as_mut())?;
    if method.phases() == Phases::Ensemble {
        return phases::ensemble(&run, out, options);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let _lock = RunLock::take(out)?;
    if method.phases() == Phases::Teachers {
        match phases::members(&run, out, options)? {
            Some(teachers) => method.teachers(teachers),
            None => return Ok(Value::Null),
        }
    }
    durable::remove_temporaries(out)?;
    let checkpoint = Checkpoint::new(out)?;
    let (state, model, optim) = match run.begin(&checkpoint, method.as_mut(), out, options)? {
        Begun::Finished(test) => return Ok(test),
        Begun::Training(state, model, optim) => (state, model, optim),
    };
    let mut tb = EventWriter::for_run(out, &serde_json::to_value(&config)?)?;
    let training = Training {
        checkpoint: &checkpoint,
        out,
        options,
    };
    let Some(state) = run.epochs(method.as_mut(), state, model, optim, &training, &mut tb)? else {
        return Ok(Value::Null);
    };
    match method.averages_weights() {
        true => run.test_average(out, &method.average(), options),
        false => {
            let test = run.test_selected(out, state.best_epoch)?;
            options.say(format!(
                "test AUC {:.4} (epoch {} selected on validation); outputs in {}",
                test["auc"].as_f64().unwrap_or(f64::NAN),
                state.best_epoch.unwrap_or(0),
                out.display()
            ));
            Ok(test)
        }
    }
}

/// How a run begins: already finished (its report), or training from its state.
enum Begun {
    Finished(Value),
    Training(CheckpointState, MultimodalModel, Optimizers),
}

/// Where a run's epochs keep what they write.
struct Training<'a> {
    checkpoint: &'a Checkpoint,
    out: &'a Path,
    options: &'a RunOptions,
}

impl Run {
    /// Seeds the device, builds the model (pretrained encoders on a fresh start) and resumes
    /// from the checkpoint, or reads back a finished run; writes `run.json`.
    fn begin(
        &self,
        checkpoint: &Checkpoint,
        method: &mut dyn Method,
        out: &Path,
        options: &RunOptions,
    ) -> anyhow::Result<Begun> {
        let config = &self.config;
        self.device.seed(config.seed);
        multifair_models::fused::use_dropout_mask(config.engine.dropout_mask);
        multifair_models::fused::use_linear_op(config.engine.linear_op);
        let mut model = self.model_config.init(&self.device);
        let mut imported = Vec::new();
        if !checkpoint.exists() {
            (model, imported) = self.load_pretrained(model, options)?;
        }
        let (state, model, optim) = start(checkpoint, config, model, method, out, options)?;
        // A finished run (every epoch checkpointed, its report written) is read, not tested again.
        let last_epoch = state.stopped_early.unwrap_or(config.epochs);
        if let Some(test) = RunDir::new(out)
            .finished()
            .filter(|_| state.epochs_done >= last_epoch)
        {
            options.say(format!(
                "{} has finished; its outputs are there",
                out.display()
            ));
            return Ok(Begun::Finished(test));
        }
        self.write_run_json(out, &imported)?;
        Ok(Begun::Training(state, model, optim))
    }

    /// The epochs left: each trained, validated, logged and checkpointed, until the last, an
    /// early stop or the method's stop. `None` when stopped as asked (`stop_after`).
    fn epochs(
        &self,
        method: &mut dyn Method,
        mut state: CheckpointState,
        mut model: MultimodalModel,
        mut optim: Optimizers,
        training: &Training,
        tb: &mut EventWriter,
    ) -> anyhow::Result<Option<CheckpointState>> {
        let (out, options) = (training.out, training.options);
        let last_epoch = state.stopped_early.unwrap_or(self.config.epochs);
        for epoch in state.epochs_done..last_epoch {
            if options.stop_after.is_some_and(|n| epoch >= n) {
                options.say(format!(
                    "stopping after epoch {epoch} as asked; rerun the same command to resume"
                ));
                return Ok(None);
            }
            let started = Instant::now();
            let trained = self.train_epoch(
                epoch,
                model,
                &mut optim,
                method,
                &state,
                training.checkpoint,
                options,
            )?;
            model = trained.model;
            let logs = Logs {
                out,
                tb: &mut *tb,
                started,
            };
            let (mut stop, end) =
                self.end_epoch(epoch, &model, &mut state, trained.log, logs, options)?;
            if let Some(segment) = trained.segment {
                average::save(&segment, &RunDir::new(out).segment(epoch))?;
            }
            if method.end_epoch(&end) {
                options.say(format!(
                    "{}: the method ends training after epoch {}",
                    self.config.method,
                    epoch + 1
                ));
                state.stopped_early = Some(epoch + 1);
                stop = true;
            }
            state.method_state = method.state();
            training.checkpoint.save(&state, &model, &optim)?;
            if stop {
                break;
            }
        }
        Ok(Some(state))
    }

    /// The average of the epochs' segments (`epochs`, each with its count) on the test split;
    /// saved as the run's model.
    fn test_average(
        &self,
        out: &Path,
        epochs: &[(usize, usize)],
        options: &RunOptions,
    ) -> anyhow::Result<Value> {
        let template = self.model_config.init(&self.device);
        let averaged = average::of_segments(out, epochs, template)?;
        average::save(&averaged, &RunDir::new(out).model())?;
        let named: Vec<[usize; 2]> = epochs.iter().map(|(e, c)| [e + 1, *c]).collect();
        let test = self.write_test(
            out,
            Scorer::Model(&averaged),
            None,
            json!({"average": named}),
        )?;
        options.say(format!(
            "test AUC {:.4} (the weights averaged over epochs {}); outputs in {}",
            test["auc"].as_f64().unwrap_or(f64::NAN),
            (named
                .iter()
                .map(|[e, c]| format!("{e}x{c}"))
                .collect::<Vec<_>>()
                .join(", ")),
            out.display()
        ));
        Ok(test)
    }
}

/// The run's starting point: its newest complete checkpoint (the log cut back to it), or a
/// fresh state with fresh optimizers (an earlier run's log in the folder removed).
fn start(
    checkpoint: &Checkpoint,
    config: &TrainConfig,
    model: MultimodalModel,
    method: &mut dyn Method,
    out: &Path,
    options: &RunOptions,
) -> anyhow::Result<(CheckpointState, MultimodalModel, Optimizers)> {
    let fresh = || Optimizers::new(config);
    let dir = RunDir::new(out);
    match checkpoint.resume(config, &model, fresh, method)? {
        Some((state, model, optim)) => {
            let epoch = state.epochs_done;
            options.say(format!("resuming {} after epoch {epoch}", out.display()));
            dir.truncate_metrics(epoch)?;
            Ok((state, model, optim))
        }
        None => {
            let _ = std::fs::remove_file(dir.metrics());
            Ok((CheckpointState::new(config.clone()), model, fresh()))
        }
    }
}

/// An epoch's steps as they go: losses still on the device, sums of the statistics, the
/// steps that logged statistics.
#[derive(Default)]
struct EpochSteps {
    pending: PendingLosses,
    losses: usize,
    sums: BTreeMap<String, (f64, usize)>,
    logged: Vec<(usize, u64, BTreeMap<String, f64>)>,
}

impl EpochSteps {
    /// A batch's sub-steps' losses and statistics; the losses are read every
    /// [`LOSS_READ_EVERY`] steps (the NaN guard, given the epoch and its checkpoint).
    fn record(
        &mut self,
        step: usize,
        b: usize,
        stepped: crate::optim::Stepped,
        (epoch, checkpoint): (usize, &Checkpoint),
    ) -> anyhow::Result<()> {
        for loss in stepped.losses {
            self.pending.losses.push((step, b, loss));
            self.losses += 1;
        }
        if self.pending.losses.len() >= LOSS_READ_EVERY {
            self.pending.read(epoch, checkpoint)?;
        }
        for (k, v) in &stepped.stats {
            let entry = self.sums.entry(k.clone()).or_default();
            (entry.0, entry.1) = (entry.0 + v, entry.1 + 1);
        }
        if !stepped.stats.is_empty() {
            self.logged.push((step + 1, unix_ms(), stepped.stats));
        }
        Ok(())
    }

    /// The epoch's log: the mean loss and each statistic's mean over the steps that logged it.
    fn finish(mut self, (epoch, checkpoint): (usize, &Checkpoint)) -> anyhow::Result<EpochLog> {
        self.pending.read(epoch, checkpoint)?;
        Ok(EpochLog {
            train_loss: self.pending.sum / self.losses.max(1) as f64,
            stats: (self.sums.into_iter())
                .map(|(k, (sum, n))| (k, sum / n as f64))
                .collect(),
            steps: self.logged,
        })
    }
}

/// What an epoch of training leaves for its log line.
struct EpochLog {
    train_loss: f64,
    /// Each method statistic averaged over the steps that logged it.
    stats: BTreeMap<String, f64>,
    /// The steps that logged statistics: (global step, unix ms, statistics), written with the
    /// epoch's line so that a resumed run does not repeat them.
    steps: Vec<(usize, u64, BTreeMap<String, f64>)>,
}

/// Where an epoch's line goes: `metrics.jsonl` in `out`, and the TensorBoard events.
struct Logs<'a> {
    out: &'a Path,
    tb: &'a mut EventWriter,
    started: Instant,
}

/// Milliseconds since the Unix epoch (the times in `metrics.jsonl`).
fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as u64)
}

struct Trained {
    model: MultimodalModel,
    log: EpochLog,
    /// The mean of the epoch's weights, for a method that averages them.
    segment: Option<MultimodalModel>,
}

/// The training losses still on the device: read every [`LOSS_READ_EVERY`] steps (one host
/// read, not one per step), when the NaN guard names the first bad step exactly.
#[derive(Default)]
struct PendingLosses {
    losses: Vec<(usize, usize, Tensor<1>)>,
    sum: f64,
}

impl PendingLosses {
    fn read(&mut self, epoch: usize, checkpoint: &Checkpoint) -> anyhow::Result<()> {
        if self.losses.is_empty() {
            return Ok(());
        }
        let all = Tensor::cat(self.losses.iter().map(|(_, _, l)| l.clone()).collect(), 0);
        let values = to_host(all).map_err(anyhow::Error::msg)?;
        for ((step, b, _), loss) in self.losses.iter().zip(&values) {
            if !loss.is_finite() {
                let saved = match epoch {
                    0 => "no epoch had finished, so there is no checkpoint".to_owned(),
                    _ => format!(
                        "epoch {epoch}'s checkpoint is in {}",
                        checkpoint.folder().display()
                    ),
                };
                bail!(
                    "diverged at epoch {} (loss {loss} at step {step}, batch {b} of the epoch); the run stops here ({saved})",
                    epoch + 1
                );
            }
        }
        self.losses.clear();
        self.sum += values.iter().sum::<f64>();
        Ok(())
    }
}

fn progress_bar(epoch: usize, epochs: usize, steps: usize, options: &RunOptions) -> ProgressBar {
    if !std::io::stderr().is_terminal() || options.quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    let style = ProgressStyle::with_template("epoch {msg} {bar:30} {pos}/{len} {elapsed}<{eta}");
    bar.set_style(style.expect("template"));
    bar.set_message(format!("{}/{epochs}", epoch + 1));
    bar
}

impl Run {
    /// The selected epoch's model (`model.safetensors`) on the test split: `predictions.csv`
    /// and `test.json`.
    fn test_selected(&self, out: &Path, selected: Option<usize>) -> anyhow::Result<Value> {
        let mut best = self.model_config.init(&self.device);
        let mut store = SafetensorsStore::from_file(RunDir::new(out).model());
        (best.load_from(&mut store))
            .map_err(|e| anyhow::anyhow!("reading model.safetensors: {e:?}"))?;
        self.write_test(out, Scorer::Model(&best), selected, Value::Null)
    }

    /// Pretrained encoders from their folders, and what `run.json` records of each import.
    pub fn load_pretrained(
        &self,
        mut model: MultimodalModel,
        options: &RunOptions,
    ) -> anyhow::Result<(MultimodalModel, Vec<Value>)> {
        let mut imported = Vec::new();
        for (j, name, folder) in &self.pretrained {
            let (encoder, report) = load_encoder(&model.encoders[*j], folder, &self.device)
                .map_err(anyhow::Error::msg)?;
            model.encoders[*j] = encoder;
            let unused = match report.ignored.is_empty() {
                true => String::new(),
                false => format!(" (not used: {})", report.ignored.join(", ")),
            };
            options.say(format!(
                "{name}: {} tensors from {}{unused}",
                report.applied,
                report.file.display()
            ));
            imported.push(
                json!({"modality": name, "file": report.file, "tensors": report.applied,
                                 "not_used": report.ignored}),
            );
        }
        Ok((model, imported))
    }

    /// One epoch of steps: the method's forward and backward, clipping, the optimizers.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &self,
        epoch: usize,
        mut model: MultimodalModel,
        optim: &mut Optimizers,
        method: &mut dyn Method,
        state: &CheckpointState,
        checkpoint: &Checkpoint,
        options: &RunOptions,
    ) -> anyhow::Result<Trained> {
        let (config, steps_per_epoch) = (&self.config, self.train.len());
        method.start_epoch(epoch);
        if method.feature_share() > 0.0 {
            let features = self.features(&model, epoch, method.feature_share())?;
            (method.features(epoch, features))
                .map_err(|e| anyhow::anyhow!("epoch {}: {e}", epoch + 1))?;
        }
        let mut segment = method.averages_weights().then(Average::default);
        // Dropout draws from the device generator: reseeding per epoch makes a resumed run
        // continue exactly as an uninterrupted one.
        self.device.seed(mix(config.seed, epoch as u64 + 1));
        let bar = progress_bar(epoch, config.epochs, steps_per_epoch, options);
        let mut steps = EpochSteps::default();
        let mut draws = GroupDraws::new(&self.groups, epoch);
        for (b, batch) in self.train.epoch(epoch as u64).enumerate() {
            let step = epoch * steps_per_epoch + b;
            let batch = self.device_batch(&batch?, None)?;
            if !self.groups.is_empty() {
                let drawn = draws.next()?;
                let drawn = (drawn.into_iter())
                    .map(|(g, b)| Ok((g, self.device_batch(&b, None)?)))
                    .collect::<anyhow::Result<_>>()?;
                method.group_batches(drawn);
            }
            method.start_batch(b, steps_per_epoch);
            let factor = state.schedule.factor(config, step, steps_per_epoch);
            let every = config.engine.diagnostics_every;
            let before =
                (every > 0 && (step + 1) % every == 0).then(|| (model.clone(), optim.clone()));
            let (next, mut stepped) = train_step(config, optim, factor, method, model, &batch);
            model = next;
            if let Some(segment) = segment.as_mut() {
                segment.add(&model, 1.0);
            }
            if let Some((before, optim_before)) = before {
                let diagnosed = diagnose(config, factor, &before, &model, optim_before, &batch)?;
                stepped.stats.extend(diagnosed);
            }
            steps.record(step, b, stepped, (epoch, checkpoint))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let log = steps.finish((epoch, checkpoint))?;
        let segment = segment.map(|s| s.model(model.clone()));
        Ok(Trained {
            model,
            log,
            segment,
        })
    }

    /// The epoch's measurements: the selection score and validation summary, and what the
    /// method is told (validation loss, worst group AUC, the held-out heads' losses). Stops
    /// a run whose validation predictions are not finite.
    fn measure(
        &self,
        epoch: usize,
        model: &MultimodalModel,
        out: &Path,
        train_loss: f64,
    ) -> anyhow::Result<(f64, Value, EpochEnd)> {
        let scored = self.score(model.into(), &self.val, None)?;
        if scored.probs.iter().flatten().any(|p| !p.is_finite()) {
            let saved = match epoch {
                0 => "no epoch had finished, so there is no checkpoint".to_owned(),
                _ => format!(
                    "epoch {epoch}'s checkpoint is in {}",
                    RunDir::new(out).checkpoints().display()
                ),
            };
            bail!(
                "diverged at epoch {} (its validation predictions are not finite; training loss {train_loss}); the run stops here ({saved})",
                epoch + 1,
            );
        }
        let (score, val) = self.validate(&scored)?;
        let holdout = match &self.holdout {
            Some(loader) => Some(head_losses(&self.score(model.into(), loader, None)?)),
            None => None,
        };
        let worst = (val["group_auc"].as_object().into_iter().flatten())
            .filter_map(|(_, auc)| auc.as_f64())
            .reduce(f64::min);
        let end = EpochEnd {
            epoch,
            val_loss: val["loss"].as_f64().unwrap_or(f64::NAN),
            val_worst_group_auc: worst,
            holdout,
        };
        Ok((score, val, end))
    }

    /// Validation, model selection, the schedule's epoch update, early stopping and the
    /// epoch's line in `metrics.jsonl`. Returns whether training stops here.
    fn end_epoch(
        &self,
        epoch: usize,
        model: &MultimodalModel,
        state: &mut CheckpointState,
        log: EpochLog,
        logs: Logs,
        options: &RunOptions,
    ) -> anyhow::Result<(bool, EpochEnd)> {
        let (out, started) = (logs.out, logs.started);
        let (config, steps_per_epoch) = (&self.config, self.train.len());
        let (score, val, end) = self.measure(epoch, model, out, log.train_loss)?;
        let holdout = end.holdout.clone();
        let last_step = (epoch + 1) * steps_per_epoch - 1;
        let lr = config.engine.lr * state.schedule.factor(config, last_step, steps_per_epoch);
        state
            .schedule
            .end_epoch(config, val["loss"].as_f64().unwrap_or(f64::NAN));
        let improved = score > state.best_score;
        if improved {
            (state.best_score, state.best_epoch) = (score, Some(epoch + 1));
            durable::persist(&RunDir::new(out).model(), |tmp| {
                let mut store = SafetensorsStore::from_file(tmp).overwrite(true);
                model
                    .save_into(&mut store)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
            })?;
        }
        let without_improvement = epoch + 1 - state.best_epoch.unwrap_or(0);
        let patience = config.engine.early_stopping;
        let stop = patience > 0 && without_improvement >= patience;
        let mut line = json!({
            "epoch": epoch + 1, "train_loss": log.train_loss, "lr": lr,
            "val": val, "method": log.stats, "selected": improved,
            "epochs_without_improvement": without_improvement, "early_stop": stop,
            "seconds": started.elapsed().as_secs_f64(), "time": unix_ms(),
        });
        if let Some(losses) = holdout {
            line["holdout_loss"] = json!(losses);
        }
        write_epoch_logs(epoch, &line, &log.steps, out, logs.tb)?;
        let selection = config.engine.selection.name();
        options.say(format!(
            "epoch {}/{}: train loss {:.4}, val AUC {:.4}, {selection} {:.4}{} ({:.1} s)",
            epoch + 1,
            config.epochs,
            log.train_loss,
            val["auc"].as_f64().unwrap_or(f64::NAN),
            score.abs(),
            if improved { " (best)" } else { "" },
            started.elapsed().as_secs_f64()
        ));
        state.epochs_done = epoch + 1;
        if stop {
            state.stopped_early = Some(epoch + 1);
            options.say(format!("early stopping: {without_improvement} epochs without a better validation {selection}"));
        }
        Ok((stop, end))
    }
}

/// Mean cross-entropies of each modality's auxiliary head, then of the fused prediction.
fn head_losses(scored: &Scored) -> Vec<f64> {
    (scored.aux.iter().chain([&scored.probs]))
        .map(|probs| mean_loss(probs, &scored.labels))
        .collect()
}

/// The epoch's step lines and its line, appended to `metrics.jsonl` at once; the same numbers
/// as TensorBoard scalars (per-step statistics under `step/` at the global step, the epoch's
/// under their JSON paths at the epoch).
fn write_epoch_logs(
    epoch: usize,
    line: &Value,
    steps: &[(usize, u64, BTreeMap<String, f64>)],
    out: &Path,
    tb: &mut EventWriter,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for (step, time, stats) in steps {
        text += &format!(
            "{}\n",
            json!({"step": step, "epoch": epoch + 1, "stats": stats, "time": time})
        );
        let scalars: Vec<(String, f64)> = stats
            .iter()
            .map(|(k, v)| (format!("step/{k}"), *v))
            .collect();
        tb.scalars(*step as i64, *time as f64 / 1000.0, &scalars)?;
    }
    text += &format!("{line}\n");
    RunDir::new(out).append_metrics(&text)?;
    let mut scalars = Vec::new();
    for key in ["train_loss", "lr", "val", "method"] {
        flatten_numbers(key, &line[key], &mut scalars);
    }
    let time = line["time"].as_f64().unwrap_or_default() / 1000.0;
    tb.scalars(epoch as i64 + 1, time, &scalars)?;
    tb.flush()
}
