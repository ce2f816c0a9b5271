//! The predict pane: the test images with their true label, the selected one shown in the terminal
//! (ratatui-image: halfblocks anywhere, sixel/kitty where supported), and the chosen model's verdict with
//! P(pneumonia) as a gauge and whether it was right.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Gauge, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::StatefulImage;

use std::path::PathBuf;

use super::model_view::ModelView;
use crate::data::Class;
use crate::model::ModelKind;

/// A classified test image.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictResult {
    pub path: PathBuf,
    pub model: ModelKind,
    pub truth: Class,
    /// P(pneumonia), or the error that stopped the prediction.
    pub outcome: Result<f32, String>,
    pub threshold: f32,
    /// A three-class model's probability of each class (empty for a two-class model).
    pub class_probabilities: Vec<(String, f32)>,
    /// The Grad-CAM overlay, when it was asked for.
    pub overlay: Option<Overlay>,
}

impl PredictResult {
    /// The class the model calls (NORMAL / PNEUMONIA, or NORMAL / BACTERIAL / VIRAL) from P(pneumonia).
    pub fn called(&self, prob: f32) -> String {
        if self.class_probabilities.is_empty() {
            return if prob >= self.threshold { Class::Pneumonia } else { Class::Normal }.folder().to_string();
        }
        let row: Vec<f32> = self.class_probabilities.iter().map(|(_, p)| *p).collect();
        let k = crate::analysis::three_class::decide(&row, self.threshold);
        self.class_probabilities[k].0.clone()
    }

    /// The true class of the image under the model's task (a three-class model: its cause from the file name).
    pub fn true_name(&self) -> String {
        true_name(&self.path, self.truth, !self.class_probabilities.is_empty())
    }
}

/// `truth` as a class name, or with `three_classes` NORMAL / BACTERIAL / VIRAL (the cause from the file name).
pub fn true_name(path: &std::path::Path, truth: Class, three_classes: bool) -> String {
    let cause = path.file_name().and_then(|n| n.to_str()).and_then(crate::data::Cause::of_file_name);
    match (three_classes, truth, cause) {
        (true, Class::Pneumonia, Some(crate::data::Cause::Bacterial)) => "BACTERIAL".into(),
        (true, Class::Pneumonia, Some(crate::data::Cause::Viral)) => "VIRAL".into(),
        _ => truth.folder().to_string(),
    }
}

/// A Grad-CAM overlay picture (compared by identity: pictures are not diffed).
#[derive(Debug, Clone)]
pub struct Overlay(pub std::sync::Arc<image::RgbImage>);

