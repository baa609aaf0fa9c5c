//! Which step a search takes next: the candidate commits, and for each the number of runs
//! of its next boot, scored by the mutual information between that boot's failures and the
//! culprit per unit of cost (see the parent module's "Choosing the next step").

use std::collections::BTreeSet;

use super::Search;

/// Beta-binomial probabilities of k = 0..=r failures in r runs when q ~ Beta(α, β),
/// by the ratio P(k+1)/P(k) = (r−k)/(k+1) · (α+k)/(β+r−k−1), in logs so that no
/// intermediate underflows.
pub(super) fn beta_binomial(r: u32, alpha: f64, beta: f64, out: &mut Vec<f64>) {
    out.clear();
    let mut ln_p: f64 = (0..r)
        .map(|i| {
            let i = f64::from(i);
            ((beta + i) / (alpha + beta + i)).ln()
        })
        .sum();
    out.push(ln_p.exp());
    for k in 0..r {
        let (kf, rf) = (f64::from(k), f64::from(r));
        ln_p += ((rf - kf) / (kf + 1.0) * (alpha + kf) / (beta + rf - kf - 1.0)).ln();
        out.push(ln_p.exp());
    }
}

/// Shannon entropy in nats.
fn entropy(p: &[f64]) -> f64 {
    p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| -x * x.ln())
        .sum::<f64>()
}

impl Search {
    /// Commits worth scoring: posterior quantiles and the tested commits with their
    /// neighbours, moved off skipped commits, inside 1..n.
    fn candidates(&self) -> Vec<usize> {
        let n = self.n;
        let mut raw = BTreeSet::new();
        let mut cum = 0.0;
        let mut level = 0.02;
        for s in &self.segments {
            let mass = s.mass();
            while level < 0.99 && cum + mass >= level && s.weight > 0.0 {
                let k = ((level - cum) / s.weight).ceil() as usize;
                let j = (s.lo + k).clamp(s.lo + 1, s.hi);
                raw.extend([j - 1, j]);
                level += 0.02;
            }
            cum += mass;
            if s.mass() > 1e-9 {
                raw.extend([s.lo, s.lo + 1, s.hi, s.hi + 1]);
                raw.insert(s.hi.saturating_sub(1));
            }
        }
        let mut out = BTreeSet::new();
        for j in raw {
            if j == 0 || j >= n {
                continue;
            }
            if !self.skipped[j] {
                out.insert(j);
                continue;
            }
            if let Some(d) = (1..j).rev().find(|&d| !self.skipped[d]) {
                out.insert(d);
            }
            if let Some(u) = (j + 1..n).find(|&u| !self.skipped[u]) {
                out.insert(u);
            }
        }
        out.into_iter().collect()
    }

    /// The (commit, runs of one boot) with the most information about the culprit per
    /// unit of cost.
    pub(super) fn best_step(&self, budget_left: u64) -> Option<(usize, u32)> {
        let candidates = self.candidates();
        if candidates.is_empty() {
            return None;
        }
        let mut choices: Vec<u32> = self
            .cfg
            .repeat_choices
            .iter()
            .copied()
            .filter(|&r| u64::from(r) <= budget_left)
            .collect();
        if choices.is_empty() {
            choices.push(u32::try_from(budget_left).unwrap_or(1).max(1));
        }
        let segs = &self.segments;
        let m = segs.len();
        // Per segment, the Beta of a fresh boot's rate at a bad and at a good commit.
        let bad_beta: Vec<(f64, f64)> = segs.iter().map(|s| s.fit.bad.boot_beta()).collect();
        let good_beta: Vec<(f64, f64)> = segs.iter().map(|s| s.fit.good.boot_beta()).collect();
        let mut best: Option<(f64, usize, u32)> = None;
        let mut bb = Vec::new();
        for &r in &choices {
            let width = r as usize + 1;
            // Per segment: the predictive pmf at a bad and at a good commit and their
            // entropies; prefix sums (bad side, segments at or below the candidate) and
            // suffix sums (good side, above it) weighted by mass, so that a candidate
            // costs O(r).
            let mut pmf_bad = Vec::with_capacity(m * width);
            let mut pmf_good = Vec::with_capacity(m * width);
            let (mut h_bad, mut h_good) = (Vec::with_capacity(m), Vec::with_capacity(m));
            for t in 0..m {
                beta_binomial(r, bad_beta[t].0, bad_beta[t].1, &mut bb);
                h_bad.push(entropy(&bb));
                pmf_bad.extend_from_slice(&bb);
                beta_binomial(r, good_beta[t].0, good_beta[t].1, &mut bb);
                h_good.push(entropy(&bb));
                pmf_good.extend_from_slice(&bb);
            }
            let mut pre_pmf = vec![0.0; (m + 1) * width];
            let mut pre_h = vec![0.0; m + 1];
            for (t, s) in segs.iter().enumerate() {
                let w = s.mass();
                for k in 0..width {
                    pre_pmf[(t + 1) * width + k] =
                        pre_pmf[t * width + k] + w * pmf_bad[t * width + k];
                }
                pre_h[t + 1] = pre_h[t] + w * h_bad[t];
            }
            let mut suf_pmf = vec![0.0; (m + 1) * width];
            let mut suf_h = vec![0.0; m + 1];
            for (t, s) in segs.iter().enumerate().rev() {
                let w = s.mass();
                for k in 0..width {
                    suf_pmf[t * width + k] =
                        suf_pmf[(t + 1) * width + k] + w * pmf_good[t * width + k];
                }
                suf_h[t] = suf_h[t + 1] + w * h_good[t];
            }
            let mut pk = vec![0.0; width];
            for &j in &candidates {
                let t = segs.partition_point(|s| s.hi < j);
                let Some(s) = segs.get(t) else { continue };
                // Culprits lo+1..=j make j bad; j+1..=hi leave it good.
                let xb = (j - s.lo) as f64 * s.weight;
                let xg = (s.hi - j) as f64 * s.weight;
                for k in 0..width {
                    pk[k] = pre_pmf[t * width + k]
                        + xb * pmf_bad[t * width + k]
                        + xg * pmf_good[t * width + k]
                        + suf_pmf[(t + 1) * width + k];
                }
                let h_cond = pre_h[t] + xb * h_bad[t] + xg * h_good[t] + suf_h[t + 1];
                let mi = (entropy(&pk) - h_cond).max(0.0);
                let build = if self.runs[j] == 0 {
                    self.cfg.build_cost_runs
                } else {
                    0.0
                };
                let rate = mi / (f64::from(r) + self.cfg.boot_cost_runs + build);
                if best.is_none_or(|(b, _, _)| rate > b) {
                    best = Some((rate, j, r));
                }
            }
        }
        best.map(|(_, j, r)| (j, r))
    }
}
