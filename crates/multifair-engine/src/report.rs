//! `multifair evaluate`: a predictions CSV in, the fairness report (docs/architecture.md, "The command") out.
//!
//! Input: columns `prob` and `label`, and one integer column per sensitive attribute, under any
//! other name (-1 = unknown). Every bad cell is an error naming the file, the row and the column.
//! A multi-class file has `prob_0` .. `prob_{C-1}` instead of `prob` and class indices as labels:
//! each class is evaluated against the rest, and the report is their mean, with each class's
//! own report under `one_vs_rest`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use multifair_metrics::{
    BootstrapConfig, FrameIntervals, GroupFrame, GroupStats, Interval, MetricError, Predictions,
    UNKNOWN, bootstrap_frame,
};
use serde::Serialize;

pub const PROB: &str = "prob";
pub const LABEL: &str = "label";
pub const NOT_A_PROBABILITY: &str = "is not a probability in [0, 1]";
pub const NOT_A_LABEL: &str = "is not a label in {0, 1}";
pub const NOT_A_CLASS: &str = "is not a class index (0 to the number of prob_C columns - 1)";
pub const NOT_A_CODE: &str = "is not an integer group code (codes are >= 0, or -1 for unknown)";

/// A predictions file that cannot be evaluated. Rows count data rows from 1 (the header is
/// line 1, so row r is line r + 1).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{file}: empty file; expected a header row with columns 'prob', 'label' and one integer column per attribute"
    )]
    Empty { file: PathBuf },
    #[error("{file}: header row: missing column '{column}' (columns found: {found})")]
    MissingColumn {
        file: PathBuf,
        column: &'static str,
        found: String,
    },
    #[error("{file}: header row: column '{column}' appears more than once")]
    DuplicateColumn { file: PathBuf, column: String },
    #[error("{file}: no data rows after the header")]
    NoRows { file: PathBuf },
    #[error("{file}: row {row}: {problem}")]
    Row {
        file: PathBuf,
        row: usize,
        problem: String,
    },
    #[error("{file}: row {row}, column '{column}': '{value}' {problem}")]
    Cell {
        file: PathBuf,
        row: usize,
        column: String,
        value: String,
        problem: &'static str,
    },
}

/// Predictions plus the codes of each attribute column, in file order.
#[derive(Debug)]
pub struct PredictionTable {
    /// One binary task per one-vs-rest class: the file's `prob` against label 1, or each
    /// `prob_C` against label C.
    pub tasks: Vec<Predictions>,
    pub attributes: Vec<(String, Vec<i64>)>,
}

impl PredictionTable {
    /// Reads and validates `path`; `threshold` turns probabilities into decisions.
    pub fn read(path: &Path, threshold: f64) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Io {
            file: path.to_owned(),
            source,
        })?;
        Ok(Self::parse(path, &text, threshold)?)
    }

    /// Parses CSV `text`; `path` only names the source in errors.
    pub fn parse(path: &Path, text: &str, threshold: f64) -> Result<Self, anyhow::Error> {
        let file = || path.to_owned();
        if text.trim().is_empty() {
            return Err(InputError::Empty { file: file() }.into());
        }
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let header: Vec<String> = (reader.headers())
            .map_err(|e| InputError::Row {
                file: file(),
                row: 0,
                problem: e.to_string(),
            })?
            .iter()
            .map(str::to_owned)
            .collect();
        let columns = Columns::find(path, &header)?;
        let (mut probs, labels, codes) = columns.read(path, &header, reader)?;
        if labels.is_empty() {
            return Err(InputError::NoRows { file: file() }.into());
        }
        // Two classes: class 1's task; more: each class's.
        let positive = |c: usize| labels.iter().map(|&y| y == c).collect::<Vec<bool>>();
        let tasks = match columns.probs.len() > 1 {
            true => (probs.into_iter().enumerate())
                .map(|(c, p)| Predictions::new(p, positive(c), threshold))
                .collect::<Result<_, _>>()?,
            false => {
                let p = probs.pop().expect("one prob column");
                vec![Predictions::new(p, positive(1), threshold)?]
            }
        };
        let attributes = (columns.attributes.iter())
            .map(|&c| header[c].clone())
            .zip(codes)
            .collect();
        Ok(PredictionTable { tasks, attributes })
    }
}

