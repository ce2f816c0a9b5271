//! What a screening test needs beyond accuracy at 0.5: ROC and precision-recall curves, an operating point chosen
//! on the validation split (Youden's J or a target sensitivity), seeded bootstrap confidence intervals, paired
//! bootstrap differences between models, and calibration (reliability bins, expected calibration error).
//! Pure functions of P(pneumonia) scores and truth (true = PNEUMONIA); must not depend on burn or front-ends.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::metrics::{roc_auc, Confusion, Metrics};

/// How the decision threshold is chosen on the validation split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OperatingRule {
    /// Maximise sensitivity + specificity − 1.
    Youden,
    /// The highest threshold whose validation sensitivity reaches the target (best specificity at that sensitivity).
    Sensitivity(f64),
    /// Keep this threshold.
    Fixed(f32),
}

impl std::fmt::Display for OperatingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Youden => write!(f, "Youden's J"),
            Self::Sensitivity(s) => write!(f, "sensitivity ≥ {s}"),
            Self::Fixed(t) => write!(f, "fixed {t}"),
        }
    }
}

impl OperatingRule {
    /// The rule `[evaluation]` configures.
    pub fn of(e: &crate::config::EvaluationConfig) -> Self {
        use crate::config::OperatingPoint;
        match e.operating_point {
            OperatingPoint::Youden => Self::Youden,
            OperatingPoint::Sensitivity => Self::Sensitivity(e.target_sensitivity),
            OperatingPoint::Fixed => Self::Fixed(0.5),
        }
    }
}

/// Candidate thresholds: below, between and above the distinct scores, so every distinct split is reachable.
fn candidates(scores: &[f32]) -> Vec<f32> {
    let mut s: Vec<f32> = scores.iter().copied().filter(|v| v.is_finite()).collect();
    s.sort_by(f32::total_cmp);
    s.dedup();
    let mut c = Vec::with_capacity(s.len() + 1);
    c.push(0.0);
    c.extend(s.windows(2).map(|w| w[0] + (w[1] - w[0]) / 2.0));
    if let Some(&last) = s.last() {
        c.push(if last < 1.0 { (last + 1.0) / 2.0 } else { f32::INFINITY });
    }
    if s.len() == 1 {
        c.push(s[0]);
    }
    c
}

fn confusion_at(scores: &[f32], truth: &[bool], threshold: f32) -> Confusion {
    let mut c = Confusion::default();
    for (&s, &t) in scores.iter().zip(truth) {
        c.add(t, s >= threshold);
    }
    c
}

/// The decision threshold `rule` picks on (validation) scores. Ties go to the threshold closest to 0.5.
/// Falls back to 0.5 when a class is missing.
pub fn choose_threshold(scores: &[f32], truth: &[bool], rule: OperatingRule) -> f32 {
    let pos = truth.iter().filter(|&&t| t).count();
    if let OperatingRule::Fixed(t) = rule {
        return t;
    }
    if pos == 0 || pos == truth.len() {
        return 0.5;
    }
    let mut best: Option<(f64, f32)> = None;
    for t in candidates(scores) {
        let c = confusion_at(scores, truth, t);
        let value = match rule {
            OperatingRule::Youden => c.sensitivity() + c.specificity() - 1.0,
            OperatingRule::Sensitivity(target) if c.sensitivity() + 1e-12 >= target => c.specificity(),
            OperatingRule::Sensitivity(_) => continue,
            OperatingRule::Fixed(_) => unreachable!(),
        };
        let better = match best {
            None => true,
            Some((v, bt)) => value > v + 1e-12 || ((value - v).abs() <= 1e-12 && (t - 0.5).abs() < (bt - 0.5).abs()),
        };
        if better {
            best = Some((value, t));
        }
    }
    best.map(|(_, t)| t.clamp(0.0, 1.0)).unwrap_or(0.5)
}

/// ROC curve points (false-positive rate, true-positive rate) from (0, 0) to (1, 1), one per distinct score.
pub fn roc_curve(scores: &[f32], truth: &[bool]) -> Vec<[f32; 2]> {
    let pos = truth.iter().filter(|&&t| t).count() as f32;
    let neg = truth.len() as f32 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp) = (0.0f32, 0.0f32);
    let mut out = vec![[0.0, 0.0]];
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if truth[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push([fp / neg, tp / pos]);
    }
    out
}

/// Precision-recall curve points (recall, precision), one per distinct score, highest threshold first.
pub fn pr_curve(scores: &[f32], truth: &[bool]) -> Vec<[f32; 2]> {
    let pos = truth.iter().filter(|&&t| t).count() as f32;
    if pos == 0.0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut n) = (0.0f32, 0.0f32);
    let mut out = Vec::new();
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            tp += truth[idx[i]] as u8 as f32;
            n += 1.0;
            i += 1;
        }
        out.push([tp / pos, tp / n]);
    }
    out
}

