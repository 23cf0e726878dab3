//! Experiment specs (`experiments/*.toml`) and sweeps: a spec expands into methods x
//! attributes x seeds; each run's folder is named by a hash of its resolved configuration, so
//! rerunning a sweep skips finished runs and a crashed run resumes from its checkpoint. Runs
//! execute locally (`--jobs J` worker processes), as shell commands (one per line, for GNU
//! parallel) or as a Slurm array script.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use multifair_data::DatasetKind;
use multifair_models::presets::ModelSize;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use multifair_engine::config::{Request, TrainConfig};
use multifair_engine::device::DeviceSpec;
use multifair_engine::durable::{LOCKED_EXIT, RunLock};
use multifair_engine::profile::Profile;
use multifair_engine::run_dir::RunDir;

/// A sweep's plan, in its output folder: the spec and every planned run.
pub fn plan_path(out: &Path) -> PathBuf {
    out.join("sweep.json")
}

/// The plan a sweep wrote into `results`.
pub fn read_plan(results: &Path) -> anyhow::Result<Plan> {
    let path = plan_path(results);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run a sweep first)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One row of a spec: a label, a registered method and its `--set` pairs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpecRow {
    pub label: String,
    pub method: String,
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
}

/// An experiment spec.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub dataset: DatasetKind,
    pub attributes: Vec<String>,
    pub seeds: usize,
    #[serde(default)]
    pub base_seed: u64,
    /// The seeds themselves (the first `seeds` of them), instead of drawing from `base_seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_list: Option<Vec<u64>>,
    pub epochs: usize,
    #[serde(default = "tiny")]
    pub model: ModelSize,
    /// `--set` pairs for every run.
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// The protocol (`cpu` or `paper`; default: `cpu`, or for `reproduce`, `paper` on real
    /// data). `paper` brings its own model, epochs and attribute in place of the spec's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The keys `multifair tune` draws (default: each method's declared ranges, and the
    /// engine's `lr` and `weight_decay`); keys the spec or a row sets are never tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<Vec<String>>,
    pub runs: Vec<SpecRow>,
}

fn tiny() -> ModelSize {
    ModelSize::Tiny
}

/// A TOML value as a `--set` value.
fn set_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Bounds on what a spec may ask for: far above any real sweep, far below what exhausts a
/// machine before the first run starts.
pub const MAX_SEEDS: usize = 1000;
pub const MAX_EPOCHS: usize = 10_000;
pub const MAX_RUNS: usize = 100_000;

/// The first value of `values` that appears twice.
fn repeated<'a, T: Ord>(values: impl IntoIterator<Item = &'a T>) -> Option<&'a T> {
    let mut seen = std::collections::BTreeSet::new();
    values.into_iter().find(|v| !seen.insert(*v))
}

impl Spec {
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Spec> {
        let spec: Spec = toml::from_str(text).with_context(|| format!("reading {origin}"))?;
        spec.check(origin)?;
        Ok(spec)
    }

