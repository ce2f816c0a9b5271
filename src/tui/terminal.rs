//! The terminal under the dashboard: restored whatever happens (guard and panic hook), stderr kept off the screen,
//! the way pictures are drawn, and the signs that the terminal has gone away.

use std::time::{Duration, Instant};

/// Restores the terminal and stderr when dropped (normal exit, error or unwinding panic).
pub(super) struct TerminalGuard {
    pub(super) saved_stderr: Option<i32>,
}

impl TerminalGuard {
    pub(super) fn restore(&mut self) {
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
pub(super) fn redirect_stderr(log: &std::path::Path) -> Option<i32> {
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
pub(super) fn install_panic_hook(saved_stderr: Option<i32>) {
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

/// How images are drawn: the terminal's graphics protocol when it answers ratatui-image's query, else
/// half-block characters. Inside tmux or screen the query is not made: they swallow it (unless passthrough is
/// on), and the query's reader thread, left waiting for an answer that never comes, would eat the first key the
/// user presses.
pub(super) fn picker() -> ratatui_image::picker::Picker {
    let multiplexed = ["TMUX", "STY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if multiplexed || std::env::var("PNEUMOSCOPE_IMAGES").as_deref() == Ok("halfblocks") {
        return ratatui_image::picker::Picker::halfblocks();
    }
    ratatui_image::picker::Picker::from_query_stdio().unwrap_or_else(|_| ratatui_image::picker::Picker::halfblocks())
}

/// Counts events that are neither keys nor resizes; a flood of them means the terminal is gone.
#[derive(Default)]
pub(super) struct Noise {
    since: Option<Instant>,
    count: u32,
}

impl Noise {
    pub(super) fn clear(&mut self) {
        *self = Noise::default();
    }
    /// True when more than 500 such events arrived within a second.
    pub(super) fn tick(&mut self) -> bool {
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
pub(super) fn tty_hung_up(wait: Duration) -> bool {
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
