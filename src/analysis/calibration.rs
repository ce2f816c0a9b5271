//! Calibration: reliability bins and the expected calibration error of P(pneumonia).

use serde::{Deserialize, Serialize};

use super::nan_as_null;

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

#[cfg(test)]
mod tests {
    use super::*;

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
