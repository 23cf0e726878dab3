//! The rendered tables of a committed set of small results (`tests/fixtures/results-mini`: a
//! 3-method, 2-attribute, 2-seed sweep with one run's results removed), snapshotted so that
//! the md, LaTeX and CSV formats cannot drift silently.

use std::path::Path;

use multifair_experiments::table::{load, render};

fn tables() -> multifair_experiments::table::Tables {
    load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/results-mini")).unwrap()
}

#[test]
fn markdown_table() {
    insta::assert_snapshot!(render(&tables(), "md").unwrap());
}

#[test]
fn latex_table() {
    insta::assert_snapshot!(render(&tables(), "latex").unwrap());
}

#[test]
fn csv_table() {
    insta::assert_snapshot!(render(&tables(), "csv").unwrap());
}

#[test]
fn an_unknown_format_is_refused() {
    let err = render(&tables(), "xlsx").unwrap_err().to_string();
    assert!(
        err.contains("--format xlsx: expected md, latex or csv"),
        "{err}"
    );
}
