//! The model-comparison pane: the queued models side by side (status, best validation, test figures, time,
//! initialisation) and their validation-accuracy curves overlaid on one chart. Pure rendering of `App`.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::app::App;
use super::charts::fmt_secs;
use crate::model::Init;
use crate::train::ModelStatus;

const COLORS: [Color; 4] = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green];

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let wide = area.width >= 102;
    // Where the networks started ("ImageNet" for torchvision's weights: the file name is in the wide column and
    // the reports); the ensemble has no weights of its own.
    let networks: Vec<_> = app.models.iter().filter(|m| m.kind.is_network()).collect();
    let same_init = networks.windows(2).all(|w| w[0].init == w[1].init);
    let inits = if same_init {
        format!("all {}", networks.first().map(|m| m.init.short()).unwrap_or("-"))
    } else {
        // Name the models that did not start from scratch; the rest did.
        let mut parts: Vec<String> = networks
            .iter()
            .filter(|m| m.init != Init::Scratch)
            .map(|m| format!("{} {}", m.name(), m.init.short()))
            .collect();
        if networks.iter().any(|m| m.init == Init::Scratch) {
            parts.push("others scratch".into());
        }
        parts.join(", ")
    };
    let title = if wide { " Model comparison ".to_string() } else { format!(" Model comparison · init: {inits} ") };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let table_h = (app.models.len() as u16 + 1).min(inner.height);
    // Under the table: each tested model's AUC and accuracy at its operating point with 95 % CIs, and
    // whether the models differ beyond the noise (paired bootstrap on the same test images).
    let mut notes: Vec<Line> = app
        .models
        .iter()
        .filter_map(|m| m.evaluation.as_ref().map(|e| (m, e)))
        .flat_map(|(m, e)| {
            let o = &e.test_at_threshold;
            let c = &e.ci_at_threshold;
            let auc = match (o.auc, c.auc) {
                (Some(a), Some(i)) => format!("AUC {a:.3} [{:.3}–{:.3}]", i.lo, i.hi),
                _ => "AUC -".into(),
            };
            let two = Line::from(format!(
                "{}: {auc} · acc@{:.2} {:.1} [{:.1}–{:.1}]",
                m.name(),
                e.threshold,
                100.0 * o.accuracy,
                100.0 * c.accuracy.lo,
                100.0 * c.accuracy.hi
            ));
            // A three-class run: the table's test columns are pneumonia vs normal, so its own question follows.
            let three = e.three_class.as_ref().map(|t| Line::from(format!("  {}", three_class_summary(t))));
            std::iter::once(two).chain(three)
        })
        .collect();
    for d in &app.differences {
        let noise = |x: &crate::analysis::Difference| if x.within_noise() { "within the noise" } else { "real" };
        let auc = d.auc.as_ref().map(|a| format!(", AUC {:+.3} {}", a.value, noise(a))).unwrap_or_default();
        notes.push(Line::from(format!(
            "{} vs {}: acc {:+.1} {}{auc}",
            d.a,
            d.b,
            100.0 * d.accuracy.value,
            noise(&d.accuracy)
        )));
    }
    // Two chosen models (m marks one; the selected one is compared with it), then which run is which.
    let mut chosen: Vec<Line> = Vec::new();
    if let Some(p) = &app.pair {
        let style = Style::default().fg(if p.outcome.is_ok() { Color::White } else { Color::Yellow });
        chosen.push(Line::styled(super::pairing::describe(&app.models, p), style));
    } else if let Some(m) = app.marked.and_then(|i| app.models.get(i)) {
        chosen.push(Line::from(format!("marked {}: select another model (←/→) to compare it (m: unmark)", m.name())));
    } else if app.runs.len() > 1 {
        chosen.push(Line::from("m marks a model; the selected one is then compared with it on the same test images"));
    }
    if app.runs.len() > 1 {
        chosen.extend(app.runs.iter().map(|r| Line::from(format!("{} = {}", r.label, r.legend))));
    }
    notes.splice(0..0, chosen);
    // Long lines wrap: each takes as many rows as its width needs.
    let rows_of = |l: &Line| (l.width().max(1) as u16).div_ceil(inner.width.max(1));
    let notes_h = notes.iter().map(rows_of).sum::<u16>().min(inner.height.saturating_sub(table_h));
    let parts = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(table_h), Constraint::Length(notes_h), Constraint::Min(0)])
        .split(inner);
    frame.render_widget(Paragraph::new(notes).wrap(Wrap { trim: false }), parts[1]);
    let parts = [parts[0], parts[2]];
    let pct = |x: Option<f64>| x.map(|v| format!("{:.1}", 100.0 * v)).unwrap_or_else(|| "-".into());
    let rows: Vec<Row> = app
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let status_style = match m.status {
                ModelStatus::Done => Style::default().fg(Color::Green),
                ModelStatus::Training => Style::default().fg(Color::Yellow),
                ModelStatus::Failed => Style::default().fg(Color::Red),
                _ => Style::default(),
            };
            let t = m.test.as_ref();
            let label = if wide { m.title() } else { m.name() };
            let mark = match (i == app.selected, app.marked == Some(i)) {
                (true, _) => "▶ ",
                (false, true) => "◆ ",
                _ => "  ",
            };
            let name = format!("{mark}{label}");
            let time = if m.status == ModelStatus::Queued { "-".into() } else { fmt_secs(m.seconds.max(0.0)) };
            Row::new(
                vec![
                    Cell::from(name).style(Style::default().fg(COLORS[i % COLORS.len()])),
                    Cell::from(m.status.label()).style(status_style),
                    Cell::from(m.best_val_loss.map(crate::metrics::fmt_loss).unwrap_or("-".into())),
                    Cell::from(pct(m.best_val_acc)),
                    Cell::from(pct(t.map(|t| t.accuracy))),
                    Cell::from(pct(t.map(|t| t.sensitivity))),
                    Cell::from(pct(t.map(|t| t.specificity))),
                    Cell::from(t.and_then(|t| t.auc).map(|a| format!("{a:.3}")).unwrap_or("-".into())),
                    Cell::from(time),
                ]
                .into_iter()
                .chain(wide.then(|| Cell::from(m.init.to_string())))
                .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut widths = vec![
        // Room for the run labels ("regularized·r2") when several runs are shown.
        Constraint::Length(match (wide, app.runs.len() > 1) {
            (true, true) => 24,
            (true, false) => 18,
            (false, true) => 16,
            (false, false) => 13,
        }),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(5),
        Constraint::Length(6),
    ];
    // The test columns are at 0.5 (the seed project's threshold); the notes under the table give each model's
    // accuracy at its own operating point, so the header says which threshold these are.
    let mut titles = vec!["model", "status", "val loss", "val acc", "acc@.5", "sens", "spec", "AUC", "time"];
    // The initialisation column only when there is room; otherwise it is in the pane title.
    if wide {
        widths.push(Constraint::Min(7));
        titles.push("init");
    }
    let header = Row::new(titles).style(Style::default().add_modifier(Modifier::UNDERLINED));
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), parts[0]);
    if parts[1].height < 5 {
        return;
    }
    let x_max = app.models.iter().map(|m| m.epochs).max().unwrap_or(1).max(1) as f64;
    let sets: Vec<Dataset> = app
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Dataset::default()
                .name(m.name())
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(COLORS[i % COLORS.len()]))
                .data(&m.val_acc)
        })
        .collect();
    let chart = Chart::new(sets)
        .block(Block::default().title(" validation accuracy per epoch "))
        .x_axis(
            Axis::default()
                .title("epoch")
                .bounds([0.0, x_max])
                .labels(vec![Span::raw("0"), Span::raw(format!("{x_max:.0}"))]),
        )
        .y_axis(Axis::default().title("acc").bounds([0.0, 1.0]).labels(vec![
            Span::raw("0%"),
            Span::raw("50%"),
            Span::raw("100%"),
        ]));
    frame.render_widget(chart, parts[1]);
}

/// One line of a three-class evaluation for the notes under the table: the accuracy over the three classes and
/// the two AUCs that matter (macro, bacterial vs viral), with the accuracy's interval.
fn three_class_summary(t: &crate::analysis::three_class::ThreeClassEvaluation) -> String {
    let auc = |a: Option<f64>| a.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into());
    format!(
        "3 classes: acc {:.1} [{:.1}–{:.1}] · macro AUC {} · bact/viral AUC {}",
        100.0 * t.accuracy,
        100.0 * t.accuracy_ci.lo,
        100.0 * t.accuracy_ci.hi,
        auc(t.macro_auc),
        auc(t.bacterial_vs_viral.auc)
    )
}
