//! Paper tables from a sweep's results: methods as rows; per attribute, test AUC, ES-AUC, each
//! group's AUC, DPD and DEOdds as mean ± std over seeds; the best of each column in bold; a
//! paired test over seeds (exact sign-flip) of every method against fusion ERM (`*`) and
//! against `multifair` (`†`) at p < 0.05. A run without results shows as missing, a metric a
//! run could not define (a group without both classes) as undefined; neither is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use multifair_metrics::sign_flip_p;
use serde_json::Value;

/// What a column shows and which way is better.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    label: String,
    path: Vec<String>,
    higher_is_better: bool,
}

/// One cell: the values by seed index (None: run missing or metric undefined).
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    values: Vec<Option<f64>>,
    /// Seeds whose run has results.
    runs: usize,
    p_vs_erm: Option<f64>,
    p_vs_multifair: Option<f64>,
}

impl Cell {
    fn present(&self) -> Vec<f64> {
        self.values.iter().flatten().copied().collect()
    }

    fn mean_std(&self) -> Option<(f64, f64)> {
        mean_std(&self.present())
    }
}

/// The aggregated results of one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeTable {
    pub attribute: String,
    columns: Vec<Column>,
    /// (label, method, cells by column)
    rows: Vec<(String, String, Vec<Cell>)>,
    seeds: usize,
}

/// All attributes of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    pub name: String,
    pub tables: Vec<AttributeTable>,
}

