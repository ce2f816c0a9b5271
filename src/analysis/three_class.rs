//! Kermany et al.'s second task, NORMAL / BACTERIAL / VIRAL: the 3 × 3 confusion matrix at the operating point,
//! each class's sensitivity and specificity, one-vs-rest and macro ROC-AUC, and the bacterial-vs-viral
//! sub-problem (among the films that are truly pneumonia), each with a seeded percentile-bootstrap interval.
//! Pure functions of class probabilities (row-major N × 3) and true class indices.

use serde::{Deserialize, Serialize};

use super::intervals::{percentile_interval, resample_indices, Interval};
use super::nan_as_null;
use crate::metrics::roc_auc;

/// The class a film is called at `threshold`: NORMAL (0) when P(pneumonia) = 1 − P(NORMAL) is below it, else
/// the likelier of the pneumonia classes. With two classes this is the two-class decision; with three, the
/// 3 × 3 matrix collapses to the two-class one at the same threshold.
pub fn decide(row: &[f32], threshold: f32) -> usize {
    let p: f32 = row[1..].iter().sum();
    if p < threshold {
        return 0;
    }
    let mut best = 1;
    for k in 2..row.len() {
        if row[k] > row[best] {
            best = k;
        }
    }
    best
}

/// One class's figures, one-vs-rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassFigures {
    pub name: String,
    /// Films of this class.
    pub count: usize,
    /// Recall of this class: called it among those that are it.
    #[serde(with = "nan_as_null")]
    pub sensitivity: f64,
    pub sensitivity_ci: Interval,
    /// Not called it among those that are not it.
    #[serde(with = "nan_as_null")]
    pub specificity: f64,
    pub specificity_ci: Interval,
    /// ROC-AUC of P(this class) against the rest.
    pub auc: Option<f64>,
    pub auc_ci: Option<Interval>,
}

/// Bacterial vs viral among the films that are truly BACTERIAL or VIRAL: called by the larger of the two
/// probabilities; ranked by P(VIRAL) / (P(BACTERIAL) + P(VIRAL)), VIRAL the positive class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseFigures {
    pub films: usize,
    #[serde(with = "nan_as_null")]
    pub accuracy: f64,
    pub accuracy_ci: Interval,
    pub auc: Option<f64>,
    pub auc_ci: Option<Interval>,
}

/// The three-class evaluation of one model on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreeClassEvaluation {
    pub classes: Vec<String>,
    /// The P(pneumonia) threshold the matrix is taken at (the two-class operating point).
    pub threshold: f32,
    /// Rows: true class; columns: called class.
    pub confusion: [[u64; 3]; 3],
    #[serde(with = "nan_as_null")]
    pub accuracy: f64,
    pub accuracy_ci: Interval,
    pub per_class: Vec<ClassFigures>,
    /// Mean of the three one-vs-rest AUCs.
    pub macro_auc: Option<f64>,
    pub macro_auc_ci: Option<Interval>,
    pub bacterial_vs_viral: CauseFigures,
    pub resamples: usize,
}

fn pct(v: f64, ci: Interval) -> String {
    super::intervals::pct_ci(v, ci)
}

fn auc_ci(a: Option<f64>, ci: Option<Interval>) -> String {
    match (a, ci) {
        (Some(a), Some(ci)) => format!("{a:.3} [{:.3}, {:.3}]", ci.lo, ci.hi),
        (Some(a), None) => format!("{a:.3}"),
        _ => "-".into(),
    }
}

impl ThreeClassEvaluation {
    /// Each class's row: name, films, sensitivity, specificity and AUC with their intervals.
    fn class_rows(&self) -> Vec<[String; 5]> {
        self.per_class
            .iter()
            .map(|c| {
                [
                    c.name.clone(),
                    c.count.to_string(),
                    pct(c.sensitivity, c.sensitivity_ci),
                    pct(c.specificity, c.specificity_ci),
                    auc_ci(c.auc, c.auc_ci),
                ]
            })
            .collect()
    }

