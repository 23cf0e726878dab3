//! `multifair doctor`: the checks to run before a long job, printed as a checklist — the
//! dataset's splits and their sizes, a first and a random sample of each split decoded, the
//! groups of each attribute (and those with one class, whose AUC is undefined), the
//! pretrained folders imported as training would import them, the device's forward and
//! backward pass, a timed training step with the memory it took, and the free disk for the
//! run folders. Every failure names the folder or file and the fix; nothing panics on a
//! broken folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind, Split, SplitIndex};
use multifair_engine::config::{Request, TrainConfig};
use multifair_engine::device::DeviceSpec;
use multifair_engine::profile::Profile;
use multifair_engine::setup::Run;
use multifair_engine::timing::{Precision, StepTiming, time_steps};
use multifair_engine::train::RunOptions;
use multifair_models::presets::ModelSize;

/// What to check.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    pub dataset: DatasetKind,
    pub data_dir: PathBuf,
    pub weights_dir: Option<PathBuf>,
    pub device: DeviceSpec,
    pub profile: Profile,
    pub method: String,
    /// The runs the disk must hold (a spec's count; 1 for one run).
    pub runs: usize,
    /// Where the run folders will go.
    pub out: PathBuf,
    /// Time a training step (it takes seconds on the CPU at the paper size).
    pub step: bool,
}

/// The checklist so far.
#[derive(Default)]
struct Checklist {
    failed: usize,
}

impl Checklist {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("[ok]   {what}: {detail}");
    }

    fn warn(&mut self, what: &str, detail: impl std::fmt::Display) {
        println!("[warn] {what}: {detail}");
    }

    fn fail(&mut self, what: &str, detail: impl std::fmt::Display) {
        self.failed += 1;
        println!("[FAIL] {what}: {detail}");
    }
}

/// Runs every check and prints the checklist; an error when any check failed.
pub fn doctor(o: &DoctorOptions) -> anyhow::Result<()> {
    let mut list = Checklist::default();
    let index = match DatasetIndex::open(o.dataset, &o.data_dir, BadFilePolicy::Fail) {
        Ok(index) => index,
        Err(e) => {
            list.fail(
                "dataset",
                format!("{e} (see datasets/README.md for the layout)"),
            );
            return finish(&list);
        }
    };
    let splits = check_splits(&index, o, &mut list);
    let run = match run_for(o) {
        Ok(run) => run,
        Err(e) => {
            list.fail("settings", format!("{e:#}"));
            return finish(&list);
        }
    };
    check_samples(&run, &splits, &mut list);
    check_groups(&index, &mut list);
    check_weights(&run, &mut list);
    check_device(o, &mut list);
    if o.step {
        check_step(o, &run, &mut list);
    }
    check_disk(o, &run, &mut list);
    finish(&list)
}

fn finish(list: &Checklist) -> anyhow::Result<()> {
    match list.failed {
        0 => {
            println!("all checks passed");
            Ok(())
        }
        n => anyhow::bail!("{n} check(s) failed: see the [FAIL] lines above"),
    }
}

/// The run this check prepares for: the profile's settings, the method, the weights.
fn run_for(o: &DoctorOptions) -> anyhow::Result<Run> {
    let mut request = Request::new(o.dataset, &o.data_dir, &o.method);
    (request.device, request.profile) = (o.device, o.profile);
    request.weights_dir = o.weights_dir.clone();
    let config = TrainConfig::resolve(&request)?;
    let mut method =
        multifair_core::create(&config.method, &config.hparams).map_err(anyhow::Error::msg)?;
    Run::new(config, method.as_mut())
}

