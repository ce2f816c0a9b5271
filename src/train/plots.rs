//! PNG plots for report.md (plotters, bitmap backend; text in the embedded DejaVu Sans Mono): loss and accuracy
//! per epoch from metrics.jsonl, the test ROC curves with each operating point, and the test confusion matrices
//! at the operating points.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::report::RunReport;
use crate::error::Result;
use crate::model::ModelKind;

const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 4] =
    [RGBColor(0, 150, 200), RGBColor(200, 0, 150), RGBColor(220, 150, 0), RGBColor(40, 160, 60)];

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, bytes);
    });
}

fn plot_err<E: std::fmt::Display>(what: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("cannot draw {}: {e}", what.display())
}

/// Draws a picture of `(width, height)` pixels with `draw`, presents it and writes it to `path` as PNG, with the
/// `image` crate's encoder (plotters' own would build a second, older version of `image`).
fn png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
    draw(&root)?;
    root.present().map_err(plot_err(path))?;
    drop(root);
    image::save_buffer_with_format(path, &rgb, width, height, image::ExtendedColorType::Rgb8, image::ImageFormat::Png)
        .map_err(plot_err(path))
}

/// One epoch's figures of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_acc: f64,
    pub val_acc: f64,
}

/// Per model, its epochs (the last record of each epoch: a resumed run may repeat one), from metrics.jsonl.
pub fn read_epochs(run_dir: &Path) -> BTreeMap<String, Vec<EpochPoint>> {
    let mut by_model: BTreeMap<String, BTreeMap<usize, EpochPoint>> = BTreeMap::new();
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap_or_default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["event"] != "epoch_ended" {
            continue;
        }
        let (Some(model), Some(epoch)) = (v["model"].as_str(), v["epoch"].as_u64()) else { continue };
        let f = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
        let p = EpochPoint {
            epoch: epoch as usize,
            train_loss: f(&v["train_loss"]),
            train_acc: f(&v["train_accuracy"]),
            val_loss: f(&v["validation"]["loss"]),
            val_acc: f(&v["validation"]["accuracy"]),
        };
        by_model.entry(model.to_string()).or_default().insert(p.epoch, p);
    }
    by_model.into_iter().map(|(m, e)| (m, e.into_values().collect())).collect()
}

/// Writes plots/curves.png, plots/roc.png and plots/confusion.png (those that have data); returns their paths
/// relative to the run folder.
pub fn write_all(report: &RunReport, run_dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let epochs = read_epochs(run_dir);
    if epochs.values().any(|e| !e.is_empty()) {
        curves(&epochs, &report.models.iter().map(|m| m.model).collect::<Vec<_>>(), &dir.join("curves.png"))?;
        written.push(PathBuf::from("plots/curves.png"));
    }
    if report.models.iter().any(|m| m.evaluation.is_some()) {
        roc(report, &dir.join("roc.png"))?;
        written.push(PathBuf::from("plots/roc.png"));
        confusion(report, &dir.join("confusion.png"))?;
        written.push(PathBuf::from("plots/confusion.png"));
    }
    Ok(written)
}