    /// The figures as plain text (`eval`).
    pub fn text(&self) -> String {
        let mut s = format!(
            "three classes at threshold {:.2} (NORMAL below it, else the likelier of BACTERIAL and VIRAL):\n\
             accuracy {}   macro AUC {}\n\n{:>18} {:>10} {:>10} {:>10}\n",
            self.threshold,
            pct(self.accuracy, self.accuracy_ci),
            auc_ci(self.macro_auc, self.macro_auc_ci),
            "true \\ called",
            self.classes[0],
            self.classes[1],
            self.classes[2]
        );
        for (name, row) in self.classes.iter().zip(&self.confusion) {
            s += &format!("{name:>18} {:>10} {:>10} {:>10}\n", row[0], row[1], row[2]);
        }
        s += &format!(
            "\n{:<10} {:>5}  {:<22} {:<22} {}\n",
            "class", "films", "sensitivity", "specificity", "AUC (one vs rest)"
        );
        for [name, count, sens, spec, auc] in self.class_rows() {
            s += &format!("{name:<10} {count:>5}  {sens:<22} {spec:<22} {auc}\n");
        }
        let b = &self.bacterial_vs_viral;
        s += &format!(
            "bacterial vs viral ({} pneumonia films): accuracy {}  AUC {}  ({} bootstrap resamples)",
            b.films,
            pct(b.accuracy, b.accuracy_ci),
            auc_ci(b.auc, b.auc_ci),
            self.resamples
        );
        s
    }

    /// The figures as Markdown (report.md).
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Three classes at the operating point {:.2} (NORMAL below it, else the likelier of BACTERIAL and \
             VIRAL): accuracy {}, macro AUC {}.\n\n| true \\ called | {} | {} | {} |\n|---|---:|---:|---:|\n",
            self.threshold,
            pct(self.accuracy, self.accuracy_ci),
            auc_ci(self.macro_auc, self.macro_auc_ci),
            self.classes[0],
            self.classes[1],
            self.classes[2]
        );
        for (name, row) in self.classes.iter().zip(&self.confusion) {
            s += &format!("| {name} | {} | {} | {} |\n", row[0], row[1], row[2]);
        }
        s += "\n| class | films | sensitivity | specificity | AUC (one vs rest) |\n|---|---:|---:|---:|---:|\n";
        for row in self.class_rows() {
            s += &format!("| {} |\n", row.join(" | "));
        }
        let b = &self.bacterial_vs_viral;
        s += &format!(
            "\nBacterial vs viral among the {} pneumonia films: accuracy {}, AUC {} (VIRAL positive).\n",
            b.films,
            pct(b.accuracy, b.accuracy_ci),
            auc_ci(b.auc, b.auc_ci)
        );
        s
    }
}

/// Figures of one (re)sample: accuracy, per-class sensitivity/specificity/AUC, macro AUC, cause accuracy/AUC.
struct Point {
    confusion: [[u64; 3]; 3],
    accuracy: f64,
    sens: [f64; 3],
    spec: [f64; 3],
    auc: [Option<f64>; 3],
    macro_auc: Option<f64>,
    cause_films: usize,
    cause_accuracy: f64,
    cause_auc: Option<f64>,
}

