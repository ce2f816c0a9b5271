//! The ratatui dashboard: terminal setup and restore (also on panic), the event loop (engine events, keys,
//! predictions, ≤10 redraws/s and only when something changed) and the frame layout around the panes.
//! Consumes the same engine events as the headless reporter; the engine never knows it is there.

pub mod app;
pub mod balance;
pub mod charts;
pub mod compare;
pub mod confusion;
pub mod help;
pub mod predict;
pub mod roc;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use crossterm::event::{self, Event, KeyEventKind};
use ratatui::layout::{Alignment, Constraint, Direction, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs, Wrap};
use ratatui::Frame;

use self::app::{App, Effect, Overlay, Pane, PredictResult};
use self::predict::ImageView;
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
        Pane::Predict => predict::render(app, image, frame, body),
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
    spans.push(Span::raw(format!(" · {} ({}/{})", m.kind.name(), app.selected + 1, app.models.len())));
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
    let hints =
        if width >= 110 { "  ?:help tab:pane ←→:model p:pause n:next s:stop q:quit" } else { "  ?:help q:quit" };
    Line::from(vec![state, Span::styled(hints, Style::default().fg(Color::DarkGray))])
}

/// Restores the terminal and stderr when dropped (normal exit, error or unwinding panic).
struct TerminalGuard {
    saved_stderr: Option<i32>,
}

impl TerminalGuard {
    fn restore(&mut self) {
        ratatui::restore();
        if let Some(fd) = self.saved_stderr.take() {
            // SAFETY: fd is a duplicate of the original stderr made in `redirect_stderr`.
            unsafe {
                libc::dup2(fd, 2);
                libc::close(fd);
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Sends fd 2 to `log` so library output cannot corrupt the screen; returns the saved original.
fn redirect_stderr(log: &std::path::Path) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).ok()?;
    // SAFETY: plain descriptor duplication; both descriptors stay valid for the process.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return None;
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            libc::close(saved);
            return None;
        }
        Some(saved)
    }
}

/// Installs a panic hook that restores the terminal (and stderr) before the panic message is printed.
fn install_panic_hook(saved_stderr: Option<i32>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        ratatui::restore();
        if let Some(fd) = saved_stderr {
            // SAFETY: see TerminalGuard::restore; restoring twice is harmless.
            unsafe {
                libc::dup2(fd, 2);
            }
        }
        previous(info);
    }));
}

