use std::collections::BTreeSet;

use super::sim::drive;
use super::*;
use proptest::prelude::*;

fn runs(index: usize, runs: u32, failures: u32) -> Observation {
    Observation::Runs {
        index,
        runs,
        failures,
    }
}

fn sum(p: &[f64]) -> f64 {
    p.iter().sum()
}

/// A deterministic test (fails every time on a bad commit) driven to the end.
fn deterministic(n: usize, culprit: usize, cfg: SearchConfig) -> (Search, Conclusion) {
    let (s, end) = drive(Search::new(n, cfg).expect("valid"), |index, r| {
        runs(index, r, if index >= culprit { r } else { 0 })
    })
    .expect("valid steps");
    match end {
        Next::Done(c) => (s, c),
        other => panic!("expected a conclusion, got {other:?}"),
    }
}

#[test]
fn a_fresh_search_is_uniform_and_asks_for_the_bad_end() {
    let s = Search::new(8, SearchConfig::default()).expect("valid");
    let p = s.posterior();
    assert_eq!(p.len(), 9);
    assert_eq!(p[0], 0.0);
    assert!(p[1..].iter().all(|&x| (x - 0.125).abs() < 1e-12));
    assert_eq!(s.top(), (8, 0.125));
    assert_eq!(s.runner_up(), Some((7, 0.125)));
    // One boot of the most runs a boot gets.
    assert_eq!(s.next(), Next::NeedBadEnd { runs: 4 });
    // The uniform prior on q, nudged up a little by q > ε.
    let (mean, sd) = s.q_estimate();
    assert!((mean - 0.5).abs() < 0.02, "{mean}");
    assert!((sd - (1.0_f64 / 12.0).sqrt()).abs() < 0.02, "{sd}");
    let (eps, _) = s.false_positive_estimate();
    assert!(
        (0.01..0.04).contains(&eps),
        "prior mean of ε ≈ 0.5/20.5: {eps}"
    );
}

/// The posterior against brute force on an independent, finer grid: 200 q points,
/// 120 ε points, the same κ values and priors, the likelihood multiplied out boot by
/// boot for every culprit.
#[test]
fn posterior_matches_a_brute_force_sum_over_a_fine_grid() {
    let cfg = SearchConfig::default();
    let n = 12;
    let obs = [
        runs(12, 4, 3),
        runs(12, 4, 1),
        runs(0, 4, 0),
        runs(0, 4, 1),
        runs(6, 4, 1),
        runs(3, 4, 0),
        runs(9, 3, 0),
        runs(9, 4, 2),
    ];
    let s = Search::replay(n, cfg.clone(), &obs).expect("valid");
    let ln_boot = |r: u32, f: u32, p: f64, kappa: f64| -> f64 {
        let (f, ok) = (f64::from(f), f64::from(r - f));
        if kappa.is_infinite() {
            f * p.ln() + ok * (1.0 - p).ln()
        } else {
            let (a, b) = (p * kappa, (1.0 - p) * kappa);
            model::ln_beta(f + a, ok + b) - model::ln_beta(a, b)
        }
    };
    let (ea, eb) = cfg.false_positive_prior;
    let qs: Vec<f64> = (0..200).map(|i| (i as f64 + 0.5) / 200.0).collect();
    // ε on a log grid from 1e-5 to 0.45, weighted by density × ε (the log-scale cell).
    let es: Vec<(f64, f64)> = (0..120)
        .map(|i| {
            let e = 1e-5 * (45_000.0_f64.ln() * i as f64 / 119.0).exp();
            (e, e.powf(ea - 1.0) * (1.0 - e).powf(eb - 1.0) * e)
        })
        .collect();
    let mut joint = vec![0.0; n + 1];
    for &kappa in &model::KAPPAS {
        for &q in &qs {
            for &(e, we) in &es {
                if e >= q {
                    continue;
                }
                for (c, slot) in joint.iter_mut().enumerate().skip(1) {
                    let mut l = 0.0;
                    for o in &obs {
                        if let Observation::Runs {
                            index,
                            runs,
                            failures,
                        } = *o
                        {
                            let rate = if index >= c { q } else { e };
                            l += ln_boot(runs, failures, rate, kappa);
                        }
                    }
                    *slot += we * l.exp();
                }
            }
        }
    }
    let z = sum(&joint);
    let grid = s.posterior();
    for c in 1..=n {
        assert!(
            (joint[c] / z - grid[c]).abs() < 0.01,
            "c = {c}: brute force {} search {}",
            joint[c] / z,
            grid[c]
        );
    }
}

