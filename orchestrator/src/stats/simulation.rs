//! Simulation tests of the whole sequential procedure: A/A comparisons must raise
//! false alarms at no more than α, real differences must be found, differences
//! inside the margin must end Equivalent (and differences at the margin must not),
//! and a short budget must end Inconclusive.
//!
//! Every simulation is seeded, so each figure is the same on every run; the bounds
//! are one-sided binomial bounds at about three standard errors above the nominal
//! rate, so a correct procedure passes with any seed while a procedure whose real
//! error rate is materially above nominal fails. The counts are kept small enough
//! for debug builds on two cores; `large_aa_simulation` (ignored) runs ten times
//! more: `cargo test -p lab --release --lib stats::simulation -- --ignored --nocapture`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::boundary::BoundaryCache;
use super::sequential::{Decision, Design, PairedMetricMonitor, RateMonitor};
use super::{Counts, Direction};

/// A standard normal draw by the Box–Muller transform (Box & Muller 1958).
fn std_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    (0..n).filter(|_| rng.random::<f64>() < p).count() as u64
}

/// Runs one failure-rate comparison to its end; returns the decision and the
/// runs used per side.
fn run_rates(
    design: &Design,
    cache: &BoundaryCache,
    (pa, pb): (f64, f64),
    batch: u64,
    rng: &mut StdRng,
) -> (Decision, u64) {
    let mut m = RateMonitor::with_cache(design.clone(), cache).expect("valid design");
    loop {
        let a = Counts::new(batch, binomial(rng, batch, pa));
        let b = Counts::new(batch, binomial(rng, batch, pb));
        let d = m.observe(a, b).expect("valid batch");
        if d.is_final() {
            return (d, m.totals().0.runs);
        }
    }
}

/// Runs one paired metric comparison on log-normal boot summaries: per pair,
/// log A ~ N(ln 100 + h, σ²), log B ~ N(ln 100 + h + ln ratio, σ²), with a shared
/// host effect h ~ N(0, 1) that the pairing must cancel. `batch` pairs per look.
fn run_metric(
    design: &Design,
    cache: &BoundaryCache,
    (ratio, sigma): (f64, f64),
    batch: usize,
    rng: &mut StdRng,
) -> (Decision, u64) {
    let mut m = PairedMetricMonitor::with_cache(design.clone(), cache).expect("valid design");
    let mu = 100.0_f64.ln();
    loop {
        let pairs: Vec<(f64, f64)> = (0..batch)
            .map(|_| {
                let h = std_normal(rng);
                (
                    (mu + h + sigma * std_normal(rng)).exp(),
                    (mu + h + ratio.ln() + sigma * std_normal(rng)).exp(),
                )
            })
            .collect();
        let d = m.observe(&pairs).expect("valid batch");
        if d.is_final() {
            return (d, m.pairs() as u64);
        }
    }
}

/// Tally of the outcomes of many comparisons.
#[derive(Default, Debug)]
struct Tally {
    n: u64,
    higher: u64,
    lower: u64,
    equivalent: u64,
    inconclusive: u64,
    runs: u64,
}

impl Tally {
    fn add(&mut self, (d, runs): (Decision, u64)) {
        self.n += 1;
        self.runs += runs;
        match d {
            Decision::Different {
                direction: Direction::BHigher,
                ..
            } => self.higher += 1,
            Decision::Different {
                direction: Direction::BLower,
                ..
            } => self.lower += 1,
            Decision::Equivalent { .. } => self.equivalent += 1,
            Decision::Inconclusive { .. } => self.inconclusive += 1,
            Decision::Continue => {}
        }
    }

    fn different(&self) -> u64 {
        self.higher + self.lower
    }

    fn mean_runs(&self) -> f64 {
        self.runs as f64 / self.n as f64
    }
}

/// The largest count of events out of n that is still consistent with a true rate
/// of p: n·p + 3·√(n·p·(1 − p)), a one-sided bound exceeded with probability about
/// 0.2 % by a procedure exactly at p.
fn binomial_upper(n: u64, p: f64) -> u64 {
    let n = n as f64;
    (n * p + 3.0 * (n * p * (1.0 - p)).sqrt()).floor() as u64
}

fn simulate_rates(design: &Design, rates: (f64, f64), batch: u64, sims: u64, seed: u64) -> Tally {
    let cache = BoundaryCache::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    for _ in 0..sims {
        t.add(run_rates(design, &cache, rates, batch, &mut rng));
    }
    println!(
        "rates {rates:?} margin {}: {t:?}, mean runs/side {:.1}",
        design.margin,
        t.mean_runs()
    );
    t
}

fn simulate_metric(
    design: &Design,
    shift: (f64, f64),
    batch: usize,
    sims: u64,
    seed: u64,
) -> Tally {
    let cache = BoundaryCache::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    for _ in 0..sims {
        t.add(run_metric(design, &cache, shift, batch, &mut rng));
    }
    println!(
        "metric {shift:?} margin {}: {t:?}, mean runs/side {:.1}",
        design.margin,
        t.mean_runs()
    );
    t
}

