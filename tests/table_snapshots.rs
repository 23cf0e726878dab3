//! The rendered tables of a committed set of small results (`tests/fixtures/results-mini`: a
//! 3-method, 2-attribute, 2-seed sweep with one run's results removed), snapshotted so that
//! the md, LaTeX and CSV formats cannot drift silently.

mod common;

use std::path::{Path, PathBuf};

use multifair_lab::table::{Format, load, render};

fn results() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/results-mini")
}

fn tables() -> multifair_lab::table::Tables {
    load(&results()).unwrap()
}

#[test]
fn markdown_table() {
    insta::assert_snapshot!(render(&tables(), Format::Md).unwrap());
}

#[test]
fn latex_table() {
    insta::assert_snapshot!(render(&tables(), Format::Latex).unwrap());
}

#[test]
fn csv_table() {
    insta::assert_snapshot!(render(&tables(), Format::Csv).unwrap());
}

#[test]
fn an_unknown_format_is_refused() {
    let out = common::multifair(&["table", results().to_str().unwrap(), "--format", "xlsx"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("invalid value 'xlsx' for '--format <FORMAT>'")
            && err.contains("[possible values: md, latex, csv]"),
        "{err}"
    );
}
