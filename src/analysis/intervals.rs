//! Seeded percentile-bootstrap confidence intervals of a model's test figures, and paired bootstrap differences
//! between two models on the same test images.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{confusion_at, nan_as_null};
use crate::metrics::roc_auc;

/// A two-sided confidence interval (NaN when undefined).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(with = "nan_as_null")]
    pub lo: f64,
    #[serde(with = "nan_as_null")]
    pub hi: f64,
}

impl Interval {
    pub fn contains(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

/// 95 % percentile-bootstrap intervals of the test figures at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    pub accuracy: Interval,
    pub sensitivity: Interval,
    pub specificity: Interval,
    pub f1: Interval,
    pub auc: Option<Interval>,
    pub resamples: usize,
}

pub(super) fn percentile_interval(mut v: Vec<f64>) -> Interval {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return Interval { lo: f64::NAN, hi: f64::NAN };
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        // Linear interpolation between order statistics (numpy's default percentile).
        let pos = q * (v.len() - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos - pos.floor());
        if i + 1 < v.len() {
            v[i] * (1.0 - frac) + v[i + 1] * frac
        } else {
            v[i]
        }
    };
    Interval { lo: at(0.025), hi: at(0.975) }
}

/// Resampled index sets (with replacement, the same size as the data), seeded.
pub(super) fn resample_indices(n: usize, resamples: usize, seed: u64) -> impl Iterator<Item = Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..resamples).map(move |_| (0..n).map(|_| rng.random_range(0..n)).collect())
}

/// Bootstrap confidence intervals (`resamples` resamples of the images, `seed`) of accuracy, sensitivity,
/// specificity, F1 and AUC at `threshold`.
pub fn bootstrap(scores: &[f32], truth: &[bool], threshold: f32, resamples: usize, seed: u64) -> Intervals {
    let n = scores.len();
    let (mut acc, mut sens, mut spec, mut f1, mut auc) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut s, mut t) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for idx in resample_indices(n, if n == 0 { 0 } else { resamples }, seed) {
        s.clear();
        t.clear();
        s.extend(idx.iter().map(|&i| scores[i]));
        t.extend(idx.iter().map(|&i| truth[i]));
        let c = confusion_at(&s, &t, threshold);
        acc.push(c.accuracy());
        let pos = c.tp + c.fn_;
        let neg = c.tn + c.fp;
        if pos > 0 {
            sens.push(c.sensitivity());
        }
        if neg > 0 {
            spec.push(c.specificity());
        }
        f1.push(c.f1());
        if let Some(a) = roc_auc(&s, &t) {
            auc.push(a);
        }
    }
    let has_auc = !auc.is_empty();
    Intervals {
        accuracy: percentile_interval(acc),
        sensitivity: percentile_interval(sens),
        specificity: percentile_interval(spec),
        f1: percentile_interval(f1),
        auc: has_auc.then(|| percentile_interval(auc)),
        resamples,
    }
}

/// "84.9% [82.1, 87.6]": a rate with its interval, in percent.
pub fn pct_ci(v: f64, ci: Interval) -> String {
    format!("{:.1}% [{:.1}, {:.1}]", 100.0 * v, 100.0 * ci.lo, 100.0 * ci.hi)
}

/// A paired-bootstrap comparison of two models on the same test images (`a` − `b`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairDifference {
    pub a: crate::model::ModelKind,
    pub b: crate::model::ModelKind,
    /// Accuracy, each model at its own operating point.
    pub accuracy: Difference,
    pub auc: Option<Difference>,
}

/// One line on how two models differ on the test set, and whether that is within the noise.
pub fn describe_difference(d: &PairDifference) -> String {
    let verdict = |x: &Difference| if x.within_noise() { "within the noise" } else { "a real difference" };
    let mut s = format!(
        "{} vs {}: accuracy {:+.1} points [{:+.1}, {:+.1}] ({})",
        d.a,
        d.b,
        100.0 * d.accuracy.value,
        100.0 * d.accuracy.interval.lo,
        100.0 * d.accuracy.interval.hi,
        verdict(&d.accuracy)
    );
    if let Some(a) = &d.auc {
        s.push_str(&format!(", AUC {:+.3} [{:+.3}, {:+.3}] ({})", a.value, a.interval.lo, a.interval.hi, verdict(a)));
    }
    s
}