fn color_of(order: &[ModelKind], name: &str) -> RGBColor {
    let i = order.iter().position(|k| k.name() == name).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn curves(epochs: &BTreeMap<String, Vec<EpochPoint>>, order: &[ModelKind], path: &Path) -> Result<()> {
    let err = plot_err(path);
    png(path, (1000, 420), |root| {
        root.fill(&WHITE).map_err(&err)?;
        let (left, right) = root.split_horizontally(500);
        let max_epoch = epochs.values().flat_map(|e| e.iter().map(|p| p.epoch)).max().unwrap_or(1).max(1);
        let max_loss = epochs
            .values()
            .flat_map(|e| e.iter().flat_map(|p| [p.train_loss, p.val_loss]))
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .clamp(0.1, 5.0)
            * 1.05;
        for (area, title, is_loss) in [(&left, "loss per epoch", true), (&right, "accuracy per epoch", false)] {
            let y_max = if is_loss { max_loss } else { 1.0 };
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(0.5f64..max_epoch as f64 + 0.5, 0.0f64..y_max)
                .map_err(&err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_labels(max_epoch.min(10))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .label_style((FONT, 12))
                .draw()
                .map_err(&err)?;
            for (name, pts) in epochs {
                let c = color_of(order, name);
                let get = |p: &EpochPoint, train: bool| match (is_loss, train) {
                    (true, true) => p.train_loss,
                    (true, false) => p.val_loss,
                    (false, true) => p.train_acc,
                    (false, false) => p.val_acc,
                };
                for train in [true, false] {
                    let style = if train { c.mix(0.45).stroke_width(1) } else { c.stroke_width(2) };
                    let series =
                        pts.iter().map(|p| (p.epoch as f64, get(p, train).min(y_max))).filter(|p| p.1.is_finite());
                    let drawn = chart.draw_series(LineSeries::new(series, style)).map_err(&err)?;
                    drawn
                        .label(format!("{name} {}", if train { "train" } else { "val" }))
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
                }
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(&err)?;
        }
        Ok(())
    })
}

fn roc(report: &RunReport, path: &Path) -> Result<()> {
    let err = plot_err(path);
    let order: Vec<ModelKind> = report.models.iter().map(|m| m.model).collect();
    png(path, (520, 520), |root| {
        root.fill(&WHITE).map_err(&err)?;
        let mut chart = ChartBuilder::on(root)
            .caption("ROC on test (● operating point)", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0f64..1.0, 0.0f64..1.0)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc("1 - specificity")
            .y_desc("sensitivity")
            .label_style((FONT, 12))
            .draw()
            .map_err(&err)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3))).map_err(&err)?;
        for m in &report.models {
            let Some(e) = &m.evaluation else { continue };
            let c = color_of(&order, m.model.name());
            let label = format!(
                "{} AUC {}",
                m.model.name(),
                e.test_at_threshold.auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into())
            );
            chart
                .draw_series(LineSeries::new(e.roc_test.iter().map(|p| (p[0] as f64, p[1] as f64)), c.stroke_width(2)))
                .map_err(&err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
            let o = &e.test_at_threshold;
            chart
                .draw_series(std::iter::once(Circle::new((1.0 - o.specificity, o.sensitivity), 5, c.filled())))
                .map_err(&err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(&err)?;
        Ok(())
    })
}

fn confusion(report: &RunReport, path: &Path) -> Result<()> {
    let err = plot_err(path);
    let evaluated: Vec<_> = report.models.iter().filter_map(|m| m.evaluation.as_ref().map(|e| (m.model, e))).collect();
    let cell = 110i32;
    let panel = (2 * cell + 150) as u32;
    png(path, (panel * evaluated.len() as u32, 2 * cell as u32 + 110), |root| {
        root.fill(&WHITE).map_err(&err)?;
        let panels = root.split_evenly((1, evaluated.len()));
        for (area, (kind, e)) in panels.iter().zip(&evaluated) {
            let c = e.test_at_threshold.confusion;
            area.draw(&Text::new(
                format!("{} @ {:.2}", kind.title(), e.threshold),
                (10, 8),
                (FONT, 16).into_font().color(&BLACK),
            ))
            .map_err(&err)?;
            let rows = [(c.tn, c.fp), (c.fn_, c.tp)];
            let (x0, y0) = (110, 60);
            for (r, (a, b)) in rows.iter().enumerate() {
                let total = (a + b).max(1) as f64;
                for (k, n) in [*a, *b].iter().enumerate() {
                    let share = *n as f64 / total;
                    let shade = (255.0 - 180.0 * share) as u8;
                    let (x, y) = (x0 + k as i32 * cell, y0 + r as i32 * cell);
                    area.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], RGBColor(shade, shade, 255).filled()))
                        .map_err(&err)?;
                    area.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK.stroke_width(1))).map_err(&err)?;
                    let fg = if share > 0.6 { WHITE } else { BLACK };
                    area.draw(&Text::new(
                        format!("{n}"),
                        (x + 12, y + cell / 2 - 20),
                        (FONT, 20).into_font().color(&fg),
                    ))
                    .map_err(&err)?;
                    area.draw(&Text::new(
                        format!("{:.1}%", 100.0 * share),
                        (x + 12, y + cell / 2 + 6),
                        (FONT, 14).into_font().color(&fg),
                    ))
                    .map_err(&err)?;
                }
                let label = if r == 0 { "NORMAL" } else { "PNEUMONIA" };
                area.draw(&Text::new(label, (8, y0 + r as i32 * cell + cell / 2 - 6), (FONT, 13).into_font()))
                    .map_err(&err)?;
            }
            for (k, label) in ["NORMAL", "PNEUMONIA"].iter().enumerate() {
                area.draw(&Text::new(*label, (x0 + k as i32 * cell + 10, y0 - 18), (FONT, 13).into_font()))
                    .map_err(&err)?;
            }
            area.draw(&Text::new("rows: truth · columns: predicted", (10, y0 + 2 * cell + 12), (FONT, 12).into_font()))
                .map_err(&err)?;
        }
        Ok(())
    })
}
