//! The live-charts pane: loss and accuracy of the shown model, per batch (EMA-smoothed) with per-epoch train and
//! validation points, or per epoch only; current values, LR, throughput, progress and ETA. Pure rendering.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, Gauge, GraphType, Paragraph};
use ratatui::Frame;

use super::app::{App, ModelView};
pub use crate::train::events::fmt_secs;

/// The one-line summary of a model's progress.
pub fn progress_line(m: &ModelView) -> String {
    let last_loss = m.batch_loss.last().map(|p| p.1);
    let last_acc = m.batch_acc.last().map(|p| p.1);
    let val = m.last_val.map(|v| format!(" val loss {:.4} acc {:.1}%", v.loss, 100.0 * v.accuracy)).unwrap_or_default();
    format!(
        "{} · epoch {}/{} step {}/{} · loss {} acc {}{} · lr {:.2e} · {:.1} img/s · ETA {}",
        m.status.label(),
        m.epoch,
        m.epochs,
        m.step,
        m.steps_per_epoch,
        last_loss.map(crate::metrics::fmt_loss).unwrap_or_else(|| "-".into()),
        last_acc.map(|v| format!("{:.1}%", 100.0 * v)).unwrap_or_else(|| "-".into()),
        val,
        m.lr,
        m.images_per_sec,
        fmt_secs(m.eta_secs)
    )
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let m = app.current();
    let title = format!(" {} — {} ", m.title(), if app.per_epoch { "per epoch" } else { "per batch" });
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(2), Constraint::Length(1), Constraint::Min(0)])
        .split(inner);
    frame.render_widget(Paragraph::new(progress_line(m)).wrap(ratatui::widgets::Wrap { trim: true }), rows[0]);
    let total = (m.epochs * m.steps_per_epoch).max(1);
    let done = ((m.epoch.saturating_sub(1)) * m.steps_per_epoch + m.step).min(total);
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(Color::Green))
            .ratio(done as f64 / total as f64)
            .label(format!("{done}/{total} steps")),
        rows[1],
    );
    let charts = if rows[2].width >= 100 {
        Layout::default().direction(Direction::Horizontal).constraints([Constraint::Percentage(50); 2]).split(rows[2])
    } else {
        Layout::default().direction(Direction::Vertical).constraints([Constraint::Percentage(50); 2]).split(rows[2])
    };
    let smoothing = app.smoothing;
    let loss_batch = ema(&m.batch_loss, smoothing);
    let acc_batch = ema(&m.batch_acc, smoothing);
    let x_max = (m.epochs.max(1)) as f64;
    chart(
        frame,
        charts[0],
        "loss",
        if app.per_epoch { &[] } else { &loss_batch },
        &m.train_loss,
        &m.val_loss,
        x_max,
        None,
        smoothing,
    );
    chart(
        frame,
        charts[1],
        "accuracy",
        if app.per_epoch { &[] } else { &acc_batch },
        &m.train_acc,
        &m.val_acc,
        x_max,
        Some((0.0, 1.0)),
        smoothing,
    );
}

#[allow(clippy::too_many_arguments)]
fn chart(
    frame: &mut Frame,
    area: Rect,
    what: &str,
    batch: &[(f64, f64)],
    train: &[(f64, f64)],
    val: &[(f64, f64)],
    x_max: f64,
    fixed: Option<(f64, f64)>,
    smoothing: f64,
) {
    let (lo, hi) = fixed.unwrap_or_else(|| {
        let ys = batch.iter().chain(train).chain(val).map(|p| p.1);
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
        if lo.is_finite() {
            (0.0f64.min(lo), (hi * 1.1).max(lo + 1e-3))
        } else {
            (0.0, 1.0)
        }
    });
    let mut sets = Vec::new();
    if !batch.is_empty() {
        sets.push(
            Dataset::default()
                .name(format!("train/batch (EMA {smoothing:.1})"))
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(Color::Cyan))
                .data(batch),
        );
    }
    sets.push(
        Dataset::default()
            .name("train/epoch")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Blue))
            .data(train),
    );
    sets.push(
        Dataset::default()
            .name("validation")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Yellow))
            .data(val),
    );
    let fmt = |v: f64| {
        if fixed.is_some() {
            format!("{:.0}%", v * 100.0)
        } else {
            format!("{v:.2}")
        }
    };
    let chart = Chart::new(sets)
        .block(Block::default().title(Line::from(vec![Span::raw(format!(" {what} "))])))
        .x_axis(Axis::default().title("epoch").bounds([0.0, x_max]).labels(vec![
            Span::raw("0"),
            Span::raw(format!("{:.0}", x_max / 2.0)),
            Span::raw(format!("{x_max:.0}")),
        ]))
        .y_axis(Axis::default().bounds([lo, hi]).labels(vec![
            Span::raw(fmt(lo)),
            Span::raw(fmt((lo + hi) / 2.0)),
            Span::raw(fmt(hi)),
        ]))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)));
    frame.render_widget(chart, area);
}

/// TensorBoard's smoothing: debiased exponential moving average with weight `factor` on the past.
pub fn ema(points: &[(f64, f64)], factor: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len());
    let mut last = 0.0;
    let mut weight = 0.0;
    for &(x, y) in points {
        last = last * factor + (1.0 - factor) * y;
        weight = weight * factor + (1.0 - factor);
        out.push((x, if weight > 0.0 { last / weight } else { y }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ema_matches_tensorboard() {
        assert_eq!(ema(&[(0.0, 1.0), (1.0, 3.0)], 0.0), vec![(0.0, 1.0), (1.0, 3.0)]);
        let s = ema(&[(0.0, 2.0), (1.0, 4.0)], 0.5);
        assert!((s[0].1 - 2.0).abs() < 1e-12, "debiased: the first point is kept");
        assert!((s[1].1 - (0.5 * 0.5 * 2.0 + 0.5 * 4.0) / 0.75).abs() < 1e-12);
    }
}
