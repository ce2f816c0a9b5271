//! The ratatui dashboard: terminal setup and restore (also on panic), the event loop (engine events, keys,
//! predictions, ≤10 redraws/s and only when something changed) and the frame layout around the panes.
//! Consumes the same engine events as the headless reporter; the engine never knows it is there.

pub mod app;
pub mod balance;
pub mod charts;
pub mod compare;
pub mod confusion;
pub mod help;
pub mod keymap;
pub mod model_view;
pub mod pairing;
pub mod predict;
pub mod roc;
mod side_by_side;
mod terminal;
mod workers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::layout::{Alignment, Constraint, Direction, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Wrap};
use ratatui::Frame;

use self::app::{App, Effect};
use self::keymap::Pane;
use self::predict::ImageView;
use self::terminal::{install_panic_hook, picker, redirect_stderr, tty_hung_up, Noise, TerminalGuard};
use self::workers::{load_picture, spawn_gpu_status, spawn_predictor};
use crate::data::Class;
use crate::error::Result;
use crate::model::ModelKind;
use crate::train::engine::EngineHandle;
use crate::train::report::RunReport;
use crate::train::ModelStatus;

/// Smallest terminal the dashboard draws in; below it says so.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;
/// At most this many redraws per second.
const FRAME: Duration = Duration::from_millis(100);

/// Draws the whole screen from the state. Pure apart from the image widget's encoding cache.
pub fn render(app: &App, image: &mut ImageView, frame: &mut Frame) {
    let area = frame.area();
    if app.counts.is_some() && crate::error::failpoint("panic-render").is_some() {
        panic!("failpoint panic-render: a pane panicked while drawing");
    }
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = Paragraph::new(format!(
            "terminal too small ({}×{}); need {MIN_WIDTH}×{MIN_HEIGHT}",
            area.width, area.height
        ))
        .wrap(Wrap { trim: true })
        .alignment(Alignment::Center);
        frame.render_widget(msg, area);
        return;
    }
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([Constraint::Length(1), Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)])
        .split(area);
    frame.render_widget(Paragraph::new(header(app, area.width)), rows[0]);
    let titles: Vec<Line> =
        Pane::ALL.iter().enumerate().map(|(i, p)| Line::from(format!("{} {}", i + 1, p.title()))).collect();
    frame.render_widget(
        Tabs::new(titles)
            .select(app.pane.index())
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD))
            .divider("│"),
        rows[1],
    );
    let body = rows[2];
    match app.pane {
        Pane::Balance => balance::render(app, frame, body),
        Pane::Charts => charts::render(app, frame, body),
        Pane::Confusion => confusion::render(app, frame, body),
        Pane::Compare => compare::render(app, frame, body),
        Pane::Predict => predict::render(app.current(), &app.predict, image, frame, body),
        Pane::Roc => roc::render(app, frame, body),
    }
    frame.render_widget(Paragraph::new(status_line(app, area.width)), rows[3]);
    if app.help {
        help::render(frame, body);
    }
    if app.confirm_quit {
        help::render_confirm(frame, body);
    }
}

