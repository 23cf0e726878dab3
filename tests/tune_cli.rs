//! `multifair tune`: trials drawn from the declared ranges, chosen on validation, the spec's
//! seeds on the choice; a rerun trains nothing; an interrupted trial is the only one redone.

mod common;

use common::{read, run_ok as multifair, scratch, small_fairvision};
use serde_json::Value;

const RUNS: &str = "[[runs]]\nlabel = \"erm\"\nmethod = \"erm\"\n[[runs]]\nlabel = \"dro\"\nmethod = \"group_dro\"\n";

#[test]
fn tune_chooses_on_validation_then_runs_the_seeds_and_resumes() {
    let dir = scratch("tune");
    let data = dir.join("data");
    small_fairvision(&data, 8);
    std::fs::write(
        dir.join("spec.toml"),
        common::small_spec("tuning", 2, 1, RUNS),
    )
    .unwrap();
    let out = dir.join("results");
    let spec = dir.join("spec.toml");
    let args = [
        "tune",
        spec.to_str().unwrap(),
        "--trials",
        "3",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let first = multifair(&args);
    let text = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        text.contains("| erm |")
            && text.contains("| dro |")
            && text.contains("Chosen on the validation split"),
        "{text}"
    );
    let tuned: Value = serde_json::from_str(&read(&out.join("tuned.json"))).unwrap();
    for label in ["erm", "dro"] {
        let choice = &tuned[label];
        assert_eq!(choice["scores"].as_array().unwrap().len(), 3);
        assert!(choice["values"]["lr"].is_string());
        // The chosen trial has the best validation score of its row.
        let best = choice["scores"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .fold(f64::MIN, f64::max);
        assert_eq!(choice["score"].as_f64(), Some(best));
    }
    assert!(tuned["dro"]["values"]["group_dro_eta"].is_string());
    // The final runs carry the chosen values, on the spec's two seeds.
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let runs = plan["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let label = run["label"].as_str().unwrap();
        let lr: f64 = tuned[label]["values"]["lr"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(run["config"]["engine"]["lr"].as_f64(), Some(lr));
    }
    // A rerun trains nothing.
    let again = multifair(&args);
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(
        log.contains("tuning-trials: 6 runs, 0 to do") && log.contains("tuning: 4 runs, 0 to do"),
        "{log}"
    );
    // An interrupted trial is redone alone, and the same choice comes out.
    let trials: Value = serde_json::from_str(&read(&out.join("trials/sweep.json"))).unwrap();
    let trial = trials["runs"][1]["folder"].as_str().unwrap();
    std::fs::remove_file(out.join("trials").join(trial).join("test.json")).unwrap();
    let third = multifair(&args);
    assert!(String::from_utf8_lossy(&third.stderr).contains("tuning-trials: 6 runs, 1 to do"));
    let again: Value = serde_json::from_str(&read(&out.join("tuned.json"))).unwrap();
    assert_eq!(again, tuned);
}
