//! Optimizers and learning-rate schedules from the run's configuration (`--set optimizer=...`,
//! `--set schedule=...`), with PyTorch's semantics so that a paper's settings mean the same here.
//!
//! Parameter groups: encoders (with their projections), fusion (transformer and head) and the
//! auxiliary heads, each at its own rate. The auxiliary heads also have their own optimizer and
//! weight decay, as in the reference (a second AdamW).

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;
use multifair_core::clip::clip_grad_norm;
use multifair_models::MultimodalModel;
use serde::{Deserialize, Serialize};

use crate::config::{Optimizer, Schedule, TrainConfig};

/// One optimizer of the configured kind with weight decay `weight_decay`.
pub fn build_optimizer(config: &TrainConfig, weight_decay: f64) -> ModuleOptimizer {
    let decay = (weight_decay > 0.0).then_some(WeightDecayConfig {
        penalty: weight_decay as f32,
    });
    let e = &config.engine;
    match e.optimizer {
        // torch.optim.SGD: decay added to the gradient, then momentum (dampening 0).
        Optimizer::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum((e.momentum > 0.0).then_some(MomentumConfig {
                momentum: e.momentum,
                dampening: 0.0,
                nesterov: e.nesterov,
            }))
            .init(),
        // torch.optim.Adam: L2 decay added to the gradient.
        Optimizer::Adam => AdamConfig::new()
            .with_beta_1(e.betas.0 as f32)
            .with_beta_2(e.betas.1 as f32)
            .with_epsilon(e.eps as f32)
            .with_weight_decay(decay)
            .init(),
        // torch.optim.AdamW: decoupled decay.
        Optimizer::Adamw => AdamWConfig::new()
            .with_beta_1(e.betas.0 as f32)
            .with_beta_2(e.betas.1 as f32)
            .with_epsilon(e.eps as f32)
            .with_weight_decay(weight_decay as f32)
            .init(),
    }
}

/// The model's optimizer and the auxiliary heads' own one.
#[derive(Clone)]
pub struct Optimizers {
    main: ModuleOptimizer,
    aux: ModuleOptimizer,
}

/// Moves the gradients of the visited parameters from `from` into `to`.
struct MoveGrads<'a> {
    from: &'a mut GradientsParams,
    to: GradientsParams,
}

impl ModuleVisitor for MoveGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.from.remove::<D>(param.id) {
            self.to.register::<D>(param.id, g);
        }
    }
}

/// Clips `grads` to the engine's `clip` (torch's global norm); without `clip_aux` the
/// auxiliary heads' gradients are left out of the norm and unclipped.
pub fn clip_gradients(config: &TrainConfig, model: &MultimodalModel, grads: &mut GradientsParams) {
    let e = &config.engine;
    if e.clip_aux {
        clip_grad_norm(model, grads, e.clip);
        return;
    }
    let mut aux = take(grads, |m| model.aux.visit(m));
    clip_grad_norm(model, grads, e.clip);
    let rest = std::mem::replace(grads, GradientsParams::new());
    let mut back = MoveGrads {
        from: &mut aux,
        to: rest,
    };
    model.aux.visit(&mut back);
    *grads = back.to;
}

/// The gradients of the parameters `visit` walks, moved out of `grads`.
fn take(grads: &mut GradientsParams, visit: impl FnOnce(&mut MoveGrads)) -> GradientsParams {
    let mut mover = MoveGrads {
        from: grads,
        to: GradientsParams::new(),
    };
    visit(&mut mover);
    mover.to
}

impl Optimizers {
    pub fn new(config: &TrainConfig) -> Self {
        Optimizers {
            main: build_optimizer(config, config.engine.weight_decay),
            aux: build_optimizer(config, config.engine.aux_weight_decay),
        }
    }