#[test]
fn beta_binomial_sums_to_one_and_matches_the_closed_form() {
    let mut out = Vec::new();
    choose::beta_binomial(8, 2.5, 40.0, &mut out);
    assert!((sum(&out) - 1.0).abs() < 1e-12);
    // P(K = r) = B(α + r, β) / B(α, β).
    let top = (model::ln_beta(2.5 + 8.0, 40.0) - model::ln_beta(2.5, 40.0)).exp();
    assert!((out[8] - top).abs() < 1e-12 * top.max(1e-300) + 1e-300);
    // Large counts do not underflow the first term.
    choose::beta_binomial(100, 5000.0, 1.0, &mut out);
    assert!((sum(&out) - 1.0).abs() < 1e-9);
}

#[test]
fn a_deterministic_test_takes_a_few_steps_per_bit() {
    for n in [2usize, 16, 100, 256, 4096] {
        let log2 = (n as f64).log2().ceil() as u32;
        for culprit in [1, n / 3 + 1, n / 2, n - 1, n] {
            let culprit = culprit.max(1);
            let (_, c) = deterministic(n, culprit, SearchConfig::default());
            assert_eq!(c.culprit, culprit, "n = {n}");
            assert!(c.confident && c.probability >= 0.95);
            assert_eq!(c.skipped_range, None);
            // Two boots at each end, about one step per bit, and a few more to make
            // sure of the commits on both sides of the step: a single pass or failure
            // could be a boot in which the race did not open, or a false positive.
            // Measured: at most 2·log2(n) + 6 (n = 4096, culprit at the bad end: 30).
            assert!(c.steps <= 2 * log2 + 8, "n = {n}, culprit {culprit}: {c:?}");
        }
    }
}

#[test]
fn skipped_commits_above_a_culprit_pin_it_to_a_range() {
    let skip = |i: usize| (5..=7).contains(&i);
    for (culprit, range) in [(8, Some((5, 8))), (6, Some((5, 8))), (4, None)] {
        let (s, end) = drive(
            Search::new(16, SearchConfig::default()).expect("valid"),
            |index, r| {
                if skip(index) {
                    Observation::Skip { index }
                } else {
                    runs(index, r, if index >= culprit { r } else { 0 })
                }
            },
        )
        .expect("valid steps");
        let Next::Done(c) = end else {
            panic!("expected a conclusion, got {end:?}")
        };
        assert!(c.confident, "{c:?}");
        assert_eq!(c.skipped_range, range, "culprit {culprit}");
        match range {
            Some((lo, hi)) => {
                assert!((lo..=hi).contains(&c.culprit));
                assert!(!c.runner_up.is_some_and(|(i, _)| (lo..=hi).contains(&i)));
            }
            None => assert_eq!(c.culprit, culprit),
        }
        // A skipped commit is never asked for again.
        let mut seen = BTreeSet::new();
        for o in s.observations() {
            if let Observation::Skip { index } = o {
                assert!(seen.insert(*index), "commit {index} tested after its skip");
            }
        }
    }
}

#[test]
fn all_inner_commits_skipped_leaves_the_whole_range() {
    let n = 6;
    let mut obs = vec![runs(n, 5, 5), runs(n, 4, 4), runs(0, 4, 0), runs(0, 4, 0)];
    obs.extend((1..n).map(|index| Observation::Skip { index }));
    let s = Search::replay(n, SearchConfig::default(), &obs).expect("valid");
    let Next::Done(c) = s.next() else {
        panic!("expected a conclusion")
    };
    assert_eq!(c.skipped_range, Some((1, n)));
    assert!(c.confident && (c.probability - 1.0).abs() < 1e-12);
    assert_eq!(c.runner_up, None);
}

#[test]
fn replay_gives_the_same_state() {
    let (s, _) = deterministic(300, 123, SearchConfig::default());
    let again = Search::replay(300, SearchConfig::default(), s.observations()).expect("ok");
    assert_eq!(again, s);
    assert_eq!(again.next(), s.next());
    let json = serde_json::to_string(&s.to_log()).expect("serialises");
    let log: SearchLog = serde_json::from_str(&json).expect("parses");
    assert_eq!(log.replay().expect("replays"), s);
    let old = SearchLog {
        format_version: 0,
        ..log
    };
    assert_eq!(
        old.replay(),
        Err(SearchError::UnsupportedLog {
            found: 0,
            expected: LOG_FORMAT_VERSION
        })
    );
}

