//! `multifair doctor`: a good folder passes; each broken one fails, naming the folder or
//! file, without a panic.

mod common;

use std::path::Path;
use std::process::Output;

use common::{multifair, scratch, small_fairvision};

fn doctor(data: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "doctor",
        "--dataset",
        "fairvision",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend(extra);
    multifair(&args)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The doctor's verdict: a failure naming `want` in its [FAIL] line, never a panic.
fn fails_naming(out: Output, want: &str) {
    let all = text(&out);
    assert!(!out.status.success(), "passed: {all}");
    assert!(!all.contains("panicked"), "{all}");
    let fail = all
        .lines()
        .find(|l| l.starts_with("[FAIL]"))
        .unwrap_or_default();
    assert!(fail.contains(want), "no [FAIL] naming {want}: {all}");
}

#[test]
fn a_good_folder_passes_and_each_broken_one_is_named() {
    let dir = scratch("doctor");
    let good = dir.join("good");
    small_fairvision(&good, 3);
    let out = doctor(&good, &["--out", dir.join("results").to_str().unwrap()]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for check in [
        "split train",
        "split val",
        "split test",
        "decode test",
        "groups of race",
        "weights",
        "device",
        "step",
        "disk",
    ] {
        assert!(all.contains(&format!("[ok]   {check}")), "{check}: {all}");
    }
    assert!(all.ends_with("all checks passed\n"), "{all}");

    let copy = |name: &str| {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for entry in walk(&good) {
            let target = to.join(entry.strip_prefix(&good).unwrap());
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&entry, &target).unwrap();
        }
        to
    };
    // No validation split.
    let noval = copy("noval");
    std::fs::remove_dir_all(noval.join("val")).unwrap();
    fails_naming(doctor(&noval, &["--no-step"]), "no val split");
    // An empty split.
    let empty = copy("empty");
    for f in std::fs::read_dir(empty.join("test")).unwrap().flatten() {
        std::fs::remove_file(f.path()).unwrap();
    }
    fails_naming(doctor(&empty, &["--no-step"]), "test");
    // A file that is not an npz.
    let garbled = copy("garbled");
    let first = garbled.join("train/data_00000.npz");
    std::fs::write(&first, b"not a zip at all").unwrap();
    fails_naming(doctor(&garbled, &["--no-step"]), "data_00000.npz");
    // Unreadable weights under the paper profile.
    let weights = dir.join("weights/vit-base-patch16-224-in21k");
    std::fs::create_dir_all(&weights).unwrap();
    std::fs::write(weights.join("config.json"), "{ not json").unwrap();
    let w = dir.join("weights");
    let out = doctor(
        &good,
        &[
            "--profile",
            "paper",
            "--weights-dir",
            w.to_str().unwrap(),
            "--no-step",
        ],
    );
    fails_naming(out, "config.json");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        match e.path().is_dir() {
            true => files.extend(walk(&e.path())),
            false => files.push(e.path()),
        }
    }
    files
}
