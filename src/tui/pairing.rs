//! Two chosen models compared on the same test images (the compare pane's `m` key): the paired bootstrap
//! difference of their accuracy at each one's operating point and of their AUC — across runs too, when the runs
//! were tested on the same images, and refused, saying why, when they were not. Pure computation on what the
//! dashboard holds.

use super::model_view::ModelView;
use crate::analysis::{paired_differences, Difference};

/// Resamples of the paired bootstrap (as the reports use by default).
const RESAMPLES: usize = 1000;

/// The comparison of model `a` (the selected one) with model `b` (the marked one), by their index in the
/// dashboard's list.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    /// Accuracy and AUC differences (a − b) with 95 % intervals, or why there are none.
    pub outcome: Result<(Difference, Option<Difference>), String>,
}

/// What the dashboard knows of each run's test images: a key naming them and the truth, by run index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTests {
    pub split_keys: Vec<String>,
    pub truths: Vec<Vec<bool>>,
}

impl RunTests {
    /// Records run `index`'s test images.
    pub fn set(&mut self, index: usize, split_key: String, truth: Vec<bool>) {
        if self.split_keys.len() <= index {
            self.split_keys.resize(index + 1, String::new());
            self.truths.resize(index + 1, Vec::new());
        }
        self.split_keys[index] = split_key;
        self.truths[index] = truth;
    }

    /// Whether runs `a` and `b` were tested on the same images.
    pub fn same_images(&self, a: usize, b: usize) -> bool {
        let (Some(ka), Some(kb)) = (self.split_keys.get(a), self.split_keys.get(b)) else { return a == b };
        a == b || (ka == kb && self.truths.get(a) == self.truths.get(b))
    }
}

/// Compares `models[a]` with `models[b]`.
pub fn compare(models: &[ModelView], tests: &RunTests, a: usize, b: usize, seed: u64) -> Pair {
    let outcome = (|| {
        let (ma, mb) = (models.get(a).ok_or("no such model")?, models.get(b).ok_or("no such model")?);
        let ((sa, ta), (sb, tb)) = match (&ma.test_scores, &mb.test_scores) {
            (Some(x), Some(y)) => (x, y),
            _ => {
                let untested = if ma.test_scores.is_none() { ma } else { mb };
                return Err(format!(
                    "{} has no test scores (not tested, or a run from before they were kept)",
                    untested.name()
                ));
            }
        };
        if !tests.same_images(ma.run, mb.run) {
            let key = |r: usize| tests.split_keys.get(r).cloned().unwrap_or_default();
            return Err(format!(
                "not on the same test images, so no paired difference: {} was tested on {}, {} on {}",
                ma.name(),
                key(ma.run),
                mb.name(),
                key(mb.run)
            ));
        }
        let truth = tests.truths.get(ma.run).ok_or("no test truth")?;
        if sa.len() != truth.len() || sb.len() != truth.len() {
            return Err("the runs' test scores do not cover the same images".to_string());
        }
        Ok(paired_differences((sa, *ta), (sb, *tb), truth, RESAMPLES, seed))
    })();
    Pair { a, b, outcome: outcome.map_err(|e: String| e) }
}

/// One line for the compare pane.
pub fn describe(models: &[ModelView], pair: &Pair) -> String {
    let name = |i: usize| models.get(i).map(|m| m.name()).unwrap_or_default();
    match &pair.outcome {
        Ok((acc, auc)) => {
            let noise = |d: &Difference| if d.within_noise() { "within the noise" } else { "beyond the noise" };
            let auc = auc
                .as_ref()
                .map(|d| format!(" · AUC {:+.3} [{:+.3}, {:+.3}] {}", d.value, d.interval.lo, d.interval.hi, noise(d)))
                .unwrap_or_default();
            format!(
                "{} − {} (paired, same test images): acc {:+.1} [{:+.1}, {:+.1}] {}{auc}",
                name(pair.a),
                name(pair.b),
                100.0 * acc.value,
                100.0 * acc.interval.lo,
                100.0 * acc.interval.hi,
                noise(acc)
            )
        }
        Err(why) => format!("{} vs {}: {why}", name(pair.a), name(pair.b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelKind;

    fn model(run: usize, scores: Vec<f32>) -> ModelView {
        ModelView {
            test_scores: Some((scores, 0.5)),
            ..ModelView::of_run(ModelKind::Simple, run, &format!("r{}", run + 1))
        }
    }

    #[test]
    fn runs_on_the_same_images_are_paired_and_others_refused() {
        let truth = vec![false, false, true, true, true, false];
        let models = vec![
            model(0, vec![0.1, 0.2, 0.9, 0.8, 0.7, 0.3]),
            model(1, vec![0.6, 0.2, 0.9, 0.4, 0.7, 0.3]),
            model(2, vec![0.1, 0.2, 0.9, 0.8, 0.7, 0.3]),
        ];
        let mut tests = RunTests::default();
        tests.set(0, "the test/ folder of /data".into(), truth.clone());
        tests.set(1, "the test/ folder of /data".into(), truth.clone());
        tests.set(2, "/data held out with seed 2".into(), truth.clone());
        let p = compare(&models, &tests, 0, 1, 1);
        let (acc, auc) = p.outcome.clone().expect("paired");
        // r1 right on 6/6, r2 on 4/6: +33.3 points.
        assert!((acc.value - 2.0 / 6.0).abs() < 1e-9, "{acc:?}");
        assert!(auc.is_some());
        assert!(describe(&models, &p).starts_with("simple·r1 − simple·r2 (paired, same test images): acc +33.3"));
        let p = compare(&models, &tests, 0, 2, 1);
        let why = p.outcome.clone().expect_err("refused");
        assert!(why.contains("not on the same test images") && why.contains("seed 2"), "{why}");
        // A model without scores says so.
        let mut models = models;
        models[1].test_scores = None;
        assert!(compare(&models, &tests, 0, 1, 1).outcome.expect_err("refused").contains("no test scores"));
    }
}