    /// Refuses what would write outside the output folder (names and labels are folder
    /// names), repeat a run, or size a sweep beyond its bounds.
    pub fn check(&self, origin: &str) -> anyhow::Result<()> {
        let component = |what: &str, name: &str| {
            multifair_data::path_component(what, name).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
        };
        component("name", &self.name)?;
        ensure!(!self.runs.is_empty(), "{origin}: no [[runs]]");
        ensure!(!self.attributes.is_empty(), "{origin}: no attributes");
        for attribute in &self.attributes {
            component("attribute", attribute)?;
        }
        if let Some(a) = repeated(&self.attributes) {
            bail!("{origin}: the attribute '{a}' appears twice");
        }
        for row in &self.runs {
            component("label", &row.label)?;
        }
        if let Some(l) = repeated(self.runs.iter().map(|r| &r.label)) {
            bail!("{origin}: the label '{l}' appears twice");
        }
        ensure!(
            (1..=MAX_SEEDS).contains(&self.seeds),
            "{origin}: seeds = {}: must be 1 to {MAX_SEEDS}",
            self.seeds
        );
        ensure!(
            (1..=MAX_EPOCHS).contains(&self.epochs),
            "{origin}: epochs = {}: must be 1 to {MAX_EPOCHS}",
            self.epochs
        );
        if let Some(list) = &self.seed_list {
            ensure!(
                list.len() >= self.seeds,
                "{origin}: seeds = {} but seed_list has {} seed(s): list at least as many, or lower seeds",
                self.seeds,
                list.len()
            );
            if let Some(s) = repeated(&list[..self.seeds]) {
                bail!("{origin}: seed {s} appears twice in seed_list");
            }
        }
        let runs = self.runs.len() * self.attributes.len() * self.seeds;
        ensure!(
            runs <= MAX_RUNS,
            "{origin}: {runs} runs ({} rows x {} attributes x {} seeds): at most {MAX_RUNS}",
            self.runs.len(),
            self.attributes.len(),
            self.seeds
        );
        if let Some(keys) = &self.tune {
            let known = multifair_engine::config::known_keys();
            for key in keys {
                ensure!(
                    known.contains(&key.as_str()),
                    "{origin}: tune: '{key}' is no --set key of the engine or of any method (`multifair train --help` lists them)"
                );
            }
            if let Some(k) = repeated(keys) {
                bail!("{origin}: tune: '{k}' appears twice");
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> anyhow::Result<Spec> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Spec::parse(&text, &path.display().to_string())
    }

    /// The seeds of the runs: drawn from `base_seed` with ChaCha8, so that seed i is the same
    /// whatever the number of seeds.
    pub fn seed_values(&self) -> Vec<u64> {
        if let Some(list) = &self.seed_list {
            return list.iter().copied().take(self.seeds).collect();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.base_seed);
        (0..self.seeds)
            .map(|_| rng.random_range(0..1_000_000u64))
            .collect()
    }
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    pub id: String,
    pub label: String,
    pub method: String,
    pub attribute: String,
    pub seed_index: usize,
    pub seed: u64,
    /// The run's folder, relative to the sweep's output folder.
    pub folder: PathBuf,
    /// The `--set` pairs that, with the fields above, rebuild `config`.
    pub sets: Vec<(String, String)>,
    /// The weights folder a `paper` run was resolved with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_dir: Option<PathBuf>,
    pub config: TrainConfig,
}

impl PlannedRun {
    /// Whether the run has finished: its `test.json` parses (a torn or empty one left by a
    /// kill or a full disk does not count).
    pub fn finished(&self, out: &Path) -> bool {
        RunDir::new(out.join(&self.folder)).finished().is_some()
    }

    /// The `multifair train` arguments of this run, writing under `out`.
    pub fn args(&self, out: &Path) -> Vec<String> {
        let c = &self.config;
        let mut args: Vec<String> = vec![
            "train".into(),
            "--dataset".into(),
            c.dataset.name().into(),
            "--data-dir".into(),
            c.data_dir.display().to_string(),
            "--method".into(),
            c.method.clone(),
            "--attribute".into(),
            c.attribute.clone(),
            "--seed".into(),
            c.seed.to_string(),
            "--epochs".into(),
            c.epochs.to_string(),
            "--model".into(),
            c.model.name().into(),
            "--device".into(),
            c.device.to_string(),
        ];
        if c.profile != Profile::Cpu {
            args.extend(["--profile".into(), c.profile.name().into()]);
        }
        if let Some(dir) = &self.weights_dir {
            args.extend(["--weights-dir".into(), dir.display().to_string()]);
        }
        for (k, v) in &self.sets {
            args.extend(["--set".into(), format!("{k}={v}")]);
        }
        args.extend(["--out".into(), out.join(&self.folder).display().to_string()]);
        args
    }
}

/// A sweep's plan, written to `OUT/sweep.json` (the table reads it to know what is missing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub spec: Spec,
    pub runs: Vec<PlannedRun>,
}

impl PlannedRun {
    /// The run with absolute data and weights folders (for a node whose working folder is
    /// another).
    fn absolute(&self) -> anyhow::Result<PlannedRun> {
        let mut run = self.clone();
        run.config.data_dir = std::path::absolute(&run.config.data_dir)?;
        if let Some(w) = &run.weights_dir {
            run.weights_dir = Some(std::path::absolute(w)?);
        }
        Ok(run)
    }
}

/// 64-bit FNV-1a: a stable hash of the resolved configuration (std's hasher may change).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Options that override a spec from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub seeds: Option<usize>,
    pub epochs: Option<usize>,
    /// Keep only these labels (in the spec's order).
    pub labels: Option<Vec<String>>,
    pub device: Option<DeviceSpec>,
    /// In place of the spec's profile.
    pub profile: Option<Profile>,
    /// The folder of pretrained folders for the `paper` profile.
    pub weights_dir: Option<PathBuf>,
}