/// Mean and sample standard deviation (0 for one value); None when empty.
pub(crate) fn mean_std(values: &[f64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    Some((mean, var.sqrt()))
}

/// The number at `path` in a JSON report.
pub(crate) fn at(value: &Value, path: &[String]) -> Option<f64> {
    path.iter()
        .try_fold(value, |v, key| v.get(key.as_str()))
        .and_then(Value::as_f64)
}

/// Each finished run's report, by (label, attribute, seed index).
type Reports = BTreeMap<(String, String, usize), Value>;

/// Reads every planned run's `test.json` under `results` (the folder with `sweep.json`).
pub fn load(results: &Path) -> anyhow::Result<Tables> {
    let plan = crate::sweep::read_plan(results)?;
    let mut tests = Reports::new();
    for run in &plan.runs {
        // A torn or out-of-range report is said and left out, as a missing one is.
        match multifair_engine::run_dir::read_report(&results.join(&run.folder)) {
            Ok(Some(test)) => {
                tests.insert(
                    (run.label.clone(), run.attribute.clone(), run.seed_index),
                    test,
                );
            }
            Ok(None) => {}
            Err(e) => eprintln!("left out of the tables: {e:#}"),
        }
    }
    let labels: Vec<(String, String)> = (plan.spec.runs.iter())
        .map(|r| (r.label.clone(), r.method.clone()))
        .collect();
    let tables = (plan.spec.attributes.iter())
        .map(|attribute| attribute_table(&tests, attribute, &labels, plan.spec.seeds))
        .collect();
    Ok(Tables {
        name: plan.spec.name,
        tables,
    })
}

/// The columns of `attribute`'s table: AUC, ES-AUC, each group's AUC (named as a manifest
/// names its groups), DPD and DEOdds.
fn columns(tests: &Reports, attribute: &str) -> Vec<Column> {
    let mut groups = BTreeSet::new();
    for ((_, a, _), test) in tests {
        if a == attribute
            && let Some(g) = test["attributes"][attribute]["groups"].as_object()
        {
            groups.extend(g.keys().cloned());
        }
    }
    let attr = |leaf: &[&str]| -> Vec<String> {
        ["attributes", attribute]
            .iter()
            .chain(leaf)
            .map(|s| s.to_string())
            .collect()
    };
    let column = |label: String, path: Vec<String>, higher_is_better| Column {
        label,
        path,
        higher_is_better,
    };
    let name = |g: &str| -> String {
        let named = tests.values().find_map(|t| {
            let i: usize = g.parse().ok()?;
            t["group_names"][attribute][i].as_str().map(str::to_owned)
        });
        named.unwrap_or_else(|| g.to_owned())
    };
    let mut columns = vec![
        column("AUC".into(), vec!["auc".into()], true),
        column("ES-AUC".into(), attr(&["es_auc"]), true),
    ];
    for g in &groups {
        columns.push(column(
            format!("AUC {attribute}={}", name(g)),
            attr(&["groups", g, "auc"]),
            true,
        ));
    }
    columns.push(column("DPD".into(), attr(&["dpd"]), false));
    columns.push(column("DEOdds".into(), attr(&["deodds"]), false));
    columns
}

/// `attribute`'s table: a row per label, each cell its values over seeds and its paired tests
/// against fusion ERM and MultiFair.
fn attribute_table(
    tests: &Reports,
    attribute: &str,
    labels: &[(String, String)],
    seeds: usize,
) -> AttributeTable {
    let columns = columns(tests, attribute);
    let values = |label: &str, column: &Column| -> Vec<Option<f64>> {
        (0..seeds)
            .map(|s| {
                (tests.get(&(label.to_owned(), attribute.to_owned(), s)))
                    .and_then(|t| at(t, &column.path))
            })
            .collect()
    };
    let reference = |method: &str| labels.iter().find(|(_, m)| m == method).map(|(l, _)| l);
    let (erm, multifair) = (reference("erm"), reference("multifair"));
    let paired = |a: &[Option<f64>], b: &[Option<f64>]| {
        let diffs: Vec<f64> = (a.iter().zip(b))
            .filter_map(|(x, y)| Some((*x)? - (*y)?))
            .collect();
        sign_flip_p(&diffs)
    };
    let runs_of = |label: &str| {
        (0..seeds)
            .filter(|s| tests.contains_key(&(label.to_owned(), attribute.to_owned(), *s)))
            .count()
    };
    let rows = (labels.iter())
        .map(|(label, method)| {
            let cells = (columns.iter())
                .map(|c| {
                    let mine = values(label, c);
                    let against = |other: Option<&String>| {
                        (other.filter(|o| *o != label)).and_then(|o| paired(&mine, &values(o, c)))
                    };
                    Cell {
                        p_vs_erm: against(erm),
                        p_vs_multifair: against(multifair),
                        values: mine,
                        runs: runs_of(label),
                    }
                })
                .collect();
            (label.clone(), method.clone(), cells)
        })
        .collect();
    AttributeTable {
        attribute: attribute.to_owned(),
        columns,
        rows,
        seeds,
    }
}

/// The formatted text of one cell in a markup: (mean ± std, bold?, markers, count note).
struct Shown {
    text: Option<(f64, f64)>,
    best: bool,
    vs_erm: bool,
    vs_multifair: bool,
    n: usize,
    runs: usize,
}

impl AttributeTable {
    /// Each row's cells with the column's best marked.
    fn shown(&self) -> Vec<(String, String, Vec<Shown>)> {
        let best: Vec<Option<f64>> = (0..self.columns.len())
            .map(|j| {
                // Only complete rows compete for best.
                let means = self
                    .rows
                    .iter()
                    .filter(|(_, _, cells)| cells[j].present().len() == self.seeds)
                    .filter_map(|(_, _, cells)| cells[j].mean_std().map(|(m, _)| m));
                if self.columns[j].higher_is_better {
                    means.fold(None, |b: Option<f64>, m| Some(b.map_or(m, |b| b.max(m))))
                } else {
                    means.fold(None, |b: Option<f64>, m| Some(b.map_or(m, |b| b.min(m))))
                }
            })
            .collect();
        self.rows
            .iter()
            .map(|(label, method, cells)| {
                let shown = cells
                    .iter()
                    .enumerate()
                    .map(|(j, cell)| {
                        let ms = cell.mean_std();
                        // Compare at the printed precision, so ties are all bold.
                        let round = |v: f64| (v * 1000.0).round();
                        let complete = cell.present().len() == self.seeds;
                        Shown {
                            best: complete
                                && ms
                                    .zip(best[j])
                                    .is_some_and(|((m, _), b)| round(m) == round(b)),
                            text: ms,
                            vs_erm: cell.p_vs_erm.is_some_and(|p| p < 0.05),
                            vs_multifair: cell.p_vs_multifair.is_some_and(|p| p < 0.05),
                            n: cell.present().len(),
                            runs: cell.runs,
                        }
                    })
                    .collect();
                (label.clone(), method.clone(), shown)
            })
            .collect()
    }
}

const NOTE: &str = "mean ± std over seeds; bold: best in the column among complete rows; * p < 0.05 against fusion ERM, † against multifair (exact paired sign-flip test over seeds: needs at least 6 seeds to reach p < 0.05); (k/n): k of n seeds; missing: no results; undefined: a group without both classes.";

pub fn markdown(t: &Tables) -> String {
    let mut out = format!("# {}\n\n{NOTE}\n", t.name);
    for table in &t.tables {
        let _ = writeln!(out, "\n## {}\n", table.attribute);
        // A manifest's group names reach the headers: a `|` would split a cell.
        let header: Vec<String> = table
            .columns
            .iter()
            .map(|c| c.label.replace('|', "\\|"))
            .collect();
        let _ = writeln!(out, "| method | {} |", header.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(header.len()));
        for (label, _, cells) in table.shown() {
            let text: Vec<String> = cells
                .iter()
                .map(|c| match c.text {
                    None if c.runs > 0 => "undefined".into(),
                    None => format!("missing (0/{})", table.seeds),
                    Some((m, s)) => {
                        let mut v = if c.n > 1 {
                            format!("{m:.3} ± {s:.3}")
                        } else {
                            format!("{m:.3}")
                        };
                        if c.best {
                            v = format!("**{v}**");
                        }
                        v += match (c.vs_erm, c.vs_multifair) {
                            (true, true) => " *†",
                            (true, false) => " *",
                            (false, true) => " †",
                            _ => "",
                        };
                        if c.n < table.seeds {
                            v += &format!(" ({}/{})", c.n, table.seeds);
                        }
                        v
                    }
                })
                .collect();
            let _ = writeln!(out, "| {label} | {} |", text.join(" | "));
        }
    }
    out
}

fn latex_escape(s: &str) -> String {
    s.replace('_', r"\_")
        .replace('%', r"\%")
        .replace('&', r"\&")
}

pub fn latex(t: &Tables) -> String {
    let mut out = format!(
        "% {} — {}\n% Needs \\usepackage{{booktabs}}.\n",
        t.name,
        NOTE.replace('†', "\\dagger")
    );
    for table in &t.tables {
        let n = table.columns.len();
        let _ = writeln!(out, "\\begin{{table}}[t]\n\\centering\\small");
        let _ = writeln!(
            out,
            "\\caption{{{}: {}.}}",
            latex_escape(&t.name),
            latex_escape(&table.attribute)
        );
        let _ = writeln!(out, "\\begin{{tabular}}{{l{}}}\n\\toprule", "c".repeat(n));
        let header: Vec<String> = table
            .columns
            .iter()
            .map(|c| latex_escape(&c.label))
            .collect();
        let _ = writeln!(out, "Method & {} \\\\\n\\midrule", header.join(" & "));
        for (label, _, cells) in table.shown() {
            let text: Vec<String> = cells
                .iter()
                .map(|c| match c.text {
                    None if c.runs > 0 => "n/a".into(),
                    None => "missing".into(),
                    Some((m, s)) => {
                        let core = if c.n > 1 {
                            format!("{m:.3} $\\pm$ {s:.3}")
                        } else {
                            format!("{m:.3}")
                        };
                        let core = if c.best {
                            format!("\\textbf{{{core}}}")
                        } else {
                            core
                        };
                        let marks = match (c.vs_erm, c.vs_multifair) {
                            (true, true) => "$^{*\\dagger}$",
                            (true, false) => "$^{*}$",
                            (false, true) => "$^{\\dagger}$",
                            _ => "",
                        };
                        let partial = if c.n < table.seeds {
                            format!(" ({}/{})", c.n, table.seeds)
                        } else {
                            String::new()
                        };
                        format!("{core}{marks}{partial}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{} & {} \\\\", latex_escape(&label), text.join(" & "));
        }
        let _ = writeln!(out, "\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n");
    }
    out
}

pub fn csv(t: &Tables) -> String {
    let mut out = String::from(
        "attribute,label,method,metric,mean,std,n,runs,seeds,p_vs_erm,p_vs_multifair\n",
    );
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    for table in &t.tables {
        for (label, method, cells) in &table.rows {
            for (column, cell) in table.columns.iter().zip(cells) {
                let ms = cell.mean_std();
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{}",
                    table.attribute,
                    label,
                    method,
                    column.label,
                    num(ms.map(|(m, _)| m)),
                    num(ms.map(|(_, s)| s)),
                    cell.present().len(),
                    cell.runs,
                    table.seeds,
                    num(cell.p_vs_erm),
                    num(cell.p_vs_multifair)
                );
            }
        }
    }
    out
}

/// Renders `tables` in `format` (md, latex or csv).
/// A table's output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Latex,
    Csv,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Md, Format::Latex, Format::Csv];

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Md => "md",
            Format::Latex => "tex",
            Format::Csv => "csv",
        }
    }
}

pub fn render(tables: &Tables, format: Format) -> anyhow::Result<String> {
    match format {
        Format::Md => Ok(markdown(tables)),
        Format::Latex => Ok(latex(tables)),
        Format::Csv => Ok(csv(tables)),
    }
}