/// Where a predictions file keeps the label, the probabilities and the attributes.
struct Columns {
    label: usize,
    /// `prob`, or `prob_0` .. `prob_{C-1}` for a multi-class file.
    probs: Vec<usize>,
    attributes: Vec<usize>,
}

/// Each probability column's values, the labels, each attribute's codes.
type Rows = (Vec<Vec<f64>>, Vec<usize>, Vec<Vec<i64>>);

impl Columns {
    fn find(path: &Path, header: &[String]) -> Result<Columns, InputError> {
        let file = || path.to_owned();
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(InputError::DuplicateColumn {
                    file: file(),
                    column: name.clone(),
                });
            }
        }
        let find = |column: &'static str| {
            (header.iter().position(|h| h == column)).ok_or_else(|| InputError::MissingColumn {
                file: file(),
                column,
                found: header.join(", "),
            })
        };
        let label = find(LABEL)?;
        let classes: Vec<usize> = (0..)
            .map_while(|c| header.iter().position(|h| *h == format!("prob_{c}")))
            .collect();
        let probs = match classes.len() >= 2 {
            true => classes,
            false => vec![find(PROB)?],
        };
        let attributes = (0..header.len())
            .filter(|c| *c != label && !probs.contains(c))
            .collect();
        Ok(Columns {
            label,
            probs,
            attributes,
        })
    }

    /// Every row, each cell checked: probabilities in [0, 1], a label of a class, codes >= -1.
    fn read(
        &self,
        path: &Path,
        header: &[String],
        mut reader: csv::Reader<&[u8]>,
    ) -> Result<Rows, InputError> {
        let multi_class = self.probs.len() > 1;
        let (mut probs, mut labels) = (vec![Vec::new(); self.probs.len()], Vec::new());
        let mut codes = vec![Vec::new(); self.attributes.len()];
        for (index, record) in reader.records().enumerate() {
            let row = index + 1;
            let record = record.map_err(|e| InputError::Row {
                file: path.to_owned(),
                row,
                problem: csv_problem(&e),
            })?;
            let cell = |col: usize, problem: &'static str| InputError::Cell {
                file: path.to_owned(),
                row,
                column: header[col].clone(),
                value: multifair_data::shown(&record[col]),
                problem,
            };
            for (values, &col) in probs.iter_mut().zip(&self.probs) {
                match record[col].parse::<f64>() {
                    Ok(p) if (0.0..=1.0).contains(&p) => values.push(p),
                    _ => return Err(cell(col, NOT_A_PROBABILITY)),
                }
            }
            labels.push(match (multi_class, record[self.label].parse::<usize>()) {
                (false, Ok(y)) if y <= 1 => y,
                (false, _) => return Err(cell(self.label, NOT_A_LABEL)),
                (true, Ok(y)) if y < self.probs.len() => y,
                (true, _) => return Err(cell(self.label, NOT_A_CLASS)),
            });
            for (values, &col) in codes.iter_mut().zip(&self.attributes) {
                match record[col].parse::<i64>() {
                    Ok(code) if code >= UNKNOWN => values.push(code),
                    _ => return Err(cell(col, NOT_A_CODE)),
                }
            }
        }
        Ok((probs, labels, codes))
    }
}

fn csv_problem(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("has {len} fields; the header has {expected_len}")
        }
        _ => error.to_string(),
    }
}