fn header(app: &App, width: u16) -> Line<'static> {
    let mut spans = vec![Span::styled("pneumoscope", Style::default().add_modifier(Modifier::BOLD))];
    let m = app.current();
    spans.push(Span::raw(format!(" · {} ({}/{})", m.name(), app.selected + 1, app.models.len())));
    if let Some(i) = &app.info {
        use crate::data::demo::DataSource;
        let tag = match i.source {
            DataSource::Synthetic => Some("SYNTHETIC data"),
            DataSource::RealSubset => Some("real demo subset"),
            DataSource::Folder => None,
        };
        if let Some(tag) = tag {
            spans.push(Span::raw(" · "));
            spans.push(Span::styled(tag, Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        }
        let device = if width >= 110 { i.device.clone() } else { i.device.split(' ').next().unwrap_or("").to_string() };
        spans.push(Span::raw(format!(" · {device} · {}px · batch {}", i.image_size, i.batch_size)));
        if let Some(d) = &app.device_note {
            spans.push(Span::raw(format!(" · {d}")));
        }
    }
    Line::from(spans)
}

fn status_line(app: &App, width: u16) -> Line<'static> {
    let state = if let Some(e) = &app.failed {
        Span::styled(format!("failed: {e}"), Style::default().fg(Color::Red))
    } else if app.finished {
        Span::styled("finished — compare, predict, q quits".to_string(), Style::default().fg(Color::Green))
    } else if app.stopping {
        Span::styled("stopping after this batch, saving a checkpoint…".to_string(), Style::default().fg(Color::Yellow))
    } else if app.paused {
        Span::styled("PAUSED (p resumes)".to_string(), Style::default().fg(Color::Yellow))
    } else if app.counts.is_none() {
        let (d, t) = app.data_progress;
        Span::raw(format!("decoding images {d}/{t}"))
    } else {
        let training = app.models.iter().find(|m| m.status == ModelStatus::Training);
        match training {
            Some(m) => Span::raw(format!(
                "training {} e{}/{} · {:.1} img/s · ETA {}",
                m.kind.name(),
                m.epoch,
                m.epochs,
                m.images_per_sec,
                charts::fmt_secs(m.eta_secs)
            )),
            None => Span::raw("working…".to_string()),
        }
    };
    let hints = format!("  {}", keymap::status_hints(width >= 110));
    Line::from(vec![state, Span::styled(hints, Style::default().fg(Color::DarkGray))])
}

/// The terminal is gone: ask the engine to stop (it saves a checkpoint) and leave once it has.
fn hangup(app: &mut App, handle: &EngineHandle, quit_early: &mut bool) {
    if !app.should_quit || !app.stopping {
        let _ = handle.commands.send(crate::train::Command::Stop);
    }
    app.should_quit = true;
    app.stopping = true;
    app.hung_up = true;
    *quit_early = true;
}

/// What the dashboard ended with.
pub struct Outcome {
    pub report: Option<Result<RunReport>>,
    /// The user quit (q) or a signal arrived before the run finished.
    pub quit_early: bool,
    /// The terminal went away (SSH dropped, tmux killed): an interruption, not the user's choice.
    pub hung_up: bool,
}

