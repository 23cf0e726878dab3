//! Helpers shared by the end-to-end tests: the binary, fresh scratch folders, a small dataset.
#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `multifair ARGS`.
pub fn multifair(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multifair"))
        .args(args)
        .output()
        .expect("run multifair")
}

/// `out`, after checking that the command succeeded (its stderr otherwise).
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `multifair ARGS` and expects success.
pub fn run_ok(args: &[&str]) -> Output {
    ok(multifair(args))
}

/// An empty folder of this test process. The first call also removes the folders that test
/// processes which have ended left behind (a process cannot clean up after its last test).
pub fn scratch(name: &str) -> PathBuf {
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_ended_processes_scratch);
    let dir = std::env::temp_dir().join(format!("multifair-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes `multifair-test-PID-*` folders whose process is gone (Linux: no `/proc/PID`).
fn remove_ended_processes_scratch() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("multifair-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A small FairVision-format dataset (48 / 24 / 32 samples, 16 px, 6 B-scans) in `dir`.
pub fn small_fairvision(dir: &Path, seed: u64) {
    let seed = seed.to_string();
    run_ok(&[
        "generate",
        "--kind",
        "fairvision",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        &seed,
        "--n-train",
        "48",
        "--n-val",
        "24",
        "--n-test",
        "32",
        "--size",
        "16",
        "--depth",
        "6",
    ]);
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A spec on `small_fairvision` data (race, 16 px, 4 slices, batch 16) with these `[[runs]]`.
pub fn small_spec(name: &str, seeds: usize, epochs: usize, runs: &str) -> String {
    format!(
        "name = \"{name}\"\ndataset = \"fairvision\"\nattributes = [\"race\"]\nseeds = {seeds}\n\
         epochs = {epochs}\n[set]\nimage_size = 16\nslices = 4\nbatch_size = 16\n{runs}"
    )
}