#[test]
fn a_bad_end_that_never_fails_does_not_reproduce() {
    let cfg = SearchConfig::default();
    let (s, end) = drive(Search::new(64, cfg.clone()).expect("valid"), |index, r| {
        assert_eq!(index, 64, "only the bad end is run before it reproduces");
        runs(index, r, 0)
    })
    .expect("valid steps");
    assert_eq!(
        end,
        Next::NotReproduced {
            runs: u64::from(cfg.bad_end_max_runs)
        }
    );
    assert_eq!(s.total_runs(), u64::from(cfg.bad_end_max_runs));
    // One failure is enough to go on once the bad-end allowance is spent: next the good
    // end, then the range.
    let s = Search::replay(64, cfg.clone(), &[runs(64, 28, 0), runs(64, 4, 1)]).expect("ok");
    assert_eq!(s.next(), Next::NeedGoodEnd { runs: 4 });
    let s = Search::replay(
        64,
        cfg,
        &[
            runs(64, 28, 0),
            runs(64, 4, 1),
            runs(0, 4, 0),
            runs(0, 4, 0),
        ],
    )
    .expect("ok");
    assert!(matches!(s.next(), Next::Test { .. }));
}

#[test]
fn one_spurious_failure_does_not_rule_a_culprit_out() {
    let obs = [
        runs(8, 4, 4),
        runs(8, 4, 3),
        runs(2, 4, 1),
        runs(2, 4, 0),
        runs(5, 4, 0),
        runs(5, 4, 0),
        runs(6, 4, 4),
        runs(6, 4, 3),
    ];
    let s = Search::replay(8, SearchConfig::default(), &obs).expect("valid");
    assert_eq!(s.top().0, 6);
    assert!(s.top().1 > 0.8, "{:?}", s.posterior());
    // With a prior that all but rules false positives out, the same failure is close
    // to proof that the culprit is ≤ 2.
    let strict = SearchConfig {
        false_positive_prior: (0.5, 1e7),
        ..SearchConfig::default()
    };
    let s = Search::replay(8, strict, &obs).expect("valid");
    assert!(s.posterior()[6] < 0.2, "{:?}", s.posterior());
    assert!((sum(&s.posterior()) - 1.0).abs() < 1e-12);
}

#[test]
fn the_first_step_splits_the_range_and_cost_buys_repeats() {
    let n = 1024;
    let base = [
        runs(n, 4, 1),
        runs(n, 4, 2),
        runs(n, 4, 1),
        runs(0, 4, 0),
        runs(0, 4, 0),
    ];
    let cheap = SearchConfig {
        build_cost_runs: 0.0,
        boot_cost_runs: 0.0,
        ..SearchConfig::default()
    };
    let dear = SearchConfig {
        build_cost_runs: 30.0,
        boot_cost_runs: 30.0,
        ..SearchConfig::default()
    };
    let step = |cfg: SearchConfig| match Search::replay(n, cfg, &base).expect("ok").next() {
        Next::Test { index, runs } => (index, runs),
        other => panic!("expected a test, got {other:?}"),
    };
    let (i, r) = step(cheap);
    assert!((300..=700).contains(&i) && r == 1, "({i}, {r})");
    let (i, r) = step(dear);
    assert!((200..=800).contains(&i) && r == 4, "({i}, {r})");
}

#[test]
fn the_run_budget_ends_the_search_unsure() {
    let cfg = SearchConfig {
        max_runs: 20,
        ..SearchConfig::default()
    };
    let mut fail = false;
    let (s, end) = drive(Search::new(512, cfg).expect("valid"), |index, r| {
        // A test that fails one run in ten.
        let f = (0..r)
            .filter(|_| {
                fail = !fail;
                fail && index >= 100
            })
            .count() as u32;
        runs(index, r, f.min(1))
    })
    .expect("valid steps");
    let Next::Done(c) = end else {
        panic!("expected a conclusion, got {end:?}")
    };
    assert!(!c.confident && c.probability < 0.95);
    assert_eq!(s.total_runs(), 20);
    assert_eq!(c.runs, 20);
}

