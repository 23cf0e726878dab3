//! Experiment tracking end to end: a 2-run sweep, an MLflow server (SQLite store) on a free
//! port, `multifair export mlflow`, then MLflow's own client and TensorBoard's own reader
//! compare what they see with the run files (`tests/tracking/check.py`); a second export adds
//! nothing. Needs a Python with mlflow and tensorboard (`scripts/setup-tracking.sh`): without
//! one the test says so and passes, unless `MULTIFAIR_REQUIRE_TRACKING=1` (as in CI).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{ok, run_ok as multifair, scratch, small_fairvision};

/// The Python of `scripts/setup-tracking.sh`, or `MULTIFAIR_TRACKING_PYTHON`.
fn python() -> Option<PathBuf> {
    let python = match std::env::var_os("MULTIFAIR_TRACKING_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(std::env::var_os("HOME")?).join(".cache/multifair/tracking/bin/python")
        }
    };
    let works = Command::new(&python)
        .args(["-c", "import mlflow, tensorboard"])
        .output();
    works.is_ok_and(|o| o.status.success()).then_some(python)
}

/// The server, stopped (with its workers) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signals the server's own process group, created at spawn.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn start_server(python: &Path, dir: &Path) -> (Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = format!("sqlite:///{}", dir.join("mlflow.db").display());
    let artifacts = dir.join("artifacts");
    let mut command = Command::new(python);
    command
        .args([
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--backend-store-uri",
            &store,
            "--artifacts-destination",
            artifacts.to_str().unwrap(),
        ])
        .args(["--workers", "1"])
        .stdout(std::fs::File::create(dir.join("server.log")).unwrap())
        .stderr(std::fs::File::create(dir.join("server.err")).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let server = Server(command.spawn().expect("start mlflow server"));
    let uri = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let health = Command::new(python)
            .args([
                "-c",
                &format!(
                    "import urllib.request; urllib.request.urlopen('{uri}/health', timeout=2)"
                ),
            ])
            .output();
        if health.is_ok_and(|o| o.status.success()) {
            return (server, uri);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "mlflow server did not answer /health: {}",
        std::fs::read_to_string(dir.join("server.err")).unwrap_or_default()
    );
}

const RUNS: &str = "[[runs]]\nlabel = \"multifair\"\nmethod = \"multifair\"\n";

#[test]
fn a_sweep_exports_to_mlflow_and_reads_back_in_tensorboard() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("MULTIFAIR_REQUIRE_TRACKING").is_none(),
            "MULTIFAIR_REQUIRE_TRACKING is set but no Python with mlflow and tensorboard was found"
        );
        eprintln!("skipped: no Python with mlflow and tensorboard (run scripts/setup-tracking.sh)");
        return;
    };
    let dir = scratch("tracking");
    let data = dir.join("data");
    small_fairvision(&data, 6);
    std::fs::write(
        dir.join("spec.toml"),
        common::small_spec("tracking", 2, 1, RUNS),
    )
    .unwrap();
    let results = dir.join("results");
    let results_s = results.to_str().unwrap();
    multifair(&[
        "sweep",
        dir.join("spec.toml").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        results_s,
    ]);
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tracking/check.py");
    ok(Command::new(&python)
        .arg(&check)
        .args(["tensorboard", results_s])
        .output()
        .unwrap());

    let (_server, uri) = start_server(&python, &dir);
    let export = ["export", "mlflow", results_s, "--tracking-uri", &uri];
    let first = multifair(&export);
    assert!(String::from_utf8_lossy(&first.stderr).contains("1 new row run(s), 2 new seed run(s)"));
    ok(Command::new(&python)
        .arg(&check)
        .args(["mlflow", &uri, results_s, "tracking", "2"])
        .output()
        .unwrap());
    let second = multifair(&export);
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains("0 new row run(s), 0 new seed run(s), 2 already there"),
        "{said}"
    );
    ok(Command::new(&python)
        .arg(&check)
        .args(["mlflow", &uri, results_s, "tracking", "2"])
        .output()
        .unwrap());
}
