//! ES-AUC with 1000 within-group bootstrap resamples of 3000 predictions in 3 groups
//! (target: <= 0.5 s on 2 CPU cores).

use criterion::{Criterion, criterion_group, criterion_main};
use multifair_metrics::{BootstrapConfig, Predictions, bootstrap_frame};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn data() -> (Predictions, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let n = 3000;
    let codes: Vec<i64> = (0..n).map(|_| rng.random_range(0..3)).collect();
    let labels: Vec<bool> = (0..n).map(|_| rng.random_bool(0.485)).collect();
    let probs = labels
        .iter()
        .zip(&codes)
        .map(|(&y, &g)| {
            let shift = if y { 0.15 + 0.05 * g as f64 } else { 0.0 };
            (0.4 + shift + 0.3 * (rng.random::<f64>() - 0.5)).clamp(0.0, 1.0)
        })
        .collect();
    (Predictions::new(probs, labels, 0.5).unwrap(), codes)
}

fn bench(c: &mut Criterion) {
    let (predictions, codes) = data();
    let config = BootstrapConfig::new(1000, 0);
    let mut group = c.benchmark_group("bootstrap");
    group.sample_size(10);
    group.bench_function("es_auc_1000x3000_3groups", |b| {
        b.iter(|| bootstrap_frame(&predictions, &codes, &config).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