#[test]
fn bad_input_is_refused() {
    let bad = |cfg: SearchConfig| Search::new(4, cfg).err();
    assert_eq!(
        Search::new(0, SearchConfig::default()).err(),
        Some(SearchError::EmptyRange)
    );
    for cfg in [
        SearchConfig {
            confidence: 1.0,
            ..SearchConfig::default()
        },
        SearchConfig {
            false_positive_prior: (-0.1, 1.0),
            ..SearchConfig::default()
        },
        SearchConfig {
            q_prior: (0.0, 1.0),
            ..SearchConfig::default()
        },
        SearchConfig {
            repeat_choices: vec![],
            ..SearchConfig::default()
        },
        SearchConfig {
            repeat_choices: vec![1, 0],
            ..SearchConfig::default()
        },
        SearchConfig {
            boot_cost_runs: f64::NAN,
            ..SearchConfig::default()
        },
    ] {
        assert!(matches!(bad(cfg), Some(SearchError::InvalidConfig { .. })));
    }
    let mut s = Search::new(4, SearchConfig::default()).expect("valid");
    assert_eq!(
        s.observe(runs(5, 1, 0)),
        Err(SearchError::IndexOutOfRange { index: 5, n: 4 })
    );
    assert!(matches!(
        s.observe(runs(2, 1, 2)),
        Err(SearchError::FailuresExceedRuns { .. })
    ));
    assert_eq!(
        s.observe(runs(2, 0, 0)),
        Err(SearchError::NoRuns { index: 2 })
    );
    assert_eq!(
        s.observe(Observation::Skip { index: 4 }),
        Err(SearchError::SkipEnd { index: 4, n: 4 })
    );
    assert!(s.observations().is_empty() && s.steps() == 0);
}

#[test]
fn config_and_observations_read_as_documented() {
    let cfg: SearchConfig =
        serde_json::from_str(r#"{"confidence": 0.99, "boot-cost-runs": 10}"#).expect("parses");
    assert_eq!(cfg.confidence, 0.99);
    assert_eq!(cfg.max_runs, SearchConfig::default().max_runs);
    assert!(serde_json::from_str::<SearchConfig>(r#"{"confidance": 0.9}"#).is_err());
    let o: Observation =
        serde_json::from_str(r#"{"kind": "runs", "index": 3, "runs": 5, "failures": 1}"#)
            .expect("parses");
    assert_eq!(o, runs(3, 5, 1));
    let o: Observation = serde_json::from_str(r#"{"kind": "skip", "index": 3}"#).expect("parses");
    assert_eq!(o, Observation::Skip { index: 3 });
    let (s, _) = deterministic(16, 5, SearchConfig::default());
    let json = serde_json::to_string(&s.next()).expect("serialises");
    assert!(json.starts_with(r#"{"next":"done","culprit":5,"#), "{json}");
    // serde_json may round the last bit of a float, so compare what is exact.
    let Next::Done(back) = serde_json::from_str::<Next>(&json).expect("parses") else {
        panic!("expected a conclusion")
    };
    assert_eq!(
        (back.culprit, back.steps, back.runs),
        (5, s.steps(), s.total_runs())
    );
    let json = serde_json::to_string(&Next::NeedBadEnd { runs: 3 }).expect("serialises");
    assert_eq!(json, r#"{"next":"need-bad-end","runs":3}"#);
}

fn observation() -> impl Strategy<Value = Observation> {
    prop_oneof![
        4 => (0usize..=40, 1u32..10, 0u32..10).prop_map(|(index, runs, f)| Observation::Runs {
            index,
            runs,
            failures: f.min(runs),
        }),
        1 => (1usize..40).prop_map(|index| Observation::Skip { index }),
    ]
}

proptest! {
    #[test]
    fn posterior_is_a_distribution_and_replay_is_exact(
        obs in proptest::collection::vec(observation(), 0..30),
        eps in prop_oneof![Just((0.5, 20.0)), Just((0.5, 1e6)), Just((2.0, 20.0))],
    ) {
        let cfg = SearchConfig { false_positive_prior: eps, ..SearchConfig::default() };
        let mut s = Search::new(40, cfg.clone()).expect("valid");
        for &o in &obs {
            s.observe(o).expect("valid observation");
        }
        let p = s.posterior();
        prop_assert_eq!(p[0], 0.0);
        prop_assert!(p.iter().all(|x| x.is_finite() && *x >= 0.0));
        prop_assert!((sum(&p) - 1.0).abs() < 1e-9);
        let (top, pt) = s.top();
        prop_assert!(p.iter().all(|&x| x <= pt) && p[top] == pt);
        let (q, sd) = s.q_estimate();
        prop_assert!((0.0..=1.0).contains(&q) && sd.is_finite());
        prop_assert_eq!(&Search::replay(40, cfg, &obs).expect("valid"), &s);
        match s.next() {
            Next::Test { index, runs } => {
                prop_assert!(index > 0 && index < 40 && !s.is_skipped(index) && runs > 0);
            }
            Next::Done(c) => prop_assert!(c.probability <= 1.0 + 1e-12),
            Next::NeedBadEnd { runs } | Next::NeedGoodEnd { runs } => prop_assert!(runs > 0),
            Next::NotReproduced { .. } => {}
        }
    }
}