/// Expands `spec` over `data_dir` into runs (folders under `runs/`).
pub fn plan(spec: &Spec, data_dir: &Path, overrides: &Overrides) -> anyhow::Result<Plan> {
    let spec = overridden(spec, overrides)?;
    let seeds = spec.seed_values();
    let mut runs = Vec::new();
    for row in &spec.runs {
        let mut sets: Vec<(String, String)> = (spec.set.iter())
            .map(|(k, v)| (k.clone(), set_value(v)))
            .collect();
        sets.extend(row.set.iter().map(|(k, v)| (k.clone(), set_value(v))));
        for attribute in &spec.attributes {
            for (seed_index, &seed) in seeds.iter().enumerate() {
                let config = TrainConfig::resolve(&Request {
                    dataset: spec.dataset,
                    data_dir: data_dir.to_path_buf(),
                    method: row.method.clone(),
                    attribute: Some(attribute.clone()),
                    seed,
                    epochs: Some(spec.epochs),
                    model: Some(spec.model),
                    device: overrides.device.unwrap_or_default(),
                    profile: spec.profile.unwrap_or_default(),
                    weights_dir: overrides.weights_dir.clone(),
                    sets: sets.clone(),
                })
                .with_context(|| format!("{}: run '{}'", spec.name, row.label))?;
                let id = format!("{:016x}", fnv1a(&serde_json::to_string(&config)?));
                let folder = PathBuf::from("runs")
                    .join(&row.label)
                    .join(attribute)
                    .join(format!("seed{seed_index}-{}", &id[..8]));
                runs.push(PlannedRun {
                    id,
                    label: row.label.clone(),
                    method: row.method.clone(),
                    attribute: attribute.clone(),
                    seed_index,
                    seed,
                    folder,
                    sets: sets.clone(),
                    weights_dir: overrides.weights_dir.clone(),
                    config,
                });
            }
        }
    }
    Ok(Plan { spec, runs })
}

/// `spec` with the command line's overrides: seeds, epochs, the rows kept, the profile (the
/// paper profile brings the original's model, epochs and grouping attribute); checked again.
fn overridden(spec: &Spec, overrides: &Overrides) -> anyhow::Result<Spec> {
    let mut spec = spec.clone();
    if let Some(n) = overrides.seeds {
        spec.seeds = n;
    }
    if let Some(e) = overrides.epochs {
        spec.epochs = e;
    }
    spec.check(&format!("{} with the command line's options", spec.name))?;
    if let Some(labels) = &overrides.labels {
        for l in labels {
            if !spec.runs.iter().any(|r| &r.label == l) {
                let known: Vec<&str> = spec.runs.iter().map(|r| r.label.as_str()).collect();
                bail!(
                    "no run labelled '{l}' in {}; labels: {}",
                    spec.name,
                    known.join(", ")
                );
            }
        }
        spec.runs.retain(|r| labels.contains(&r.label));
    }
    spec.profile = overrides.profile.or(spec.profile);
    let profile = spec.profile.unwrap_or_default();
    if let Some(model) = profile.model() {
        spec.model = model;
    }
    if let (None, Some(epochs)) = (overrides.epochs, profile.epochs()) {
        spec.epochs = epochs;
    }
    if let Some(attribute) = profile.attribute(spec.dataset) {
        spec.attributes = vec![attribute.to_owned()];
    }
    Ok(spec)
}

/// Shell-quotes one argument.
fn quote(arg: &str) -> String {
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The command line of one run, with the path of this executable.
pub fn command_line(run: &PlannedRun, out: &Path) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("locating the multifair executable")?;
    let mut parts = vec![quote(&exe.display().to_string())];
    parts.extend(run.args(out).iter().map(|a| quote(a)));
    Ok(parts.join(" "))
}

/// Writes `out/sweep.json` and returns the runs still to do.
pub fn write_plan(plan: &Plan, out: &Path) -> anyhow::Result<Vec<PlannedRun>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    multifair_engine::run_dir::write_json(&plan_path(out), plan)?;
    Ok(plan
        .runs
        .iter()
        .filter(|r| !r.finished(out))
        .cloned()
        .collect())
}

