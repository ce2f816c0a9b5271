//! What makes a configuration acceptable: every value checked against what is allowed, and TOML's own errors
//! turned into one line that names the key.

use super::{model_names_list, ClassWeights, Config, MAX_THREADS};
use crate::error::ConfigError;

impl Config {
    /// Checks every value; the message names the key and what is allowed.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        let d = &self.data;
        let t = &self.training;
        let bad = |key: &str, msg: String| Err(ConfigError::new(format!("invalid value for `{key}`: {msg}")));
        if !(16..=1024).contains(&d.image_size) {
            return bad("data.image_size", format!("{} (allowed: 16 to 1024 pixels)", d.image_size));
        }
        if !(d.val_fraction > 0.0 && d.val_fraction < 0.9) {
            return bad("data.val_fraction", format!("{} (allowed: more than 0 and less than 0.9)", d.val_fraction));
        }
        if !(d.test_fraction > 0.0 && d.test_fraction <= 0.5) {
            return bad("data.test_fraction", format!("{} (allowed: more than 0, at most 0.5)", d.test_fraction));
        }
        if d.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("data.std", format!("{:?} (every value must be a positive number)", d.std));
        }
        if d.mean.iter().any(|m| !m.is_finite()) {
            return bad("data.mean", format!("{:?} (every value must be a finite number)", d.mean));
        }
        if !(0.0..=180.0).contains(&d.rotation_degrees) {
            return bad("data.rotation_degrees", format!("{} (allowed: 0 to 180)", d.rotation_degrees));
        }
        for (key, v) in [("data.scale", d.scale), ("data.brightness", d.brightness), ("data.contrast", d.contrast)] {
            if !(0.0..0.9).contains(&v) {
                return bad(key, format!("{v} (allowed: 0 to less than 0.9)"));
            }
        }
        if !(0.0..=0.4).contains(&d.translate) {
            return bad("data.translate", format!("{} (allowed: 0 to 0.4)", d.translate));
        }
        if d.max_image_side < 64 {
            return bad("data.max_image_side", format!("{} (allowed: 64 or more)", d.max_image_side));
        }
        let demo = &self.demo;
        if demo.train_images < 20 {
            return bad("demo.train_images", format!("{} (allowed: 20 or more)", demo.train_images));
        }
        if demo.test_images < 4 {
            return bad("demo.test_images", format!("{} (allowed: 4 or more)", demo.test_images));
        }
        if !(16..=1024).contains(&demo.image_size) {
            return bad("demo.image_size", format!("{} (allowed: 16 to 1024 pixels)", demo.image_size));
        }
        if demo.epochs == 0 {
            return bad("demo.epochs", "0 (allowed: 1 or more)".into());
        }
        if t.models.is_empty() {
            return bad("training.models", format!("[] (list one or more of: {})", model_names_list()));
        }
        for (i, m) in t.models.iter().enumerate() {
            if !m.is_network() {
                return bad("training.models", format!("`{m}` is not a model (allowed: {})", model_names_list()));
            }
            if t.models[..i].contains(m) {
                return bad("training.models", format!("`{m}` is listed twice (each model trains once per run)"));
            }
        }
        if t.threads > MAX_THREADS {
            return bad(
                "training.threads",
                format!("{} (allowed: 0 for one per core, or 1 to {MAX_THREADS})", t.threads),
            );
        }
        if t.epochs == 0 {
            return bad("training.epochs", "0 (allowed: 1 or more)".into());
        }
        if !(1..=4096).contains(&t.batch_size) {
            return bad("training.batch_size", format!("{} (allowed: 1 to 4096)", t.batch_size));
        }
        if !(t.max_lr.is_finite() && t.max_lr > 0.0 && t.max_lr <= 10.0) {
            return bad("training.max_lr", format!("{} (allowed: more than 0, at most 10)", t.max_lr));
        }
        if !(0.0..1.0).contains(&t.warmup_fraction) {
            return bad("training.warmup_fraction", format!("{} (allowed: 0 to less than 1)", t.warmup_fraction));
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("training.weight_decay", format!("{} (allowed: 0 or more)", t.weight_decay));
        }
        if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
            return bad("training.grad_clip", format!("{} (allowed: 0 to disable, or a positive number)", t.grad_clip));
        }
        if !(0.0..0.5).contains(&t.label_smoothing) {
            return bad("training.label_smoothing", format!("{} (allowed: 0 to less than 0.5)", t.label_smoothing));
        }
        if !(0.0..1.0).contains(&t.dropout) {
            return bad("training.dropout", format!("{} (allowed: 0 to less than 1)", t.dropout));
        }
        if !(t.backbone_lr_factor.is_finite() && t.backbone_lr_factor > 0.0 && t.backbone_lr_factor <= 1.0) {
            return bad(
                "training.backbone_lr_factor",
                format!("{} (allowed: more than 0, at most 1)", t.backbone_lr_factor),
            );
        }
        if let ClassWeights::Explicit(w) = &t.class_weights {
            if !w.iter().all(|x| x.is_finite() && *x > 0.0) {
                return bad("training.class_weights", format!("{w:?} (every weight must be a positive number)"));
            }
            let task = self.data.task;
            if w.len() != task.classes() {
                return bad(
                    "training.class_weights",
                    format!(
                        "{w:?} ({} weights for data.task = \"{task}\", whose classes are {})",
                        task.classes(),
                        task.class_names().join(", ")
                    ),
                );
            }
        }
        let e = &self.evaluation;
        if !(e.target_sensitivity > 0.0 && e.target_sensitivity <= 1.0) {
            return bad(
                "evaluation.target_sensitivity",
                format!("{} (allowed: more than 0, at most 1)", e.target_sensitivity),
            );
        }
        if !(1..=5).contains(&e.tta) {
            return bad("evaluation.tta", format!("{} (allowed: 1 to 5 views)", e.tta));
        }
        if !(100..=100_000).contains(&e.bootstrap_resamples) {
            return bad(
                "evaluation.bootstrap_resamples",
                format!("{} (allowed: 100 to 100000)", e.bootstrap_resamples),
            );
        }
        Ok(())
    }
}

/// Turns a toml/serde error into one line that names the key and, for enums, the allowed values.
pub(super) fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let msg = msg.replace("unknown variant", "unknown value").replace("expected one of", "allowed:");
    match e.span() {
        Some(span) => match key_at(text, span.start) {
            Some(key) if !msg.contains(&key) => format!("invalid value for `{key}`: {msg}{}", location_hint(e)),
            _ => format!("{msg}{}", location_hint(e)),
        },
        None => msg,
    }
}

/// The dotted key (`training.epochs`) whose value sits at byte `at` of a TOML text: the `key =` on that line
/// under the last `[table]` header above it.
fn key_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at.min(text.len()))?;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

fn location_hint(e: &toml::de::Error) -> String {
    // toml's Display carries "TOML parse error at line L, column C"; keep only that part.
    let full = e.to_string();
    full.lines().next().and_then(|l| l.strip_prefix("TOML parse error ")).map(|l| format!(" ({l})")).unwrap_or_default()
}