/// Polls `nvidia-smi` for GPU `n` every 5 s (stops at the first silence: no tool, no such GPU).
fn spawn_gpu_status(n: usize) -> Receiver<String> {
    let (tx, rx) = unbounded();
    let _ = std::thread::Builder::new().name("pneumoscope-gpu-status".into()).spawn(move || {
        while let Some(s) = crate::train::backend::gpu_status(n) {
            if tx.send(s).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    rx
}

/// Loads checkpoints and classifies images off the UI thread.
fn spawn_predictor() -> (Sender<Effect>, Receiver<PredictResult>) {
    let (req_tx, req_rx) = unbounded::<Effect>();
    let (res_tx, res_rx) = unbounded();
    let _ = std::thread::Builder::new().name("pneumoscope-predict".into()).spawn(move || {
        use crate::train::backend::Cpu;
        type Ad = burn::backend::Autodiff<Cpu>;
        let device = Default::default();
        let mut cache: Option<crate::train::predictor::Predictor<Cpu>> = None;
        let mut grad_cache: Option<(PathBuf, crate::model::Model<Ad>)> = None;
        for req in req_rx.iter() {
            let Effect::Predict { path, checkpoint, model, truth, heatmap } = req else {
                continue;
            };
            let outcome = (|| -> std::result::Result<(f32, f32), String> {
                if cache.as_ref().map(|c| &c.path) != Some(&checkpoint) {
                    let loaded = crate::train::predictor::Predictor::<Cpu>::load(&checkpoint, &device)
                        .map_err(|e| crate::error::format_error(&e))?;
                    cache = Some(loaded);
                }
                let predictor = cache.as_ref().ok_or("no model")?;
                let r = predictor.predict_files(std::slice::from_ref(&path), 30_000, &device);
                match r.into_iter().next() {
                    Some(Ok(p)) => Ok((p.p_pneumonia, p.threshold)),
                    Some(Err((_, e))) => Err(e),
                    None => Err("no result".into()),
                }
            })();
            let (outcome, threshold) = match outcome {
                Ok((p, t)) => (Ok(p), t),
                Err(e) => (Err(e), 0.5),
            };
            // Grad-CAM needs the model on the autodiff backend: loaded once per checkpoint.
            // (An ensemble has no single network to explain: its pane says so.)
            let overlay = (heatmap && outcome.is_ok() && model.is_network())
                .then(|| -> Option<Overlay> {
                    if grad_cache.as_ref().map(|c| &c.0) != Some(&checkpoint) {
                        let (_, m) = crate::train::checkpoint::load::<Ad>(&checkpoint, &device).ok()?;
                        grad_cache = Some((checkpoint.clone(), m));
                    }
                    let (_, m) = grad_cache.as_ref()?;
                    let meta = cache.as_ref()?.meta();
                    let e = crate::train::explain::explain_file(m, meta, &path, 30_000, &device).ok()?;
                    Some(Overlay(std::sync::Arc::new(e.overlay)))
                })
                .flatten();
            if res_tx.send(PredictResult { path, model, truth, outcome, threshold, overlay }).is_err() {
                return;
            }
        }
    });
    (req_tx, res_rx)
}

/// Decodes an image for display, downscaled so terminal encoding stays cheap.
fn load_picture(path: &std::path::Path) -> Option<image::DynamicImage> {
    let (img, _) = crate::data::image::decode(path, 30_000).ok()?;
    Some(img.resize(480, 480, image::imageops::FilterType::Triangle).grayscale())
}

/// How images are drawn: the terminal's graphics protocol when it answers ratatui-image's query, else
/// half-block characters. Inside tmux or screen the query is not made: they swallow it (unless passthrough is
/// on), and the query's reader thread, left waiting for an answer that never comes, would eat the first key the
/// user presses.
fn picker() -> ratatui_image::picker::Picker {
    let multiplexed = ["TMUX", "STY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if multiplexed || std::env::var("PNEUMOSCOPE_IMAGES").as_deref() == Ok("halfblocks") {
        return ratatui_image::picker::Picker::halfblocks();
    }
    ratatui_image::picker::Picker::from_query_stdio().unwrap_or_else(|_| ratatui_image::picker::Picker::halfblocks())
}

/// Counts events that are neither keys nor resizes; a flood of them means the terminal is gone.
#[derive(Default)]
struct Noise {
    since: Option<Instant>,
    count: u32,
}

impl Noise {
    fn clear(&mut self) {
        *self = Noise::default();
    }
    /// True when more than 500 such events arrived within a second.
    fn tick(&mut self) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_secs(1) {
            self.since = Some(Instant::now());
            self.count = 0;
        }
        self.count += 1;
        self.count > 500
    }
}

/// Waits up to `wait` for input on the terminal; true when it hung up (crossterm's own poll spins forever on a
/// terminal that is gone, so the check is made with poll(2) first).
fn tty_hung_up(wait: Duration) -> bool {
    // SAFETY: poll(2) on our own stdin descriptor with a stack-allocated pollfd.
    unsafe {
        if libc::isatty(0) != 1 {
            std::thread::sleep(wait.min(Duration::from_millis(50)));
            return false;
        }
        let mut fds = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        let r = libc::poll(&mut fds, 1, wait.as_millis().min(1000) as i32);
        r > 0 && (fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL)) != 0
    }
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
    let (pred_tx, pred_rx) = spawn_predictor();
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
                    None => sel.as_deref().and_then(load_picture).map(|img| picker.new_resize_protocol(img)),
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
