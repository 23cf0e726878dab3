//! One training step per batch (forward and backward, gradients ready for the optimizer; every
//! sub-step of a method that steps each modality in turn) of every registered two-modality
//! method on the same `tiny` FairVision model (read out as the method asks), batch and device
//! (flex). `just bench-step` prints each method's time relative to fusion ERM (target for
//! MultiFair: <= 1.10; the reference's own step runs about 2.3x). UME's members are `unimodal`
//! runs (its row is their steps side by side); UMT's teachers are fresh unimodal models.

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use multifair_core::{DeviceBatch, REGISTRY, Setup, create, model_for_steps};
use multifair_models::ModalityInput;
use multifair_models::presets::ModelSize;

fn bench(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let (size, slices, b) = (32, 8, 16);
    let kinds = [("slo", "image"), ("oct", "volume")];
    let config = ModelSize::Tiny.model(&kinds, size, slices, 0, 2);
    let labels: Vec<u8> = (0..b).map(|i| (i % 2) as u8).collect();
    let groups: Vec<i64> = (0..b as i64).map(|i| (i / 2) % 3).collect();
    let inputs = vec![
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
    ];
    let batch = DeviceBatch::new(inputs, &labels, vec![groups], 0, &device);
    let mut group = c.benchmark_group("step");
    group.sample_size(20);
    let all = vec!["slo".to_owned(), "oct".to_owned()];
    for info in REGISTRY {
        let mut method = create(info.name, &serde_json::json!({})).unwrap();
        if method.modalities(&all).map(|m| m.len()) != Ok(2) || method.fair_norm() {
            continue; // baselines on another model: one modality, or a FIN layer
        }
        let setup = Setup {
            modalities: 2,
            attributes: vec!["race".into()],
            attribute: 0,
            group_counts: vec![6, 5, 5],
            unknown: 0,
            classes: 2,
        };
        method.prepare(&setup).unwrap();
        let model = model_for_steps(method.as_mut(), &config, &setup, &device).unwrap();
        group.bench_function(info.name, |bencher| {
            bencher.iter(|| {
                for _ in 0..method.substeps() {
                    method.step(&model, &batch);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