/// Each split found, with its size, positives and folder; a missing validation split of a
/// dataset that ships one, an empty split or one class are failures.
fn check_splits(index: &DatasetIndex, o: &DoctorOptions, list: &mut Checklist) -> Vec<SplitIndex> {
    let mut found = Vec::new();
    for split in Split::ALL {
        let what = format!("split {}", split.name());
        let Some(s) = index.split(split) else {
            let carved = o.dataset == DatasetKind::HarvardGf && split == Split::Val;
            match carved {
                true => list.ok(&what, "none; training validates on every 8th training sample, as Harvard-GF's release has no validation folder"),
                false => list.fail(&what, format!(
                    "missing in {} (expected a folder named {}); the release has one",
                    o.data_dir.display(),
                    o.dataset.split_folders(split).join(" or ")
                )),
            }
            continue;
        };
        let positives = s.samples.iter().filter(|r| r.label == 1).count();
        let classes: std::collections::BTreeSet<u8> = s.samples.iter().map(|r| r.label).collect();
        let detail = format!(
            "{} samples, {positives} positive, {} skipped, in {}",
            s.samples.len(),
            s.skipped.len(),
            s.folder.display()
        );
        match (s.samples.is_empty(), classes.len() < 2) {
            (true, _) => list.fail(&what, format!("no sample {detail}")),
            (false, true) => list.fail(
                &what,
                format!("{detail}: one class only, so its AUC is undefined"),
            ),
            _ => list.ok(&what, detail),
        }
        found.push(s.clone());
    }
    found
}

/// The first and a random sample of each split, decoded and preprocessed as training would.
fn check_samples(run: &Run, splits: &[SplitIndex], list: &mut Checklist) {
    for split in splits.iter().filter(|s| !s.samples.is_empty()) {
        let what = format!("decode {}", split.split.name());
        let n = split.samples.len();
        let random = (multifair_data::splitmix64(n as u64) % n as u64) as usize;
        let mut probe = split.clone();
        probe.samples = vec![split.samples[0].clone(), split.samples[random].clone()];
        let read = run.loader(&probe).and_then(|loader| {
            (loader.epoch(0)).try_for_each(|b| b.map(|_| ()).map_err(anyhow::Error::from))
        });
        match read {
            Ok(()) => list.ok(&what, format!("{} and {}", probe.samples[0].id, probe.samples[1].id)),
            Err(e) => list.fail(&what, format!("{e:#} (fix or remove the file; `--skip-bad` in `data summary` counts such files)")),
        }
    }
}

/// Group sizes of each attribute per split, unknown codes, and groups with one class in a
/// split that is scored (their AUC is undefined and ES-AUC leaves them out).
fn check_groups(index: &DatasetIndex, list: &mut Checklist) {
    for attribute in &index.schema.attributes {
        let mut sizes = Vec::new();
        let mut one_class = Vec::new();
        for split in &index.splits {
            let mut by_group: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
            let a = index.schema.attribute(&attribute.name).expect("listed");
            for s in &split.samples {
                let entry = by_group.entry(s.codes[a]).or_default();
                (entry.0, entry.1) = (entry.0 + 1, entry.1 + (s.label == 1) as usize);
            }
            let shown: Vec<String> = (by_group.iter())
                .map(|(g, (n, _))| match g {
                    -1 => format!("unknown {n}"),
                    g => format!("{g}: {n}"),
                })
                .collect();
            sizes.push(format!("{} [{}]", split.split.name(), shown.join(", ")));
            for (g, (n, p)) in &by_group {
                if *g >= 0 && split.split != Split::Train && (*p == 0 || *p == *n) {
                    one_class.push(format!("{}={g} in {}", attribute.name, split.split.name()));
                }
            }
        }
        let what = format!("groups of {}", attribute.name);
        list.ok(&what, sizes.join("; "));
        if !one_class.is_empty() {
            list.warn(
                &what,
                format!("one class only (AUC undefined): {}", one_class.join(", ")),
            );
        }
    }
}

