//! The help overlay, generated from the same key map the event loop uses, and the quit confirmation popup.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::app::KEYMAP;

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The key map as lines ("keys  what"), continuation rows merged into the row above.
pub fn lines() -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for b in KEYMAP.iter().filter(|b| !b.keys.is_empty()) {
        out.push(Line::from(format!("{:<10} {}", b.keys, b.help)));
    }
    out
}

pub fn render(frame: &mut Frame, area: Rect) {
    let lines = lines();
    let h = (lines.len() as u16 + 2).min(area.height);
    let rect = centered(area, 52, h);
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Keys (esc closes) ");
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

pub fn render_confirm(frame: &mut Frame, area: Rect) {
    let rect = centered(area, 46, 5);
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" Quit? ")
        .style(Style::default().add_modifier(Modifier::BOLD));
    let text = vec![
        Line::from("Training is running. Stop it (a checkpoint"),
        Line::from("is saved) and quit?   y: yes   n: no"),
    ];
    frame.render_widget(Paragraph::new(text).block(block), rect);
}
