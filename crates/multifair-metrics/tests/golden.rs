//! Every `metrics` case of the golden vectors (scikit-learn, fairlearn) to 1e-6.

use multifair_metrics::{GroupFrame, Predictions, auc};
use serde_json::Value;

const GOLDEN: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/golden/reference-vectors.json"
));

fn close(name: &str, what: &str, got: Option<f64>, want: &Value) {
    match (got, want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= 1e-6, "{name}/{what}: {g} vs {w}"),
        (None, None) => assert!(want.is_null(), "{name}/{what}: expected {want}"),
        (g, _) => panic!("{name}/{what}: got {g:?}, expected {want}"),
    }
}

#[test]
fn golden_metrics_match_reference() {
    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    let cases = golden["metrics"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let f = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let probs = f("probs");
        let labels: Vec<bool> = f("labels").iter().map(|&y| y == 1.0).collect();
        let codes: Vec<i64> = f("groups").iter().map(|&g| g as i64).collect();
        let preds = Predictions::new(
            probs.clone(),
            labels.clone(),
            case["threshold"].as_f64().unwrap(),
        )
        .unwrap();
        let frame = GroupFrame::new(&preds, &codes).unwrap();
        let want = &case["expected"];
        close(name, "auc (pure)", auc(&probs, &labels), &want["auc"]);
        close(name, "auc", frame.overall.auc, &want["auc"]);
        let group_auc = want["group_auc"].as_object().unwrap();
        assert_eq!(group_auc.len(), frame.groups.len(), "{name}: group count");
        for (code, value) in group_auc {
            let stats = &frame.groups[&code.parse::<i64>().unwrap()];
            close(name, &format!("group {code} auc"), stats.auc, value);
        }
        close(name, "es_auc", frame.es_auc(), &want["es_auc"]);
        close(name, "dpd", frame.dpd(), &want["dpd"]);
        close(name, "deodds", frame.deodds(), &want["deodds"]);
        close(
            name,
            "worst_group_auc",
            frame.worst_group_auc(),
            &want["worst_group_auc"],
        );
        close(name, "auc_gap", frame.auc_gap(), &want["auc_gap"]);
    }
}