/// At most `max` points of a curve, always keeping the first and the last.
pub fn thin(points: &[[f32; 2]], max: usize) -> Vec<[f32; 2]> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    (0..max).map(|k| points[k * (points.len() - 1) / (max - 1)]).collect()
}

/// JSON has no NaN: an undefined figure (an empty bin, a class absent from every resample) is written as null.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

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

fn percentile_interval(mut v: Vec<f64>) -> Interval {
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
fn resample_indices(n: usize, resamples: usize, seed: u64) -> impl Iterator<Item = Vec<usize>> {
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

/// One bin of a reliability diagram: images whose P(pneumonia) fell in [lo, hi).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lo: f32,
    pub hi: f32,
    pub count: usize,
    /// Mean predicted P(pneumonia) in the bin (NaN when empty).
    #[serde(with = "nan_as_null")]
    pub mean_predicted: f64,
    /// Share of the bin that is truly PNEUMONIA (NaN when empty).
    #[serde(with = "nan_as_null")]
    pub fraction_positive: f64,
}

/// Calibration: reliability bins (`bins` equal-width) and the expected calibration error
/// (Σ over bins of count/N × |fraction positive − mean predicted|).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub ece: f64,
    pub bins: Vec<ReliabilityBin>,
}

pub fn calibration(scores: &[f32], truth: &[bool], bins: usize) -> Calibration {
    let bins = bins.max(1);
    let mut sum_p = vec![0.0f64; bins];
    let mut pos = vec![0usize; bins];
    let mut count = vec![0usize; bins];
    for (&s, &t) in scores.iter().zip(truth) {
        let b = ((s.clamp(0.0, 1.0) * bins as f32) as usize).min(bins - 1);
        sum_p[b] += s as f64;
        pos[b] += t as usize;
        count[b] += 1;
    }
    let n = scores.len().max(1) as f64;
    let mut ece = 0.0;
    let out = (0..bins)
        .map(|b| {
            let (mp, fp) = if count[b] > 0 {
                (sum_p[b] / count[b] as f64, pos[b] as f64 / count[b] as f64)
            } else {
                (f64::NAN, f64::NAN)
            };
            if count[b] > 0 {
                ece += count[b] as f64 / n * (fp - mp).abs();
            }
            ReliabilityBin {
                lo: b as f32 / bins as f32,
                hi: (b + 1) as f32 / bins as f32,
                count: count[b],
                mean_predicted: mp,
                fraction_positive: fp,
            }
        })
        .collect();
    Calibration { ece, bins: out }
}

/// The full evaluation of one model: operating point from validation, test at 0.5 and at that point, CIs,
/// calibration and the curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The decision threshold chosen on the validation split, and how.
    pub threshold: f32,
    pub rule: String,
    pub validation_auc: Option<f64>,
    /// Test figures at 0.5 (the original's) and at the chosen threshold.
    pub test_at_half: Metrics,
    pub test_at_threshold: Metrics,
    /// 95 % bootstrap intervals at 0.5 and at the chosen threshold.
    pub ci_at_half: Intervals,
    pub ci_at_threshold: Intervals,
    pub calibration: Calibration,
    /// Curves (thinned to ≤ 200 points): ROC (fpr, tpr) and PR (recall, precision), on test and validation.
    pub roc_test: Vec<[f32; 2]>,
    pub roc_validation: Vec<[f32; 2]>,
    pub pr_test: Vec<[f32; 2]>,
    #[serde(default)]
    pub pr_validation: Vec<[f32; 2]>,
}