/// The report printed by `multifair evaluate` (docs/architecture.md, "The command").
#[derive(Debug, Serialize)]
pub struct Report {
    pub n: usize,
    pub auc: Option<f64>,
    pub attributes: BTreeMap<String, AttributeReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<OverallIntervals>,
}

/// One attribute: its groups by code, the fairness aggregates, the count of unknown codes.
#[derive(Debug, Serialize)]
pub struct AttributeReport {
    pub groups: BTreeMap<i64, GroupStats>,
    pub es_auc: Option<f64>,
    pub dpd: Option<f64>,
    pub deodds: Option<f64>,
    pub worst_group_auc: Option<f64>,
    pub auc_gap: Option<f64>,
    pub unknown: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci: Option<FrameIntervals>,
}

impl AttributeReport {
    pub fn new(frame: GroupFrame, ci: Option<FrameIntervals>) -> Self {
        AttributeReport {
            es_auc: frame.es_auc(),
            dpd: frame.dpd(),
            deodds: frame.deodds(),
            worst_group_auc: frame.worst_group_auc(),
            auc_gap: frame.auc_gap(),
            unknown: frame.unknown,
            groups: frame.groups,
            ci,
        }
    }
}

/// The overall AUC's interval, resampled within each class, and how it was drawn.
#[derive(Debug, Serialize)]
pub struct OverallIntervals {
    pub auc: Option<Interval>,
    pub resamples: usize,
    pub seed: u64,
    pub level: f64,
}

