//! The headless front-end: consumes the engine's events and prints them — an indicatif bar on a terminal,
//! plain timestamped lines when piped — then the comparison table. Never touches the engine's internals.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::train::engine::EngineHandle;
use crate::train::events::{fmt_secs, BatchProgress, TrainEvent};
use crate::train::report::RunReport;

fn stamp() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Prints the engine's events until it finishes; returns the engine's result.
pub fn run(handle: EngineHandle) -> crate::error::Result<RunReport> {
    let tty = std::io::stderr().is_terminal();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut last_line = Instant::now() - Duration::from_secs(3600);
    let say = |bar: &Option<indicatif::ProgressBar>, line: String| match bar {
        Some(b) => b.println(line),
        None => outln!("{} {line}", stamp()),
    };
    let mut task = crate::data::Task::Pneumonia;
    for ev in handle.events.iter() {
        match ev {
            TrainEvent::RunStarted { info } => {
                task = info.task;
                if task == crate::data::Task::ThreeClass {
                    say(&bar, "task: three classes, NORMAL / BACTERIAL / VIRAL (cause from the file names)".into());
                }
                let source = match info.source.label() {
                    "" => String::new(),
                    label => format!(" ({label})"),
                };
                say(&bar, format!("run folder {}", info.run_dir.display()));
                say(&bar, format!("data {}{source}", info.data_root.display()));
                say(
                    &bar,
                    format!(
                        "device {}{} · models {} · {} epochs · batch {} · {} px",
                        info.device,
                        info.device
                            .strip_prefix("cuda:")
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(crate::train::backend::gpu_status)
                            .map(|s| format!(" ({s})"))
                            .unwrap_or_default(),
                        info.models.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
                        info.epochs,
                        info.batch_size,
                        info.image_size
                    ),
                );
            }
            TrainEvent::DataProgress { done, total } => {
                if tty {
                    let b = bar.get_or_insert_with(|| {
                        let b = indicatif::ProgressBar::new(total as u64);
                        b.set_style(
                            indicatif::ProgressStyle::with_template("decoding images [{bar:30}] {pos}/{len} eta {eta}")
                                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                        b
                    });
                    b.set_position(done as u64);
                } else if last_line.elapsed() > Duration::from_secs(10) || done == total {
                    last_line = Instant::now();
                    say(&bar, format!("decoding images {done}/{total}"));
                }
            }
            TrainEvent::DataReady { counts, skipped, seconds, test_source } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let line = |n: &str, c: crate::data::ClassCounts| match task {
                    crate::data::Task::ThreeClass => {
                        format!("{n:<10} NORMAL {:>5}  BACTERIAL {:>5}  VIRAL {:>5}", c.normal, c.bacterial, c.viral)
                    }
                    crate::data::Task::Pneumonia => format!(
                        "{n:<10} NORMAL {:>5}  PNEUMONIA {:>5}  (1:{:.2})",
                        c.normal,
                        c.pneumonia,
                        c.imbalance().unwrap_or(f64::NAN)
                    ),
                };
                say(&bar, format!("data ready in {seconds:.1}s ({skipped} unreadable files skipped)"));
                say(&bar, line("train", counts.train));
                say(&bar, line("validation", counts.validation));
                say(&bar, line("test", counts.test));
                say(&bar, format!("test images: {}", test_source.describe()));
            }
            TrainEvent::Skipped { path, error } => say(&bar, format!("skipped {}: {error}", path.display())),
            TrainEvent::Warning { message } => say(&bar, format!("warning: {message}")),
            TrainEvent::Notice { message } => say(&bar, message),
            TrainEvent::ModelStarted { model, params, steps_per_epoch, epochs, init, .. } => {
                say(
                    &bar,
                    format!(
                        "== {} ({:.2} M parameters, from {init}): {epochs} epochs × {steps_per_epoch} steps",
                        model.title(),
                        params as f64 / 1e6
                    ),
                );
                if tty {
                    let b = indicatif::ProgressBar::new((steps_per_epoch * epochs) as u64);
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    b.set_prefix(model.name().to_string());
                    bar = Some(b);
                }
            }
            TrainEvent::Batch(b) => {
                let BatchProgress {
                    epoch,
                    step,
                    steps_per_epoch,
                    global_step,
                    loss,
                    accuracy,
                    lr,
                    images_per_sec,
                    eta_secs,
                    ..
                } = b;
                let msg = format!(
                    "epoch {epoch} step {step}/{steps_per_epoch} loss {loss:.4} acc {:.1}% lr {lr:.2e} {images_per_sec:.1} img/s eta {}",
                    accuracy * 100.0,
                    fmt_secs(eta_secs)
                );
                match &bar {
                    Some(b) => {
                        b.set_position(global_step as u64 + 1);
                        b.set_message(msg);
                    }
                    None => {
                        if last_line.elapsed() > Duration::from_secs(15) || step == steps_per_epoch {
                            last_line = Instant::now();
                            outln!("{} {msg}", stamp());
                        }
                    }
                }
            }
            TrainEvent::EpochEnded {
                model,
                epoch,
                train_loss,
                train_accuracy,
                validation: v,
                best,
                seconds,
                images_per_sec,
                ..
            } => {
                // Three classes: the validation accuracy over the three, then the pneumonia-vs-normal figures.
                let val_acc = match v.class_accuracy {
                    Some(a) => format!("acc {:.1}% (pneumonia vs normal {:.1}%)", a * 100.0, v.accuracy * 100.0),
                    None => format!("acc {:.1}%", v.accuracy * 100.0),
                };
                say(
                    &bar,
                    format!(
                        "{} epoch {epoch}: train loss {train_loss:.4} acc {:.1}% · val loss {:.4} {val_acc} sens {:.1}% spec {:.1}% · {:.0}s {images_per_sec:.1} img/s{}",
                        model.name(),
                        train_accuracy * 100.0,
                        v.loss,
                        v.sensitivity * 100.0,
                        v.specificity * 100.0,
                        seconds,
                        if best { " · best so far" } else { "" }
                    ),
                );
            }
            TrainEvent::CheckpointSaved { .. } => {}
            TrainEvent::Evaluated { model, split, metrics: m } => {
                say(
                    &bar,
                    format!(
                        "{} on {split} at threshold {:.2}: acc {:.1}% sens {:.1}% spec {:.1}% prec {:.1}% F1 {:.3} AUC {} · confusion [[{} {}] [{} {}]]",
                        model.name(),
                        m.threshold,
                        m.accuracy * 100.0,
                        m.sensitivity * 100.0,
                        m.specificity * 100.0,
                        m.precision * 100.0,
                        m.f1,
                        m.auc.map(|a| format!("{a:.3}")).unwrap_or_else(|| "-".into()),
                        m.confusion.tn,
                        m.confusion.fp,
                        m.confusion.fn_,
                        m.confusion.tp
                    ),
                );
            }
            TrainEvent::Analysed { model, evaluation: e, differences } => {
                let (m, ci) = (&e.test_at_threshold, &e.ci_at_threshold);
                say(
                    &bar,
                    format!(
                        "{} at its operating point {:.2} ({} on validation): acc {} sens {} spec {} F1 {:.3} [{:.3}, {:.3}] · AUC {} · ECE {:.3} (95% CIs, {} bootstrap resamples)",
                        model.name(),
                        e.threshold,
                        e.rule,
                        crate::analysis::pct_ci(m.accuracy, ci.accuracy),
                        crate::analysis::pct_ci(m.sensitivity, ci.sensitivity),
                        crate::analysis::pct_ci(m.specificity, ci.specificity),
                        m.f1,
                        ci.f1.lo,
                        ci.f1.hi,
                        match (m.auc, ci.auc) {
                            (Some(a), Some(i)) => format!("{a:.3} [{:.3}, {:.3}]", i.lo, i.hi),
                            _ => "-".into(),
                        },
                        e.calibration.ece,
                        ci.resamples
                    ),
                );
                if let Some(t) = &e.three_class {
                    say(&bar, format!("{} three classes:\n{}", model.name(), t.text()));
                }
                for d in differences {
                    say(&bar, crate::analysis::describe_difference(&d));
                }
            }
            TrainEvent::ModelFinished { model, status, seconds, error } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                match error {
                    Some(e) => {
                        say(&bar, format!("{} {} after {}: {e}", model.name(), status.label(), fmt_secs(seconds)))
                    }
                    None => say(&bar, format!("{} {} in {}", model.name(), status.label(), fmt_secs(seconds))),
                }
            }
            // Only `view` replays several runs, in the dashboard.
            TrainEvent::Replayed { .. } => {}
            TrainEvent::History { events } => {
                // A resumed run: summarise what was done before instead of printing it again.
                let epochs = events.iter().filter(|e| matches!(e, TrainEvent::EpochEnded { .. })).count();
                let done: Vec<String> = events
                    .iter()
                    .filter_map(|e| match e {
                        TrainEvent::ModelFinished { model, status, .. } => {
                            Some(format!("{} {}", model.name(), status.label()))
                        }
                        _ => None,
                    })
                    .collect();
                say(
                    &bar,
                    format!(
                        "resuming: {epochs} epochs done before{}",
                        if done.is_empty() { String::new() } else { format!(" ({})", done.join(", ")) }
                    ),
                );
            }
            TrainEvent::Paused => say(&bar, "paused".into()),
            TrainEvent::Resumed => say(&bar, "resumed".into()),
            TrainEvent::Finished { run_dir, stopped } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let what = if stopped { "stopped; work saved in" } else { "finished; results in" };
                say(&bar, format!("{what} {}", run_dir.display()));
            }
            TrainEvent::Failed { message } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let _ = message; // printed by main as the error
            }
        }
    }
    let report = handle.thread.join().map_err(|_| anyhow::anyhow!("the training thread panicked"))??;
    outln!("\n{}", report.table());
    if let Some(caveat) = report.data_caveat() {
        outln!("{caveat}");
    }
    Ok(report)
}
