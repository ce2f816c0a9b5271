//! The class-balance pane: images per split × class as bars with counts and the imbalance ratio, and the data
//! source (real folder or SYNTHETIC demo data). Pure rendering of `App`.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::app::App;
use crate::data::ClassCounts;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::default().borders(Borders::ALL).title(" Class balance ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let source = match &app.info {
        Some(i) if i.source != crate::data::demo::DataSource::Folder => Line::from(vec![
            Span::styled(i.source.label(), Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
            Span::raw(format!(" · {}", i.data_root.display())),
        ]),
        Some(i) => Line::from(format!("data: {}", i.data_root.display())),
        None => Line::from("starting…"),
    };
    let Some(counts) = app.counts else {
        let (done, total) = app.data_progress;
        let text = vec![source, Line::from(format!("decoding images {done}/{total}…"))];
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), inner);
        return;
    };
    let splits = [("train", counts.train), ("validation", counts.validation), ("test", counts.test)];
    let mut lines = vec![source];
    let three = app.info.as_ref().is_some_and(|i| i.task == crate::data::Task::ThreeClass);
    for (name, c) in splits {
        lines.push(Line::from(if three {
            format!(
                "{name:<10} NORMAL {:>5}  BACTERIAL {:>5}  VIRAL {:>5}  total {:>5}",
                c.normal,
                c.bacterial,
                c.viral,
                c.total()
            )
        } else {
            format!(
                "{name:<10} NORMAL {:>5}  PNEUMONIA {:>5}  total {:>5}  ratio {}",
                c.normal,
                c.pneumonia,
                c.total(),
                ratio(c)
            )
        }));
    }
    if let crate::data::split::TestSource::HeldOut { fraction } = app.test_source {
        lines.push(Line::styled(
            format!("test: held out from train/ by patient ({:.0} %): the folder has no test/", 100.0 * fraction),
            Style::default().fg(Color::Yellow),
        ));
    }
    if app.skipped > 0 {
        lines.push(Line::styled(format!("{} unreadable files skipped", app.skipped), Style::default().fg(Color::Red)));
    }
    let text_h = lines.len() as u16;
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(text_h), Constraint::Min(0)])
        .split(inner);
    frame.render_widget(Paragraph::new(lines), rows[0]);
    if rows[1].height < 4 {
        return;
    }
    let normal = Style::default().fg(Color::Cyan);
    let pneu = Style::default().fg(Color::Magenta);
    let mut chart = BarChart::default()
        .bar_gap(1)
        .group_gap(3)
        .bar_width(((rows[1].width.saturating_sub(12)) / 6).clamp(3, 12))
        .max(splits.iter().map(|(_, c)| c.normal.max(c.pneumonia)).max().unwrap_or(1) as u64);
    for (name, c) in splits {
        let group = BarGroup::default().label(Line::from(name)).bars(&[
            Bar::default().value(c.normal as u64).label(Line::from("N")).style(normal),
            Bar::default().value(c.pneumonia as u64).label(Line::from("P")).style(pneu),
        ]);
        chart = chart.data(group);
    }
    frame.render_widget(chart, rows[1]);
}

fn ratio(c: ClassCounts) -> String {
    match c.imbalance() {
        Some(r) => format!("1:{r:.2}"),
        None => "-".into(),
    }
}
