//! The likelihood behind the search, on a grid: the detection rate q of a bad commit, the
//! false-positive rate ε of a good one, and how strongly the runs of one boot hang together
//! (κ), each with a prior, integrated out for every culprit hypothesis.
//!
//! One boot's runs are not independent draws: a boot can land in a state that makes a race
//! likelier for every run in it (a cache layout, a timer alignment, a host that is busy for a
//! minute). The model gives each boot its own failure rate p_b ~ Beta(pκ, (1−p)κ) around the
//! commit's rate p (q on a bad commit, ε on a good one), so a boot's failure count is
//! beta-binomial; κ = ∞ is the independent case, small κ lets a single boot's all-pass or
//! all-fail count for little. κ is unknown, with a prior over a few values, and learnt from
//! the boots like q and ε: the share of a boot's rate variance that is between boots is
//! ρ = 1/(κ+1), the intra-boot correlation.
//!
//! Given the culprit c, the tested commits split into bad ones (≥ c) and good ones (< c, the
//! good end included), and the likelihood factorises into a q part and an ε part that share
//! κ. The prior also says q > ε (a bad commit fails more often than a good one; without this,
//! "the early commits are the bad ones" would explain the data as well). So for a segment of
//! culprits (lo, hi] the weight is
//!
//!   Σ_κ w(κ) Σ_q w(q) L_bad(q, κ) Σ_{ε<q} w(ε) L_good(ε, κ)
//!
//! with L_bad the product over the boots at tested commits ≥ hi and L_good over those ≤ lo.
//! Per tested commit the log-likelihood tables (one entry per (κ, q) and per (κ, ε)) are
//! kept up to date as boots come in, so a refresh costs (segments × grid size), whatever n.
//!
//! The grids: 40 q points at the quantiles of its Beta prior; 24 ε points log-spaced from
//! 10⁻⁵ to 0.45 weighted by its Beta prior's density; κ ∈ {1, 2, 4, 16, ∞} equally likely.
//! The tests check the grid marginal against brute-force sums.

use crate::stats::special::{inverse_incomplete_beta, ln_gamma};

/// Values of κ the model weighs; `INFINITY` is the independent, binomial case.
pub const KAPPAS: [f64; 5] = [1.0, 2.0, 4.0, 16.0, f64::INFINITY];
const Q_POINTS: usize = 40;
const EPS_POINTS: usize = 24;
const EPS_MIN: f64 = 1e-5;
const EPS_MAX: f64 = 0.45;

/// ln B(x, y), the log of the beta function.
pub fn ln_beta(x: f64, y: f64) -> f64 {
    ln_gamma(x) + ln_gamma(y) - ln_gamma(x + y)
}

/// ln P(f failures in r runs | the boot's rate ~ Beta(pκ, (1−p)κ)), without the binomial
/// coefficient (the same for every hypothesis, so it cancels).
fn ln_boot(r: u32, f: u32, p: f64, kappa: f64) -> f64 {
    let (f, s) = (f64::from(f), f64::from(r - f));
    if kappa.is_infinite() {
        let a = if f > 0.0 { f * p.ln() } else { 0.0 };
        let b = if s > 0.0 { s * (-p).ln_1p() } else { 0.0 };
        return a + b;
    }
    let (al, be) = (p * kappa, (1.0 - p) * kappa);
    ln_beta(f + al, s + be) - ln_beta(al, be)
}

/// ln Σ exp(x) of a slice, safe for −∞ entries.
fn ln_sum_exp(x: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = x.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + x.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// The grid and its log prior weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub q: Vec<f64>,
    ln_wq: Vec<f64>,
    pub eps: Vec<f64>,
    ln_we: Vec<f64>,
    ln_wk: Vec<f64>,
}