/// Runs the dashboard until the user quits. The engine keeps training behind it; quitting while it trains
/// sends Stop and waits for the checkpoint before leaving.
pub fn run(
    handle: EngineHandle,
    models: &[ModelKind],
    test_items: Vec<(PathBuf, Class)>,
    // The run's `data.max_image_side`: the predict pane reads the test films as training did.
    max_image_side: u32,
    log_file: &std::path::Path,
    signals: &crate::signals::StopSignals,
) -> Result<Outcome> {
    let mut app = App::new(models);
    app.predict.items = test_items;
    let saved_stderr = redirect_stderr(log_file);
    install_panic_hook(saved_stderr);
    let mut terminal = ratatui::try_init()?;
    let mut guard = TerminalGuard { saved_stderr };
    let picker = picker();
    let (pred_tx, pred_rx) = spawn_predictor(max_image_side);
    let mut image = ImageView::default();
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    let mut engine_done = false;
    let mut quit_early = false;
    let mut noise = Noise::default();
    let mut last_tty_check = Instant::now();
    let mut gpu_rx: Option<Receiver<String>> = None;
    loop {
        // Training on a GPU: its name and memory in use, refreshed every few seconds, in the header.
        if gpu_rx.is_none() {
            if let Some(n) = app
                .info
                .as_ref()
                .and_then(|i| i.device.strip_prefix("cuda:"))
                .and_then(|d| d.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<usize>().ok()))
            {
                gpu_rx = Some(spawn_gpu_status(n));
            }
        }
        if let Some(rx) = &gpu_rx {
            while let Ok(note) = rx.try_recv() {
                app.device_note = Some(note);
                dirty = true;
            }
        }
        loop {
            match handle.events.try_recv() {
                Ok(ev) => {
                    app.on_event(ev);
                    dirty = true;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    engine_done = true;
                    if !app.finished && app.failed.is_none() {
                        app.finished = true;
                    }
                    break;
                }
            }
        }
        while let Ok(r) = pred_rx.try_recv() {
            app.on_prediction(r);
            dirty = true;
        }
        if signals.fired() && !app.should_quit {
            // SIGTERM/SIGHUP: the signal thread already asked the engine to stop; leave once it has.
            app.should_quit = true;
            app.stopping = true;
            quit_early = true;
        }
        if app.pane == Pane::Predict {
            let sel = app.predict.items.get(app.predict.selected).map(|i| i.0.clone());
            // The Grad-CAM overlay when it is on and computed for the selected image, else the image itself.
            let overlay = app
                .predict
                .result
                .as_ref()
                .filter(|r| app.predict.heatmap && Some(&r.path) == sel.as_ref())
                .and_then(|r| r.overlay.clone());
            if sel.is_some() && (image.path != sel || image.overlay != overlay) {
                image.protocol = match &overlay {
                    Some(o) => Some(picker.new_resize_protocol(image::DynamicImage::ImageRgb8((*o.0).clone()))),
                    None => sel
                        .as_deref()
                        .and_then(|p| load_picture(p, max_image_side))
                        .map(|img| picker.new_resize_protocol(img)),
                };
                image.path = sel;
                image.overlay = overlay;
                dirty = true;
            }
        }
        if app.should_quit && (engine_done || app.finished || app.failed.is_some()) {
            break;
        }
        if dirty && last_draw.elapsed() >= FRAME && !app.hung_up {
            if terminal.draw(|f| render(&app, &mut image, f)).is_err() {
                hangup(&mut app, &handle, &mut quit_early);
            }
            dirty = false;
            last_draw = Instant::now();
        }
        let wait = if dirty { FRAME.saturating_sub(last_draw.elapsed()) } else { Duration::from_millis(200) };
        // A terminal that went away (SSH dropped, tmux killed) makes poll/read fail or report events
        // endlessly; treat that like a hangup: stop training, save, leave.
        if app.hung_up {
            // Nothing to read or draw: wait for the engine to save and finish.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if tty_hung_up(wait) {
            hangup(&mut app, &handle, &mut quit_early);
            continue;
        }
        let polled =
            event::poll(Duration::ZERO).and_then(|ready| if ready { event::read().map(Some) } else { Ok(None) });
        let ev = match polled {
            Ok(ev) => ev,
            Err(_) => {
                hangup(&mut app, &handle, &mut quit_early);
                None
            }
        };
        match ev {
            Some(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                noise.clear();
                let was_training = app.training();
                for fx in app.on_key(k) {
                    match fx {
                        Effect::Send(cmd) => {
                            let _ = handle.commands.send(cmd);
                        }
                        p @ Effect::Predict { .. } => {
                            let _ = pred_tx.send(p);
                        }
                    }
                }
                if app.should_quit && was_training {
                    quit_early = true;
                }
                dirty = true;
            }
            Some(Event::Resize(_, _)) => dirty = true,
            Some(_) if noise.tick() => hangup(&mut app, &handle, &mut quit_early),
            Some(_) | None => {}
        }
        if last_tty_check.elapsed() > Duration::from_secs(2) {
            last_tty_check = Instant::now();
            if crossterm::terminal::size().is_err() {
                hangup(&mut app, &handle, &mut quit_early);
            }
        }
    }
    guard.restore();
    drop(terminal);
    let report = if engine_done || app.finished || app.failed.is_some() {
        Some(handle.thread.join().map_err(|_| anyhow::anyhow!("the training thread panicked")).and_then(|r| r))
    } else {
        None
    };
    Ok(Outcome { report, quit_early, hung_up: app.hung_up })
}
