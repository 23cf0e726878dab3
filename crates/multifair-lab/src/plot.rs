//! Figures of a sweep (plotters; each as SVG and PNG): ROC curves per group, per-group AUC bars
//! with 95% intervals over seeds, training dynamics (modality coefficients B_m, group factors,
//! the validation group-AUC gap per epoch) and the modality x group report as a heat map.
//! Text uses the DejaVu Sans font shipped in `assets/`, so no system font is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use multifair_core::stats;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde_json::Value;

use multifair_engine::run_dir::RunDir;

use crate::sweep::{Plan, PlannedRun};
use crate::table::mean_std;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// Draws with `$draw(root, args...)` into `$stem.svg` and `$stem.png`.
macro_rules! both {
    ($stem:expr, $size:expr, $draw:ident, $($arg:expr),*) => {{
        let stem: &Path = $stem;
        let svg = stem.with_extension("svg");
        $draw(SVGBackend::new(&svg, $size).into_drawing_area(), $($arg),*)?;
        let png = stem.with_extension("png");
        {
            let root = BitMapBackend::new(&png, $size).into_drawing_area();
            $draw(root.clone(), $($arg),*)?;
            root.present().map_err(err)?;
        }
        vec![svg, png]
    }};
}

/// Per group code: the ROC curve (FPR, TPR) of `probs` against `labels`.
pub fn roc(probs: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let pos = labels.iter().filter(|&&y| y).count().max(1) as f64;
    let neg = labels.iter().filter(|&&y| !y).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1.0
        } else {
            fp += 1.0
        }
        // One point per distinct score (ties move together).
        if k + 1 == order.len() || probs[order[k + 1]] != probs[i] {
            points.push((fp / neg, tp / pos));
        }
    }
    points
}

/// (prob, label, code of `attribute`) rows of a predictions.csv.
fn predictions(path: &Path, attribute: &str) -> anyhow::Result<Vec<(f64, bool, i64)>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no column '{name}'", path.display()))
    };
    if headers.iter().any(|h| h.starts_with("prob_")) {
        bail!(
            "{}: one probability per class; ROC curves are drawn for two-class labels",
            path.display()
        );
    }
    let (p, y, a) = (col("prob")?, col("label")?, col(attribute)?);
    let mut rows = Vec::new();
    for record in reader.records() {
        let r = record?;
        rows.push((r[p].parse()?, &r[y] == "1", r[a].parse()?));
    }
    Ok(rows)
}

fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 0),
        RGBColor(255, 187, 120),
    ];
    COLORS[i % COLORS.len()]
}

/// (series name, points)
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// (panel title, its series)
type Curves = Vec<(String, Series)>;

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Each series as a labelled line in its palette colour.
fn labelled_lines<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    series: &Series,
) -> anyhow::Result<()> {
    for (i, (name, points)) in series.iter().enumerate() {
        let color = palette(i);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], color.stroke_width(2)));
    }
    Ok(())
}

/// The series legend on a translucent box.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
    size: u32,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .label_font(("sans-serif", size))
        .draw()
        .map_err(err)
}

fn draw_roc<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &Curves,
    attribute: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    for (area, (label, curves)) in root.split_evenly((rows, cols)).iter().zip(panels) {
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{label} ({attribute})"), ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
            .map_err(err)?;
        labelled_lines(&mut chart, curves)?;
        legend(&mut chart, SeriesLabelPosition::LowerRight, 12)?;
    }
    Ok(())
}

/// (label, group, mean, half-width of the 95% interval)
type Bars = Vec<(String, String, f64, f64)>;

