//! Statistics over repeated runs: a summary of each metric's samples, and
//! the tests a comparison's verdict rests on (in [`compare`]).
//!
//! Distributions come from `statrs`; percentiles interpolate linearly
//! between order statistics (R's type 7, NumPy's default), and the
//! confidence interval of the mean uses Student's t with n − 1 degrees of
//! freedom.

pub mod compare;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// One metric over the runs that count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); `None` for one sample.
    pub sd: Option<f64>,
    /// Coefficient of variation, `sd / mean`; `None` when either is unknown or the mean is 0.
    pub cv: Option<f64>,
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
    /// 95 % confidence interval of the mean; `None` for one sample.
    pub ci95: Option<[f64; 2]>,
}

/// Summarises `values`; `None` when there are none (nothing was measured).
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let mean = sorted.iter().sum::<f64>() / nf;
    let sd = (n > 1).then(|| {
        let ss: f64 = sorted.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (nf - 1.0)).sqrt()
    });
    let ci95 = sd.and_then(|sd| {
        let t = StudentsT::new(0.0, 1.0, nf - 1.0).ok()?.inverse_cdf(0.975);
        let half = t * sd / nf.sqrt();
        Some([mean - half, mean + half])
    });
    Some(Summary {
        n,
        mean,
        sd,
        cv: sd.filter(|_| mean != 0.0).map(|sd| sd / mean.abs()),
        min: sorted[0],
        p50: quantile(&sorted, 0.5),
        p95: quantile(&sorted, 0.95),
        max: sorted[n - 1],
        ci95,
    })
}

/// The `q` quantile of sorted values, interpolating linearly (type 7).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let h = (sorted.len() - 1) as f64 * q;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - h.floor()) * (sorted[hi] - sorted[lo])
}

/// The median of unsorted values.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// Reference, NumPy 2.4.6 and SciPy 1.17.1 for
    /// x = [12.1, 15.3, 11.8, 14.0, 13.2]: `x.mean()` 13.28,
    /// `x.std(ddof=1)` 1.4307340773183537, `np.percentile(x, 50)` 13.2,
    /// `np.percentile(x, 95)` 15.04, and
    /// `scipy.stats.t.interval(0.95, 4, loc=x.mean(), scale=scipy.stats.sem(x))`
    /// = (11.503509005190521, 15.056490994809481).
    #[test]
    fn a_summary_matches_numpy_and_scipy() {
        let s = summarize(&[12.1, 15.3, 11.8, 14.0, 13.2]).unwrap();
        assert_eq!(s.n, 5);
        assert!(close(s.mean, 13.28, 1e-12));
        assert!(
            close(s.sd.unwrap(), 1.430_734_077_318_353_7, 1e-12),
            "{s:?}"
        );
        assert!(close(s.p50, 13.2, 1e-12));
        assert!(close(s.p95, 15.04, 1e-9));
        let [lo, hi] = s.ci95.unwrap();
        assert!(
            close(lo, 11.503_509_005_190_521, 1e-9) && close(hi, 15.056_490_994_809_481, 1e-9),
            "{s:?}"
        );
        assert!(close(s.cv.unwrap(), 1.430_734_077_318_353_7 / 13.28, 1e-12));
    }

    #[test]
    fn one_sample_has_no_spread_and_none_has_no_summary() {
        let s = summarize(&[4.0]).unwrap();
        assert_eq!((s.sd, s.cv, s.ci95), (None, None, None));
        assert_eq!((s.min, s.p50, s.p95, s.max), (4.0, 4.0, 4.0, 4.0));
        assert!(summarize(&[]).is_none());
    }
}
