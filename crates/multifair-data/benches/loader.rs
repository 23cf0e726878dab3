//! Decode + slice sampling + resize of FairVision-format samples at the paper's sizes
//! (200x200x200 OCT and 200x200 SLO in; 10 slices and 224 px out), single thread and through
//! the loader's workers. `benches/reference_loader.py` times the reference's numpy + torch path
//! on the same files; `just bench-loader` prints both and their ratio.

use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use multifair_data::loader::{Loader, LoaderConfig};
use multifair_data::preprocess::{ImageNorm, Resize, prepare_image, prepare_volume, slice_indices};
use multifair_data::synthetic::{SyntheticConfig, generate};
use multifair_data::{BadFilePolicy, DatasetIndex, DatasetKind, Npz, Split};
use rand_chacha::ChaCha8Rng;

const SAMPLES: usize = 24;

/// The benchmark's samples, generated once into `MULTIFAIR_BENCH_DATA` (or a temp folder).
pub fn bench_data() -> PathBuf {
    let dir = std::env::var_os("MULTIFAIR_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("multifair-bench-fairvision"));
    if !dir.join("meta.json").is_file() {
        let mut config = SyntheticConfig::new(DatasetKind::FairVision, 0);
        (
            config.n_train,
            config.n_val,
            config.n_test,
            config.size,
            config.depth,
        ) = (SAMPLES, 1, 1, 200, 200);
        generate(&config, &dir).expect("write benchmark data");
    }
    dir
}

fn bench(c: &mut Criterion) {
    let dir = bench_data();
    let index = DatasetIndex::open(DatasetKind::FairVision, &dir, BadFilePolicy::Fail).unwrap();
    let split = index.split(Split::Train).unwrap();
    let mut group = c.benchmark_group("loader");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(split.samples.len() as u64));
    group.bench_function("single_thread", |b| {
        b.iter(|| {
            for sample in &split.samples {
                let mut npz = Npz::open(&sample.path).unwrap();
                let depth = npz.header("oct_bscans").unwrap().shape[0];
                let kept = npz
                    .read_rows("oct_bscans", &slice_indices(depth, 10))
                    .unwrap();
                let oct = prepare_volume(&kept, 10, 224).unwrap();
                let slo = prepare_image(
                    &npz.read("slo_fundus").unwrap(),
                    224,
                    ImageNorm::ImageNet,
                    Resize::Bilinear,
                    None::<(&_, &mut ChaCha8Rng)>,
                )
                .unwrap();
                std::hint::black_box((oct, slo));
            }
        })
    });
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut config = LoaderConfig::new(8, 224, 10);
    config.workers = workers;
    let loader = Loader::new(&index.schema, split, config, None).unwrap();
    group.bench_function(format!("loader_{workers}_workers"), |b| {
        b.iter(|| {
            for batch in loader.epoch(0) {
                std::hint::black_box(batch.unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
