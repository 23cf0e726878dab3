//! Command-line interface. Results go to stdout; progress and errors to stderr.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use multifair_data::cohort::{self, CohortConfig};
use multifair_data::synthetic::{self, SyntheticConfig};
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind};
use multifair_metrics::BootstrapConfig;
use multifair_models::presets::ModelSize;

use crate::sweep::Emit;
use crate::table::Format;
use multifair_engine::config::{Request, TrainConfig};
use multifair_engine::device::{self, DeviceSpec};
use multifair_engine::profile::Profile;
use multifair_engine::report::{PredictionTable, report_json};
use multifair_engine::train::{RunOptions, train};

#[derive(Parser)]
#[command(
    name = "multifair",
    version,
    about = "Balanced, fair multimodal medical classification"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fairness report of a predictions CSV (columns prob, label, one integer column per attribute).
    Evaluate(EvaluateArgs),
    /// Generates the synthetic FairVision-format benchmark, trains fusion ERM, the SLO and OCT
    /// models alone and MultiFair, and prints test AUC, ES-AUC and group AUCs against the
    /// oracle, and what the runs show.
    Demo(DemoArgs),
    /// Trains each method with seeds 0..N (the synthetic benchmark unless --data-dir), then
    /// prints mean ± std over seeds and paired tests of every method against the first.
    /// Finished runs are read, not retrained.
    Compare(CompareArgs),
    /// Expands a spec (experiments/*.toml) into methods x attributes x seeds; runs whose
    /// folder already holds test.json are skipped, interrupted ones resume.
    Sweep(SweepArgs),
    /// Equal-budget tuning: per row, N configurations drawn from the declared ranges, each
    /// trained on the first seed and scored on validation; then the spec's seeds on each row's
    /// choice. Writes OUT/tuned.json and OUT/tuned.md (the table and the chosen values).
    Tune(TuneArgs),
    /// Runs a built-in spec (table1, table2, ablation, demo, cohort, modulation) and writes its tables and figures.
    Reproduce(ReproduceArgs),
    /// Methods-as-rows tables of a sweep's results: mean ± std over seeds, paired tests.
    Table(TableArgs),
    /// One line per run of a sweep: status (finished, running, interrupted, failed with its
    /// error, pending), epochs done, selected epoch, validation and test AUC, ES-AUC, wall time.
    Runs(RunsArgs),
    /// Sends a sweep's results to a tracking tool.
    Export(ExportArgs),
    /// Figures of a sweep's results (SVG and PNG): ROC per group, group AUC bars, training
    /// dynamics, modality x group heat map.
    Plot(PlotArgs),
    /// Writes the synthetic benchmark in a real dataset's layout, with `meta.json`; `manifest`
    /// writes the example cohort (photo, labs, vitals, note) as a manifest.
    Generate(GenerateArgs),
    /// Trains one method on one dataset and writes run.json, metrics.jsonl, test.json,
    /// predictions.csv, model.safetensors and a resumable checkpoint to --out.
    #[command(after_long_help = multifair_engine::config::keys_help())]
    Train(TrainArgs),
    /// Dataset tools.
    Data(DataArgs),
    /// Times whole training steps (forward, backward, clipping, optimizers) of the two-modality
    /// FairVision model on random inputs and prints JSON: seconds per step, peak host memory.
    TimeStep(TimeStepArgs),
    /// Runs a small forward and backward pass on a device and compares it with the closed form.
    CheckDevice(CheckDeviceArgs),
    /// Checks before a long job, as a checklist: the splits and their sizes, a first and a
    /// random sample of each split decoded, the groups of each attribute, the pretrained
    /// folders imported, the device, a timed training step, the free disk. Exits non-zero,
    /// naming the folder or file, when a check fails.
    Doctor(DoctorArgs),
}