#[test]
fn aa_rates_false_alarms_stay_below_alpha() {
    // Ten looks of 20 runs per side, common rate 10 %, and a rarer 3 % where
    // normal approximations are most strained.
    let design = Design::new(0.05, 200);
    let t = simulate_rates(&design, (0.10, 0.10), 20, 800, 1);
    assert!(t.different() <= binomial_upper(t.n, design.alpha), "{t:?}");
    let t = simulate_rates(&design, (0.03, 0.03), 20, 500, 2);
    assert!(t.different() <= binomial_upper(t.n, design.alpha), "{t:?}");
}

#[test]
fn aa_metric_false_alarms_stay_below_alpha() {
    let design = Design::new(0.05, 100);
    let t = simulate_metric(&design, (1.0, 0.3), 10, 800, 3);
    assert!(t.different() <= binomial_upper(t.n, design.alpha), "{t:?}");
}

#[test]
fn real_differences_are_detected() {
    // 5 % against 20 % failures: the fixed-n test needs ~76 runs per side for 80 %
    // power (Fleiss), the budget is 200.
    let design = Design::new(0.05, 200);
    let t = simulate_rates(&design, (0.05, 0.20), 20, 200, 4);
    assert!(t.higher >= 180 && t.lower == 0, "{t:?}");
    assert!(
        t.mean_runs() < 150.0,
        "adaptive stopping should end early: {t:?}"
    );
    // B 10 % slower at σ = 0.2 per boot on the log scale (pairs' sd 0.28): fixed-n
    // needs 72 pairs for 80 % power; the budget is 100.
    let design = Design::new(0.05, 100);
    let t = simulate_metric(&design, (1.10, 0.2), 10, 200, 5);
    assert!(t.higher >= 160 && t.lower == 0, "{t:?}");
    // And faster is reported as lower.
    let t = simulate_metric(&design, (1.0 / 1.10, 0.2), 10, 100, 6);
    assert!(t.lower >= 80 && t.higher == 0, "{t:?}");
}

#[test]
fn differences_inside_the_margin_end_equivalent() {
    // 1 % slower with a 5 % margin, σ = 0.1 per boot: equivalence needs ~120 pairs,
    // the budget is 400.
    let design = Design::new(0.05, 400);
    let t = simulate_metric(&design, (1.01, 0.1), 20, 100, 7);
    assert!(t.equivalent >= 90, "{t:?}");
    // Equal 10 % failure rates with a 10-point margin: ~80 runs at fixed n.
    let design = Design::new(0.10, 400);
    let t = simulate_rates(&design, (0.10, 0.10), 20, 100, 8);
    assert!(t.equivalent >= 90, "{t:?}");
}

#[test]
fn differences_at_the_margin_are_rarely_called_equivalent() {
    // The hardest case for the equivalence claim: the true difference sits exactly
    // on the margin, where P(Equivalent) must stay at or below α_eq = 0.05.
    let design = Design::new(0.05, 300);
    let t = simulate_metric(&design, (1.05, 0.1), 30, 400, 9);
    assert!(
        t.equivalent <= binomial_upper(t.n, design.alpha_equivalence),
        "{t:?}"
    );
    let design = Design::new(0.10, 300);
    let t = simulate_rates(&design, (0.10, 0.20), 30, 400, 10);
    assert!(
        t.equivalent <= binomial_upper(t.n, design.alpha_equivalence),
        "{t:?}"
    );
}

#[test]
fn a_short_budget_ends_inconclusive() {
    // 10 % against 11 % with a 2-point margin and 100 runs: neither a difference
    // nor equivalence can be shown, and the inconclusive ends must say how many
    // more runs they need.
    let design = Design::new(0.02, 100);
    let cache = BoundaryCache::default();
    let mut rng = StdRng::seed_from_u64(11);
    let mut inconclusive = 0;
    for _ in 0..50 {
        let (d, runs) = run_rates(&design, &cache, (0.10, 0.11), 25, &mut rng);
        // A lucky draw may still show the (real) difference early.
        if let Decision::Inconclusive {
            more_runs_estimate, ..
        } = d
        {
            assert_eq!(runs, 100);
            // From the observed rates, which scatter around 10 % and 11 %: a draw that
            // looks far apart needs few more, one that looks equal needs thousands.
            assert!(
                (1..u64::MAX).contains(&more_runs_estimate),
                "{more_runs_estimate}"
            );
            inconclusive += 1;
        }
    }
    assert!(inconclusive >= 45, "{inconclusive}");
}

#[test]
#[ignore = "ten times the A/A replicates; run in release (see module docs)"]
fn large_aa_simulation() {
    let design = Design::new(0.05, 200);
    let t = simulate_rates(&design, (0.10, 0.10), 20, 10_000, 101);
    assert!(t.different() <= binomial_upper(t.n, design.alpha), "{t:?}");
    let design = Design::new(0.05, 100);
    let t = simulate_metric(&design, (1.0, 0.3), 10, 10_000, 102);
    assert!(t.different() <= binomial_upper(t.n, design.alpha), "{t:?}");
}