    /// One step of every group at its rate times the schedule's `factor`; `encoder_steps`
    /// multiplies each modality encoder's (and its projection's) rate. A parameter without a
    /// gradient in a call keeps its value and state, so the groups can step one after another.
    pub fn step(
        &mut self,
        config: &TrainConfig,
        factor: f64,
        model: MultimodalModel,
        mut grads: GradientsParams,
        encoder_steps: Option<&[f64]>,
    ) -> MultimodalModel {
        let aux = take(&mut grads, |m| model.aux.visit(m));
        let e = &config.engine;
        let mut model = match encoder_steps {
            None => {
                let encoders = take(&mut grads, |m| {
                    model.encoders.visit(m);
                    model.projections.visit(m);
                });
                self.main.step(e.encoder_lr() * factor, model, encoders)
            }
            Some(scales) => {
                let mut model = model;
                for (j, scale) in scales.iter().enumerate() {
                    let encoder = take(&mut grads, |m| {
                        model.encoders[j].visit(m);
                        model.projections[j].visit(m);
                    });
                    model = self
                        .main
                        .step(e.encoder_lr() * factor * scale, model, encoder);
                }
                model
            }
        };
        model = self.main.step(e.fusion_lr() * factor, model, grads);
        let aux_factor = if e.schedule_aux { factor } else { 1.0 };
        self.aux.step(e.aux_lr() * aux_factor, model, aux)
    }

    pub fn save(&self, folder: &Path) -> anyhow::Result<()> {
        for (optim, file) in [
            (&self.main, "optimizer.bpk"),
            (&self.aux, "optimizer-aux.bpk"),
        ] {
            optim
                .save(folder.join(file))
                .map_err(|e| anyhow::anyhow!("writing {file}: {e:?}"))?;
        }
        Ok(())
    }

    pub fn load(self, folder: &Path) -> anyhow::Result<Self> {
        let load = |optim: ModuleOptimizer, file: &str| {
            optim
                .load(folder.join(file))
                .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", folder.join(file).display()))
        };
        Ok(Optimizers {
            main: load(self.main, "optimizer.bpk")?,
            aux: load(self.aux, "optimizer-aux.bpk")?,
        })
    }
}

/// What one batch's training leaves: each sub-step's loss (on the device) and the last
/// sub-step's statistics.
pub struct Stepped {
    pub losses: Vec<Tensor<1>>,
    pub stats: std::collections::BTreeMap<String, f64>,
}

/// One batch's training, the same in runs and timings: the method's step (each of its
/// sub-steps), clipping, and every optimizer at the schedule's `factor`.
pub fn train_step(
    config: &TrainConfig,
    optim: &mut Optimizers,
    factor: f64,
    method: &mut dyn multifair_core::Method,
    mut model: MultimodalModel,
    batch: &multifair_core::DeviceBatch,
) -> (MultimodalModel, Stepped) {
    let mut stepped = Stepped {
        losses: Vec::new(),
        stats: Default::default(),
    };
    for _ in 0..method.substeps() {
        let mut output = method.step(&model, batch);
        clip_gradients(config, &model, &mut output.grads);
        model = optim.step(
            config,
            factor,
            model,
            output.grads,
            output.encoder_steps.as_deref(),
        );
        stepped.losses.push(output.loss);
        stepped.stats = output.stats;
    }
    (model, stepped)
}

/// The learning-rate schedule: a factor on every group's base rate. `constant`, `step`
/// (StepLR, per epoch), `cosine` (to 0, per step) and `plateau` (ReduceLROnPlateau on the
/// validation loss, per epoch), each after an optional linear warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// ReduceLROnPlateau's state: best validation loss, epochs without improvement, factor.
    pub plateau_best: Option<f64>,
    pub plateau_bad_epochs: usize,
    pub plateau_factor: f64,
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule {
            plateau_best: None,
            plateau_bad_epochs: 0,
            plateau_factor: 1.0,
        }
    }
}