/// Everything above from the validation and test scores of one model.
pub fn evaluate(
    val: (&[f32], &[bool]),
    test: (&[f32], &[bool], f64),
    rule: OperatingRule,
    resamples: usize,
    seed: u64,
) -> Evaluation {
    let threshold = choose_threshold(val.0, val.1, rule);
    let (scores, truth, loss) = test;
    Evaluation {
        threshold,
        rule: rule.to_string(),
        validation_auc: roc_auc(val.0, val.1),
        test_at_half: Metrics::from_scores(scores, truth, loss, 0.5),
        test_at_threshold: Metrics::from_scores(scores, truth, loss, threshold),
        ci_at_half: bootstrap(scores, truth, 0.5, resamples, seed),
        ci_at_threshold: bootstrap(scores, truth, threshold, resamples, seed),
        calibration: calibration(scores, truth, 10),
        roc_test: thin(&roc_curve(scores, truth), 200),
        roc_validation: thin(&roc_curve(val.0, val.1), 200),
        pr_test: thin(&pr_curve(scores, truth), 200),
        pr_validation: thin(&pr_curve(val.0, val.1), 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youden_picks_the_split_that_separates_best() {
        // Negatives score 0.1..0.4, positives 0.35..0.9: the best split is between 0.35/0.4 and the rest.
        let scores = [0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.8, 0.9];
        let truth = [false, false, false, false, true, true, true, true, true];
        let t = choose_threshold(&scores, &truth, OperatingRule::Youden);
        // Between 0.4 and 0.6: sensitivity 4/5, specificity 4/4, J = 0.8 (the best possible here).
        assert!((t - 0.5).abs() < 1e-6, "{t}");
        let c = confusion_at(&scores, &truth, t);
        assert_eq!(c, Confusion { tn: 4, fp: 0, fn_: 1, tp: 4 });
    }

    #[test]
    fn target_sensitivity_keeps_the_best_specificity_that_reaches_it() {
        let scores = [0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.8, 0.9];
        let truth = [false, false, false, false, true, true, true, true, true];
        let t = choose_threshold(&scores, &truth, OperatingRule::Sensitivity(1.0));
        // Catching the positive at 0.35 needs a threshold in (0.3, 0.35]: midpoint 0.325; specificity 3/4.
        assert!((t - 0.325).abs() < 1e-6, "{t}");
        let c = confusion_at(&scores, &truth, t);
        assert_eq!((c.sensitivity(), c.specificity()), (1.0, 0.75));
        assert_eq!(choose_threshold(&scores, &truth, OperatingRule::Fixed(0.5)), 0.5);
        // One class only: nothing to choose from.
        assert_eq!(choose_threshold(&[0.2, 0.9], &[true, true], OperatingRule::Youden), 0.5);
    }

    #[test]
    fn roc_curve_runs_corner_to_corner_and_its_area_is_the_auc() {
        let scores = [0.1, 0.4, 0.35, 0.8, 0.8, 0.2];
        let truth = [false, false, true, true, false, true];
        let roc = roc_curve(&scores, &truth);
        assert_eq!(roc.first(), Some(&[0.0, 0.0]));
        assert_eq!(roc.last(), Some(&[1.0, 1.0]));
        // Trapezoids over the curve equal the rank-sum AUC (ties make a diagonal step).
        let area: f64 = roc.windows(2).map(|w| ((w[1][0] - w[0][0]) * (w[1][1] + w[0][1]) / 2.0) as f64).sum::<f64>();
        let auc = roc_auc(&scores, &truth).unwrap();
        assert!((area - auc).abs() < 1e-6, "{area} vs {auc}");
        // Exact value: positives 0.35, 0.8, 0.2 vs negatives 0.1, 0.4, 0.8 → pairs won (1 + 2.5 + 1) / 9.
        assert!((auc - 4.5 / 9.0).abs() < 1e-12);
        let pr = pr_curve(&scores, &truth);
        assert_eq!(pr.first(), Some(&[1.0 / 3.0, 0.5])); // the 0.8 tie: one of two is positive
        assert_eq!(pr.last(), Some(&[1.0, 0.5]));
    }

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

    #[test]
    fn an_evaluation_survives_json_with_empty_bins() {
        let ev = evaluate(
            (&[0.2, 0.8], &[false, true]),
            (&[0.1, 0.3, 0.7, 0.95], &[false, false, true, true], 0.4),
            OperatingRule::Youden,
            200,
            3,
        );
        assert!(ev.calibration.bins[5].mean_predicted.is_nan());
        let back: Evaluation = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(back.threshold, ev.threshold);
        assert!(back.calibration.bins[5].mean_predicted.is_nan());
        assert_eq!(back.ci_at_half.accuracy, ev.ci_at_half.accuracy);
    }

    #[test]
    fn calibration_of_hand_made_bins() {
        // Bin [0.2, 0.3): predicted 0.25 twice, one positive → |0.5 − 0.25| = 0.25, weight 2/4.
        // Bin [0.9, 1.0]: predicted 0.95 twice (one at exactly 1.0 → 1.0), both positive.
        let scores = [0.25, 0.25, 0.9, 1.0];
        let truth = [true, false, true, true];
        let c = calibration(&scores, &truth, 10);
        assert_eq!(c.bins.len(), 10);
        assert_eq!(c.bins[2].count, 2);
        assert_eq!(c.bins[9].count, 2);
        let want = 0.5 * 0.25 + 0.5 * (1.0 - 0.95);
        assert!((c.ece - want).abs() < 1e-6, "{}", c.ece);
        // A perfectly calibrated set has no error.
        let c = calibration(&[0.0, 0.0, 1.0, 1.0], &[false, false, true, true], 10);
        assert!(c.ece.abs() < 1e-12);
    }
}
