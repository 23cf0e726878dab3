//! `multifair compare`: methods x seeds, mean ± std and paired tests; finished runs are read,
//! not retrained, and a deleted run is the only one redone.

mod common;

use common::{run_ok as multifair, scratch, small_fairvision};
use serde_json::Value;

#[test]
fn compare_trains_once_summarises_and_reruns_only_what_is_missing() {
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
    assert!(table.contains("| erm | "), "{table}");
    assert!(table.contains("| group_dro | ES-AUC (race) |"), "{table}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let values = summary["methods"]["erm"]["AUC"]["values"]
        .as_array()
        .unwrap();
    assert_eq!(values.len(), 2);
    // The summary's numbers are the runs' own.
    let test: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs/erm/seed-1/test.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(values[1], test["auc"]);
    let run: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs/group_dro/seed-0/run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(run["config"]["method_params"]["group_dro_eta"], "0.1");

    // Rerun: everything is read back.
    let again = multifair(&args);
    let log = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        log.matches("finished, reading test.json").count(),
        4,
        "{log}"
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), table);
    // Without one run's test.json, only that run is redone (from its checkpoint).
    std::fs::remove_file(out.join("runs/group_dro/seed-1/test.json")).unwrap();
    let third = multifair(&args);
    let log = String::from_utf8_lossy(&third.stderr);
    assert_eq!(
        log.matches("finished, reading test.json").count(),
        3,
        "{log}"
    );
    assert_eq!(String::from_utf8_lossy(&third.stdout), table);
}