/// The bars' labels in first-seen order and their groups, sorted.
fn bar_axes(bars: &Bars) -> (Vec<String>, Vec<String>) {
    let mut labels: Vec<String> = Vec::new();
    for (l, ..) in bars {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    let groups: BTreeSet<String> = bars.iter().map(|(_, g, ..)| g.clone()).collect();
    (labels, groups.into_iter().collect())
}

fn draw_bars<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    bars: &Bars,
    attribute: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (labels, groups) = bar_axes(bars);
    let width = labels.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("test AUC per {attribute} group (mean, 95% interval over seeds)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        // Bars start at 0 on the whole AUC scale, so that a bar's height is its value.
        .build_cartesian_2d(0f64..width, 0f64..1f64)
        .map_err(err)?;
    let names = labels.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len() * 2 + 1)
        .x_label_formatter(&move |x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < names.len() {
                names[i].clone()
            } else {
                String::new()
            }
        })
        .y_desc("AUC")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    let slot = 0.8 / groups.len().max(1) as f64;
    for (gi, group) in groups.iter().enumerate() {
        let color = palette(gi);
        let mine: Vec<(f64, f64, f64)> = bars
            .iter()
            .filter(|(_, g, ..)| g == group)
            .map(|(l, _, m, h)| {
                let x = labels.iter().position(|x| x == l).unwrap() as f64 + 0.1 + slot * gi as f64;
                (x, *m, *h)
            })
            .collect();
        chart
            .draw_series(
                mine.iter().map(|&(x, m, _)| {
                    Rectangle::new([(x, 0.0), (x + slot * 0.9, m)], color.filled())
                }),
            )
            .map_err(err)?
            .label(format!("{attribute}={group}"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        chart
            .draw_series(mine.iter().map(|&(x, m, h)| {
                let c = x + slot * 0.45;
                PathElement::new([(c, m - h), (c, m + h)], BLACK.stroke_width(1))
            }))
            .map_err(err)?;
    }
    // Chance: an AUC of 0.5, dashed.
    let chance = DashedLineSeries::new([(0.0, 0.5), (width, 0.5)], 6, 4, BLACK.stroke_width(1));
    chart
        .draw_series(chance)
        .map_err(err)?
        .label("chance (AUC 0.5)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 10, y)], BLACK.stroke_width(1)));
    legend(&mut chart, SeriesLabelPosition::UpperRight, 12)
}

fn draw_lines<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &Series,
    title: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let epochs = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(1.0f64, f64::max);
    let (lo, hi) = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    let (lo, hi) = if lo.is_finite() {
        (lo.min(0.0), hi.max(1.0) * 1.05)
    } else {
        (0.0, 1.0)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(1f64..epochs.max(2.0), lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    labelled_lines(&mut chart, series)?;
    legend(&mut chart, SeriesLabelPosition::UpperRight, 11)
}

/// Rows (label / modality), columns (groups), values (None: undefined).
type Heat = (Vec<String>, Vec<String>, Vec<Vec<Option<f64>>>);

fn draw_heat<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    heat: &Heat,
    attribute: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (rows, cols, values) = heat;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            &format!("auxiliary-head test AUC per modality and {attribute} group"),
            ("sans-serif", 18),
        )
        .map_err(err)?;
    let (names, grid) = body.split_horizontally(220);
    let cells = grid.split_evenly((rows.len().max(1) + 1, cols.len().max(1)));
    let name_cells = names.split_evenly((rows.len().max(1) + 1, 1));
    for (j, c) in cols.iter().enumerate() {
        cells[j]
            .draw(&Text::new(
                format!("{attribute}={c}"),
                (10, 10),
                ("sans-serif", 14),
            ))
            .map_err(err)?;
    }
    for (i, r) in rows.iter().enumerate() {
        name_cells[i + 1]
            .draw(&Text::new(r.clone(), (8, 10), ("sans-serif", 13)))
            .map_err(err)?;
        for j in 0..cols.len() {
            let area = &cells[(i + 1) * cols.len() + j];
            match values[i][j] {
                Some(v) => {
                    // 0.5 (chance) white to 1.0 dark blue.
                    let t = ((v - 0.5) / 0.5).clamp(0.0, 1.0);
                    let color = RGBColor(
                        (255.0 - 224.0 * t) as u8,
                        (255.0 - 136.0 * t) as u8,
                        (255.0 - 75.0 * t) as u8,
                    );
                    area.fill(&color).map_err(err)?;
                    let ink = if t > 0.6 { WHITE } else { BLACK };
                    area.draw(&Text::new(
                        format!("{v:.3}"),
                        (10, 10),
                        ("sans-serif", 14).into_font().color(&ink),
                    ))
                    .map_err(err)?;
                }
                None => {
                    area.draw(&Text::new("n/a", (10, 10), ("sans-serif", 14)))
                        .map_err(err)?;
                }
            }
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// A run's valid report; a torn or out-of-range one is said and left out.
fn read_report(folder: &Path) -> Option<Value> {
    multifair_engine::run_dir::read_report(folder)
        .inspect_err(|e| eprintln!("left out of the figures: {e:#}"))
        .ok()
        .flatten()
}

/// The group names a manifest gives `attribute` (from any finished run), else none.
fn group_names(results: &Path, plan: &Plan, attribute: &str) -> Vec<String> {
    plan.runs
        .iter()
        .filter_map(|r| read_report(&results.join(&r.folder)))
        .find_map(|t| serde_json::from_value(t["group_names"][attribute].clone()).ok())
        .unwrap_or_default()
}

/// A group code with its name where it has one: "2 (dark)".
fn tag(names: &[String], code: &str) -> String {
    match code.parse::<usize>().ok().and_then(|i| names.get(i)) {
        Some(name) => format!("{code} ({name})"),
        None => code.to_owned(),
    }
}

/// Writes every figure of the sweep in `results` into `out`; returns the files written.
pub fn plot(results: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let plan = crate::sweep::read_plan(results)?;
    let figures = Figures {
        results,
        plan: &plan,
        out,
        labels: plan.spec.runs.iter().map(|r| r.label.clone()).collect(),
    };
    let mut written = Vec::new();
    for attribute in &plan.spec.attributes {
        let names = group_names(results, &plan, attribute);
        written.extend(figures.roc(attribute, &names)?);
        written.extend(figures.group_auc(attribute, &names)?);
    }
    // Training dynamics of each method with statistics: first attribute, first seed.
    let attribute = &plan.spec.attributes[0];
    let names = group_names(results, &plan, attribute);
    for label in &figures.labels {
        if let Some(run) = figures.first_seed(label, attribute) {
            written.extend(figures.dynamics(run, label, attribute, &names)?);
        }
    }
    Ok(written)
}

/// A sweep's figures: where its runs are and where the figures go.
struct Figures<'a> {
    results: &'a Path,
    plan: &'a Plan,
    out: &'a Path,
    labels: Vec<String>,
}

impl Figures<'_> {
    fn runs(&self, label: &str, attribute: &str) -> Vec<&PlannedRun> {
        (self.plan.runs.iter())
            .filter(|r| r.label == label && r.attribute == attribute)
            .collect()
    }

    fn first_seed(&self, label: &str, attribute: &str) -> Option<&PlannedRun> {
        self.runs(label, attribute)
            .into_iter()
            .find(|r| r.seed_index == 0)
    }

    /// ROC per group, each method's first seed.
    fn roc(&self, attribute: &str, names: &[String]) -> anyhow::Result<Vec<PathBuf>> {
        let mut panels: Curves = Vec::new();
        for label in &self.labels {
            let Some(run) = self.first_seed(label, attribute) else {
                continue;
            };
            let path = RunDir::new(self.results.join(&run.folder)).predictions();
            let rows = match predictions(&path, attribute) {
                Ok(rows) => rows,
                Err(e) => {
                    eprintln!("roc-{attribute}: no curves for {label}: {e:#}");
                    continue;
                }
            };
            let codes: BTreeSet<i64> = rows.iter().map(|r| r.2).filter(|&c| c >= 0).collect();
            // A group without both classes has no ROC curve.
            let curves = codes
                .iter()
                .filter_map(|&c| {
                    let (p, y): (Vec<f64>, Vec<bool>) =
                        rows.iter().filter(|r| r.2 == c).map(|r| (r.0, r.1)).unzip();
                    (y.contains(&true) && y.contains(&false)).then(|| {
                        (
                            format!("{attribute}={}", tag(names, &c.to_string())),
                            roc(&p, &y),
                        )
                    })
                })
                .collect();
            panels.push((label.clone(), curves));
        }
        if panels.is_empty() {
            return Ok(Vec::new());
        }
        let rows = panels.len().div_ceil(3) as u32;
        Ok(both!(
            &self.out.join(format!("roc-{attribute}")),
            (1200, 380 * rows),
            draw_roc,
            &panels,
            attribute
        ))
    }

    /// Group AUC bars over seeds, and the modality x group heat map.
    fn group_auc(&self, attribute: &str, names: &[String]) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let mut bars: Bars = Vec::new();
        let (mut heat_rows, mut heat_values) = (Vec::new(), Vec::<BTreeMap<String, f64>>::new());
        let mut groups = BTreeSet::new();
        for label in &self.labels {
            let tests: Vec<Value> = (self.runs(label, attribute).iter())
                .filter_map(|r| read_report(&self.results.join(&r.folder)))
                .collect();
            let (per_group, per_modality) = group_values(&tests, attribute, names);
            for (g, v) in per_group {
                let (m, sd) = mean_std(&v).expect("a group with values");
                let half = match v.len() > 1 {
                    true => 1.96 * sd / (v.len() as f64).sqrt(),
                    false => 0.0,
                };
                groups.insert(g.clone());
                bars.push((label.clone(), g, m, half));
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            for (modality, gs) in per_modality {
                heat_rows.push(format!("{label} / {modality}"));
                heat_values.push(gs.iter().map(|(g, v)| (g.clone(), mean(v))).collect());
            }
        }
        if !bars.is_empty() {
            written.extend(both!(
                &self.out.join(format!("group-auc-{attribute}")),
                (1200, 600),
                draw_bars,
                &bars,
                attribute
            ));
        }
        if !heat_rows.is_empty() {
            let cols: Vec<String> = groups.iter().cloned().collect();
            let values = (heat_values.iter())
                .map(|row| cols.iter().map(|c| row.get(c).copied()).collect())
                .collect();
            let height = 40 + 36 * (heat_rows.len() as u32 + 1);
            let heat: Heat = (heat_rows, cols, values);
            written.extend(both!(
                &self.out.join(format!("modality-group-{attribute}")),
                (900, height.max(200)),
                draw_heat,
                &heat,
                attribute
            ));
        }
        Ok(written)
    }

    /// A method's modality coefficients, group factors and validation gap per epoch, and its
    /// modulation diagnostics, from the first seed's log.
    fn dynamics(
        &self,
        run: &PlannedRun,
        label: &str,
        attribute: &str,
        names: &[String],
    ) -> anyhow::Result<Vec<PathBuf>> {
        let dir = RunDir::new(self.results.join(&run.folder));
        let Ok(text) = std::fs::read_to_string(dir.metrics()) else {
            return Ok(Vec::new());
        };
        // Statistics are logged by modality index: name them from run.json.
        let modalities: Vec<String> = read_json(&dir.run_json())
            .and_then(|r| {
                r["modalities"].as_array().map(|m| {
                    m.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        let (series, updates) = epoch_series(&text, &modalities, attribute, names);
        let mut written = Vec::new();
        if series.keys().any(|k| k.starts_with("B ")) {
            let series: Series = series.into_iter().collect();
            written.extend(both!(
                &self.out.join(format!("dynamics-{label}")),
                (1000, 600),
                draw_lines,
                &series,
                &format!("{label}: modality coefficients, group factors, val gap")
            ));
        }
        if !updates.is_empty() {
            let updates: Series = updates.into_iter().collect();
            written.extend(both!(
                &self.out.join(format!("modulation-{label}")),
                (1000, 600),
                draw_lines,
                &updates,
                &format!("{label}: encoder update relative to the unmodulated step's (1: modulation cancelled)")
            ));
        }
        Ok(written)
    }
}

/// Per group the test AUCs over seeds, and per modality and group its auxiliary head's.
type GroupValues = (
    BTreeMap<String, Vec<f64>>,
    BTreeMap<String, BTreeMap<String, Vec<f64>>>,
);

fn group_values(tests: &[Value], attribute: &str, names: &[String]) -> GroupValues {
    let (mut per_group, mut per_modality) = GroupValues::default();
    for t in tests {
        for (g, v) in t["attributes"][attribute]["groups"]
            .as_object()
            .into_iter()
            .flatten()
        {
            if let Some(a) = v["auc"].as_f64() {
                per_group.entry(tag(names, g)).or_default().push(a);
            }
        }
        for (modality, r) in t["modality_group_report"].as_object().into_iter().flatten() {
            for (g, v) in r["aux"][attribute]["groups"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if let Some(a) = v.as_f64() {
                    (per_modality.entry(modality.clone()).or_default())
                        .entry(tag(names, g))
                        .or_default()
                        .push(a);
                }
            }
        }
    }
    (per_group, per_modality)
}

/// Named series of (epoch, value) from a run's `metrics.jsonl`: the modality coefficients B,
/// the group factors f and the validation gap; and each encoder's update relative to the
/// unmodulated step's (`diagnostics_every`: 1 means nothing of the modulation reached the
/// weights).
fn epoch_series(
    text: &str,
    modalities: &[String],
    attribute: &str,
    names: &[String],
) -> (
    BTreeMap<String, Vec<(f64, f64)>>,
    BTreeMap<String, Vec<(f64, f64)>>,
) {
    let modality = |i: usize| modalities.get(i).cloned().unwrap_or_else(|| i.to_string());
    let name = |key: &str| -> Option<String> {
        if let Some(i) = stats::parse_coeff(key) {
            return Some(format!("B {}", modality(i)));
        }
        let (i, group) = stats::parse_factor(key)?;
        let group = tag(names, &group.to_string());
        Some(format!("f {}, {attribute}={group}", modality(i)))
    };
    let (mut series, mut updates) = (BTreeMap::new(), BTreeMap::new());
    for line in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let (Some(epoch), None) = (line["epoch"].as_f64(), line.get("step")) else {
            continue;
        };
        for (k, v) in line["method"].as_object().into_iter().flatten() {
            if let (Some(label), Some(v)) = (name(k), v.as_f64()) {
                series
                    .entry(label)
                    .or_insert_with(Vec::new)
                    .push((epoch, v));
            }
            let stats = line["method"].as_object().expect("iterated above");
            if let (Some((i, false)), Some(real)) = (stats::parse_update(k), v.as_f64())
                && let Some(plain) = stats.get(&stats::update(i, true)).and_then(Value::as_f64)
            {
                updates
                    .entry(format!("{} update / unmodulated update", modality(i)))
                    .or_insert_with(Vec::new)
                    .push((epoch, real / plain.max(1e-30)));
            }
        }
        if let Some(gap) = line["val"]["auc_gap"][attribute].as_f64() {
            (series
                .entry(format!("val AUC gap ({attribute})"))
                .or_insert_with(Vec::new))
            .push((epoch, gap));
        }
    }
    (series, updates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_by_hand() {
        // Scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg).
        let points = roc(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]);
        assert_eq!(
            points,
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        // Tied scores move together.
        let points = roc(&[0.5, 0.5], &[true, false]);
        assert_eq!(points, vec![(0.0, 0.0), (1.0, 1.0)]);
    }
}
