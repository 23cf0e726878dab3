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
        };
        // Group names <-> codes.
        let codes: BTreeMap<String, i64> = case["group_codes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
            .collect();
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|y| y.as_i64() == Some(1))
            .collect();
        let groups: Vec<i64> = case["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_i64().unwrap())
            .collect();
        let aux: Vec<Vec<f64>> = case["unimodal_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(sigmoid_positive)
            .collect();
        let fused = sigmoid_positive(&case["fused_logits"]);
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