impl Grid {
    /// The grid for a Beta(a, b) prior on q and a Beta(ea, eb) prior on ε.
    pub fn new(q_prior: (f64, f64), eps_prior: (f64, f64)) -> Grid {
        let (a, b) = q_prior;
        // Equal prior mass per q point: the midpoints of G equal-probability bins.
        let q: Vec<f64> = (0..Q_POINTS)
            .map(|i| {
                let u = (i as f64 + 0.5) / Q_POINTS as f64;
                inverse_incomplete_beta(a, b, u).clamp(1e-6, 1.0 - 1e-6)
            })
            .collect();
        let ln_wq = vec![-(Q_POINTS as f64).ln(); Q_POINTS];
        // ε log-spaced; weight = density × width of its cell on the log scale (ε · dlnε).
        let step = (EPS_MAX / EPS_MIN).ln() / (EPS_POINTS - 1) as f64;
        let eps: Vec<f64> = (0..EPS_POINTS)
            .map(|i| EPS_MIN * (step * i as f64).exp())
            .collect();
        let (ea, eb) = eps_prior;
        let raw: Vec<f64> = eps
            .iter()
            .map(|&e| (ea - 1.0) * e.ln() + (eb - 1.0) * (-e).ln_1p() + e.ln())
            .collect();
        let z = ln_sum_exp(raw.iter().copied());
        let ln_we = raw.iter().map(|w| w - z).collect();
        let ln_wk = vec![-(KAPPAS.len() as f64).ln(); KAPPAS.len()];
        Grid {
            q,
            ln_wq,
            eps,
            ln_we,
            ln_wk,
        }
    }

    pub fn q_len(&self) -> usize {
        KAPPAS.len() * self.q.len()
    }

    pub fn eps_len(&self) -> usize {
        KAPPAS.len() * self.eps.len()
    }

    /// Adds the log-likelihood of one boot (r runs, f failures) to a commit's tables:
    /// `lq` as if the commit were bad, `le` as if it were good.
    pub fn add_boot(&self, r: u32, f: u32, lq: &mut Vec<f64>, le: &mut Vec<f64>) {
        lq.resize(self.q_len(), 0.0);
        le.resize(self.eps_len(), 0.0);
        for (k, &kappa) in KAPPAS.iter().enumerate() {
            for (i, &q) in self.q.iter().enumerate() {
                lq[k * self.q.len() + i] += ln_boot(r, f, q, kappa);
            }
            for (i, &e) in self.eps.iter().enumerate() {
                le[k * self.eps.len() + i] += ln_boot(r, f, e, kappa);
            }
        }
    }

    /// The posterior of one segment given the summed tables of its bad side (`lq`) and good
    /// side (`le`): its log weight and the moments the predictions need.
    pub fn segment(&self, lq: &[f64], le: &[f64]) -> SegmentFit {
        let (nq, ne) = (self.q.len(), self.eps.len());
        let mut per_kappa = Vec::with_capacity(KAPPAS.len());
        let mut bad = Moments::default();
        let mut good = Moments::default();
        let mut kappa_w = [0.0; KAPPAS.len()];
        let mut tails = Vec::with_capacity(KAPPAS.len());
        for k in 0..KAPPAS.len() {
            let la: Vec<f64> = (0..nq).map(|i| self.ln_wq[i] + lq[k * nq + i]).collect();
            let lb: Vec<f64> = (0..ne).map(|i| self.ln_we[i] + le[k * ne + i]).collect();
            let ma = la.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mb = lb.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            // Shifted exponentials per κ, so that one κ's sums never underflow.
            let a: Vec<f64> = la.iter().map(|l| (l - ma).exp()).collect();
            let e: Vec<f64> = lb.iter().map(|l| (l - mb).exp()).collect();
            // below[i] = Σ_{ε < q_i} e, by a merge of the two sorted grids.
            let mut below = vec![0.0; nq];
            let (mut j, mut acc) = (0, 0.0);
            for (slot, &q) in below.iter_mut().zip(&self.q) {
                while j < ne && self.eps[j] < q {
                    acc += e[j];
                    j += 1;
                }
                *slot = acc;
            }
            // above[j] = Σ_{q > ε_j} a.
            let mut above = vec![0.0; ne];
            let (mut i, mut acc) = (nq, 0.0);
            for j in (0..ne).rev() {
                while i > 0 && self.q[i - 1] > self.eps[j] {
                    i -= 1;
                    acc += a[i];
                }
                above[j] = acc;
            }
            let total: f64 = (0..nq).map(|i| a[i] * below[i]).sum();
            let ln_total = if total > 0.0 && ma.is_finite() && mb.is_finite() {
                self.ln_wk[k] + ma + mb + total.ln()
            } else {
                f64::NEG_INFINITY
            };
            per_kappa.push(ln_total);
            tails.push((a, below, e, above, total));
        }
        let ln_weight = ln_sum_exp(per_kappa.iter().copied());
        let mut bad_w = vec![0.0; self.q_len()];
        // With no finite weight (no hypothesis explains the data) the moments stay 0.
        if !ln_weight.is_finite() {
            tails.clear();
        }
        for (k, (a, below, e, above, total)) in tails.into_iter().enumerate() {
            let wk = (per_kappa[k] - ln_weight).exp();
            kappa_w[k] = wk;
            if wk == 0.0 || total <= 0.0 {
                continue;
            }
            let rho = 1.0 / (KAPPAS[k] + 1.0);
            for i in 0..nq {
                let w = wk * a[i] * below[i] / total;
                bad_w[k * nq + i] = w;
                bad.add(w, self.q[i], rho);
            }
            for j in 0..ne {
                let w = wk * e[j] * above[j] / total;
                good.add(w, self.eps[j], rho);
            }
        }
        SegmentFit {
            ln_weight,
            ln_kappa: per_kappa,
            bad,
            good,
            kappa: kappa_w,
            bad_w,
        }
    }