/// Plans `spec` over `data_dir` into `out`, then trains locally with `jobs` processes what is
/// not finished yet. Returns the plan.
pub fn sweep_local(
    spec: &Spec,
    data_dir: &Path,
    overrides: &Overrides,
    out: &Path,
    jobs: usize,
) -> anyhow::Result<Plan> {
    let plan = plan(spec, data_dir, overrides)?;
    let todo = write_plan(&plan, out)?;
    eprintln!(
        "{}: {} runs, {} to do",
        spec.name,
        plan.runs.len(),
        todo.len()
    );
    run_local(&todo, out, jobs)?;
    Ok(plan)
}

/// How a run of a local sweep ended.
enum Outcome {
    Trained,
    /// Another process holds the run's lock (who, when known).
    Locked(Option<String>),
    Failed,
}

/// One run of a local sweep in a child process, unless another process holds it or has
/// finished it meanwhile.
fn run_one(exe: &Path, run: &PlannedRun, out: &Path) -> anyhow::Result<Outcome> {
    let folder = out.join(&run.folder);
    if let Some(holder) = RunLock::held(&folder) {
        return Ok(Outcome::Locked(Some(holder)));
    }
    if run.finished(out) {
        return Ok(Outcome::Trained);
    }
    std::fs::create_dir_all(&folder)?;
    // Appended, never truncated: another process may be writing to it.
    let log =
        (std::fs::OpenOptions::new().create(true).append(true)).open(RunDir::new(&folder).log())?;
    let status = (Command::new(exe).args(run.args(out)))
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    Ok(match status.code() {
        Some(0) => Outcome::Trained,
        Some(code) if code == LOCKED_EXIT as i32 => Outcome::Locked(None),
        _ => Outcome::Failed,
    })
}

