//! The confusion-matrix pane: 2×2 counts with row percentages, shaded by share, and sensitivity, specificity,
//! precision, F1 (and AUC) of the shown model, on validation (latest epoch) or test; for a three-class model's
//! test, the 3×3 matrix with each class's sensitivity, specificity and AUC. Pure rendering.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::app::{App, Split};
use crate::analysis::three_class::ThreeClassEvaluation;
use crate::metrics::Metrics;

/// Background shade for a share in [0, 1] (256-colour gray ramp; readable in monochrome too).
fn shade(share: f64, correct: bool) -> Style {
    let level = 232 + (share.clamp(0.0, 1.0) * 20.0) as u8; // 232..252
    let fg = if level > 244 { Color::Black } else { Color::White };
    let s = Style::default().bg(Color::Indexed(level)).fg(fg);
    if correct {
        s.add_modifier(Modifier::BOLD)
    } else {
        s
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let m = app.current();
    // Test once the model has been tested (unless validation was asked for with v), else validation.
    let (metrics, label): (Option<Metrics>, &str) = match (app.split, m.test) {
        (Split::Test, Some(t)) => (Some(t), "test (best checkpoint)"),
        _ => (m.last_val, "validation (latest epoch)"),
    };
    let title = format!(" Confusion — {} — {label} ", m.title());
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(v) = metrics else {
        let msg = "no result yet: validation figures come after the first epoch, test figures when the model is done";
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), inner);
        return;
    };
    if let (Split::Test, Some(Some(e))) = (app.split, m.evaluation.as_ref().map(|e| e.three_class.as_ref())) {
        return render_three(e, frame, inner);
    }
    let c = v.confusion;
    let rows_total = [(c.tn + c.fp).max(1) as f64, (c.fn_ + c.tp).max(1) as f64];
    let cell = |n: u64, row: usize, correct: bool| {
        let share = n as f64 / rows_total[row];
        Cell::from(format!("{n:>6}  {:>5.1}%", 100.0 * share)).style(shade(share, correct))
    };
    let table = Table::new(
        vec![
            Row::new(vec![Cell::from("true NORMAL"), cell(c.tn, 0, true), cell(c.fp, 0, false)]).height(1),
            Row::new(vec![Cell::from("true PNEUMONIA"), cell(c.fn_, 1, false), cell(c.tp, 1, true)]).height(1),
        ],
        [Constraint::Length(15), Constraint::Length(15), Constraint::Length(15)],
    )
    .header(
        Row::new(vec!["", "pred NORMAL", "pred PNEUMONIA"]).style(Style::default().add_modifier(Modifier::UNDERLINED)),
    )
    .column_spacing(1);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(4), Constraint::Min(0)])
        .split(inner);
    frame.render_widget(table, parts[0]);
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let lines = vec![
        Line::from(format!("accuracy    {}   ({} images, threshold {:.2})", pct(v.accuracy), c.total(), v.threshold)),
        Line::from(format!("sensitivity {}   recall of PNEUMONIA: tp/(tp+fn)", pct(v.sensitivity))),
        Line::from(format!("specificity {}   recall of NORMAL: tn/(tn+fp)", pct(v.specificity))),
        Line::from(format!(
            "precision   {}   F1 {:.3}   ROC-AUC {}",
            pct(v.precision),
            v.f1,
            v.auc.map(|a| format!("{a:.3}")).unwrap_or("-".into())
        )),
        Line::from(format!("loss        {:.4}", v.loss)),
    ];
    frame.render_widget(Paragraph::new(lines), parts[1]);
}

/// The three-class test figures: 3×3 counts at the operating point, then one line per class and the
/// bacterial-vs-viral sub-problem.
fn render_three(e: &ThreeClassEvaluation, frame: &mut Frame, area: Rect) {
    let totals: Vec<f64> = e.confusion.iter().map(|r| r.iter().sum::<u64>().max(1) as f64).collect();
    let rows: Vec<Row> = (0..3)
        .map(|r| {
            let mut cells = vec![Cell::from(format!("true {}", e.classes[r]))];
            for c in 0..3 {
                let n = e.confusion[r][c];
                let share = n as f64 / totals[r];
                cells.push(Cell::from(format!("{n:>5} {:>5.1}%", 100.0 * share)).style(shade(share, r == c)));
            }
            Row::new(cells).height(1)
        })
        .collect();
    let header: Vec<String> = std::iter::once(String::new())
        .chain(e.classes.iter().map(|c| format!("{:>12}", c.chars().take(12).collect::<String>())))
        .collect();
    let table = Table::new(
        rows,
        [Constraint::Length(15), Constraint::Length(12), Constraint::Length(12), Constraint::Length(12)],
    )
    .header(Row::new(header).style(Style::default().add_modifier(Modifier::UNDERLINED)))
    .column_spacing(1);
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(4), Constraint::Min(0)])
        .split(area);
    frame.render_widget(table, parts[0]);
    let pct = |x: f64| format!("{:>5.1}%", 100.0 * x);
    let auc = |a: Option<f64>| a.map(|a| format!("{a:.3}")).unwrap_or("-".into());
    let mut lines = vec![Line::from(format!(
        "accuracy {}  macro AUC {}  (threshold {:.2}, test)",
        pct(e.accuracy),
        auc(e.macro_auc),
        e.threshold
    ))];
    for c in &e.per_class {
        lines.push(Line::from(format!(
            "{:<9} sens {}  spec {}  AUC {}",
            c.name,
            pct(c.sensitivity),
            pct(c.specificity),
            auc(c.auc)
        )));
    }
    let b = &e.bacterial_vs_viral;
    lines.push(Line::from(format!(
        "bacterial vs viral ({} films): acc {}  AUC {}",
        b.films,
        pct(b.accuracy),
        auc(b.auc)
    )));
    frame.render_widget(Paragraph::new(lines), parts[1]);
}