    /// Probability that `boots` boots of `runs` runs each, all at bad commits, all pass,
    /// under the posterior of (q, κ) in `fit`: what a confirmation uses to choose its size
    /// (a wrong culprit leaves the bad end failing at rate q).
    pub fn p_all_pass(&self, fit: &SegmentFit, runs: u32, boots: u32) -> f64 {
        let nq = self.q.len();
        let mut p = 0.0;
        for (k, &kappa) in KAPPAS.iter().enumerate() {
            for (i, &q) in self.q.iter().enumerate() {
                let w = fit.bad_w[k * nq + i];
                if w > 0.0 {
                    p += w * (f64::from(boots) * ln_boot(runs, 0, q, kappa)).exp();
                }
            }
        }
        p
    }
}

/// Posterior moments of a boot's failure rate on one side: E[p], E[p²] and E[ρ p(1−p)], with
/// which a single Beta is matched for predictions.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Moments {
    pub w: f64,
    pub m1: f64,
    pub m2: f64,
    within: f64,
}

impl Moments {
    fn add(&mut self, w: f64, p: f64, rho: f64) {
        self.w += w;
        self.m1 += w * p;
        self.m2 += w * p * p;
        self.within += w * rho * p * (1.0 - p);
    }

    #[cfg(test)]
    pub fn mean(&self) -> f64 {
        self.m1 / self.w.max(f64::MIN_POSITIVE)
    }

    /// The Beta(α, β) with the mean and variance of a fresh boot's rate: the rate's own
    /// posterior variance plus the boot-to-boot spread around it.
    pub fn boot_beta(&self) -> (f64, f64) {
        let w = self.w.max(f64::MIN_POSITIVE);
        let m = (self.m1 / w).clamp(1e-9, 1.0 - 1e-9);
        let var = (self.m2 / w - m * m).max(0.0) + self.within / w;
        let rho = (var / (m * (1.0 - m))).clamp(1e-9, 1.0 - 1e-9);
        let t = 1.0 / rho - 1.0;
        (m * t, (1.0 - m) * t)
    }
}

