//! The ROC pane: the shown model's ROC curves on test and validation (Braille chart) with its operating point
//! marked, the AUCs with 95 % confidence intervals, the figures at the operating point and at 0.5, calibration
//! error, and whether it differs from the other tested models beyond the noise. Pure rendering of `App`.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph, Wrap};
use ratatui::Frame;

use super::app::App;
use crate::analysis::Interval;

/// "60.0 [40.0–81.0]": a rate and its interval in percent, compactly.
fn rate(v: f64, ci: Interval) -> String {
    format!("{:.1} [{:.1}–{:.1}]", 100.0 * v, 100.0 * ci.lo, 100.0 * ci.hi)
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let m = app.current();
    let block = Block::default().borders(Borders::ALL).title(format!(" ROC — {} — test and validation ", m.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(e) = &m.evaluation else {
        let msg = "no ROC yet: it is drawn when the model is done and its best checkpoint has been tested \
                   (the operating point is chosen on the validation split, never on test)";
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), inner);
        return;
    };
    let o = &e.test_at_threshold;
    let ci = &e.ci_at_threshold;
    let auc = match (o.auc, ci.auc) {
        (Some(a), Some(i)) => format!("{a:.3} [{:.3}, {:.3}]", i.lo, i.hi),
        _ => "-".into(),
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("test AUC ", Style::default().fg(Color::Cyan)),
            Span::raw(format!("{auc}  ")),
            Span::styled("validation AUC ", Style::default().fg(Color::Magenta)),
            Span::raw(e.validation_auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into())),
            Span::raw(format!("  ECE {:.3}", e.calibration.ece)),
        ]),
        Line::from(vec![
            Span::styled("● ", Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "threshold {:.2} ({}): sens {} spec {}",
                e.threshold,
                e.rule,
                rate(o.sensitivity, ci.sensitivity),
                rate(o.specificity, ci.specificity)
            )),
        ]),
        Line::from(format!(
            "  at 0.50: sens {} spec {} · 95% CIs, {} resamples",
            rate(e.test_at_half.sensitivity, e.ci_at_half.sensitivity),
            rate(e.test_at_half.specificity, e.ci_at_half.specificity),
            ci.resamples
        )),
    ];
    for d in app.differences.iter().filter(|d| d.a == m.kind || d.b == m.kind) {
        let (other, sign) = if d.a == m.kind { (d.b, 1.0) } else { (d.a, -1.0) };
        if let Some(a) = &d.auc {
            lines.push(Line::from(format!(
                "  vs {other}: AUC {:+.3} — {}",
                sign * a.value,
                if a.within_noise() { "within the noise" } else { "a real difference" }
            )));
        }
    }
    // Rows the text needs once wrapped, leaving the chart at least 6 rows.
    let width = inner.width.max(1) as usize;
    let needed: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    let text_h = (needed as u16).min(inner.height.saturating_sub(6).max(2));
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Min(0), Constraint::Length(text_h)])
        .split(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), parts[1]);

    let to_xy = |pts: &[[f32; 2]]| pts.iter().map(|p| (p[0] as f64, p[1] as f64)).collect::<Vec<_>>();
    let test = to_xy(&e.roc_test);
    let val = to_xy(&e.roc_validation);
    let chance = [(0.0, 0.0), (1.0, 1.0)];
    let point = [(1.0 - o.specificity, o.sensitivity)];
    let sets = vec![
        Dataset::default()
            .name("chance")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::DarkGray))
            .data(&chance),
        Dataset::default()
            .name("validation")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Magenta))
            .data(&val),
        Dataset::default()
            .name("test")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Cyan))
            .data(&test),
        Dataset::default()
            .name("operating point")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD))
            .data(&point),
    ];
    let chart = Chart::new(sets)
        .x_axis(Axis::default().title("1 − specificity").bounds([0.0, 1.0]).labels(vec![
            Span::raw("0"),
            Span::raw("0.5"),
            Span::raw("1"),
        ]))
        .y_axis(Axis::default().title("sens").bounds([0.0, 1.0]).labels(vec![
            Span::raw("0"),
            Span::raw("0.5"),
            Span::raw("1"),
        ]));
    frame.render_widget(chart, parts[0]);
}
