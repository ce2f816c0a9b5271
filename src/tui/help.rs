//! The help overlay, generated from the same key map the event loop uses, and the quit confirmation popup.

use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::keymap::KEYMAP;

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
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
    let all = lines();
    let block = Block::default().borders(Borders::ALL).title(" Keys (esc closes) ");
    if all.len() as u16 + 2 <= area.height {
        let rect = centered(area, 52, all.len() as u16 + 2);
        frame.render_widget(Clear, rect);
        frame.render_widget(Paragraph::new(all).block(block), rect);
        return;
    }
    // Too short for one column: two side by side.
    let half = all.len().div_ceil(2);
    let rect = centered(area, 78, half as u16 + 2);
    frame.render_widget(Clear, rect);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let cols = ratatui::layout::Layout::default()
        .direction(ratatui::layout::Direction::Horizontal)
        .constraints([ratatui::layout::Constraint::Percentage(50); 2])
        .split(inner);
    frame.render_widget(Paragraph::new(all[..half].to_vec()), cols[0]);
    frame.render_widget(Paragraph::new(all[half..].to_vec()), cols[1]);
}

pub fn render_confirm(frame: &mut Frame, area: Rect) {
    let rect = centered(area, 46, 5);
    frame.render_widget(Clear, rect);
    let block =
        Block::default().borders(Borders::ALL).title(" Quit? ").style(Style::default().add_modifier(Modifier::BOLD));
    let text = vec![
        Line::from("Training is running. Stop it (a checkpoint"),
        Line::from("is saved) and quit?   y: yes   n: no"),
    ];
    frame.render_widget(Paragraph::new(text).block(block), rect);
}