impl LrSchedule {
    /// The factor at global step `step` (0-based).
    pub fn factor(&self, config: &TrainConfig, step: usize, steps_per_epoch: usize) -> f64 {
        let e = &config.engine;
        let warmup = e.warmup_epochs * steps_per_epoch;
        let warm = if step < warmup {
            (step + 1) as f64 / warmup as f64
        } else {
            1.0
        };
        let epoch = step / steps_per_epoch.max(1);
        warm * match e.schedule {
            Schedule::Constant => 1.0,
            Schedule::Step => e.gamma.powi((epoch / e.step_size.max(1)) as i32),
            Schedule::Plateau => self.plateau_factor,
            Schedule::Cosine if step < warmup => 1.0,
            Schedule::Cosine => {
                let total = (config.epochs * steps_per_epoch).max(1) as f64;
                let progress = (step - warmup) as f64 / (total - warmup as f64).max(1.0);
                0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// End of an epoch: ReduceLROnPlateau's update (PyTorch's: mode min, relative threshold
    /// 1e-4, no cooldown): the rate drops once more than `plateau_patience` epochs in a row
    /// failed to improve on the best loss.
    pub fn end_epoch(&mut self, config: &TrainConfig, val_loss: f64) {
        let e = &config.engine;
        if e.schedule != Schedule::Plateau {
            return;
        }
        if self
            .plateau_best
            .is_none_or(|best| val_loss < best * (1.0 - 1e-4))
        {
            self.plateau_best = Some(val_loss);
            self.plateau_bad_epochs = 0;
        } else {
            self.plateau_bad_epochs += 1;
        }
        if self.plateau_bad_epochs > e.plateau_patience {
            self.plateau_factor *= e.plateau_factor;
            self.plateau_bad_epochs = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use multifair_models::presets::ModelSize;

    #[derive(Module, Debug)]
    struct Tiny {
        w: Param<Tensor<1>>,
    }

    use crate::config::for_tests as resolve;

    fn config(sets: &[(&str, &str)]) -> TrainConfig {
        resolve("erm", sets).unwrap()
    }

    #[test]
    fn paper_defaults_then_presets_then_the_command_line() {
        // OGM-GE's paper defaults replace the engine's.
        let c = resolve("ogm_ge", &[]).unwrap();
        assert_eq!(
            (c.engine.optimizer, c.engine.lr, c.engine.momentum),
            (Optimizer::Sgd, 1e-3, 0.9)
        );
        // A CGGM preset sets its code's optimizer, rates, schedule and method keys...
        let c = resolve("cggm", &[("preset", "food101")]).unwrap();
        let e = &c.engine;
        assert_eq!(c.preset.as_deref(), Some("food101"));
        assert_eq!(
            (e.optimizer, e.lr, e.aux_lr()),
            (Optimizer::Adamw, 1e-3, 5e-4)
        );
        assert_eq!((e.weight_decay, e.aux_weight_decay), (6e-3, 3e-3));
        assert_eq!(
            (e.schedule, e.plateau_patience, e.warmup_epochs),
            (Schedule::Plateau, 10, 0)
        );
        assert_eq!(e.batch_size, 128);
        assert_eq!(c.hparams["cggm_lambda"], 0.05);
        let c = resolve("cggm", &[("preset", "iemocap")]).unwrap();
        let e = &c.engine;
        assert_eq!(
            (e.optimizer, e.weight_decay, e.batch_size),
            (Optimizer::Adam, 0.0, 64)
        );
        assert_eq!(c.hparams["cggm_lambda"], 0.2);
        // ...and the command line still wins, wherever the preset key stands.
        let c = resolve("cggm", &[("lr", "2e-3"), ("preset", "mosi")]).unwrap();
        assert_eq!(c.engine.lr, 2e-3);
        // Without a preset the run's config (and its folder hash) carries none.
        let c = resolve("cggm", &[]).unwrap();
        assert!(c.preset.is_none() && !serde_json::to_string(&c).unwrap().contains("preset"));
        let err = resolve("cggm", &[("preset", "brats")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "--set preset=brats: method 'cggm' has presets food101, mosi, iemocap"
        );
        let err = resolve("erm", &[("preset", "food101")])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--set preset=food101: method 'erm' has no presets");
    }

    /// Two steps of `optim` from w = [1, -2] with the constant gradient [0.5, 0.25] at lr 0.1.
    fn two_steps(mut optim: ModuleOptimizer) -> Vec<f32> {
        let device = Device::flex().autodiff();
        let mut tiny = Tiny {
            w: Param::from_tensor(Tensor::from_floats([1.0, -2.0], &device)),
        };
        for _ in 0..2 {
            let mut grads = GradientsParams::new();
            grads.register(tiny.w.id, Tensor::<1>::from_floats([0.5, 0.25], &device));
            tiny = optim.step(0.1, tiny, grads);
        }
        tiny.w.val().into_data().try_to_vec::<f32>().unwrap()
    }

    /// The first update of `optim` from w = [1, -2] with gradient `scale` * [0.5, 0.25].
    fn first_update(mut optim: ModuleOptimizer, scale: f32) -> Vec<f32> {
        let device = Device::flex().autodiff();
        let tiny = Tiny {
            w: Param::from_tensor(Tensor::from_floats([1.0, -2.0], &device)),
        };
        let mut grads = GradientsParams::new();
        grads.register(
            tiny.w.id,
            Tensor::<1>::from_floats([0.5 * scale, 0.25 * scale], &device),
        );
        let w = optim
            .step(0.1, tiny, grads)
            .w
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        vec![w[0] - 1.0, w[1] + 2.0]
    }

    /// Why MultiFair's gradient scale can vanish: under Adam(W) a constant per-tensor scale of
    /// the gradient leaves the update as it is (up to eps); under SGD it scales the update.
    #[test]
    fn adam_cancels_a_gradient_scale_and_sgd_passes_it_on() {
        for optimizer in ["adam", "adamw"] {
            let c = config(&[("optimizer", optimizer), ("weight_decay", "0")]);
            let (one, scaled) = (
                first_update(build_optimizer(&c, 0.0), 1.0),
                first_update(build_optimizer(&c, 0.0), 0.3),
            );
            for (a, b) in one.iter().zip(&scaled) {
                assert!((a - b).abs() < 1e-6, "{optimizer}: {one:?} vs {scaled:?}");
            }
        }
        let c = config(&[("optimizer", "sgd"), ("momentum", "0.9")]);
        let (one, scaled) = (
            first_update(build_optimizer(&c, 0.0), 1.0),
            first_update(build_optimizer(&c, 0.0), 0.3),
        );
        for (a, b) in one.iter().zip(&scaled) {
            assert!((0.3 * a - b).abs() < 1e-7, "sgd: {one:?} vs {scaled:?}");
        }
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn sgd_with_momentum_matches_hand_worked_steps() {
        // g' = g + 0.01 w; v1 = g'; w1 = w - 0.1 v1 = [0.949, -2.023];
        // g' = [0.50949, 0.22977]; v2 = 0.9 v1 + g' = [0.96849, 0.43677];
        // w2 = w1 - 0.1 v2 = [0.852151, -2.066677].
        let c = config(&[
            ("optimizer", "sgd"),
            ("momentum", "0.9"),
            ("weight_decay", "0.01"),
        ]);
        assert_close(
            &two_steps(build_optimizer(&c, 0.01)),
            &[0.852151, -2.066677],
        );
        // Nesterov: the step is g' + 0.9 v: w1 = w - 0.1 (1.9 g') = [0.9031, -2.0437];
        // g' = [0.509031, 0.229563]; v2 = 0.9 [0.51, 0.23] + g' = [0.968031, 0.436563];
        // w2 = w1 - 0.1 (g' + 0.9 v2) = [0.9031 - 0.1380259, -2.0437 - 0.0622470].
        let c = config(&[("optimizer", "sgd"), ("nesterov", "true")]);
        assert_close(
            &two_steps(build_optimizer(&c, 0.01)),
            &[0.9031 - 0.13802589, -2.0437 - 0.06224697],
        );
    }

    #[test]
    fn adamw_matches_hand_worked_steps() {
        // With a constant gradient the bias-corrected m/sqrt(v) is sign(g) at every step (up to
        // eps), so each step is w <- w (1 - lr wd) - lr sign(g):
        // w1 = [0.999 - 0.1, -1.998 - 0.1] = [0.899, -2.098]; w2 = [0.798101, -2.195902].
        let c = config(&[("optimizer", "adamw"), ("weight_decay", "0.01")]);
        assert_close(
            &two_steps(build_optimizer(&c, 0.01)),
            &[0.798101, -2.195902],
        );
        // Adam's L2 decay enters the gradient, which then changes between the steps:
        // g'1 = [0.51, 0.23], w1 = w - 0.1 sign = [0.9, -2.1]; g'2 = [0.509, 0.229];
        // m2 = (0.09 g'1 + 0.1 g'2) / 0.19, v2 = (0.000999 g'1^2 + 0.001 g'2^2) / 0.001999,
        // w2 = w1 - 0.1 m2 / sqrt(v2) = [0.8000051680, -2.1999883964] (torch.optim.Adam agrees).
        let c = config(&[("optimizer", "adam"), ("weight_decay", "0.01")]);
        assert_close(
            &two_steps(build_optimizer(&c, 0.01)),
            &[0.800005168, -2.1999883964],
        );
    }

    #[test]
    fn warmup_cosine_hits_the_stated_rates() {
        // 10 epochs of 10 steps, 1 warm-up epoch: linear to the base rate over steps 0..9, then
        // a half cosine over the 90 remaining steps.
        let c = config(&[("schedule", "cosine"), ("warmup_epochs", "1")]);
        let s = LrSchedule::default();
        let f = |step| s.factor(&c, step, 10);
        assert!((f(0) - 0.1).abs() < 1e-12);
        assert!((f(4) - 0.5).abs() < 1e-12);
        assert!((f(9) - 1.0).abs() < 1e-12);
        assert!((f(10) - 1.0).abs() < 1e-12);
        assert!((f(55) - 0.5).abs() < 1e-12);
        assert!((f(100) - 0.0).abs() < 1e-12);
    }

    #[test]
    fn step_and_constant_schedules() {
        let c = config(&[
            ("schedule", "step"),
            ("step_size", "3"),
            ("gamma", "0.1"),
            ("warmup_epochs", "0"),
        ]);
        let s = LrSchedule::default();
        let rates: Vec<f64> = (0..7).map(|e| s.factor(&c, e * 5, 5)).collect();
        let want = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01];
        for (r, w) in rates.iter().zip(want) {
            assert!((r - w).abs() < 1e-12, "{rates:?}");
        }
        let c = config(&[("schedule", "constant"), ("warmup_epochs", "0")]);
        assert_eq!(s.factor(&c, 37, 5), 1.0);
    }

    #[test]
    fn plateau_lowers_the_rate_after_patience_epochs_without_improvement() {
        let c = config(&[
            ("schedule", "plateau"),
            ("plateau_patience", "2"),
            ("plateau_factor", "0.1"),
        ]);
        let mut s = LrSchedule::default();
        // Epoch 1 sets the best, epoch 2 improves; epochs 3, 4 and 5 do not: after the third
        // non-improving epoch (more than 2) the rate drops, once, and the count restarts.
        let mut factors = Vec::new();
        for loss in [1.0, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9, 0.9] {
            s.end_epoch(&c, loss);
            factors.push(s.plateau_factor);
        }
        let want = [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01];
        for (f, w) in factors.iter().zip(want) {
            assert!((f - w).abs() < 1e-12, "{factors:?}");
        }
        // A tiny relative improvement (below 1e-4) does not count.
        let mut s = LrSchedule::default();
        s.end_epoch(&c, 1.0);
        s.end_epoch(&c, 0.99995);
        assert_eq!(s.plateau_bad_epochs, 1);
    }

    /// The original's schedule over its 10 epochs: no warm-up, and ReduceLROnPlateau with
    /// patience 10 cannot act before the 12th epoch, so the rate is constant (3e-5) whatever
    /// the validation loss does.
    #[test]
    fn the_paper_profiles_rate_is_constant_over_its_ten_epochs() {
        use crate::config::Request;
        use crate::profile::{Profile, VIT_FOLDER};
        let weights = std::env::temp_dir().join(format!("multifair-optim-{}", std::process::id()));
        std::fs::create_dir_all(weights.join(VIT_FOLDER.0)).unwrap();
        let mut request = Request::new(
            multifair_data::DatasetKind::FairVision,
            "unused",
            "multifair_ref",
        );
        (request.profile, request.weights_dir) = (Profile::Paper, Some(weights.clone()));
        let c = TrainConfig::resolve(&request).unwrap();
        std::fs::remove_dir_all(&weights).unwrap();
        assert_eq!((c.epochs, c.engine.lr), (10, 3e-5));
        let mut s = LrSchedule::default();
        let steps_per_epoch = 7;
        for epoch in 0..c.epochs {
            for step in 0..steps_per_epoch {
                let factor = s.factor(&c, epoch * steps_per_epoch + step, steps_per_epoch);
                assert_eq!(factor * s.plateau_factor, 1.0, "epoch {epoch}");
            }
            s.end_epoch(&c, 1.0 + epoch as f64); // worse every epoch
        }
    }

    /// A tiny two-modality model, one ERM step's gradients on a random batch, and the sums of
    /// |gradient| of the model's heads and of everything else.
    fn model_and_grads(device: &Device) -> (MultimodalModel, GradientsParams) {
        use burn::tensor::Distribution;
        use multifair_core::DeviceBatch;
        use multifair_models::ModalityInput;
        let model = ModelSize::Tiny
            .model(&[("slo", "image"), ("oct", "volume")], 16, 3, 0, 2)
            .init(device);
        let inputs = (0..2)
            .map(|_| {
                ModalityInput::Pixels(Tensor::random(
                    [4, 3, 16, 16],
                    Distribution::Normal(0.0, 1.0),
                    device,
                ))
            })
            .collect();
        let batch = DeviceBatch::new(inputs, &[0, 1, 0, 1], vec![vec![0, 1, 0, 1]], 0, device);
        let mut erm = multifair_core::create("erm", &serde_json::json!({})).unwrap();
        (model.clone(), erm.step(&model, &batch).grads)
    }

    fn abs_sum(module: &impl Module, grads: &GradientsParams) -> f64 {
        struct Sum<'a>(&'a GradientsParams, f64);
        impl ModuleVisitor for Sum<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1 += g.abs().sum().into_scalar::<f32>() as f64;
                }
            }
        }
        let mut sum = Sum(grads, 0.0);
        module.visit(&mut sum);
        sum.1
    }

    #[test]
    fn without_clip_aux_the_heads_are_left_out_of_clipping() {
        let device = Device::flex().autodiff();
        let (model, grads) = model_and_grads(&device);
        let (heads, encoders) = (
            abs_sum(&model.aux, &grads),
            abs_sum(&model.encoders, &grads),
        );
        for (clip_aux, heads_kept) in [("false", true), ("true", false)] {
            let c = config(&[("clip", "1e-4"), ("clip_aux", clip_aux)]);
            let mut g = grads_copy(&model, &grads, GradientsParams::new());
            clip_gradients(&c, &model, &mut g);
            let after = abs_sum(&model.aux, &g);
            assert_eq!(
                (after - heads).abs() < 1e-9 * heads.max(1.0),
                heads_kept,
                "clip_aux={clip_aux}"
            );
            assert!(
                abs_sum(&model.encoders, &g) < 0.01 * encoders,
                "clip_aux={clip_aux}"
            );
        }
    }

    /// A copy of `grads` for `model`'s parameters, added to `spare`.
    fn grads_copy(
        model: &MultimodalModel,
        grads: &GradientsParams,
        spare: GradientsParams,
    ) -> GradientsParams {
        struct Copy<'a>(&'a GradientsParams, GradientsParams);
        impl ModuleVisitor for Copy<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(param.id) {
                    self.1.register::<D>(param.id, g);
                }
            }
        }
        let mut copy = Copy(grads, spare);
        model.visit(&mut copy);
        copy.1
    }

    #[test]
    fn without_schedule_aux_the_heads_keep_their_rate() {
        let device = Device::flex().autodiff();
        let (model, grads) = model_and_grads(&device);
        let heads_before = Fingerprint::of(&model.aux);
        let encoders_before = Fingerprint::of(&model.encoders);
        for (schedule_aux, heads_move) in [("false", true), ("true", false)] {
            let c = config(&[("schedule_aux", schedule_aux)]);
            let mut optim = Optimizers::new(&c);
            let g = grads_copy(&model, &grads, GradientsParams::new());
            // A schedule factor of 0: the model stands still; the heads move only off schedule.
            let stepped = optim.step(&c, 0.0, model.clone(), g, None);
            assert_eq!(Fingerprint::of(&stepped.encoders), encoders_before);
            assert_eq!(
                Fingerprint::of(&stepped.aux) != heads_before,
                heads_move,
                "schedule_aux={schedule_aux}"
            );
        }
    }

    struct Fingerprint(Vec<f32>);

    impl Fingerprint {
        fn of(module: &impl Module) -> Vec<f32> {
            let mut f = Fingerprint(Vec::new());
            module.visit(&mut f);
            f.0
        }
    }

    impl ModuleVisitor for Fingerprint {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().sum().into_scalar::<f32>());
        }
    }
}
