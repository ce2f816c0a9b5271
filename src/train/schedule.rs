//! The one-cycle learning-rate schedule (PyTorch's `OneCycleLR` with cosine annealing), stepped per batch.
//! Pure arithmetic; must not depend on burn, data or front-ends.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneCycle {
    pub max_lr: f64,
    pub total_steps: usize,
    /// Share of the steps spent rising to `max_lr` (PyTorch's `pct_start`, default 0.3).
    pub pct_start: f64,
    /// Initial LR = max_lr / div_factor (PyTorch default 25).
    pub div_factor: f64,
    /// Final LR = initial LR / final_div_factor (PyTorch default 1e4).
    pub final_div_factor: f64,
}

impl OneCycle {
    pub fn new(max_lr: f64, total_steps: usize, pct_start: f64) -> Self {
        Self { max_lr, total_steps: total_steps.max(1), pct_start, div_factor: 25.0, final_div_factor: 1e4 }
    }
    pub fn initial_lr(&self) -> f64 {
        self.max_lr / self.div_factor
    }
    pub fn final_lr(&self) -> f64 {
        self.initial_lr() / self.final_div_factor
    }
    /// The learning rate for 0-based `step` (steps past the end keep the final LR).
    pub fn lr(&self, step: usize) -> f64 {
        let last = (self.total_steps - 1) as f64;
        let step = (step as f64).min(last);
        let warm_end = (self.pct_start * self.total_steps as f64 - 1.0).max(0.0);
        if step <= warm_end && warm_end > 0.0 {
            cos_anneal(self.initial_lr(), self.max_lr, step / warm_end)
        } else if last > warm_end {
            cos_anneal(self.max_lr, self.final_lr(), (step - warm_end) / (last - warm_end))
        } else {
            self.max_lr
        }
    }
}

fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_pytorch_one_cycle_values() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=0.01, total_steps=100) (pct_start 0.3, cos):
        // step 0 → 0.0004, step 29 → 0.01 (peak), step 99 → 4e-8.
        let s = OneCycle::new(0.01, 100, 0.3);
        assert!((s.lr(0) - 0.0004).abs() < 1e-12);
        assert!((s.lr(29) - 0.01).abs() < 1e-12);
        assert!((s.lr(99) - 4e-8).abs() < 1e-15);
        // Halfway up the warm-up: the cosine midpoint between initial and max.
        let mid = s.lr(0) + (0.01 - 0.0004) / 2.0;
        assert!(
            (s.lr(14) - (0.0004 + (0.01 - 0.0004) * (1.0 - (std::f64::consts::PI * 14.0 / 29.0).cos()) / 2.0)).abs()
                < 1e-12
        );
        assert!(s.lr(14) < mid + 0.001 && s.lr(14) > mid - 0.001);
        // Monotone up, then monotone down.
        for i in 0..29 {
            assert!(s.lr(i + 1) > s.lr(i));
        }
        for i in 29..99 {
            assert!(s.lr(i + 1) < s.lr(i));
        }
        assert_eq!(s.lr(500), s.lr(99));
    }

    #[test]
    fn tiny_schedules_do_not_divide_by_zero() {
        for total in 1..4 {
            let s = OneCycle::new(0.001, total, 0.3);
            for i in 0..total {
                assert!(s.lr(i).is_finite() && s.lr(i) > 0.0);
            }
        }
    }
}