fn point(probs: &[f32], targets: &[usize], idx: &[usize], threshold: f32) -> Point {
    let row = |i: usize| &probs[3 * i..3 * i + 3];
    let mut confusion = [[0u64; 3]; 3];
    for &i in idx {
        confusion[targets[i]][decide(row(i), threshold)] += 1;
    }
    let total: u64 = confusion.iter().flatten().sum();
    let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    let accuracy = ratio((0..3).map(|k| confusion[k][k]).sum(), total);
    let mut sens = [f64::NAN; 3];
    let mut spec = [f64::NAN; 3];
    let mut auc = [None; 3];
    for k in 0..3 {
        let is_k: u64 = confusion[k].iter().sum();
        let called_k: u64 = (0..3).map(|r| confusion[r][k]).sum();
        sens[k] = ratio(confusion[k][k], is_k);
        spec[k] = ratio(total - is_k - (called_k - confusion[k][k]), total - is_k);
        let scores: Vec<f32> = idx.iter().map(|&i| row(i)[k]).collect();
        let truth: Vec<bool> = idx.iter().map(|&i| targets[i] == k).collect();
        auc[k] = roc_auc(&scores, &truth);
    }
    let macro_auc = (auc.iter().all(Option::is_some)).then(|| auc.iter().flatten().sum::<f64>() / 3.0);
    let sick: Vec<usize> = idx.iter().copied().filter(|&i| targets[i] > 0).collect();
    let viral_share = |i: usize| {
        let r = row(i);
        let s = r[1] + r[2];
        if s > 0.0 {
            r[2] / s
        } else {
            0.5
        }
    };
    let right = sick.iter().filter(|&&i| (row(i)[2] > row(i)[1]) == (targets[i] == 2)).count() as u64;
    let cause_scores: Vec<f32> = sick.iter().map(|&i| viral_share(i)).collect();
    let cause_truth: Vec<bool> = sick.iter().map(|&i| targets[i] == 2).collect();
    Point {
        confusion,
        accuracy,
        sens,
        spec,
        auc,
        macro_auc,
        cause_films: sick.len(),
        cause_accuracy: ratio(right, sick.len() as u64),
        cause_auc: roc_auc(&cause_scores, &cause_truth),
    }
}

