//! `multifair compare`: methods x seeds as a spec run through the sweep and the table; finished
//! runs are read, not retrained, and a deleted run is the only one redone.

mod common;

use common::{read, run_ok as multifair, scratch, small_fairvision};
use serde_json::Value;

#[test]
fn compare_trains_once_tabulates_and_reruns_only_what_is_missing() {
    let data = scratch("data");
    small_fairvision(&data, 4);
    let out = scratch("runs");
    let args = [
        "compare",
        "--methods",
        "erm,group_dro",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
        "--set",
        "image_size=16",
        "--set",
        "slices=4",
        "--set",
        "batch_size=16",
        "--set",
        "group_dro:group_dro_eta=0.1",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = multifair(&args);
    let table = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        table.contains("| erm |") && table.contains("| group_dro |"),
        "{table}"
    );
    assert_eq!(read(&out.join("summary.md")).trim(), table.trim());
    // The plan holds seeds 0 and 1, and group_dro's own setting.
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let runs = plan["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let seeds: Vec<u64> = runs.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    assert_eq!(seeds, [0, 1, 0, 1]);
    let dro = runs.iter().find(|r| r["label"] == "group_dro").unwrap();
    let run: Value = serde_json::from_str(&read(
        &out.join(dro["folder"].as_str().unwrap()).join("run.json"),
    ))
    .unwrap();
    assert_eq!(run["config"]["hparams"]["group_dro_eta"], 0.1);

    // Rerun: nothing to train, the same table.
    let again = multifair(&args);
    assert!(String::from_utf8_lossy(&again.stderr).contains("4 runs, 0 to do"));
    assert_eq!(String::from_utf8_lossy(&again.stdout), table);
    // Without one run's test.json, only that run is redone (from its checkpoint).
    let erm1 = runs
        .iter()
        .find(|r| r["label"] == "erm" && r["seed"] == 1)
        .unwrap();
    std::fs::remove_file(out.join(erm1["folder"].as_str().unwrap()).join("test.json")).unwrap();
    let third = multifair(&args);
    assert!(String::from_utf8_lossy(&third.stderr).contains("4 runs, 1 to do"));
    assert_eq!(String::from_utf8_lossy(&third.stdout), table);
}
