//! Comparing a candidate's samples with a baseline's: the Mann–Whitney U
//! test (no assumption of normal latencies, robust to their long tails), a
//! seeded percentile-bootstrap interval of the ratio of medians, and a
//! verdict per metric.

use super::{median, summarize};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// The significance level of every verdict.
pub const ALPHA: f64 = 0.05;
/// Bootstrap resamples for the interval of the ratio.
pub const RESAMPLES: usize = 10_000;
/// The relative difference the "runs needed" estimate aims to detect.
pub const DETECT: f64 = 0.05;

/// The Mann–Whitney U test, two-sided: U of `a` and the p-value. Exact
/// (the distribution of U enumerated) when a sample has at most 8 values
/// and there are no ties, else the normal approximation with tie and
/// continuity corrections: SciPy's `mannwhitneyu(..., method="auto")`.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<(f64, f64)> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, usize)> = a
        .iter()
        .map(|v| (*v, 0))
        .chain(b.iter().map(|v| (*v, 1)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Mid-ranks for ties.
    let mut ranks = vec![0.0; all.len()];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let rank = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].iter_mut().for_each(|r| *r = rank);
        ties.push(j - i + 1);
        i = j + 1;
    }
    let r1: f64 = all
        .iter()
        .zip(&ranks)
        .filter(|((_, side), _)| *side == 0)
        .map(|(_, r)| r)
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let (f1, f2) = (n1 as f64, n2 as f64);
    let u1 = r1 - f1 * (f1 + 1.0) / 2.0;
    let u = u1.max(f1 * f2 - u1);
    let tied = ties.iter().any(|t| *t > 1);
    let p = if n1.min(n2) <= 8 && !tied {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let u = u.round() as usize;
        // U's distribution is the same with the samples swapped; the table
        // grows with the first one, so that is the smaller.
        2.0 * exact_sf(u, n1.min(n2), n1.max(n2))
    } else {
        let n = f1 + f2;
        let tie_term: f64 = ties
            .iter()
            .map(|t| {
                #[allow(clippy::cast_precision_loss)]
                let t = *t as f64;
                t * t * t - t
            })
            .sum::<f64>()
            / (n * (n - 1.0));
        let sigma = (f1 * f2 / 12.0 * ((n + 1.0) - tie_term)).sqrt();
        if sigma == 0.0 {
            1.0
        } else {
            let z = (u - f1 * f2 / 2.0 - 0.5) / sigma;
            2.0 * Normal::standard().sf(z)
        }
    };
    Some((u1, p.min(1.0)))
}

/// P(U ≥ u) under the null hypothesis, by counting the arrangements of
/// n1 + n2 distinct values that give each U.
fn exact_sf(u: usize, n1: usize, n2: usize) -> f64 {
    // counts[k][s]: arrangements of k of the first sample among the values
    // seen so far with U = s, built one value at a time.
    let max = n1 * n2;
    let mut table = vec![vec![0f64; max + 1]; n1 + 1];
    table[0][0] = 1.0;
    for seen in 0..(n1 + n2) {
        let mut next = vec![vec![0f64; max + 1]; n1 + 1];
        for (k, row) in table.iter().enumerate() {
            let from_second = seen - k.min(seen);
            if k > seen || from_second > n2 {
                continue;
            }
            for (s, count) in row.iter().enumerate().filter(|(_, c)| **c > 0.0) {
                // The next value is from the first sample: it exceeds every
                // value of the second sample seen so far.
                if k < n1 && s + from_second <= max {
                    next[k + 1][s + from_second] += count;
                }
                if from_second < n2 {
                    next[k][s] += count;
                }
            }
        }
        table = next;
    }
    let total: f64 = table[n1].iter().sum();
    table[n1][u.min(max)..].iter().sum::<f64>() / total
}

/// A 95 % percentile-bootstrap interval of `median(b) / median(a)`, from
/// [`RESAMPLES`] resamples drawn with a ChaCha8 generator seeded with
/// `seed` (so the same samples and seed give the same interval).
pub fn ratio_interval(a: &[f64], b: &[f64], seed: u64) -> Option<[f64; 2]> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut resample = |from: &[f64]| -> f64 {
        let picked: Vec<f64> = (0..from.len())
            .map(|_| from[rng.random_range(0..from.len())])
            .collect();
        median(&picked)
    };
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let base = resample(a);
            let cand = resample(b);
            (base != 0.0).then(|| cand / base)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some([
        super::quantile(&ratios, 0.025),
        super::quantile(&ratios, 0.975),
    ])
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// The verdict on one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Better,
    Worse,
    NoDetectableDifference,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Better => "better",
            Self::Worse => "worse",
            Self::NoDetectableDifference => "no detectable difference",
        })
    }
}

