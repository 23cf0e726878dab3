//! The GPU check's scripts: both parse, and the pack of this build's `multifair` with the
//! script stays under the 64 MiB a GPU call carries.

mod common;

use std::path::Path;
use std::process::Command;

use common::scratch;

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn the_gpu_scripts_parse_and_the_pack_stays_under_64_mib() {
    for name in ["gpu-check.sh", "pack-gpu-check.sh"] {
        let out = Command::new("bash")
            .args(["-n", &script(name)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = scratch("gpu-pack");
    let pack = dir.join("pack");
    let out = Command::new("bash")
        .arg(script("pack-gpu-check.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_multifair")])
        .arg(&pack)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size: u64 = std::fs::read_dir(&pack)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(pack.join("multifair").is_file() && pack.join("gpu-check.sh").is_file());
    assert!(size < 64 << 20, "{size} bytes");
    // The packed binary runs.
    let version = Command::new(pack.join("multifair"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}
