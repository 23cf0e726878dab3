//! Hostile inputs, second round (docs/hostile-inputs.md): paths that would leave the output
//! folder, inputs that hung, sizes that exhausted memory, silent wrong choices and successes.
//! Every case ends in a clear message or a correct result within its time bound, and nothing
//! is written outside the output folder.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{read, run_ok, scratch, small_fairvision, small_spec};
use serde_json::Value;

/// `multifair ARGS` in `cwd`, killed and failed past `seconds`.
fn within(seconds: u64, cwd: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_multifair"))
        .args(args)
        .current_dir(cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(seconds) {
            child.kill().unwrap();
            panic!("multifair {args:?} ran past {seconds} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The stderr of a command that must fail.
fn refused(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "succeeded: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

#[test]
fn names_labels_and_attributes_stay_one_folder_under_the_output() {
    let dir = scratch("confined");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let data = dir.join("data");
    small_fairvision(&data, 0);
    let runs = "[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n";
    let cases = [
        small_spec(
            "ok",
            1,
            1,
            "[[runs]]\nlabel = '../../escaped'\nmethod = 'erm'\n",
        ),
        small_spec(
            "ok",
            1,
            1,
            "[[runs]]\nlabel = '/tmp/absolute'\nmethod = 'erm'\n",
        ),
        small_spec("ok", 1, 1, "[[runs]]\nlabel = ''\nmethod = 'erm'\n"),
        small_spec("../../x", 1, 1, runs),
        small_spec("/tmp/x", 1, 1, runs),
        small_spec("", 1, 1, runs),
        small_spec("ok", 1, 1, runs).replace("[\"race\"]", "[\"../race\"]"),
    ];
    let before = files(&dir);
    for (i, text) in cases.iter().enumerate() {
        let spec = dir.join(format!("spec{i}.toml"));
        std::fs::write(&spec, text).unwrap();
        // Without --out the spec's name picks the folder (results/NAME under the current one).
        let args = [
            "sweep",
            spec.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ];
        let err = refused(within(60, &work, &args));
        assert!(err.contains("cannot name a folder"), "{text}\n{err}");
    }
    let mut after = files(&dir);
    after.retain(|f| !f.starts_with("spec"));
    assert_eq!(after, before, "a refused spec wrote files");
    // A manifest TOML naming a manifest outside its folder needs allow_outside.
    let cohort = dir.join("cohort");
    run_ok(&[
        "generate",
        "--kind",
        "manifest",
        "--out",
        cohort.to_str().unwrap(),
        "--n-train",
        "12",
        "--n-val",
        "6",
        "--n-test",
        "6",
    ]);
    std::fs::rename(cohort.join("manifest.csv"), dir.join("outside.csv")).unwrap();
    let toml = read(&cohort.join("manifest.toml")).replace(
        "manifest = \"manifest.csv\"",
        "manifest = \"../outside.csv\"",
    );
    std::fs::write(cohort.join("manifest.toml"), toml).unwrap();
    let summary = [
        "data",
        "summary",
        "--dataset",
        "manifest",
        "--data-dir",
        cohort.to_str().unwrap(),
    ];
    let err = refused(within(60, &dir, &summary));
    assert!(
        err.contains("leaves the TOML's folder") && err.contains("allow_outside"),
        "{err}"
    );
    // A manifest attribute's name is a folder name too.
    std::fs::rename(dir.join("outside.csv"), cohort.join("manifest.csv")).unwrap();
    let toml = read(&cohort.join("manifest.toml"))
        .replace(
            "manifest = \"../outside.csv\"",
            "manifest = \"manifest.csv\"",
        )
        .replace("name = \"sex\"", "name = \"../sex\"");
    std::fs::write(cohort.join("manifest.toml"), toml).unwrap();
    let err = refused(within(60, &dir, &summary));
    assert!(
        err.contains("attribute '../sex' cannot name a folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sizes_and_repeats_are_refused_before_anything_is_allocated() {
    let dir = scratch("sizes");
    let data = dir.join("data");
    small_fairvision(&data, 0);
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let runs = "[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n";
    let spec = write("ok.toml", small_spec("ok", 1, 1, runs));
    let d = data.to_str().unwrap();
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "sweep".into(),
                spec.clone(),
                "--seeds".into(),
                "1000000000000".into(),
                "--dry-run".into(),
            ],
            "seeds = 1000000000000: must be 1 to 1000",
        ),
        (
            vec![
                "sweep".into(),
                spec.clone(),
                "--seeds".into(),
                "0".into(),
                "--dry-run".into(),
            ],
            "seeds = 0: must be 1 to 1000",
        ),
        (
            vec![
                "tune".into(),
                spec.clone(),
                "--trials".into(),
                "100000000000".into(),
            ],
            "--trials 100000000000: must be 1 to 1000",
        ),
        (
            vec![
                "sweep".into(),
                write(
                    "list.toml",
                    small_spec("l", 3, 1, runs).replace("seeds = 3", "seeds = 3\nseed_list = [5]"),
                ),
                "--dry-run".into(),
            ],
            "seeds = 3 but seed_list has 1 seed(s)",
        ),
        (
            vec![
                "sweep".into(),
                write(
                    "dup.toml",
                    small_spec("d", 2, 1, runs)
                        .replace("seeds = 2", "seeds = 2\nseed_list = [5, 5]"),
                ),
                "--dry-run".into(),
            ],
            "seed 5 appears twice",
        ),
        (
            vec![
                "sweep".into(),
                write(
                    "attr.toml",
                    small_spec("a", 1, 1, runs).replace("[\"race\"]", "[\"race\", \"race\"]"),
                ),
                "--dry-run".into(),
            ],
            "the attribute 'race' appears twice",
        ),
        (
            vec![
                "tune".into(),
                write(
                    "tune.toml",
                    small_spec("t", 1, 1, runs)
                        .replace("seeds = 1", "seeds = 1\ntune = [\"nope\"]"),
                ),
                "--trials".into(),
                "2".into(),
            ],
            "tune: 'nope' is no --set key",
        ),
        (
            vec![
                "compare".into(),
                "--methods".into(),
                "erm,erm".into(),
                "--seeds".into(),
                "1".into(),
            ],
            "'erm' appears twice in --methods",
        ),
    ];
    for (args, want) in cases {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--data-dir", d, "--out", o]);
        let err = refused(within(60, &dir, &args));
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!out.exists(), "a refused command wrote {}", out.display());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn settings_out_of_range_and_splits_that_cannot_score_are_refused_before_training() {
    let dir = scratch("unscorable");
    let data = dir.join("data");
    small_fairvision(&data, 1);
    let d = data.to_str().unwrap();
    let train = |extra: &[&str], out: &str| {
        let out = dir.join(out);
        let mut args = vec![
            "train",
            "--dataset",
            "fairvision",
            "--data-dir",
            d,
            "--epochs",
            "1",
            "--set",
            "image_size=16",
            "--set",
            "slices=4",
            "--set",
            "batch_size=16",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        within(120, &dir, &args)
    };
    for (method, set, want) in [
        (
            "multifair",
            "multifair_fairness=-1",
            "must be a finite number >= 0",
        ),
        ("fis", "fis_c=1.5", "must be in [0, 1]"),
        ("fis", "fis_t=0", "must be a finite number > 0"),
        ("fis", "fis_blur=0", "must be a finite number > 0"),
        ("sam", "sam_rho=-1", "must be a finite number > 0"),
    ] {
        let err = refused(train(&["--method", method, "--set", set], "never"));
        assert!(
            err.contains(&format!("--set {set}: method '{method}': {want}")),
            "{set}: {err}"
        );
    }
    assert!(!dir.join("never").join("test.json").exists());
    // FIS on a diverging rate ends (the Sinkhorn iteration was unbounded on infinite losses).
    let err = refused(train(
        &["--method", "fis", "--set", "lr=1e30", "--set", "clip=1e30"],
        "fis",
    ));
    assert!(err.contains("diverged at epoch 1"), "{err}");
    // A split with one class: the training split, then validation, then test.
    let cohort = dir.join("cohort");
    run_ok(&[
        "generate",
        "--kind",
        "manifest",
        "--out",
        cohort.to_str().unwrap(),
        "--n-train",
        "16",
        "--n-val",
        "8",
        "--n-test",
        "8",
    ]);
    let csv = read(&cohort.join("manifest.csv"));
    for split in ["train", "val", "test"] {
        let one: String = csv
            .lines()
            .map(|l| match l.split(',').nth(1) == Some(split) {
                true => l.replacen(",malignant,", ",benign,", 1),
                false => l.to_owned(),
            })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(cohort.join("manifest.csv"), one).unwrap();
        let out = dir.join(format!("one-class-{split}"));
        let err = refused(within(
            120,
            &dir,
            &[
                "train",
                "--dataset",
                "manifest",
                "--data-dir",
                cohort.to_str().unwrap(),
                "--method",
                "erm",
                "--epochs",
                "1",
                "--out",
                out.to_str().unwrap(),
            ],
        ));
        assert!(
            err.contains(&format!("the {split} split"))
                && err.contains("has 1 of 2 classes, only benign"),
            "{split}: {err}"
        );
        assert!(!out.join("test.json").exists());
        std::fs::write(cohort.join("manifest.csv"), &csv).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_writes_whole_datasets_and_reports_are_checked_where_they_are_read() {
    let dir = scratch("generate");
    let data = dir.join("data");
    small_fairvision(&data, 0);
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--kind",
            "fairvision",
            "--out",
            data.to_str().unwrap(),
            "--n-train",
            "40",
            "--n-val",
            "20",
            "--n-test",
            "20",
            "--size",
            "16",
            "--depth",
            "4",
        ];
        args.extend(extra);
        within(60, &dir, &args)
    };
    let err = refused(generate(&[]));
    assert!(
        err.contains("is not empty") && err.contains("--replace"),
        "{err}"
    );
    assert!(generate(&["--replace"]).status.success());
    let meta: Value = serde_json::from_str(&read(&data.join("meta.json"))).unwrap();
    assert_eq!(meta["splits"]["train"]["n"], 40, "{meta}");
    // A folder generate did not write is never replaced.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), "precious").unwrap();
    let err = refused(within(
        60,
        &dir,
        &[
            "generate",
            "--kind",
            "fairvision",
            "--out",
            foreign.to_str().unwrap(),
            "--replace",
        ],
    ));
    assert!(err.contains("holds no dataset generate wrote"), "{err}");
    assert_eq!(read(&foreign.join("thesis.tex")), "precious");

    // A sweep of two seeds: one report torn, then one out of range.
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        small_spec("reports", 2, 1, "[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n"),
    )
    .unwrap();
    let out = dir.join("out");
    let (s, d, o) = (
        spec.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    run_ok(&["sweep", s, "--data-dir", d, "--out", o]);
    let plan: Value = serde_json::from_str(&read(&out.join("sweep.json"))).unwrap();
    let folder = out.join(plan["runs"][0]["folder"].as_str().unwrap());
    let report = read(&folder.join("test.json"));
    for (broken, want) in [
        (report[..report.len() / 2].to_owned(), "not a whole report"),
        (
            report.replacen("\"auc\": ", "\"auc\": 7.5, \"was\": ", 1),
            "auc = 7.5 lies outside [0, 1]",
        ),
    ] {
        std::fs::write(folder.join("test.json"), &broken).unwrap();
        let table = run_ok(&["table", o, "--format", "csv"]);
        let err = String::from_utf8_lossy(&table.stderr);
        assert!(
            err.contains("left out of the tables") && err.contains(want),
            "{err}"
        );
        assert!(!String::from_utf8_lossy(&table.stdout).contains("7.5"));
        let runs =
            String::from_utf8_lossy(&run_ok(&["runs", o, "--format", "json"]).stdout).into_owned();
        assert!(runs.contains(want), "{runs}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two `tune` processes on one folder: both end with the whole table, the trials trained once,
/// each choice made among finished trials.
#[test]
fn two_tunes_on_one_folder_coordinate() {
    let dir = scratch("two-tunes");
    let data = dir.join("data");
    small_fairvision(&data, 2);
    let spec = dir.join("spec.toml");
    let runs = "[[runs]]\nlabel = 'erm'\nmethod = 'erm'\n[[runs]]\nlabel = 'sam'\nmethod = 'sam'\n";
    std::fs::write(&spec, small_spec("twice", 2, 2, runs)).unwrap();
    let out = dir.join("out");
    let args = [
        "tune",
        spec.to_str().unwrap(),
        "--trials",
        "2",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_multifair"))
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let tables: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect();
    assert_eq!(tables[0], tables[1]);
    assert!(
        tables[0].contains("| erm") && tables[0].contains("| sam"),
        "{}",
        tables[0]
    );
    let plan: Value = serde_json::from_str(&read(&out.join("trials/sweep.json"))).unwrap();
    for run in plan["runs"].as_array().unwrap() {
        let log = read(
            &out.join("trials")
                .join(run["folder"].as_str().unwrap())
                .join("train.log"),
        );
        assert_eq!(log.matches("test AUC").count(), 1, "{log}");
    }
    let tuned: Value = serde_json::from_str(&read(&out.join("tuned.json"))).unwrap();
    for row in ["erm", "sam"] {
        let scores = tuned[row]["scores"].as_array().unwrap();
        assert!(scores.iter().all(Value::is_f64), "{tuned}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