/// What [`Grid::segment`] gives for one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentFit {
    pub ln_weight: f64,
    /// The log weight's terms, one per κ (prior included): their log-sum is `ln_weight`.
    pub ln_kappa: Vec<f64>,
    /// A fresh boot's rate at a bad commit, given the culprit in this segment.
    pub bad: Moments,
    /// A fresh boot's rate at a good commit.
    pub good: Moments,
    /// Posterior of κ given the segment, over [`KAPPAS`].
    pub kappa: [f64; KAPPAS.len()],
    /// Posterior weights of (κ, q) given the segment, κ-major.
    bad_w: Vec<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_without_spread_is_binomial_and_spread_flattens_it() {
        let p: f64 = 0.3;
        let bin = ln_boot(5, 2, p, f64::INFINITY);
        assert!((bin - (2.0 * p.ln() + 3.0 * (1.0 - p).ln())).abs() < 1e-12);
        // Very large κ approaches the binomial; small κ makes 0 of 5 likelier.
        assert!((ln_boot(5, 2, p, 1e7) - bin).abs() < 1e-4);
        assert!(ln_boot(5, 0, p, 1.0) > ln_boot(5, 0, p, f64::INFINITY));
    }

    #[test]
    fn priors_are_distributions() {
        let g = Grid::new((1.0, 1.0), (0.5, 20.0));
        let s: f64 = g.ln_we.iter().map(|w| w.exp()).sum();
        assert!((s - 1.0).abs() < 1e-12);
        let s: f64 = g.ln_wq.iter().map(|w| w.exp()).sum();
        assert!((s - 1.0).abs() < 1e-12);
        assert!(g.eps[0] < g.q[0], "every q point has an ε below it");
        // Beta(0.5, 20): about half the mass below ε = 0.01.
        let below: f64 = g
            .eps
            .iter()
            .zip(&g.ln_we)
            .filter(|(e, _)| **e < 0.01)
            .map(|(_, w)| w.exp())
            .sum();
        assert!((0.35..0.65).contains(&below), "{below}");
    }

    /// The merge-based sum against the plain double loop.
    #[test]
    fn segment_weight_matches_a_brute_force_sum() {
        let g = Grid::new((1.0, 1.0), (0.5, 20.0));
        let (mut lq, mut le) = (Vec::new(), Vec::new());
        g.add_boot(5, 2, &mut lq, &mut Vec::new());
        g.add_boot(4, 1, &mut lq, &mut Vec::new());
        g.add_boot(6, 0, &mut Vec::new(), &mut le);
        g.add_boot(3, 1, &mut Vec::new(), &mut le);
        let fit = g.segment(&lq, &le);
        let mut brute = 0.0;
        for k in 0..KAPPAS.len() {
            for (i, &q) in g.q.iter().enumerate() {
                for (j, &e) in g.eps.iter().enumerate() {
                    if e < q {
                        brute += (g.ln_wk[k]
                            + g.ln_wq[i]
                            + g.ln_we[j]
                            + lq[k * g.q.len() + i]
                            + le[k * g.eps.len() + j])
                            .exp();
                    }
                }
            }
        }
        assert!((fit.ln_weight - brute.ln()).abs() < 1e-9);
        assert!((fit.bad.w - 1.0).abs() < 1e-9 && (fit.good.w - 1.0).abs() < 1e-9);
        let s: f64 = fit.kappa.iter().sum();
        assert!((s - 1.0).abs() < 1e-9);
        // 3 of 9 at the bad side, 1 of 9 at the good side.
        assert!((0.2..0.5).contains(&fit.bad.mean()), "{}", fit.bad.mean());
        assert!(fit.good.mean() < fit.bad.mean());
    }

    #[test]
    fn all_passing_boots_get_rarer_with_more_boots() {
        let g = Grid::new((1.0, 1.0), (0.5, 20.0));
        let mut lq = Vec::new();
        for _ in 0..4 {
            g.add_boot(4, 1, &mut lq, &mut Vec::new());
        }
        let fit = g.segment(&lq, &vec![0.0; g.eps_len()]);
        let one = g.p_all_pass(&fit, 12, 1);
        let spread = g.p_all_pass(&fit, 4, 3);
        assert!(spread < one, "{spread} < {one}");
        assert!(g.p_all_pass(&fit, 40, 10) < 0.01);
    }
}
