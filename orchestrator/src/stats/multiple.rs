//! Multiple-comparison adjustments over the p-values of one comparison's many
//! test × arch × metric cells.
//!
//! A compare run asks dozens of questions at once; without adjustment some cell
//! "regresses" by chance every time. Holm controls the family-wise error rate (no
//! false alarm at all, with probability 1 − α); Benjamini–Hochberg controls the
//! false discovery rate (the expected share of false alarms among the alarms) and
//! finds more real regressions when many cells are tested.

use super::StatsError;

fn check(p_values: &[f64], what: &'static str) -> Result<(), StatsError> {
    match p_values.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        Some(&value) => Err(StatsError::InvalidParameter {
            what,
            name: "p-value",
            value,
            expected: "a probability in [0, 1]",
        }),
        None => Ok(()),
    }
}

/// Indices of `p` in ascending order of value (stable, so ties keep input order).
fn ascending(p: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    order
}

/// Holm (1979) step-down adjusted p-values, in input order.
///
/// With p₍₁₎ ≤ … ≤ p₍ₘ₎: p̃₍ᵢ₎ = min(1, max_{j ≤ i} (m − j + 1) p₍ⱼ₎), as R's
/// `p.adjust(p, "holm")`. Rejecting where p̃ ≤ α controls the family-wise error
/// rate at α under any dependence between the tests.
pub fn holm(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    check(p_values, "Holm adjustment")?;
    let m = p_values.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in ascending(p_values).iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    Ok(adjusted)
}

/// Benjamini & Hochberg (1995) step-up adjusted p-values (q-values), in input order.
///
/// p̃₍ᵢ₎ = min(1, min_{j ≥ i} m p₍ⱼ₎ / j), as R's `p.adjust(p, "BH")`. Rejecting
/// where p̃ ≤ q controls the false discovery rate at q for independent or positively
/// dependent tests.
pub fn benjamini_hochberg(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    check(p_values, "Benjamini-Hochberg adjustment")?;
    let m = p_values.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in ascending(p_values).iter().enumerate().rev() {
        running = running.min(m as f64 * p_values[i] / (rank + 1) as f64);
        adjusted[i] = running;
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close_all(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    #[test]
    fn hand_derived_small_example() {
        // By the definitions (as R's p.adjust computes them), for p = 0.01..0.05:
        // Holm: 5·0.01 = 0.05, 4·0.02 = 0.08, 3·0.03 = 0.09, 2·0.04 = 0.08 → 0.09
        // (running max), 1·0.05 → 0.09.
        // BH: 5/1·0.01 = 5/2·0.02 = 5/3·0.03 = 5/4·0.04 = 5/5·0.05 = 0.05.
        // Input given out of order to check the result is in input order.
        let p = [0.03, 0.01, 0.05, 0.02, 0.04];
        let h = holm(&p).expect("valid");
        assert!(close_all(&h, &[0.09, 0.05, 0.09, 0.08, 0.09]), "{h:?}");
        let bh = benjamini_hochberg(&p).expect("valid");
        assert!(close_all(&bh, &[0.05; 5]), "{bh:?}");
    }

    #[test]
    fn benjamini_hochberg_1995_example() {
        // Benjamini & Hochberg (1995), JRSS B 57:289-300, §4: fifteen p-values from
        // a thrombolysis trial. At level 0.05 their procedure rejects four hypotheses
        // while the Bonferroni-type procedures reject three. By hand: BH's largest i
        // with p₍ᵢ₎ ≤ 0.05·i/15 is i = 4 (0.0095 ≤ 0.0133; 0.0201 > 0.0167 and no
        // later one qualifies); Holm stops at i = 4 (0.0095 > 0.05/12 = 0.0042).
        let p = [
            0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262,
            0.5719, 0.6528, 0.7590, 1.0000,
        ];
        let bh = benjamini_hochberg(&p).expect("valid");
        assert_eq!(bh.iter().filter(|&&q| q <= 0.05).count(), 4);
        // p̃₍₄₎ = min over j ≥ 4 of 15 p₍ⱼ₎/j = 15·0.0095/4 = 0.035625.
        assert!((bh[3] - 0.035_625).abs() < 1e-12);
        let h = holm(&p).expect("valid");
        assert_eq!(h.iter().filter(|&&q| q <= 0.05).count(), 3);
        // p̃₍₃₎ = max(15·0.0001, 14·0.0004, 13·0.0019) = 0.0247.
        assert!((h[2] - 0.0247).abs() < 1e-12);
    }

    #[test]
    fn rejects_non_probabilities() {
        assert!(holm(&[0.1, 1.5]).is_err());
        assert!(benjamini_hochberg(&[f64::NAN]).is_err());
        assert_eq!(holm(&[]).expect("empty is fine"), Vec::<f64>::new());
    }

    proptest! {
        #[test]
        fn adjusted_p_values_are_ordered_bounded_and_holm_dominates(
            p in prop::collection::vec(0.0_f64..=1.0, 1..40)
        ) {
            let h = holm(&p).expect("valid");
            let bh = benjamini_hochberg(&p).expect("valid");
            for i in 0..p.len() {
                prop_assert!(p[i] <= h[i] + 1e-15 && h[i] <= 1.0);
                prop_assert!(p[i] <= bh[i] + 1e-15 && bh[i] <= 1.0);
                prop_assert!(h[i] >= bh[i] - 1e-15, "Holm {} < BH {}", h[i], bh[i]);
                for j in 0..p.len() {
                    if p[i] < p[j] {
                        prop_assert!(h[i] <= h[j] && bh[i] <= bh[j]);
                    }
                }
            }
        }
    }
}