/// The report of a table as JSON: the binary report (docs/architecture.md, "The command"), or for several classes the
/// mean of the classes' one-vs-rest reports with each under `one_vs_rest` (by class index) —
/// intervals stay in the per-class reports, since a mean of bounds is not an interval.
pub fn report_json(
    table: &PredictionTable,
    bootstrap: Option<&BootstrapConfig>,
) -> anyhow::Result<serde_json::Value> {
    if let [binary] = table.tasks.as_slice() {
        return Ok(serde_json::to_value(report(
            binary,
            &table.attributes,
            bootstrap,
        )?)?);
    }
    let reports = table
        .tasks
        .iter()
        .map(|t| {
            Ok(serde_json::to_value(report(
                t,
                &table.attributes,
                bootstrap,
            )?)?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut mean = macro_report(&reports);
    mean["classes"] = serde_json::json!(reports.len());
    mean["one_vs_rest"] = serde_json::Value::Array(reports);
    Ok(mean)
}

/// The mean of the defined values (a macro average over one-vs-rest tasks); `None` if none is.
pub fn macro_mean(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let defined: Vec<f64> = values.into_iter().flatten().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

/// Macro averages of one-vs-rest reports, key by key: numbers that differ are averaged over the
/// reports that define them, other values come from the first report; intervals (`ci`) are
/// left out.
fn macro_report(reports: &[serde_json::Value]) -> serde_json::Value {
    use serde_json::Value;
    match &reports[0] {
        Value::Object(first) => Value::Object(
            first
                .keys()
                .filter(|k| *k != "ci")
                .map(|k| {
                    let parts: Vec<Value> = reports
                        .iter()
                        .map(|r| r.get(k).cloned().unwrap_or(Value::Null))
                        .collect();
                    (k.clone(), macro_report(&parts))
                })
                .collect(),
        ),
        Value::Number(_) | Value::Null
            if reports.iter().any(Value::is_number) && reports.iter().any(|r| r != &reports[0]) =>
        {
            serde_json::json!(macro_mean(reports.iter().map(Value::as_f64)))
        }
        other => other.clone(),
    }
}

/// Evaluates one binary task on every attribute; with `bootstrap`, adds seeded intervals that
/// resample within the attribute's groups (and within classes for the overall AUC).
pub fn report(
    predictions: &Predictions,
    attribute_codes: &[(String, Vec<i64>)],
    bootstrap: Option<&BootstrapConfig>,
) -> Result<Report, MetricError> {
    let mut attributes = BTreeMap::new();
    for (name, codes) in attribute_codes {
        let frame = GroupFrame::new(predictions, codes)?;
        let ci = bootstrap
            .map(|b| bootstrap_frame(predictions, codes, b))
            .transpose()?;
        attributes.insert(name.clone(), AttributeReport::new(frame, ci));
    }
    let ci = bootstrap
        .map(|b| -> Result<_, MetricError> {
            let classes: Vec<i64> = predictions.labels().iter().map(|&y| i64::from(y)).collect();
            let by_class = bootstrap_frame(predictions, &classes, b)?;
            Ok(OverallIntervals {
                auc: by_class.metrics["auc"],
                resamples: b.resamples,
                seed: b.seed,
                level: b.level,
            })
        })
        .transpose()?;
    Ok(Report {
        n: predictions.len(),
        auc: predictions.auc(),
        attributes,
        ci,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<PredictionTable> {
        PredictionTable::parse(Path::new("p.csv"), text, 0.5)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_several_attributes_in_file_order() {
        let table = parse("race,prob,label,male\n0,0.9,1,1\n2,0.2,0,-1\n").unwrap();
        assert_eq!(table.tasks[0].len(), 2);
        assert_eq!(table.attributes[0], ("race".to_owned(), vec![0, 2]));
        assert_eq!(table.attributes[1], ("male".to_owned(), vec![1, -1]));
    }

    #[test]
    fn multi_class_files_are_evaluated_one_vs_rest() {
        let text = "prob_0,prob_1,prob_2,label,site\n\
            0.7,0.2,0.1,0,0\n0.2,0.5,0.3,1,0\n0.1,0.3,0.6,2,1\n\
            0.3,0.3,0.4,0,1\n0.2,0.6,0.2,1,1\n0.5,0.1,0.4,2,0\n";
        let table = parse(text).unwrap();
        assert_eq!(table.tasks.len(), 3);
        assert_eq!(
            table.attributes,
            [("site".to_owned(), vec![0, 0, 1, 1, 1, 0])]
        );
        let json = report_json(&table, None).unwrap();
        let per_class: Vec<f64> = (0..3)
            .map(|c| json["one_vs_rest"][c]["auc"].as_f64().unwrap())
            .collect();
        // Class 0: scores 0.7, 0.3 (positives) against 0.2, 0.1, 0.2, 0.5: 7 of 8 pairs won.
        assert!((per_class[0] - 0.875).abs() < 1e-12, "{per_class:?}");
        let mean = per_class.iter().sum::<f64>() / 3.0;
        assert!((json["auc"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert_eq!(json["n"], 6);
        assert_eq!(json["classes"], 3);
        assert_eq!(
            error("prob_0,prob_1,prob_2,label\n0.2,0.3,0.5,3\n"),
            format!("p.csv: row 1, column 'label': '3' {NOT_A_CLASS}")
        );
        assert_eq!(
            error("prob_0,prob_1,label\n0.2,1.3,1\n"),
            format!("p.csv: row 1, column 'prob_1': '1.3' {NOT_A_PROBABILITY}")
        );
    }

    #[test]
    fn each_malformed_input_names_its_row_and_column() {
        assert_eq!(
            error("prob,label,race\n0.5,1,0\n1.5,0,1\n"),
            format!("p.csv: row 2, column 'prob': '1.5' {NOT_A_PROBABILITY}")
        );
        assert_eq!(
            error("prob,label,race\nNaN,1,0\n"),
            format!("p.csv: row 1, column 'prob': 'NaN' {NOT_A_PROBABILITY}")
        );
        assert_eq!(
            error("prob,label,race\n0.5,2,0\n"),
            format!("p.csv: row 1, column 'label': '2' {NOT_A_LABEL}")
        );
        assert_eq!(
            error("prob,label,race\n0.5,1,0\n0.5,1,White\n"),
            format!("p.csv: row 2, column 'race': 'White' {NOT_A_CODE}")
        );
        assert_eq!(
            error("prob,label,race\n0.5,1,1.5\n"),
            format!("p.csv: row 1, column 'race': '1.5' {NOT_A_CODE}")
        );
        assert_eq!(
            error("prob,label,race\n0.5,1,-2\n"),
            format!("p.csv: row 1, column 'race': '-2' {NOT_A_CODE}")
        );
        assert_eq!(
            error("label,race\n1,0\n"),
            "p.csv: header row: missing column 'prob' (columns found: label, race)"
        );
        assert_eq!(
            error("prob,race\n0.5,0\n"),
            "p.csv: header row: missing column 'label' (columns found: prob, race)"
        );
        assert_eq!(
            error(""),
            "p.csv: empty file; expected a header row with columns 'prob', 'label' and one integer column per attribute"
        );
        assert_eq!(
            error("prob,label\n"),
            "p.csv: no data rows after the header"
        );
        assert_eq!(
            error("prob,label,race\n0.5,1\n"),
            "p.csv: row 1: has 2 fields; the header has 3"
        );
        assert_eq!(
            error("prob,label,prob\n0.5,1,0.5\n"),
            "p.csv: header row: column 'prob' appears more than once"
        );
    }

    #[test]
    fn report_counts_unknowns_and_nulls_undefined_group_auc() {
        let table =
            parse("prob,label,race\n0.9,1,0\n0.2,0,0\n0.8,1,1\n0.7,1,1\n0.4,0,-1\n").unwrap();
        let report = report(&table.tasks[0], &table.attributes, None).unwrap();
        let race = &report.attributes["race"];
        assert_eq!(race.unknown, 1);
        assert_eq!(race.groups[&1].auc, None);
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["attributes"]["race"]["groups"]["1"]["auc"].is_null());
        assert!(json.get("ci").is_none());
    }

    #[test]
    fn bootstrap_adds_intervals() {
        let rows: String = (0..60)
            .map(|i| {
                format!(
                    "{},{},{}\n",
                    (i % 10) as f64 / 10.0,
                    (i % 10 >= 4) as u8 ^ (i % 7 == 0) as u8,
                    i % 3
                )
            })
            .collect();
        let table = parse(&format!("prob,label,race\n{rows}")).unwrap();
        let report = report(
            &table.tasks[0],
            &table.attributes,
            Some(&BootstrapConfig::new(50, 3)),
        )
        .unwrap();
        let ci = report.ci.as_ref().unwrap().auc.unwrap();
        assert!(ci.low <= report.auc.unwrap() && report.auc.unwrap() <= ci.high);
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["attributes"]["race"]["ci"]["es_auc"]["low"].is_number());
        assert!(json["attributes"]["race"]["ci"]["group_auc"]["2"]["high"].is_number());
    }

    /// Seeded mutations of a valid predictions file (bytes overwritten, lines cut or doubled,
    /// huge numbers): every one is read or refused, never a panic.
    #[test]
    fn damaged_prediction_files_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut valid = String::from("prob_0,prob_1,prob_2,label,race,site\n");
        for i in 0..40 {
            valid += &format!("0.2,0.3,0.5,{},{},{}\n", i % 3, i % 4 - 1, i % 2);
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for _ in 0..500 {
            let mut bytes = valid.clone().into_bytes();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..bytes.len());
                match rng.random_range(0..4) {
                    0 => bytes[i] = rng.random_range(32..127),
                    1 => bytes.truncate(i),
                    2 => bytes
                        .splice(i..i, b"1e308,-99999999999999999999".iter().copied())
                        .for_each(drop),
                    _ => bytes.splice(i..i, b"\n,,\n".iter().copied()).for_each(drop),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let result = std::panic::catch_unwind(|| parse(&text).map(|t| report_json(&t, None)));
            assert!(result.is_ok(), "panicked on:\n{text}");
        }
    }
}