/// A paired bootstrap of the difference A − B on the same test images (same resamples for both models).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// The observed difference.
    pub value: f64,
    /// Its 95 % interval; when it contains 0 the difference is within the noise.
    pub interval: Interval,
}

impl Difference {
    pub fn within_noise(&self) -> bool {
        self.interval.contains(0.0)
    }
}

/// Paired bootstrap differences (A − B) of accuracy at each model's threshold and of AUC.
pub fn paired_differences(
    a: (&[f32], f32),
    b: (&[f32], f32),
    truth: &[bool],
    resamples: usize,
    seed: u64,
) -> (Difference, Option<Difference>) {
    let acc = |s: &[f32], t: &[bool], thr: f32| confusion_at(s, t, thr).accuracy();
    let n = truth.len();
    let (mut dacc, mut dauc) = (vec![], vec![]);
    for idx in resample_indices(n, if n == 0 { 0 } else { resamples }, seed) {
        let t: Vec<bool> = idx.iter().map(|&i| truth[i]).collect();
        let sa: Vec<f32> = idx.iter().map(|&i| a.0[i]).collect();
        let sb: Vec<f32> = idx.iter().map(|&i| b.0[i]).collect();
        dacc.push(acc(&sa, &t, a.1) - acc(&sb, &t, b.1));
        if let (Some(x), Some(y)) = (roc_auc(&sa, &t), roc_auc(&sb, &t)) {
            dauc.push(x - y);
        }
    }
    let acc_diff =
        Difference { value: acc(a.0, truth, a.1) - acc(b.0, truth, b.1), interval: percentile_interval(dacc) };
    let auc_diff = match (roc_auc(a.0, truth), roc_auc(b.0, truth)) {
        (Some(x), Some(y)) if !dauc.is_empty() => {
            Some(Difference { value: x - y, interval: percentile_interval(dauc) })
        }
        _ => None,
    };
    (acc_diff, auc_diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_estimate() {
        let n = 400;
        let truth: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
        let scores: Vec<f32> = (0..n)
            .map(|i| if truth[i] { 0.55 + (i % 7) as f32 / 20.0 } else { 0.1 + (i % 11) as f32 / 17.0 })
            .collect();
        let a = bootstrap(&scores, &truth, 0.5, 1000, 7);
        assert_eq!(a, bootstrap(&scores, &truth, 0.5, 1000, 7), "same seed, same intervals");
        assert_ne!(a, bootstrap(&scores, &truth, 0.5, 1000, 8));
        let m = Metrics::from_scores(&scores, &truth, 0.0, 0.5);
        assert!(a.accuracy.contains(m.accuracy) && a.specificity.contains(m.specificity));
        assert!(a.auc.unwrap().contains(m.auc.unwrap()));
        // The binomial standard error of an accuracy p on n images is sqrt(p(1−p)/n); a 95 % interval is about
        // ±1.96 of it.
        let p = m.accuracy;
        let half = 1.96 * (p * (1.0 - p) / n as f64).sqrt();
        let width = a.accuracy.hi - a.accuracy.lo;
        assert!((width - 2.0 * half).abs() < 0.35 * 2.0 * half, "width {width}, expected about {}", 2.0 * half);
    }

    #[test]
    fn paired_difference_separates_a_real_gap_from_noise() {
        let n = 600;
        let truth: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
        let good: Vec<f32> = (0..n).map(|i| if truth[i] { 0.9 } else { 0.1 }).collect();
        // Wrong on every 4th image.
        let poor: Vec<f32> = (0..n).map(|i| if (i % 4 == 1) == truth[i] { 0.2 } else { 0.8 }).collect();
        let (acc, auc) = paired_differences((&good, 0.5), (&poor, 0.5), &truth, 500, 1);
        assert!(acc.value > 0.2 && !acc.within_noise(), "{acc:?}");
        assert!(!auc.unwrap().within_noise());
        // A model against itself: the difference is exactly 0 and within the noise.
        let (same, _) = paired_differences((&good, 0.5), (&good, 0.5), &truth, 500, 1);
        assert!(same.value == 0.0 && same.within_noise());
    }
}
