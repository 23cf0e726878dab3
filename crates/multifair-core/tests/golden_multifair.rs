//! Every quantity of every `multifair_steps` case of the golden vectors (computed by the
//! reference implementation's own functions), to 1e-6.

use std::collections::BTreeMap;

use multifair_core::methods::{RefHparams, RefState};
use serde_json::Value;

const GOLDEN: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/golden/reference-vectors.json"
));

fn close(case: &str, what: &str, got: f64, want: &Value) {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{case}/{what}: expected {want}"));
    assert!((got - want).abs() <= 1e-6, "{case}/{what}: {got} vs {want}");
}

fn sigmoid_positive(logits: &Value) -> Vec<f64> {
    // softmax(l)[1] for two classes.
    logits
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let (a, b) = (l[0].as_f64().unwrap(), l[1].as_f64().unwrap());
            1.0 / (1.0 + (a - b).exp())
        })
        .collect()
}

/// A case's inputs: group names -> codes, labels, group codes, auxiliary and fused
/// positive-class probabilities.
struct Case {
    codes: BTreeMap<String, i64>,
    labels: Vec<bool>,
    groups: Vec<i64>,
    aux: Vec<Vec<f64>>,
    fused: Vec<f64>,
}

fn inputs(case: &Value) -> Case {
    Case {
        codes: case["group_codes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
            .collect(),
        labels: case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_i64() == Some(1))
            .collect(),
        groups: case["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_i64().unwrap())
            .collect(),
        aux: case["unimodal_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(sigmoid_positive)
            .collect(),
        fused: sigmoid_positive(&case["fused_logits"]),
    }
}

#[test]
fn reference_steps_match_the_golden_vectors() {
    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    let cases = golden["multifair_steps"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let hp = &case["hparams"];
        let hparams = RefHparams {
            rho: hp["rou"].as_f64().unwrap(),
            beta: hp["fairness_modulation"].as_f64().unwrap(),
            tau: hp["fairness_threshold"].as_f64().unwrap(),
            ema: hp["ema_decay"].as_f64().unwrap(),
            ..RefHparams::default()
        };
        let Case {
            codes,
            labels,
            groups,
            aux,
            fused,
        } = inputs(case);
        let before = &case["state_before"];
        let mut state = RefState {
            auc_prev: before["auc_prev"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_f64().unwrap())
                .collect(),
            ema: (0..aux.len())
                .map(|m| {
                    codes
                        .iter()
                        .map(|(n, &c)| {
                            (
                                c,
                                before["ema_group_auc"][m.to_string()][n].as_f64().unwrap(),
                            )
                        })
                        .collect()
                })
                .collect(),
        };
        let stats = state.step(&hparams, &aux, &fused, &labels, &groups);
        let want = &case["expected"];
        for m in 0..aux.len() {
            close(
                name,
                &format!("batch_auc[{m}]"),
                stats.batch_auc[m],
                &want["batch_auc"][m],
            );
            close(
                name,
                &format!("coeff[{m}]"),
                stats.coeff[m],
                &want["coeff"][m],
            );
            close(
                name,
                &format!("batch_factor[{m}]"),
                stats.batch_factor[m],
                &want["batch_factor"][m],
            );
            close(
                name,
                &format!("encoder_grad_scale[{m}]"),
                stats.encoder_grad_scale[m],
                &want["encoder_grad_scale"][m],
            );
            for (group, &code) in &codes {
                let key = m.to_string();
                close(
                    name,
                    &format!("surrogate[{m}][{group}]"),
                    stats.surrogate_group_auc[m][&code],
                    &want["surrogate_group_auc"][&key][group],
                );
                close(
                    name,
                    &format!("ema[{m}][{group}]"),
                    stats.ema_group_auc[m][&code],
                    &want["ema_group_auc"][&key][group],
                );
                close(
                    name,
                    &format!("factor[{m}][{group}]"),
                    stats.modulation_factor[m][&code],
                    &want["modulation_factor"][&key][group],
                );
            }
        }
        for (group, &code) in &codes {
            close(
                name,
                &format!("fused_group_auc[{group}]"),
                stats.fused_group_auc[&code],
                &want["fused_group_auc"][group],
            );
        }
        close(
            name,
            "fairness_gap",
            stats.fairness_gap,
            &want["fairness_gap"],
        );
        close(name, "fused_gap", stats.fused_gap, &want["fused_gap"]);
        assert_eq!(
            stats.fairness_priority,
            want["fairness_priority"].as_bool().unwrap(),
            "{name}/priority"
        );
    }
}

/// The generalised method in the reference's configuration (batch mode; no smoothing, factor
/// clipping or fairness loss) gives `multifair_ref`'s encoder scales on every golden case.
#[test]
fn generalised_method_reproduces_the_reference_scales() {
    use burn::tensor::{Device, Tensor};
    use multifair_core::hparams::Hparams;
    use multifair_core::methods::{Multifair, MultifairHparams};

    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    let device = Device::flex();
    let config = MultifairHparams::from_value(&serde_json::json!({
        "multifair_per_sample": false,
        "multifair_smoothing": 0,
        "multifair_factor_max": 0,
        "multifair_fairness": 0,
    }))
    .unwrap();
    for case in golden["multifair_steps"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let Case {
            codes,
            labels,
            groups,
            aux,
            fused,
        } = inputs(case);
        let before = &case["state_before"];
        // The checkpoint the method would have written in this state (EMA row-major [M, K]).
        let auc: Vec<f64> = (before["auc_prev"].as_array().unwrap().iter())
            .map(|a| a.as_f64().unwrap())
            .collect();
        let ema: Vec<f64> = (0..2)
            .flat_map(|m| {
                let row = &before["ema_group_auc"][m.to_string()];
                codes.keys().map(move |group| row[group].as_f64().unwrap())
            })
            .collect();
        let codes: Vec<i64> = codes.values().copied().collect();
        let state = serde_json::json!({
            "steps": 0, "auc": auc, "levels": [{"codes": codes, "ema": ema}]
        });
        let mut method = Multifair::new(config.clone()).unwrap();
        multifair_core::Method::load_state(&mut method, state).unwrap();
        let b = labels.len();
        let aux: Vec<f32> = aux.iter().flatten().map(|&p| p as f32).collect();
        let fused: Vec<f32> = fused.iter().map(|&p| p as f32).collect();
        let y: Vec<f32> = labels.iter().map(|&y| y as u8 as f32).collect();
        let modulation = method.modulate(
            Tensor::<1>::from_floats(aux.as_slice(), &device).reshape([2, b]),
            Tensor::<1>::from_floats(fused.as_slice(), &device),
            Tensor::<1>::from_floats(y.as_slice(), &device),
            &groups,
        );
        let weights = modulation
            .weights
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for m in 0..2 {
            let want = case["expected"]["encoder_grad_scale"][m].as_f64().unwrap();
            for n in 0..b {
                let got = weights[m * b + n] as f64;
                assert!(
                    (got - want).abs() <= 1e-5,
                    "{name}: modality {m} sample {n}: {got} vs {want}"
                );
            }
        }
    }
}

/// Edge cases computed from the original training function's formulas by
/// `tests/golden/make_reference_edge_cases.py`: a batch without one group (its EMA still moves
/// towards 0.5 and stays in the mean and the gap) and a group with a single sample (no fused
/// AUC for it, hence no priority).
#[test]
fn the_reference_edge_cases_of_absent_and_single_sample_groups() {
    let cases: Value = serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/reference-edge-cases.json"
    )))
    .unwrap();
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let by_code = |v: &Value| -> BTreeMap<i64, f64> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, x)| (k.parse().unwrap(), x.as_f64().unwrap()))
            .collect()
    };
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let hp = &case["hparams"];
        let hparams = RefHparams {
            rho: hp["rho"].as_f64().unwrap(),
            beta: hp["beta"].as_f64().unwrap(),
            tau: hp["tau"].as_f64().unwrap(),
            ema: hp["ema"].as_f64().unwrap(),
            ..RefHparams::default()
        };
        let before = &case["state_before"];
        let mut state = RefState {
            auc_prev: numbers(&before["auc_prev"]),
            ema: before["ema"]
                .as_array()
                .unwrap()
                .iter()
                .map(by_code)
                .collect(),
        };
        let aux: Vec<Vec<f64>> = case["aux"]
            .as_array()
            .unwrap()
            .iter()
            .map(numbers)
            .collect();
        let labels: Vec<bool> = numbers(&case["labels"]).iter().map(|&y| y == 1.0).collect();
        let groups: Vec<i64> = numbers(&case["groups"]).iter().map(|&g| g as i64).collect();
        let stats = state.step(&hparams, &aux, &numbers(&case["fused"]), &labels, &groups);
        let want = &case["expected"];
        let close = |what: &str, got: f64, want: f64| {
            assert!((got - want).abs() < 1e-9, "{name}/{what}: {got} vs {want}")
        };
        for (m, ema) in want["ema"].as_array().unwrap().iter().enumerate() {
            for (g, v) in by_code(ema) {
                close(&format!("ema {m} {g}"), stats.ema_group_auc[m][&g], v);
            }
        }
        close(
            "fairness_gap",
            stats.fairness_gap,
            want["fairness_gap"].as_f64().unwrap(),
        );
        for (m, v) in numbers(&want["batch_factor"]).into_iter().enumerate() {
            close("batch_factor", stats.batch_factor[m], v);
        }
        assert_eq!(
            stats.fused_group_auc.keys().collect::<Vec<_>>(),
            by_code(&want["fused_group_auc"]).keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (g, v) in by_code(&want["fused_group_auc"]) {
            close("fused_group_auc", stats.fused_group_auc[&g], v);
        }
        assert_eq!(
            stats.fairness_priority,
            want["fairness_priority"].as_bool().unwrap(),
            "{name}"
        );
        for (m, v) in numbers(&want["encoder_grad_scale"]).into_iter().enumerate() {
            close("encoder_grad_scale", stats.encoder_grad_scale[m], v);
        }
    }
}
