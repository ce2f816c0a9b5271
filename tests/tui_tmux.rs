//! The dashboard as a person uses it: the real binary in tmux at 80×24 on a tiny synthetic set. Keys switch
//! panes, open help, classify a test image with a finished model while the next one trains, then quit.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux")
    }
    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", &self.session]).stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.cmd(&["send-keys", "-t", &self.session, k]);
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    /// Waits until the screen contains `needle`.
    fn wait_for(&self, needle: &str, secs: u64) -> String {
        self.wait_until(needle, secs, |s| s.contains(needle))
    }
    fn wait_until(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.capture();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what:?}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn wait_file(p: &Path, secs: u64) -> String {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.is_empty() {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{} did not appear", p.display());
}

#[test]
fn dashboard_in_tmux_switches_panes_predicts_and_quits_cleanly() {
    assert!(
        Command::new("tmux").arg("-V").output().map(|o| o.status.success()).unwrap_or(false),
        "tmux is needed for this test (.ci/run installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 80, 12, 5);
    let exit_file = tmp.path().join("exit");
    let script = format!(
        "cd {dir} && XDG_CACHE_HOME={dir}/cache PNEUMOSCOPE_IMAGES=halfblocks {bin} train --data {data} \
         --models simple,regularized --epochs 200 --image-size 32 --batch-size 8; echo $? > {exit}; sleep 120",
        dir = tmp.path().display(),
        bin = bin().display(),
        data = data.display(),
        exit = exit_file.display()
    );
    let t = Tmux { socket: format!("pneumoscope-test-{}", std::process::id()), session: "dash".into() };
    let out = t.cmd(&["new-session", "-d", "-s", "dash", "-x", "80", "-y", "24", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let s = t.wait_for("training simple", 60);
    assert!(s.contains("pneumoscope") && s.contains("SYNTHETIC"), "{s}");
    // Help overlay from the key map, then close it.
    t.keys(&["?"]);
    let s = t.wait_for("Keys (esc closes)", 5);
    assert!(s.contains("pause / resume training"), "{s}");
    t.keys(&["Escape", "1"]);
    let s = t.wait_for("Class balance", 5);
    assert!(s.contains("SYNTHETIC demo data") && s.contains("ratio 1:"), "{s}");
    t.keys(&["Tab"]);
    t.wait_for("per batch", 5);
    // After two epochs of simple (a best checkpoint exists), n ends it and regularized starts.
    t.wait_until("simple past epoch 2", 60, |s| {
        s.split("training simple e")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 3)
    });
    t.keys(&["n"]);
    t.wait_for("training regularized", 60);
    t.keys(&["4"]);
    let s = t.wait_for("Model comparison", 5);
    assert!(s.contains("stopped") && s.contains("training") && !s.contains("queued"), "{s}");
    t.keys(&["5"]);
    t.wait_for("Predict with regularized", 5);
    t.keys(&["h", "j", "Enter"]);
    let s = t.wait_for(" says ", 30);
    assert!(s.contains("Predict with simple") && s.contains("P(pneumonia)"), "{s}");
    assert!(s.contains("right") || s.contains("wrong"), "{s}");
    // g: the Grad-CAM overlay of that image.
    t.keys(&["g"]);
    t.wait_for("Grad-CAM: red = what drove P(pneumonia)", 30);
    // 6: the ROC pane of simple, tested when it was ended with n (operating point from validation).
    t.keys(&["6"]);
    let s = t.wait_for("ROC — Simple CNN", 5);
    assert!(s.contains("test AUC") && s.contains("threshold"), "{s}");
    // Quit while training: confirm, checkpoint saved, exit 0, terminal restored.
    t.keys(&["q"]);
    t.wait_for("Quit?", 5);
    t.keys(&["y"]);
    let code = wait_file(&exit_file, 60);
    assert_eq!(code.trim(), "0", "exit code");
    let alt = String::from_utf8_lossy(&t.cmd(&["display-message", "-p", "-t", "dash", "#{alternate_on}"]).stdout)
        .into_owned();
    assert_eq!(alt.trim(), "0", "the alternate screen must be left");
    let s = t.capture();
    assert!(s.contains("results in"), "the final table is printed on the restored terminal: {s}");
    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    let ckpts = runs[0].join("checkpoints");
    assert!(ckpts.join("simple-best.ckpt").is_file());
    assert!(ckpts.join("regularized-last.ckpt").is_file(), "quitting saves the training model's checkpoint");
    let report = std::fs::read_to_string(runs[0].join("report.json")).unwrap();
    assert!(report.contains("\"stopped\""), "{report}");
}

#[test]
fn dropped_terminal_stops_training_saves_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("hangup-data");
    synth(&data, 60, 10, 6);
    // The shell outlives the hangup (it ignores SIGHUP; pneumoscope installs its own handler) to record the exit
    // code and what was printed on stderr after the terminal went away.
    let (exit_file, err_file) = (tmp.path().join("exit"), tmp.path().join("stderr"));
    let script = format!(
        "trap '' HUP; cd {dir} && XDG_CACHE_HOME={dir}/cache PNEUMOSCOPE_IMAGES=halfblocks {bin} train --data {data} \
         --models regularized --epochs 500 --image-size 32 --batch-size 8 2> {err}; echo $? > {exit}",
        dir = tmp.path().display(),
        bin = bin().display(),
        data = data.display(),
        err = err_file.display(),
        exit = exit_file.display()
    );
    let t = Tmux { socket: format!("pneumoscope-hup-{}", std::process::id()), session: "hup".into() };
    assert!(t.cmd(&["new-session", "-d", "-s", "hup", "-x", "80", "-y", "24", &script]).status.success());
    t.wait_until("regularized past epoch 1", 60, |s| s.contains("training regularized e2/") || s.contains("e3/"));
    // The SSH connection drops: the terminal disappears and the process gets SIGHUP.
    t.cmd(&["kill-server"]);
    let needle = data.display().to_string();
    let start = Instant::now();
    loop {
        let running = Command::new("pgrep").args(["-f", &needle]).output().map(|o| o.status.success()).unwrap_or(false);
        if !running {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pneumoscope still running 30 s after its terminal went away"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let run = std::fs::read_dir(tmp.path().join("runs")).unwrap().next().unwrap().unwrap().path();
    assert!(run.join("checkpoints/regularized-last.ckpt").is_file(), "a checkpoint is saved on hangup");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["stopped"], true);
    assert_eq!(report["models"][0]["status"], "stopped");
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    assert_eq!(wait_file(&exit_file, 10).trim(), "130", "interrupted, work saved; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_panicking_pane_leaves_the_terminal_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("panic-data");
    synth(&data, 40, 10, 7);
    let exit_file = tmp.path().join("exit");
    let script = format!(
        "cd {dir} && PNEUMOSCOPE_FAILPOINTS=panic-render XDG_CACHE_HOME={dir}/cache {bin} train --data {data} \
         --models simple --epochs 50 --image-size 16; echo $? > {exit}; sleep 60",
        dir = tmp.path().display(),
        bin = bin().display(),
        data = data.display(),
        exit = exit_file.display()
    );
    let t = Tmux { socket: format!("pneumoscope-panic-{}", std::process::id()), session: "p".into() };
    assert!(t.cmd(&["new-session", "-d", "-s", "p", "-x", "80", "-y", "24", &script]).status.success());
    let code = wait_file(&exit_file, 60);
    assert_eq!(code.trim(), "101", "a forced panic exits like one");
    let alt =
        String::from_utf8_lossy(&t.cmd(&["display-message", "-p", "-t", "p", "#{alternate_on}"]).stdout).into_owned();
    assert_eq!(alt.trim(), "0", "the alternate screen must be left after a panic");
    let s = String::from_utf8_lossy(&t.cmd(&["capture-pane", "-p", "-S", "-500", "-t", "p"]).stdout).into_owned();
    assert!(s.contains("failpoint panic-render"), "the panic message is shown on the restored terminal: {s}");
}

#[test]
fn the_first_key_after_start_and_after_a_resize_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 40, 8, 6);
    let exit_file = tmp.path().join("exit");
    // No PNEUMOSCOPE_IMAGES here: the image protocol is chosen as a user's session would choose it.
    let script = format!(
        "cd {dir} && XDG_CACHE_HOME={dir}/cache {bin} train --data {data} --models simple --epochs 500 \
         --image-size 24 --batch-size 8; echo $? > {exit}; sleep 120",
        dir = tmp.path().display(),
        bin = bin().display(),
        data = data.display(),
        exit = exit_file.display()
    );
    let t = Tmux { socket: format!("pneumoscope-keys-{}", std::process::id()), session: "keys".into() };
    let out = t.cmd(&["new-session", "-d", "-s", "keys", "-x", "80", "-y", "24", &script]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.wait_for("training simple", 60);
    std::thread::sleep(Duration::from_secs(3));
    // One press each, never repeated.
    t.keys(&["1"]);
    t.wait_for("Class balance", 5);
    t.cmd(&["resize-window", "-t", "keys", "-x", "100", "-y", "32"]);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["3"]);
    t.wait_for("Confusion", 5);
    t.keys(&["q"]);
    t.wait_for("Quit?", 5);
    t.keys(&["y"]);
    assert_eq!(wait_file(&exit_file, 60).trim(), "0");
}

/// `pneumoscope runs` lists a finished run (and says what is wrong with folders that are not runs), and
/// `pneumoscope view` opens the dashboard on it without training: compare holds its figures, predict classifies
/// its test films with its checkpoints, q leaves at once with exit 0.
#[test]
fn past_runs_are_listed_and_viewed_in_the_dashboard() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 60, 10, 9);
    let runs = tmp.path().join("runs");
    let o = run_in(
        tmp.path(),
        &["train", "--no-tui", "--data", "data", "--models", "simple", "--epochs", "1", "--image-size", "32"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // Beside the run: an empty folder and a journal cut off before the run started.
    std::fs::create_dir_all(runs.join("not-a-run")).unwrap();
    std::fs::create_dir_all(runs.join("torn")).unwrap();
    std::fs::write(runs.join("torn/metrics.jsonl"), "{\"event\":\"run_sta").unwrap();
    let o = run_in(tmp.path(), &["runs"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("finished") && out.contains("32 px, 1 epochs") && out.contains("SYNTHETIC"), "{out}");
    assert!(out.contains("simple") && out.contains("AUC"), "{out}");
    assert!(out.contains("not-a-run  unreadable") && out.contains("no metrics.jsonl"), "{out}");
    assert!(out.contains("torn  unreadable") && out.contains("no readable run start"), "{out}");
    let o = run_in(tmp.path(), &["runs", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("runs --json is JSON");
    let run = list.as_array().unwrap().iter().find(|r| r["status"] == "finished").expect("the finished run");
    assert_eq!(run["models"][0]["model"], "simple");
    assert!(run["models"][0]["test_auc"].as_f64().is_some(), "{run}");
    let run_dir = run["dir"].as_str().unwrap().to_string();

    // Refusals, with the reason: a folder that is not a run; no terminal.
    let o = run_in(tmp.path(), &["view", "runs/not-a-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a run folder"), "{}", text(&o));
    let o = run_in(tmp.path(), &["view", &run_dir]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("view needs a terminal"), "{}", text(&o));

    let exit_file = tmp.path().join("exit");
    let script = format!(
        "cd {dir} && PNEUMOSCOPE_IMAGES=halfblocks {bin} view {run}; echo $? > {exit}; sleep 60",
        dir = tmp.path().display(),
        bin = bin().display(),
        run = run_dir,
        exit = exit_file.display()
    );
    let t = Tmux { socket: format!("pneumoscope-view-{}", std::process::id()), session: "view".into() };
    assert!(t.cmd(&["new-session", "-d", "-s", "view", "-x", "80", "-y", "24", &script]).status.success());
    t.wait_for("finished", 30);
    t.keys(&["4"]);
    let s = t.wait_for("Model comparison", 5);
    assert!(s.contains("simple") && s.contains("done"), "{s}");
    t.keys(&["5"]);
    t.wait_for("Predict with simple", 5);
    t.keys(&["Enter"]);
    let s = t.wait_for(" says ", 30);
    assert!(s.contains("P(pneumonia)"), "{s}");
    t.keys(&["q"]);
    assert_eq!(wait_file(&exit_file, 20).trim(), "0");

    // A second run on the same folder, viewed beside the first: both runs' models in one list, labelled, and two
    // chosen models paired on the same test images.
    let o = run_in(
        tmp.path(),
        &[
            "train",
            "--no-tui",
            "--data",
            "data",
            "--models",
            "simple",
            "--epochs",
            "1",
            "--image-size",
            "32",
            "--seed",
            "7",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let second = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("report.json").is_file() && !p.ends_with(std::path::Path::new(&run_dir)))
        .find(|p| p.file_name() != std::path::Path::new(&run_dir).file_name())
        .expect("the second run");
    let exit2 = tmp.path().join("exit2");
    let script = format!(
        "cd {dir} && PNEUMOSCOPE_IMAGES=halfblocks {bin} view {run} {second}; echo $? > {exit}; sleep 60",
        dir = tmp.path().display(),
        bin = bin().display(),
        run = run_dir,
        second = second.display(),
        exit = exit2.display()
    );
    let t2 = Tmux { socket: format!("pneumoscope-view2-{}", std::process::id()), session: "view2".into() };
    assert!(t2.cmd(&["new-session", "-d", "-s", "view2", "-x", "80", "-y", "24", &script]).status.success());
    t2.wait_for("finished", 30);
    t2.keys(&["4"]);
    let s = t2.wait_for("simple·r2", 5);
    assert!(s.contains("simple·r1") && s.contains("r2 = "), "{s}");
    t2.keys(&["m", "l"]);
    let s = t2.wait_for("paired, same test images", 10);
    assert!(s.contains("simple·r2 − simple·r1"), "{s}");
    t2.keys(&["q"]);
    assert_eq!(wait_file(&exit2, 20).trim(), "0");

    // Without its report (killed before the end), the run is listed as interrupted with what its journal kept.
    std::fs::remove_file(tmp.path().join(&run_dir).join("report.json")).unwrap();
    let out = text(&run_in(tmp.path(), &["runs"]));
    assert!(out.contains("interrupted") && out.contains("no report.json"), "{out}");
    assert!(out.contains("epochs   1"), "the journal's epochs: {out}");
}