#[derive(Subcommand)]
enum ExportTarget {
    /// An MLflow tracking server, over its REST API: one experiment per results folder, a
    /// parent run per row and attribute, a child run per seed. Exporting again adds only runs
    /// finished since.
    Mlflow {
        results: PathBuf,
        /// e.g. http://127.0.0.1:5000
        #[arg(long)]
        tracking_uri: String,
        /// Default: the spec's name.
        #[arg(long)]
        experiment: Option<String>,
        /// A folder of figures (from `multifair plot`) to attach to the parent runs.
        #[arg(long)]
        figures: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Per split: samples, positives, skipped files, and group counts per attribute.
    Summary {
        /// fairvision, fairvlmed, harvard-gf or manifest.
        #[arg(long, value_enum)]
        dataset: DatasetKind,
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON: {SPLIT: {"n", "positives", "skipped", "attributes": {NAME: {CODE: count}}}}.
        #[arg(long)]
        json: bool,
        /// Skip unusable files and count them instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
}

/// Options shared by `sweep` and `reproduce`.
#[derive(clap::Args, Debug, Clone)]
pub struct SpecOptions {
    /// The real dataset (else the dataset's environment variable, else the synthetic benchmark).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print every planned run's resolved configuration as JSON and train nothing (the
    /// synthetic data are still written if they are needed and missing).
    #[arg(long)]
    dry_run: bool,
    /// Seeds per method and attribute (default: the spec's).
    #[arg(long)]
    seeds: Option<usize>,
    #[arg(long)]
    epochs: Option<usize>,
    /// Only these row labels, comma-separated.
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// flex, libtorch or libtorch-cuda:N for every run.
    #[arg(long)]
    device: Option<DeviceSpec>,
    /// Worker processes for local runs.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Results folder (default results/SPEC_NAME).
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu or paper (the original code's protocol) for every run; default: the spec's, else
    /// cpu (`reproduce`: paper on real data).
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// For the paper profile: a folder holding vit-base-patch16-224-in21k/ (and
    /// bert-base-uncased/ for fairvlmed), else MULTIFAIR_WEIGHTS_DIR.
    #[arg(long)]
    weights_dir: Option<PathBuf>,
}

impl SpecOptions {
    fn overrides(&self) -> crate::sweep::Overrides {
        crate::sweep::Overrides {
            seeds: self.seeds,
            epochs: self.epochs,
            labels: self.methods.clone(),
            device: self.device,
            profile: self.profile,
            weights_dir: self.weights_dir.clone(),
        }
    }

    fn out(&self, spec: &crate::sweep::Spec) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("results").join(&spec.name))
    }
}

fn parse_set(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .ok_or_else(|| format!("'{pair}' is not key=value"))
}

/// Bootstrap resamples `evaluate` accepts (a larger number would run for hours).
const MAX_BOOTSTRAP: usize = 100_000;

/// Set (to anything) to parse the command line and stop: what the documentation's test does
/// to every `multifair ...` command the docs show.
const PARSE_ONLY: &str = "MULTIFAIR_PARSE_ONLY";

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if std::env::var_os(PARSE_ONLY).is_some() {
        return Ok(());
    }
    match cli.command {
        Command::Evaluate(args) => args.run(),
        Command::Demo(args) => args.run(),
        Command::Compare(args) => args.run(),
        Command::Sweep(args) => args.run(),
        Command::Tune(args) => args.run(),
        Command::Reproduce(args) => args.run(),
        Command::Table(args) => args.run(),
        Command::Runs(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Plot(args) => args.run(),
        Command::Generate(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Data(args) => args.run(),
        Command::TimeStep(args) => args.run(),
        Command::CheckDevice(args) => args.run(),
        Command::Doctor(args) => args.run(),
    }
}

/// A spec file, or the name of a built-in one.
fn load_spec(spec: &str) -> anyhow::Result<crate::sweep::Spec> {
    match std::path::Path::new(spec).is_file() {
        true => crate::sweep::Spec::load(std::path::Path::new(spec)),
        false => crate::specs::builtin(spec),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `generate` writes a whole dataset: into a missing or empty folder, or over one it wrote
/// before when asked (`--replace` removes it first), never over anything else.
fn clear_for_generate(out: &Path, replace: bool) -> anyhow::Result<()> {
    let Ok(mut entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    if entries.next().is_none() {
        return Ok(());
    }
    let ours = out.join("meta.json").is_file() || out.join("manifest.toml").is_file();
    anyhow::ensure!(
        replace && ours,
        "{} is not empty: {}",
        out.display(),
        match ours {
            true =>
                "pass --replace to remove it and write the dataset anew, or choose an empty folder",
            false =>
                "it holds no dataset generate wrote (no meta.json or manifest.toml); choose an empty folder",
        }
    );
    std::fs::remove_dir_all(out).map_err(|e| anyhow::anyhow!("removing {}: {e}", out.display()))
}

#[derive(clap::Args)]
struct EvaluateArgs {
    #[arg(long)]
    predictions: PathBuf,
    /// Decision threshold on prob for TPR, FPR and selection rate.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Bootstrap resamples for confidence intervals (0: none).
    #[arg(long, default_value_t = 0)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Data and runs go here.
    #[arg(long, default_value = "results/demo")]
    out: PathBuf,
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Training samples (validation a quarter, test half of it).
    #[arg(long, default_value_t = 1200)]
    samples: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct CompareArgs {
    /// Comma-separated; the first is the baseline.
    #[arg(long, default_value = "erm,multifair", value_delimiter = ',')]
    methods: Vec<String>,
    #[arg(long, default_value_t = 5)]
    seeds: usize,
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    #[arg(long, default_value = "race")]
    attribute: String,
    /// A dataset in a real layout (default: the synthetic benchmark under OUT/data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The dataset kind of --data-dir.
    #[arg(long, value_enum, default_value = "fairvision")]
    dataset: DatasetKind,
    /// Training samples of the generated benchmark.
    #[arg(long, default_value_t = 1200)]
    samples: usize,
    /// key=value for every method, METHOD:key=value for one.
    #[arg(long = "set", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    #[arg(long, default_value = "results/compare")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct SweepArgs {
    /// A spec file, or the name of a built-in one (table1, table2, ablation, demo, cohort, modulation).
    spec: String,
    /// local: run here with --jobs processes; shell: print one command per run;
    /// slurm: write Slurm array scripts under OUT/slurm/ (the commands inside them).
    #[arg(long, value_enum, default_value = "local")]
    emit: Emit,
    #[command(flatten)]
    sweep: SpecOptions,
    #[command(flatten, next_help_heading = "Slurm (--emit slurm)")]
    slurm: crate::sweep::SlurmOptions,
}

#[derive(clap::Args)]
struct TuneArgs {
    /// A spec file, or the name of a built-in one.
    spec: String,
    #[arg(long)]
    trials: usize,
    /// local: run here; shell or slurm: emit the phase not done yet, then run tune again.
    #[arg(long, value_enum, default_value = "local")]
    emit: Emit,
    #[command(flatten)]
    sweep: SpecOptions,
    #[command(flatten, next_help_heading = "Slurm (--emit slurm)")]
    slurm: crate::sweep::SlurmOptions,
}

#[derive(clap::Args)]
struct ReproduceArgs {
    name: String,
    #[command(flatten)]
    sweep: SpecOptions,
    /// Where the figures go (default figures/NAME).
    #[arg(long)]
    figures: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TableArgs {
    results: PathBuf,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write here instead of printing.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunsArgs {
    results: PathBuf,
    /// Keep runs whose label, method, attribute, seed or status equals the value.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Highest first.
    #[arg(long, value_enum)]
    sort: Option<crate::runs::SortKey>,
    #[arg(long, value_enum, default_value = "md")]
    format: crate::runs::RunsFormat,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(subcommand)]
    target: ExportTarget,
}

#[derive(clap::Args)]
struct PlotArgs {
    results: PathBuf,
    /// Default: figures/ and the results folder's name.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// fairvision, fairvlmed, harvard-gf or manifest.
    #[arg(long, value_enum)]
    kind: DatasetKind,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    n_train: Option<usize>,
    #[arg(long)]
    n_val: Option<usize>,
    #[arg(long)]
    n_test: Option<usize>,
    /// Height and width of images and B-scans.
    #[arg(long)]
    size: Option<usize>,
    /// B-scans per OCT volume.
    #[arg(long)]
    depth: Option<usize>,
    /// Replace OUT when it holds a dataset generate wrote (its meta.json or manifest.toml):
    /// the folder is removed whole first.
    #[arg(long)]
    replace: bool,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// fairvision, fairvlmed, harvard-gf or manifest (see datasets/manifest.md).
    #[arg(long, value_enum)]
    dataset: DatasetKind,
    /// The dataset's folder (for a manifest: the folder of manifest.toml, or the file).
    #[arg(long)]
    data_dir: PathBuf,
    #[arg(long, default_value = "erm")]
    method: String,
    /// The attribute model selection and the methods' groups read (every attribute is
    /// evaluated); default: the profile's (paper: gender, as the original), a manifest's
    /// first attribute, else race.
    #[arg(long)]
    attribute: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Default: the profile's (paper: 10), else 10.
    #[arg(long)]
    epochs: Option<usize>,
    /// tiny or paper (default: the profile's; cpu: tiny).
    #[arg(long, value_enum)]
    model: Option<ModelSize>,
    /// flex, libtorch or libtorch-cuda:N.
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    /// cpu (small, the default) or paper (the original code's protocol; see
    /// docs/fidelity.md): the settings layered under the method's, its preset and --set.
    #[arg(long, value_enum, default_value = "cpu")]
    profile: Profile,
    /// For --profile paper: a folder holding vit-base-patch16-224-in21k/ (and
    /// bert-base-uncased/ for fairvlmed), else MULTIFAIR_WEIGHTS_DIR.
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// Overrides, e.g. --set lr=1e-4 --set unimodal_modality=oct.
    #[arg(long = "set", value_parser = parse_set)]
    sets: Vec<(String, String)>,
    #[arg(long)]
    out: PathBuf,
    /// Stop after this many epochs, leaving a checkpoint (rerun to resume).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// Print the resolved configuration (run.json's `config`) as JSON and train nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Args)]
struct TimeStepArgs {
    #[arg(long, value_enum, default_value = "paper")]
    model: ModelSize,
    #[arg(long, default_value = "erm")]
    method: String,
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Default: the model size's (paper: 224).
    #[arg(long)]
    image_size: Option<usize>,
    /// Default: the model size's (paper: 10).
    #[arg(long)]
    slices: Option<usize>,
    /// Timed steps after one warm-up step.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The whole model's float type (burn has no autocast: bf16 and f16 are half-precision
    /// models, not mixed precision).
    #[arg(long, value_enum, default_value = "f32")]
    dtype: multifair_engine::timing::Precision,
}

#[derive(clap::Args)]
struct CheckDeviceArgs {
    /// flex, libtorch or libtorch-cuda:N (the libtorch ones need the `tch` feature).
    #[arg(long, default_value = "flex")]
    device: String,
}

impl EvaluateArgs {
    fn run(self) -> anyhow::Result<()> {
        let EvaluateArgs {
            predictions,
            threshold,
            bootstrap,
            seed,
        } = self;
        anyhow::ensure!(
            bootstrap <= MAX_BOOTSTRAP,
            "--bootstrap {bootstrap}: at most {MAX_BOOTSTRAP} resamples (1000 already give intervals to about 0.01)"
        );
        let table = PredictionTable::read(&predictions, threshold)?;
        let config = (bootstrap > 0).then(|| BootstrapConfig::new(bootstrap, seed));
        print_json(&report_json(&table, config.as_ref())?)
    }
}

impl DemoArgs {
    fn run(self) -> anyhow::Result<()> {
        let DemoArgs {
            out,
            epochs,
            samples,
            seed,
        } = self;
        let summary = crate::demo::run(&crate::demo::DemoOptions {
            out,
            epochs,
            samples,
            seed,
        })?;
        println!("{summary}");
        Ok(())
    }
}

impl CompareArgs {
    fn run(self) -> anyhow::Result<()> {
        let CompareArgs {
            methods,
            seeds,
            epochs,
            attribute,
            data_dir,
            dataset,
            samples,
            sets,
            device,
            out,
        } = self;
        let summary = crate::compare::run(&crate::compare::CompareOptions {
            out,
            data_dir,
            dataset,
            methods,
            seeds,
            epochs,
            attribute,
            samples,
            sets,
            device,
        })?;
        println!("{summary}");
        Ok(())
    }
}

impl SweepArgs {
    fn run(self) -> anyhow::Result<()> {
        let SweepArgs {
            spec,
            emit,
            sweep,
            slurm,
        } = self;
        let spec = load_spec(&spec)?;
        let out = sweep.out(&spec);
        let data = crate::specs::resolve_data(&spec, sweep.data_dir.as_deref(), &out)?;
        let overrides = sweep.overrides();
        if sweep.dry_run {
            return print_json(&crate::sweep::plan(&spec, &data, &overrides)?.runs);
        }
        if emit == Emit::Local {
            crate::sweep::sweep_local(&spec, &data, &overrides, &out, sweep.jobs)?;
            return Ok(());
        }
        let plan = crate::sweep::plan(&spec, &data, &overrides)?;
        let todo = crate::sweep::write_plan(&plan, &out)?;
        eprintln!(
            "{}: {} runs, {} to do",
            spec.name,
            plan.runs.len(),
            todo.len()
        );
        print!(
            "{}",
            crate::sweep::emit(emit, &todo, &out, &spec.name, sweep.jobs, &slurm)?
        );
        Ok(())
    }
}

impl TuneArgs {
    fn run(self) -> anyhow::Result<()> {
        let TuneArgs {
            spec,
            trials,
            emit,
            sweep,
            slurm,
        } = self;
        let spec = load_spec(&spec)?;
        let out = sweep.out(&spec);
        let data = crate::specs::resolve_data(&spec, sweep.data_dir.as_deref(), &out)?;
        let overrides = sweep.overrides();
        if sweep.dry_run {
            let trials = crate::tune::trial_spec(&spec, trials)?;
            return print_json(&crate::sweep::plan(&trials, &data, &overrides)?.runs);
        }
        if let Some(text) = crate::tune::tune(
            &spec,
            &data,
            &overrides,
            &out,
            trials,
            &crate::sweep::Execution {
                emit,
                jobs: sweep.jobs,
                slurm,
            },
        )? {
            println!("{text}");
        }
        Ok(())
    }
}

impl ReproduceArgs {
    fn run(self) -> anyhow::Result<()> {
        let ReproduceArgs {
            name,
            sweep,
            figures,
        } = self;
        let spec = crate::specs::builtin(&name)?;
        let out = sweep.out(&spec);
        let mut overrides = sweep.overrides();
        overrides.profile = Some(crate::specs::choose_profile(
            &spec,
            sweep.data_dir.as_deref(),
            sweep.profile,
        ));
        if sweep.dry_run {
            let data = crate::specs::resolve_data(&spec, sweep.data_dir.as_deref(), &out)?;
            return print_json(&crate::sweep::plan(&spec, &data, &overrides)?.runs);
        }
        let figures = figures.unwrap_or_else(|| PathBuf::from("figures").join(&spec.name));
        let table = crate::reproduce::reproduce(
            &spec,
            sweep.data_dir.as_deref(),
            &out,
            &figures,
            &overrides,
            sweep.jobs,
        )?;
        println!("{table}");
        Ok(())
    }
}

impl TableArgs {
    fn run(self) -> anyhow::Result<()> {
        let TableArgs {
            results,
            format,
            out,
        } = self;
        let text = crate::table::render(&crate::table::load(&results)?, format)?;
        match out {
            Some(path) => multifair_engine::durable::write(&path, text.as_bytes())?,
            None => print!("{text}"),
        }
        Ok(())
    }
}

impl RunsArgs {
    fn run(self) -> anyhow::Result<()> {
        let RunsArgs {
            results,
            filters,
            sort,
            format,
        } = self;
        let lines = crate::runs::list(&results, &filters, sort)?;
        print!("{}", crate::runs::render(&lines, format)?);
        Ok(())
    }
}

impl ExportArgs {
    fn run(self) -> anyhow::Result<()> {
        let ExportArgs {
            target:
                ExportTarget::Mlflow {
                    results,
                    tracking_uri,
                    experiment,
                    figures,
                },
        } = self;
        let done = crate::mlflow::export(
            &results,
            &tracking_uri,
            experiment.as_deref(),
            figures.as_deref(),
        )?;
        eprintln!(
            "exported to {tracking_uri}: {} new row run(s), {} new seed run(s), {} already there, {} not finished yet",
            done.parents, done.children, done.already, done.unfinished
        );
        Ok(())
    }
}

impl PlotArgs {
    fn run(self) -> anyhow::Result<()> {
        let PlotArgs { results, out } = self;
        let out = out.unwrap_or_else(|| {
            PathBuf::from("figures").join(results.file_name().unwrap_or_default())
        });
        for path in crate::plot::plot(&results, &out)? {
            println!("{}", path.display());
        }
        Ok(())
    }
}

impl GenerateArgs {
    fn run(self) -> anyhow::Result<()> {
        let GenerateArgs {
            kind,
            out,
            seed,
            n_train,
            n_val,
            n_test,
            size,
            depth,
            replace,
        } = self;
        clear_for_generate(&out, replace)?;
        if kind == DatasetKind::Manifest {
            let mut config = CohortConfig::new(seed);
            config.n_train = n_train.unwrap_or(config.n_train);
            config.n_val = n_val.unwrap_or(config.n_val);
            config.n_test = n_test.unwrap_or(config.n_test);
            config.size = size.unwrap_or(config.size);
            anyhow::ensure!(
                depth.is_none(),
                "--depth: the example cohort has no volumes"
            );
            cohort::generate(&config, &out)
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            eprintln!(
                "wrote the example cohort ({} patients) to {}",
                config.n_train + config.n_val + config.n_test,
                out.display()
            );
            return Ok(());
        }
        let mut config = SyntheticConfig::new(kind, seed);
        config.n_train = n_train.unwrap_or(config.n_train);
        config.n_val = n_val.unwrap_or(config.n_val);
        config.n_test = n_test.unwrap_or(config.n_test);
        config.size = size.unwrap_or(config.size);
        config.depth = depth.unwrap_or(config.depth);
        let meta = synthetic::generate(&config, &out)
            .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
        eprintln!(
            "wrote {} ({} samples) to {}; oracle test AUC {:.3}",
            kind.name(),
            meta.splits.values().map(|s| s.n).sum::<usize>(),
            out.display(),
            meta.oracle_auc.overall.unwrap_or(f64::NAN)
        );
        Ok(())
    }
}

impl TrainArgs {
    fn run(self) -> anyhow::Result<()> {
        let TrainArgs {
            dataset,
            data_dir,
            method,
            attribute,
            seed,
            epochs,
            model,
            device,
            profile,
            weights_dir,
            sets,
            out,
            stop_after,
            dry_run,
        } = self;
        let config = TrainConfig::resolve(&Request {
            dataset,
            data_dir,
            method,
            attribute,
            seed,
            epochs,
            model,
            device,
            profile,
            weights_dir,
            sets,
        })?;
        if dry_run {
            return print_json(&serde_json::json!({ "config": config }));
        }
        train(
            config,
            &out,
            &RunOptions {
                stop_after,
                quiet: false,
            },
        )?;
        Ok(())
    }
}

impl DataArgs {
    fn run(self) -> anyhow::Result<()> {
        let DataArgs {
            command:
                DataCommand::Summary {
                    dataset,
                    data_dir,
                    json,
                    skip_bad,
                },
        } = self;
        let policy = if skip_bad {
            BadFilePolicy::Skip
        } else {
            BadFilePolicy::Fail
        };
        let index = DatasetIndex::open(dataset, &data_dir, policy)?;
        let summary = index.summary();
        if json {
            return print_json(&summary);
        }
        for split in &index.splits {
            let s = &summary[&split.split];
            let prevalence = s.positives as f64 / s.n.max(1) as f64;
            println!(
                "{} ({}): n {}, positives {} ({:.1}%), skipped {}",
                split.split.name(),
                split.folder.display(),
                s.n,
                s.positives,
                100.0 * prevalence,
                s.skipped
            );
            if dataset == DatasetKind::Manifest {
                let counts: Vec<String> = index
                    .schema
                    .classes
                    .iter()
                    .enumerate()
                    .map(|(c, name)| {
                        let n = split.samples.iter().filter(|r| r.label as usize == c);
                        format!("{name}: {}", n.count())
                    })
                    .collect();
                println!("  labels: {}", counts.join(", "));
            }
            for (name, counts) in &s.attributes {
                // A manifest names its groups: "0 (female): 84".
                let names = index
                    .schema
                    .attributes
                    .iter()
                    .find(|a| &a.name == name)
                    .map(|a| a.groups.clone())
                    .unwrap_or_default();
                let groups: Vec<String> = counts
                    .iter()
                    .map(|(c, n)| {
                        let named = c.parse::<usize>().ok().and_then(|i| names.get(i));
                        match named {
                            Some(g) => format!("{c} ({g}): {n}"),
                            None => format!("{c}: {n}"),
                        }
                    })
                    .collect();
                println!("  {name}: {}", groups.join(", "));
            }
            for (path, reason) in &split.skipped {
                println!("  skipped {}: {reason}", path.display());
            }
        }
        Ok(())
    }
}

impl TimeStepArgs {
    fn run(self) -> anyhow::Result<()> {
        let TimeStepArgs {
            model,
            method,
            batch,
            image_size,
            slices,
            steps,
            device,
            seed,
            dtype,
        } = self;
        let (size, depth) = model.inputs();
        let report = multifair_engine::timing::time_steps(&multifair_engine::timing::StepTiming {
            model,
            method,
            batch,
            image_size: image_size.unwrap_or(size),
            slices: slices.unwrap_or(depth),
            steps,
            device,
            seed,
            dtype,
        })?;
        print_json(&report)
    }
}

impl CheckDeviceArgs {
    fn run(self) -> anyhow::Result<()> {
        let CheckDeviceArgs { device } = self;
        let result = device::check(&device)?;
        print_json(&result)?;
        anyhow::ensure!(
            result.loss_error < 1e-4 && result.grad_error < 1e-4,
            "device '{device}' deviates from the closed form: {result:?}"
        );
        Ok(())
    }
}

#[derive(clap::Args)]
struct DoctorArgs {
    /// fairvision, fairvlmed, harvard-gf or manifest.
    #[arg(long, value_enum)]
    dataset: DatasetKind,
    #[arg(long)]
    data_dir: PathBuf,
    /// For --profile paper: the folder of pretrained folders (else MULTIFAIR_WEIGHTS_DIR).
    #[arg(long)]
    weights_dir: Option<PathBuf>,
    /// flex, libtorch or libtorch-cuda:N.
    #[arg(long, default_value = "flex")]
    device: DeviceSpec,
    /// cpu or paper: the settings the checks use (image size, slices, weights).
    #[arg(long, value_enum, default_value = "cpu")]
    profile: Profile,
    /// The method the step is timed with.
    #[arg(long, default_value = "erm")]
    method: String,
    /// A spec (file or built-in name) whose runs the disk must hold.
    #[arg(long)]
    spec: Option<String>,
    /// Where the run folders will go (for the free-disk check).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Skip the timed training step.
    #[arg(long)]
    no_step: bool,
}

impl DoctorArgs {
    fn run(self) -> anyhow::Result<()> {
        let runs = match &self.spec {
            None => 1,
            Some(spec) => {
                let spec = load_spec(spec)?;
                let overrides = crate::sweep::Overrides {
                    profile: Some(self.profile),
                    weights_dir: self.weights_dir.clone(),
                    ..Default::default()
                };
                crate::sweep::plan(&spec, &self.data_dir, &overrides)?
                    .runs
                    .len()
            }
        };
        crate::doctor::doctor(&crate::doctor::DoctorOptions {
            dataset: self.dataset,
            data_dir: self.data_dir,
            weights_dir: self.weights_dir,
            device: self.device,
            profile: self.profile,
            method: self.method,
            runs,
            out: self.out,
            step: !self.no_step,
        })
    }
}
