//! One training step (forward and backward, gradients ready for the optimizer) of every
//! registered two-modality method on the same `tiny` FairVision model, batch and device (flex).
//! `just bench-step` prints each method's time relative to fusion ERM (target for MultiFair:
//! <= 1.10; the reference's own step runs about 2.3x).

use burn::tensor::{Device, Distribution, Int, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use multifair_core::{DeviceBatch, Params, REGISTRY, create};
use multifair_models::ModalityInput;
use multifair_models::presets::ModelSize;

fn bench(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let (size, slices, b) = (32, 8, 16);
    let config = ModelSize::Tiny.model(&[("slo", "image"), ("oct", "volume")], size, slices, 0, 2);
    let model = config.init(&device);
    let labels: Vec<i64> = (0..b as i64).map(|i| i % 2).collect();
    let onehot: Vec<f32> = labels
        .iter()
        .flat_map(|&y| [(y == 0) as u8 as f32, y as f32])
        .collect();
    let groups: Vec<i64> = (0..b as i64).map(|i| (i / 2) % 3).collect();
    let batch = DeviceBatch {
        inputs: vec![
            ModalityInput::Pixels(Tensor::random(
                [b, 3, size, size],
                Distribution::Normal(0.0, 1.0),
                &device,
            )),
            ModalityInput::Pixels(Tensor::random(
                [b, slices, size, size],
                Distribution::Normal(0.0, 1.0),
                &device,
            )),
        ],
        labels: Tensor::<1, Int>::from_ints(labels.as_slice(), &device),
        onehot: Tensor::<1>::from_floats(onehot.as_slice(), &device).reshape([b, 2]),
        codes: vec![groups.clone()],
        targets: labels.iter().map(|&y| y == 1).collect(),
        groups,
    };
    let mut group = c.benchmark_group("step");
    group.sample_size(20);
    let all = vec!["slo".to_owned(), "oct".to_owned()];
    for info in REGISTRY {
        let mut method = create(info.name, &Params::default()).unwrap();
        if method.modalities(&all).map(|m| m.len()) != Ok(2) {
            continue; // one-modality baselines run a different model
        }
        group.bench_function(info.name, |bencher| {
            bencher.iter(|| method.step(&model, &batch))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