/// The whole three-class evaluation: `probs` row-major N × 3 (NORMAL, BACTERIAL, VIRAL), `targets` the true
/// class of each film, the matrix at `threshold`, intervals from `resamples` seeded bootstrap resamples.
pub fn evaluate(probs: &[f32], targets: &[usize], threshold: f32, resamples: usize, seed: u64) -> ThreeClassEvaluation {
    let n = targets.len();
    assert_eq!(probs.len(), 3 * n, "three probabilities per film");
    let all: Vec<usize> = (0..n).collect();
    let p = point(probs, targets, &all, threshold);
    let mut boot: Vec<Point> = Vec::with_capacity(resamples);
    for idx in resample_indices(n, if n == 0 { 0 } else { resamples }, seed) {
        boot.push(point(probs, targets, &idx, threshold));
    }
    let ci = |f: &dyn Fn(&Point) -> f64| percentile_interval(boot.iter().map(f).collect());
    let ci_opt = |present: bool, f: &dyn Fn(&Point) -> Option<f64>| {
        present.then(|| percentile_interval(boot.iter().filter_map(f).collect()))
    };
    let names = crate::data::Task::THREE_CLASS_NAMES;
    let per_class = (0..3)
        .map(|k| ClassFigures {
            name: names[k].to_string(),
            count: targets.iter().filter(|&&t| t == k).count(),
            sensitivity: p.sens[k],
            sensitivity_ci: ci(&|b| b.sens[k]),
            specificity: p.spec[k],
            specificity_ci: ci(&|b| b.spec[k]),
            auc: p.auc[k],
            auc_ci: ci_opt(p.auc[k].is_some(), &|b| b.auc[k]),
        })
        .collect();
    ThreeClassEvaluation {
        classes: names.iter().map(|s| s.to_string()).collect(),
        threshold,
        confusion: p.confusion,
        accuracy: p.accuracy,
        accuracy_ci: ci(&|b| b.accuracy),
        per_class,
        macro_auc: p.macro_auc,
        macro_auc_ci: ci_opt(p.macro_auc.is_some(), &|b| b.macro_auc),
        bacterial_vs_viral: CauseFigures {
            films: p.cause_films,
            accuracy: p.cause_accuracy,
            accuracy_ci: ci(&|b| if b.cause_films > 0 { b.cause_accuracy } else { f64::NAN }),
            auc: p.cause_auc,
            auc_ci: ci_opt(p.cause_auc.is_some(), &|b| b.cause_auc),
        },
        resamples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_calls_normal_below_the_threshold_and_the_likelier_cause_above() {
        assert_eq!(decide(&[0.7, 0.2, 0.1], 0.5), 0);
        assert_eq!(decide(&[0.4, 0.2, 0.4], 0.5), 2);
        assert_eq!(decide(&[0.4, 0.35, 0.25], 0.5), 1);
        // A lower threshold calls pneumonia sooner, even when NORMAL is the likeliest class.
        assert_eq!(decide(&[0.6, 0.3, 0.1], 0.3), 1);
        // Two classes: the two-class decision.
        assert_eq!(decide(&[0.45, 0.55], 0.5), 1);
        assert_eq!(decide(&[0.55, 0.45], 0.5), 0);
    }

    #[test]
    fn figures_by_hand() {
        // Six films: NORMAL, NORMAL, BACTERIAL, BACTERIAL, VIRAL, VIRAL.
        let probs = [
            0.8, 0.1, 0.1, // N → N
            0.3, 0.6, 0.1, // N → B (false pneumonia)
            0.1, 0.7, 0.2, // B → B
            0.2, 0.3, 0.5, // B → V (wrong cause)
            0.1, 0.2, 0.7, // V → V
            0.6, 0.1, 0.3, // V → N (missed)
        ];
        let targets = [0, 0, 1, 1, 2, 2];
        let e = evaluate(&probs, &targets, 0.5, 200, 7);
        assert_eq!(e.confusion, [[1, 1, 0], [0, 1, 1], [1, 0, 1]]);
        assert!((e.accuracy - 0.5).abs() < 1e-12);
        // BACTERIAL: sensitivity 1/2; specificity: of the 4 non-bacterial films, 3 not called bacterial.
        let b = &e.per_class[1];
        assert_eq!((b.name.as_str(), b.count), ("BACTERIAL", 2));
        assert!((b.sensitivity - 0.5).abs() < 1e-12 && (b.specificity - 0.75).abs() < 1e-12);
        // NORMAL one-vs-rest AUC: P(N) 0.8, 0.3 vs 0.1, 0.2, 0.1, 0.6 → pairs won (4 + 3) / 8.
        assert!((e.per_class[0].auc.unwrap() - 7.0 / 8.0).abs() < 1e-12);
        let macro_auc = e.per_class.iter().map(|c| c.auc.unwrap()).sum::<f64>() / 3.0;
        assert!((e.macro_auc.unwrap() - macro_auc).abs() < 1e-12);
        // Bacterial vs viral among the 4 pneumonia films: B(0.7,0.2) right, B(0.3,0.5) wrong, V(0.2,0.7) right,
        // V(0.1,0.3) right → 3/4.
        let c = &e.bacterial_vs_viral;
        assert_eq!(c.films, 4);
        assert!((c.accuracy - 0.75).abs() < 1e-12);
        // Viral shares: B 2/9, 5/8; V 7/9, 3/4 → both V above both B except 3/4 > 5/8 → AUC 1.
        assert_eq!(c.auc, Some(1.0));
        // Intervals hold their point estimates and survive JSON.
        assert!(e.accuracy_ci.lo <= e.accuracy && e.accuracy <= e.accuracy_ci.hi);
        let back: ThreeClassEvaluation = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back.confusion, e.confusion);
        assert_eq!(back.macro_auc, e.macro_auc);
    }

    #[test]
    fn the_matrix_collapses_to_the_two_class_one() {
        let probs = [0.9, 0.05, 0.05, 0.45, 0.3, 0.25, 0.2, 0.5, 0.3, 0.55, 0.15, 0.3];
        let targets = [0, 0, 2, 1];
        for t in [0.3f32, 0.5, 0.6] {
            let e = evaluate(&probs, &targets, t, 0, 1);
            let scores: Vec<f32> = probs.chunks(3).map(|r| r[1] + r[2]).collect();
            let truth: Vec<bool> = targets.iter().map(|&k| k > 0).collect();
            let c = super::super::confusion_at(&scores, &truth, t);
            let m = e.confusion;
            assert_eq!(m[0][0], c.tn, "threshold {t}");
            assert_eq!(m[0][1] + m[0][2], c.fp);
            assert_eq!(m[1][0] + m[2][0], c.fn_);
            assert_eq!(m[1][1] + m[1][2] + m[2][1] + m[2][2], c.tp);
        }
    }
}
