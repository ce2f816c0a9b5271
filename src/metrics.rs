//! Classification metrics: the 2×2 confusion matrix, accuracy, sensitivity, specificity, precision, F1 and
//! ROC-AUC. Pure functions on labels and scores; must not depend on burn, data loading or front-ends.

use serde::{Deserialize, Serialize};

/// Counts with PNEUMONIA as the positive class. Rows are the true class, columns the prediction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tn: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tp: u64,
}

impl Confusion {
    /// From true labels and predictions (`true` = PNEUMONIA).
    pub fn from_predictions(truth: &[bool], predicted: &[bool]) -> Self {
        let mut c = Self::default();
        for (&t, &p) in truth.iter().zip(predicted) {
            c.add(t, p);
        }
        c
    }
    pub fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (false, false) => self.tn += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (true, true) => self.tp += 1,
        }
    }
    /// `[[tn, fp], [fn, tp]]`.
    pub fn matrix(&self) -> [[u64; 2]; 2] {
        [[self.tn, self.fp], [self.fn_, self.tp]]
    }
    pub fn total(&self) -> u64 {
        self.tn + self.fp + self.fn_ + self.tp
    }
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    /// Recall of PNEUMONIA: tp / (tp + fn).
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// Recall of NORMAL: tn / (tn + fp).
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    /// Positive predictive value: tp / (tp + fp).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.sensitivity());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Area under the ROC curve of `scores` (higher = more PNEUMONIA) against `truth`, by the rank-sum
/// (Mann–Whitney) formula with ties counted as one half. None when one class is absent.
pub fn roc_auc(scores: &[f32], truth: &[bool]) -> Option<f64> {
    let pos = truth.iter().filter(|&&t| t).count();
    let neg = truth.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if truth[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// Everything reported for one model on one split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub loss: f64,
    pub accuracy: f64,
    pub sensitivity: f64,
    pub specificity: f64,
    pub precision: f64,
    pub f1: f64,
    pub auc: Option<f64>,
    pub threshold: f32,
    pub confusion: Confusion,
    /// With three classes: the share of images whose class (NORMAL / BACTERIAL / VIRAL) was called right at
    /// `threshold`; the other figures are PNEUMONIA (either cause) vs NORMAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_accuracy: Option<f64>,
}

impl Metrics {
    /// From P(pneumonia) per image, the truth, the mean loss and a decision threshold.
    pub fn from_scores(scores: &[f32], truth: &[bool], loss: f64, threshold: f32) -> Self {
        let predicted: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
        let c = Confusion::from_predictions(truth, &predicted);
        Self::from_confusion(c, loss, roc_auc(scores, truth), threshold)
    }

    /// Accuracy over the task's classes: the three-class accuracy when there is one, else the two-class one
    /// (what the training accuracy it is charted beside measures).
    pub fn task_accuracy(&self) -> f64 {
        self.class_accuracy.unwrap_or(self.accuracy)
    }

    /// The rates derived from a confusion matrix, with the loss, AUC and threshold they came with.
    pub fn from_confusion(c: Confusion, loss: f64, auc: Option<f64>, threshold: f32) -> Self {
        Self {
            loss,
            accuracy: c.accuracy(),
            sensitivity: c.sensitivity(),
            specificity: c.specificity(),
            precision: c.precision(),
            f1: c.f1(),
            auc,
            threshold,
            confusion: c,
            class_accuracy: None,
        }
    }
}

/// A loss for tables: four decimals, or scientific notation when it exploded.
pub fn fmt_loss(v: f64) -> String {
    if v.is_finite() && v.abs() < 1e4 {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_confusion_and_rates() {
        // 234 NORMAL: 150 right, 84 called PNEUMONIA; 390 PNEUMONIA: 380 right, 10 missed.
        let c = Confusion { tn: 150, fp: 84, fn_: 10, tp: 380 };
        assert_eq!(c.total(), 624);
        assert!((c.accuracy() - 530.0 / 624.0).abs() < 1e-12);
        assert!((c.sensitivity() - 380.0 / 390.0).abs() < 1e-12);
        assert!((c.specificity() - 150.0 / 234.0).abs() < 1e-12);
        assert!((c.precision() - 380.0 / 464.0).abs() < 1e-12);
        let (p, r) = (380.0 / 464.0, 380.0 / 390.0);
        assert!((c.f1() - 2.0 * p * r / (p + r)).abs() < 1e-12);
        assert_eq!(c.matrix(), [[150, 84], [10, 380]]);
    }

    #[test]
    fn confusion_from_predictions() {
        let truth = [false, false, true, true, true];
        let pred = [false, true, true, false, true];
        assert_eq!(Confusion::from_predictions(&truth, &pred), Confusion { tn: 1, fp: 1, fn_: 1, tp: 2 });
    }

    #[test]
    fn degenerate_rates_are_zero_not_nan() {
        let c = Confusion::default();
        assert_eq!((c.accuracy(), c.sensitivity(), c.precision(), c.f1()), (0.0, 0.0, 0.0, 0.0));
    }

    #[test]
    fn auc_known_values() {
        // Perfect ranking, inverted ranking, all tied.
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        assert_eq!(roc_auc(&[0.5; 4], &[false, true, false, true]), Some(0.5));
        // Hand count: positives {0.8, 0.4}, negatives {0.6, 0.3, 0.1}: pairs won 3 + 2 = 5 of 6.
        let auc = roc_auc(&[0.8, 0.4, 0.6, 0.3, 0.1], &[true, true, false, false, false]).unwrap();
        assert!((auc - 5.0 / 6.0).abs() < 1e-12);
        // A tie between a positive and a negative counts one half: (1 + 0.5) / 2.
        let auc = roc_auc(&[0.7, 0.5, 0.5], &[true, true, false]).unwrap();
        assert!((auc - 0.75).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn metrics_apply_the_threshold() {
        let m = Metrics::from_scores(&[0.2, 0.6, 0.4, 0.9], &[false, false, true, true], 0.3, 0.5);
        assert_eq!(m.confusion, Confusion { tn: 1, fp: 1, fn_: 1, tp: 1 });
        let m = Metrics::from_scores(&[0.2, 0.6, 0.4, 0.9], &[false, false, true, true], 0.3, 0.35);
        assert_eq!(m.confusion, Confusion { tn: 1, fp: 1, fn_: 0, tp: 2 });
        assert_eq!(m.auc, Some(0.75));
    }
}