/// The pretrained folders, imported into the model as training imports them (shapes
/// against the preset, every tensor used).
fn check_weights(run: &Run, list: &mut Checklist) {
    if run.pretrained.is_empty() {
        list.ok(
            "weights",
            "none used (the model starts from random weights)",
        );
        return;
    }
    let model = run.model_config.init(&run.device);
    let quiet = RunOptions {
        quiet: true,
        ..RunOptions::default()
    };
    match run.load_pretrained(model, &quiet) {
        Ok((_, imported)) => {
            let files: Vec<String> = (imported.iter())
                .map(|i| {
                    format!(
                        "{}: {} tensors from {}",
                        i["modality"], i["tensors"], i["file"]
                    )
                })
                .collect();
            list.ok("weights", files.join("; "))
        }
        Err(e) => list.fail("weights", format!("{e:#}")),
    }
}

/// The device's forward and backward pass against the closed form.
fn check_device(o: &DoctorOptions, list: &mut Checklist) {
    let name = o.device.to_string();
    match multifair_engine::device::check(&name) {
        Ok(c) if c.loss_error < 1e-4 && c.grad_error < 1e-4 => list.ok(
            "device",
            format!(
                "{name}: loss error {:.1e}, gradient error {:.1e}",
                c.loss_error, c.grad_error
            ),
        ),
        Ok(c) => list.fail(
            "device",
            format!(
                "{name}: errors {:.1e} / {:.1e} against the closed form",
                c.loss_error, c.grad_error
            ),
        ),
        Err(e) => list.fail("device", format!("{name}: {e:#}")),
    }
}

/// A training step at batch 2 of the run's model, and what an epoch would take from it.
fn check_step(o: &DoctorOptions, run: &Run, list: &mut Checklist) {
    let engine = &run.config.engine;
    let timing = StepTiming {
        model: run.config.model,
        method: if o.method == "ume" {
            "unimodal".into()
        } else {
            o.method.clone()
        },
        batch: 2,
        image_size: engine.image_size,
        slices: engine.slices,
        steps: 1,
        device: o.device,
        seed: 0,
        dtype: Precision::F32,
    };
    match time_steps(&timing) {
        Ok(r) => {
            let per_sample = r.seconds_per_step / 2.0;
            let samples = run.train.samples().len() as f64;
            let memory = r
                .peak_rss_mib
                .map_or("unknown".into(), |m| format!("{m:.0} MiB"));
            list.ok("step", format!(
                "{:.2} s at batch 2 (host peak {memory}); an epoch of {samples} samples about {:.0} s at that rate (batch {} differs; on a GPU see docs/gpu.md)",
                r.seconds_per_step,
                per_sample * samples,
                engine.batch_size
            ));
        }
        Err(e) => list.fail("step", format!("{e:#}")),
    }
    if run.config.model == ModelSize::Paper && o.device == DeviceSpec::Flex {
        list.warn(
            "step",
            "the paper model on flex is slow: use --device libtorch or libtorch-cuda:N",
        );
    }
}

/// Free space where the run folders go against what they take: per run the model, two
/// checkpoints of the model and both optimizers' moments, about 7 times the parameters' bytes.
fn check_disk(o: &DoctorOptions, run: &Run, list: &mut Checklist) {
    let params = run
        .model_config
        .init(&run.device.clone().inner())
        .num_params() as u64;
    let need = 7 * 4 * params * o.runs as u64;
    let existing = (o.out.ancestors())
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    match free_bytes(existing) {
        Some(free) if free >= need => list.ok("disk", format!(
            "{:.1} GiB free in {}, about {:.1} GiB needed for {} run(s)",
            gib(free), existing.display(), gib(need), o.runs
        )),
        Some(free) => list.fail("disk", format!(
            "{:.1} GiB free in {}, about {:.1} GiB needed for {} run(s): free space or choose another --out",
            gib(free), existing.display(), gib(need), o.runs
        )),
        None => list.warn("disk", format!("could not read the free space of {}", existing.display())),
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// Free bytes of the filesystem holding `path`, for an unprivileged user.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `stat` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}