/// One metric, baseline against candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub metric: String,
    pub better: Better,
    pub baseline: super::Summary,
    pub candidate: super::Summary,
    /// `candidate − baseline` of the medians.
    pub difference: f64,
    /// `(candidate − baseline) / baseline` of the medians, in percent (the
    /// seed's "throughput improvement %" and "TTFT reduction %", signed).
    pub relative_percent: Option<f64>,
    /// 95 % bootstrap interval of `median(candidate) / median(baseline)`.
    pub ratio_ci95: Option<[f64; 2]>,
    /// Two-sided Mann–Whitney U p-value.
    pub p_value: f64,
    pub verdict: Verdict,
    /// When no difference is detected: roughly how many runs per side would
    /// detect a 5 % one at the noise observed (an estimate: a two-sample
    /// normal approximation with 80 % power at α = 0.05).
    pub runs_to_detect_5_percent: Option<usize>,
}

/// Compares `candidate` with `baseline` for one metric; `None` when either
/// side has no samples.
pub fn compare(
    metric: &str,
    better: Better,
    baseline: &[f64],
    candidate: &[f64],
    seed: u64,
) -> Option<MetricComparison> {
    let base = summarize(baseline)?;
    let cand = summarize(candidate)?;
    let (_, p_value) = mann_whitney(baseline, candidate)?;
    let ratio_ci95 = ratio_interval(baseline, candidate, seed);
    let difference = cand.p50 - base.p50;
    let relative_percent = (base.p50 != 0.0).then(|| difference / base.p50 * 100.0);
    // Detected: the test rejects and the interval of the ratio excludes 1.
    let detected = p_value < ALPHA && ratio_ci95.is_some_and(|[lo, hi]| lo > 1.0 || hi < 1.0);
    let verdict = match (detected, difference > 0.0, better) {
        (false, _, _) => Verdict::NoDetectableDifference,
        (true, true, Better::Higher) | (true, false, Better::Lower) => Verdict::Better,
        (true, _, _) => Verdict::Worse,
    };
    let runs_to_detect_5_percent = (verdict == Verdict::NoDetectableDifference)
        .then(|| runs_to_detect(base.cv, cand.cv))
        .flatten();
    Some(MetricComparison {
        metric: metric.to_owned(),
        better,
        baseline: base,
        candidate: cand,
        difference,
        relative_percent,
        ratio_ci95,
        p_value,
        verdict,
        runs_to_detect_5_percent,
    })
}

