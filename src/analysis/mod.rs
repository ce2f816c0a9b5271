//! What a screening test needs beyond accuracy at 0.5: ROC and precision-recall curves, an operating point chosen
//! on the validation split (Youden's J or a target sensitivity), seeded bootstrap confidence intervals, paired
//! bootstrap differences between models, and calibration (reliability bins, expected calibration error).
//! Pure functions of P(pneumonia) scores and truth (true = PNEUMONIA); must not depend on burn or front-ends.
//! Here: the operating point and the curves, and the whole evaluation of one model; `intervals` (bootstrap
//! intervals and paired differences) and `calibration` beside.

mod calibration;
mod intervals;
pub mod three_class;

use serde::{Deserialize, Serialize};

pub use calibration::{calibration, Calibration, ReliabilityBin};
pub use intervals::{
    bootstrap, describe_difference, paired_differences, pct_ci, Difference, Interval, Intervals, PairDifference,
};

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

pub(crate) fn confusion_at(scores: &[f32], truth: &[bool], threshold: f32) -> Confusion {
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
pub(crate) mod nan_as_null {
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
    /// NORMAL / BACTERIAL / VIRAL figures on test (the three-class task only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub three_class: Option<three_class::ThreeClassEvaluation>,
}

impl Evaluation {
    /// Adds the three-class figures from the test images' class probabilities (row-major N × 3) and true
    /// classes, taken at this evaluation's operating point.
    pub fn add_three_class(&mut self, probs: &[f32], targets: &[usize], resamples: usize, seed: u64) {
        self.three_class = Some(three_class::evaluate(probs, targets, self.threshold, resamples, seed));
    }
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
        three_class: None,
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
}