impl PartialEq for Overlay {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The predict pane's state.
#[derive(Debug, Clone, Default)]
pub struct PredictState {
    pub items: Vec<(PathBuf, Class)>,
    pub selected: usize,
    pub pending: Option<PathBuf>,
    pub result: Option<PredictResult>,
    /// Show the Grad-CAM overlay (key g) instead of the plain image.
    pub heatmap: bool,
    /// The run's task is three-class: true labels shown as NORMAL / BACTERIAL / VIRAL.
    pub three_classes: bool,
    /// Several runs side by side: these are the first run's test images; this says which runs were tested on
    /// other images (and may have trained on some of these), by run index.
    pub foreign_runs: Vec<usize>,
}

/// The picture of the selected image, owned by the event loop (a terminal resource, not App state).
#[derive(Default)]
pub struct ImageView {
    pub path: Option<std::path::PathBuf>,
    /// The overlay shown instead of the image, if any.
    pub overlay: Option<Overlay>,
    pub protocol: Option<StatefulProtocol>,
}

/// The pane: the selected test image, and what model `m` made of it.
pub fn render(m: &ModelView, p: &PredictState, image: &mut ImageView, frame: &mut Frame, area: Rect) {
    let title = format!(" Predict with {} ({}) — enter: classify, ←/→: model ", m.name(), m.status.label());
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if p.items.is_empty() {
        frame.render_widget(Paragraph::new("no test images (the data folder has no test/ split)"), inner);
        return;
    }
    let cols = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(inner.width.min(34).max(inner.width / 3)), Constraint::Min(0)])
        .split(inner);
    let items: Vec<ListItem> = p
        .items
        .iter()
        .map(|(path, truth)| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            let tag = if *truth == Class::Pneumonia { "P" } else { "N" };
            ListItem::new(format!("{tag} {name}"))
        })
        .collect();
    let mut state = ListState::default().with_selected(Some(p.selected));
    let list = List::new(items)
        .block(Block::default().title(format!("test {}/{} (N/P: truth)", p.selected + 1, p.items.len())))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("›");
    frame.render_stateful_widget(list, cols[0], &mut state);

    let right = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(3), Constraint::Length(1), Constraint::Min(0)])
        .split(cols[1]);
    let (sel_path, truth) = &p.items[p.selected];
    let three_classes = p.three_classes;
    let mut lines = vec![Line::from(format!(
        "{} · true label {}",
        sel_path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
        true_name(sel_path, *truth, three_classes)
    ))];
    let mut gauge: Option<(f32, f32)> = None;
    match (&p.pending, &p.result) {
        (Some(pending), _) if pending == sel_path => lines.push(Line::from("classifying…")),
        (_, Some(r)) if &r.path == sel_path => match &r.outcome {
            Ok(prob) => {
                let predicted = r.called(*prob);
                let right_answer = predicted == r.true_name();
                let per_class: String =
                    r.class_probabilities.iter().map(|(c, p)| format!("  {c} {:.0}%", 100.0 * p)).collect();
                lines.push(Line::from(vec![
                    ratatui::text::Span::styled(
                        format!("{} says {predicted}", r.model.title()),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    ratatui::text::Span::styled(
                        if right_answer { "  ✓ right" } else { "  ✗ wrong" },
                        Style::default().fg(if right_answer { Color::Green } else { Color::Red }),
                    ),
                    ratatui::text::Span::raw(per_class),
                ]));
                gauge = Some((*prob, r.threshold));
            }
            Err(e) => lines.push(Line::styled(e.clone(), Style::default().fg(Color::Red))),
        },
        _ => lines.push(Line::from("press enter to classify this image")),
    }
    if p.foreign_runs.contains(&m.run) {
        lines.push(Line::styled(
            format!(
                "these are r1's test films; {} was tested on other films and may have trained on some of them",
                m.name()
            ),
            Style::default().fg(Color::Yellow),
        ));
    }
    if p.heatmap && !m.kind.is_network() {
        lines.push(Line::styled(
            "Grad-CAM explains one network: choose a model (←/→) for a heatmap",
            Style::default().fg(Color::Yellow),
        ));
    } else if p.heatmap {
        let shown = p.result.as_ref().is_some_and(|r| &r.path == sel_path && r.overlay.is_some());
        lines.push(Line::styled(
            if shown {
                "Grad-CAM: red = what drove P(pneumonia) (g: off)"
            } else {
                "Grad-CAM heatmap on (g: off); enter computes it"
            },
            Style::default().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), right[0]);
    if let Some((prob, threshold)) = gauge {
        frame.render_widget(
            Gauge::default()
                .gauge_style(Style::default().fg(if prob >= threshold { Color::Magenta } else { Color::Cyan }))
                .ratio(prob.clamp(0.0, 1.0) as f64)
                .label(format!("P(pneumonia) {:.1}% (threshold {:.0}%)", 100.0 * prob, 100.0 * threshold)),
            right[1],
        );
    }
    if image.path.as_ref() == Some(sel_path) {
        if let Some(proto) = image.protocol.as_mut() {
            frame.render_stateful_widget(StatefulImage::default(), right[2], proto);
        }
    } else if right[2].height > 0 {
        frame.render_widget(Paragraph::new("(loading image…)"), right[2]);
    }
}