/// Runs per side for an 80 %-power two-sided test at α = 0.05 to detect a
/// [`DETECT`] relative difference, at the pooled coefficient of variation:
/// n ≈ 2 (z₀.₉₇₅ + z₀.₈)² CV² / 0.05².
fn runs_to_detect(a: Option<f64>, b: Option<f64>) -> Option<usize> {
    let cv = match (a, b) {
        (Some(a), Some(b)) => ((a * a + b * b) / 2.0).sqrt(),
        (Some(c), None) | (None, Some(c)) => c,
        (None, None) => return None,
    };
    let normal = Normal::standard();
    let z = normal.inverse_cdf(1.0 - ALPHA / 2.0) + normal.inverse_cdf(0.8);
    let n = 2.0 * z * z * cv * cv / (DETECT * DETECT);
    // Four a side is the fewest with which the exact test can reject at
    // all (2 / C(8, 4) = 0.029; three a side cannot go below 0.1).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((n.ceil() as usize).max(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Reference values from SciPy 1.17.1,
    /// `scipy.stats.mannwhitneyu(a, b, alternative="two-sided")`.
    #[test]
    fn mann_whitney_matches_scipy() {
        // Exact (no ties, n < 8): statistic 0.0, p 0.007936507936507936.
        let (u, p) = mann_whitney(
            &[10.2, 11.1, 9.8, 10.5, 10.9],
            &[12.3, 12.9, 11.7, 13.4, 12.8],
        )
        .unwrap();
        assert_eq!(u, 0.0);
        assert!(close(p, 0.007_936_507_936_507_936, 1e-12), "{p}");
        // Three against three can never go below 0.1.
        let (_, p) = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert!(close(p, 0.1, 1e-12), "{p}");
        // Eight against eight is still exact: statistic 4.0,
        // p 0.0018648018648018648 (the normal approximation: 0.00387...).
        let a = [1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0];
        let b = [5.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0];
        let (u, p) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 4.0);
        assert!(close(p, 0.001_864_801_864_801_864_8, 1e-12), "{p}");
        // Lopsided, exact without a table of the large side's size:
        // 0..3000 against [2999.5], statistic 0.0, p 0.0006664445184938354.
        let many: Vec<f64> = (0..3000).map(f64::from).collect();
        let (_, p) = mann_whitney(&many, &[2999.5]).unwrap();
        assert!(close(p, 0.000_666_444_518_493_835_4, 1e-12), "{p}");
        // Ties: the normal approximation, statistic 29.0, p 0.11968367039603052.
        let a = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let b = [3.0, 4.0, 5.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0];
        let (u, p) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 29.0);
        assert!(close(p, 0.119_683_670_396_030_52, 1e-9), "{p}");
        // Ten each, no ties: asymptotic, statistic 28.0, p 0.10410988966022681.
        let a: Vec<f64> = (1..=10).map(f64::from).collect();
        let b: Vec<f64> = (3..=12).map(|i| f64::from(i) + 0.5).collect();
        let (u, p) = mann_whitney(&a, &b).unwrap();
        assert_eq!(u, 28.0);
        assert!(close(p, 0.104_109_889_660_226_81, 1e-9), "{p}");
    }

    #[test]
    fn the_bootstrap_interval_is_seeded_and_brackets_the_ratio() {
        let a = [10.0, 10.4, 9.8, 10.1, 10.2, 9.9];
        let b = [12.0, 12.5, 11.8, 12.2, 12.1, 11.9];
        let one = ratio_interval(&a, &b, 7).unwrap();
        assert_eq!(
            one,
            ratio_interval(&a, &b, 7).unwrap(),
            "same seed, same interval"
        );
        let ratio = median(&b) / median(&a);
        assert!(one[0] <= ratio && ratio <= one[1], "{one:?} vs {ratio}");
        assert!(one[0] > 1.0, "clearly higher: {one:?}");
    }

    #[test]
    fn verdicts_follow_the_direction_that_is_better() {
        let slow = [100.0, 104.0, 98.0, 101.0, 103.0, 99.0, 102.0, 100.5];
        let fast = [80.0, 83.0, 79.0, 81.0, 82.0, 80.5, 78.5, 81.5];
        let ttft = compare("ttft_ms", Better::Lower, &slow, &fast, 1).unwrap();
        assert_eq!(ttft.verdict, Verdict::Better);
        assert!(ttft.p_value < 0.01, "{}", ttft.p_value);
        assert!(close(ttft.relative_percent.unwrap(), -19.6, 0.5));
        let rate = compare("tokens_per_second", Better::Higher, &slow, &fast, 1).unwrap();
        assert_eq!(rate.verdict, Verdict::Worse);
        let same = compare("ttft_ms", Better::Lower, &slow, &slow, 1).unwrap();
        assert_eq!(same.verdict, Verdict::NoDetectableDifference);
        assert!(same.runs_to_detect_5_percent.is_some_and(|n| n >= 2));
    }

    #[test]
    fn runs_to_detect_grow_with_the_noise() {
        assert_eq!(
            runs_to_detect(Some(0.001), Some(0.001)),
            Some(4),
            "never fewer than can reject"
        );
        let quiet = runs_to_detect(Some(0.02), Some(0.02)).unwrap();
        let noisy = runs_to_detect(Some(0.2), Some(0.2)).unwrap();
        assert!(noisy > quiet * 50, "{quiet} {noisy}");
        // (1.959964 + 0.841621)^2 * 2 * 0.1^2 / 0.05^2 = 62.79 -> 63.
        assert_eq!(runs_to_detect(Some(0.1), Some(0.1)), Some(63));
    }
}