/// Runs `todo` with `jobs` worker processes; each run's output goes to `FOLDER/train.log`.
/// Every run is attempted; the failures are listed at the end.
pub fn run_local(todo: &[PlannedRun], out: &Path, jobs: usize) -> anyhow::Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("locating the multifair executable")?;
    // A bar on a terminal, a plain line per finished run otherwise.
    let terminal = std::io::stderr().is_terminal();
    let bar = if !terminal {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(todo.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("runs {bar:30} {pos}/{len} {elapsed}<{eta} {msg}")
                .expect("template"),
        );
        bar
    };
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let failures = Arc::new(Mutex::new(Vec::new()));
    let held = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(todo.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(run) = todo.get(i) else { break };
                    let folder = out.join(&run.folder);
                    let name = format!(
                        "{} / {} / seed {}",
                        run.label, run.attribute, run.seed_index
                    );
                    let result = run_one(&exe, run, out);
                    match result {
                        Ok(Outcome::Trained) => {}
                        Ok(Outcome::Locked(holder)) => {
                            let by = holder.map(|h| format!(" ({h})")).unwrap_or_default();
                            eprintln!("{name}: another process is training it{by}; waiting for it");
                            held.lock().unwrap().push(run);
                        }
                        Ok(Outcome::Failed) => failures.lock().unwrap().push(format!(
                            "{name}: see {}",
                            RunDir::new(&folder).log().display()
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("{name}: {e}")),
                    }
                    bar.set_message(run.label.clone());
                    bar.inc(1);
                    let done = finished.fetch_add(1, Ordering::SeqCst) + 1;
                    if !terminal {
                        eprintln!(
                            "run {done}/{}: {} / {} / seed {}",
                            todo.len(),
                            run.label,
                            run.attribute,
                            run.seed_index
                        );
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut failures = failures.lock().unwrap();
    failures.extend(wait_for(held.into_inner().unwrap(), &exe, out));
    if !failures.is_empty() {
        bail!(
            "{} of {} runs failed:\n  {}",
            failures.len(),
            todo.len(),
            failures.join("\n  ")
        );
    }
    Ok(())
}

/// Waits for the runs other processes hold, so that what follows (a table, a tuning choice)
/// never reads a run still training; a run whose holder ended without finishing it is trained
/// here. Returns the failures.
fn wait_for(mut held: Vec<&PlannedRun>, exe: &Path, out: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    while !held.is_empty() {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut still = Vec::new();
        for run in held {
            if run.finished(out) {
                continue;
            }
            let name = format!(
                "{} / {} / seed {}",
                run.label, run.attribute, run.seed_index
            );
            match run_one(exe, run, out) {
                Ok(Outcome::Trained) => {}
                Ok(Outcome::Locked(_)) => still.push(run),
                Ok(Outcome::Failed) => failures.push(format!(
                    "{name}: see {}",
                    RunDir::new(out.join(&run.folder)).log().display()
                )),
                Err(e) => failures.push(format!("{name}: {e}")),
            }
        }
        held = still;
    }
    failures
}

/// How a sweep's runs are carried out: here with `jobs` processes, or emitted (as shell
/// commands or Slurm arrays asking `slurm`'s resources).
#[derive(Debug, Clone)]
pub struct Execution {
    pub emit: Emit,
    pub jobs: usize,
    pub slurm: SlurmOptions,
}

/// What a Slurm array asks of the cluster (`sweep`/`tune --emit slurm`).
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmOptions {
    /// GPUs per task (default: 1 when the runs' device is libtorch-cuda, else none).
    #[arg(long)]
    pub gpus_per_task: Option<usize>,
    /// CPUs per task (also each run's OMP_NUM_THREADS).
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: usize,
    /// Memory per task, as sbatch reads it (e.g. 16G).
    #[arg(long, default_value = "16G")]
    pub mem: String,
    /// Time limit per task, as sbatch reads it (e.g. 24:00:00).
    #[arg(long, default_value = "24:00:00")]
    pub time: String,
    #[arg(long)]
    pub partition: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
    /// At most this many tasks running at once (default: as many as the cluster gives).
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Tasks per array at most (the cluster's MaxArraySize minus 1; Slurm's default 1001
    /// allows 1000): a larger sweep is written as several arrays.
    #[arg(long, default_value_t = 1000)]
    pub max_array: usize,
}

impl Default for SlurmOptions {
    fn default() -> Self {
        SlurmOptions {
            gpus_per_task: None,
            cpus_per_task: 2,
            mem: "16G".into(),
            time: "24:00:00".into(),
            partition: None,
            account: None,
            max_running: None,
            max_array: 1000,
        }
    }
}

/// A Slurm array script for `commands` (absolute and quoted), task i running command i: the
/// commands live in the script, which sbatch copies at submission, so writing the sweep again
/// cannot change a queued array; a task without a command fails. Each attempt logs to its
/// own file under `logs`; a task near its time limit requeues itself and resumes from its
/// last checkpoint, as one preempted does (`--requeue`).
pub fn slurm_script(
    name: &str,
    commands: &[String],
    logs: &Path,
    gpus: usize,
    o: &SlurmOptions,
) -> String {
    let logs_text = logs.display().to_string();
    let mut directives = vec![
        format!("--job-name=multifair-{name}"),
        format!(
            "--array=0-{}{}",
            commands.len().saturating_sub(1),
            o.max_running.map(|n| format!("%{n}")).unwrap_or_default()
        ),
        format!(
            "--output={}",
            quote(&format!("{logs_text}/slurm-%A_%a.out"))
        ),
        "--open-mode=append".into(),
        format!("--cpus-per-task={}", o.cpus_per_task),
        format!("--mem={}", o.mem),
        format!("--time={}", o.time),
        "--requeue".into(),
        "--signal=B:USR1@300".into(),
    ];
    if gpus > 0 {
        directives.push(format!("--gres=gpu:{gpus}"));
    }
    for (key, value) in [("partition", &o.partition), ("account", &o.account)] {
        if let Some(v) = value {
            directives.push(format!("--{key}={v}"));
        }
    }
    let mut text = String::from("#!/bin/bash\n");
    for d in &directives {
        text += &format!("#SBATCH {d}\n");
    }
    text += "set -uo pipefail\nexport OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"\n";
    // libtorch's libraries as the emitting shell found them (`source scripts/libtorch-env.sh`).
    if let Some(library) = std::env::var("LD_LIBRARY_PATH")
        .ok()
        .filter(|l| !l.is_empty())
    {
        text += &format!(
            "export LD_LIBRARY_PATH={}\"${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}\"\n",
            quote(&library)
        );
    }
    text += &format!(
        "logs={}\n\
         mkdir -p \"$logs\"\n\
         exec >>\"$logs/task-${{SLURM_ARRAY_TASK_ID}}.attempt-${{SLURM_RESTART_COUNT:-0}}.log\" 2>&1\n\
         # Near the time limit: requeue this task, which resumes from its last checkpoint.\n\
         trap 'echo \"time limit near: requeueing\"; scontrol requeue \"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"; exit 0' USR1\n\
         case \"$SLURM_ARRAY_TASK_ID\" in\n",
        quote(&logs_text),
    );
    for (i, c) in commands.iter().enumerate() {
        text += &format!("    {i}) set -- {c} ;;\n");
    }
    text += "    *) echo \"no command for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 1 ;;\n\
             esac\n\
             [ -x \"$1\" ] || { echo \"$1 is not an executable multifair: build it again or emit the sweep again\" >&2; exit 1; }\n\
             \"$@\" &\n\
             wait $!\n";
    text
}

/// Where a sweep's runs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Run here with `--jobs` worker processes.
    Local,
    /// Print one command per run.
    Shell,
    /// Write a Slurm array job.
    Slurm,
}

/// Emits the runs still to do: `shell` prints one command per line; `slurm` writes
/// `OUT/slurm/ID/sweep-K.sbatch` (one array per `max_array` runs, paths absolute) and prints
/// the `sbatch` lines; `local` runs them and prints nothing.
pub fn emit(
    kind: Emit,
    todo: &[PlannedRun],
    out: &Path,
    name: &str,
    jobs: usize,
    slurm: &SlurmOptions,
) -> anyhow::Result<String> {
    match kind {
        Emit::Local => run_local(todo, out, jobs).map(|()| String::new()),
        Emit::Shell => {
            let lines =
                (todo.iter().map(|r| command_line(r, out))).collect::<anyhow::Result<Vec<_>>>()?;
            Ok(lines.iter().map(|l| format!("{l}\n")).collect())
        }
        Emit::Slurm if todo.is_empty() => Ok("0 runs to do: no script written\n".into()),
        Emit::Slurm => emit_slurm(todo, out, name, slurm),
    }
}

/// The Slurm arrays of the runs to do, in a folder of their own per emission.
fn emit_slurm(
    todo: &[PlannedRun],
    out: &Path,
    name: &str,
    o: &SlurmOptions,
) -> anyhow::Result<String> {
    anyhow::ensure!(o.max_array >= 1, "--max-array must be at least 1");
    let out = std::path::absolute(out).with_context(|| format!("resolving {}", out.display()))?;
    let lines = (todo.iter())
        .map(|r| command_line(&r.absolute()?, &out))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cuda = todo
        .iter()
        .any(|r| matches!(r.config.device, DeviceSpec::LibtorchCuda(_)));
    let gpus = o.gpus_per_task.unwrap_or(cuda as usize);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let folder = out.join("slurm").join(format!("{stamp}"));
    // Slurm opens the output file before the script runs: its folder must exist.
    std::fs::create_dir_all(folder.join("logs"))
        .with_context(|| format!("creating {}", folder.display()))?;
    let mut text = format!(
        "{} runs to do in {} array(s):\n",
        lines.len(),
        lines.len().div_ceil(o.max_array)
    );
    for (k, chunk) in lines.chunks(o.max_array).enumerate() {
        let script = folder.join(format!("sweep-{k}.sbatch"));
        let body = slurm_script(name, chunk, &folder.join("logs"), gpus, o);
        multifair_engine::durable::write(&script, body.as_bytes())?;
        text += &format!("sbatch {}\n", quote(&script.display().to_string()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_spec_field_is_refused_with_the_valid_ones() {
        let text = "name = 'x'\ndataset = 'fairvision'\nattributes = ['race']\nseeds = 1\n\
                    epochs = 1\nseedz = 3\n[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n";
        let err = format!("{:#}", Spec::parse(text, "x.toml").unwrap_err());
        assert!(
            err.contains("unknown field `seedz`, expected one of `name`"),
            "{err}"
        );
        let text = text
            .replace("seedz = 3\n", "")
            .replace("'fairvision'", "'fairvison'");
        let err = format!("{:#}", Spec::parse(&text, "x.toml").unwrap_err());
        assert!(
            err.contains("unknown variant `fairvison`, expected one of `fairvision`"),
            "{err}"
        );
    }
}
