//! Every registered method, one step on a small model: every parameter gets a non-zero gradient.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor};
use multifair_core::{DeviceBatch, Params, REGISTRY, create};
use multifair_models::ModalityInput;
use multifair_models::presets::ModelSize;

struct Check<'a> {
    grads: &'a GradientsParams,
    missing: Vec<String>,
    seen: usize,
}

impl ModuleVisitor for Check<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.seen += 1;
        match self.grads.get::<D>(param.id) {
            Some(g) if g.clone().abs().sum().into_scalar::<f32>() > 0.0 => {}
            Some(_) => self.missing.push(format!("{:?} (zero)", param.id)),
            None => self.missing.push(format!("{:?} (none)", param.id)),
        }
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    let device = Device::flex().autodiff();
    device.seed(0);
    let all = vec!["slo".to_owned(), "oct".to_owned()];
    for info in REGISTRY {
        let mut method = create(info.name, &Params::default()).unwrap();
        let modalities = method.modalities(&all).unwrap();
        let kinds: Vec<(&str, &str)> = modalities
            .iter()
            .map(|m| (m.as_str(), if m == "slo" { "image" } else { "volume" }))
            .collect();
        let config = ModelSize::Tiny.model(&kinds, 16, 3, 0, 2);
        let model = config.init(&device);
        let b = 6;
        let inputs = modalities
            .iter()
            .map(|_| {
                let channels = 3; // RGB for the fundus, 3 slices for the OCT
                ModalityInput::Pixels(Tensor::random(
                    [b, channels, 16, 16],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                ))
            })
            .collect();
        let labels = [0i64, 1, 0, 1, 1, 0];
        let onehot: Vec<f32> = labels
            .iter()
            .flat_map(|&y| [(y == 0) as u8 as f32, y as f32])
            .collect();
        let batch = DeviceBatch {
            inputs,
            labels: Tensor::<1, Int>::from_ints(labels.as_slice(), &device),
            onehot: Tensor::<1>::from_floats(onehot.as_slice(), &device).reshape([b, 2]),
            codes: vec![vec![0, 1, 2, 0, 1, 2]],
            targets: labels.iter().map(|&y| y == 1).collect(),
            groups: vec![0, 1, 2, 0, 1, 2],
        };
        let output = method.step(&model, &batch);
        assert!(output.loss.is_finite());
        let mut check = Check {
            grads: &output.grads,
            missing: Vec::new(),
            seen: 0,
        };
        model.visit(&mut check);
        assert!(
            check.seen > 20,
            "{}: only {} parameters",
            info.name,
            check.seen
        );
        assert!(
            check.missing.is_empty(),
            "{}: no gradient for {:?}",
            info.name,
            check.missing
        );
    }
}
