//! A distribution-free confidence interval for a median, and the sequential rule that turns
//! paired timing rounds into PASS, FAIL or "cannot tell on this machine".
//!
//! The interval is the classic order-statistic one: for `n` independent samples sorted as
//! `x(1) <= .. <= x(n)`, the true median lies in `[x(k), x(n+1-k)]` with probability at least
//! `1 - 2 P(B < k)`, where `B ~ Binomial(n, 1/2)`. It assumes nothing about the shape of the
//! distribution (timings are skewed, with a long tail when the machine is busy), only that
//! rounds are independent draws, which alternating paired rounds approximate.
//!
//! [`decide`] is called after every round; it stops as soon as the whole interval lies on one
//! side of the limit. Looking after every round inflates the error rate of a single fixed
//! test, so the interval used is the 99 % one, while the verdict is read as a 95 % statement.

/// Two-sided miss probability of the interval [`decide`] uses (a 99 % interval).
pub const ALPHA: f64 = 0.01;

/// Rounds below which no 99 % interval exists (`2 * 0.5^n > ALPHA` for `n < 8`) and no
/// verdict is given.
pub const MIN_ROUNDS: usize = 8;

/// A confidence interval for the median of some samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MedianInterval {
    /// The sample median.
    pub median: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
}

/// The sample median of `samples` (NaN samples sort last), or `None` when empty.
pub fn sample_median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The interval at miss probability `alpha` for the median of `samples`, or `None` when there
/// are too few samples for one (or a sample is NaN).
pub fn median_interval(samples: &[f64], alpha: f64) -> Option<MedianInterval> {
    if samples.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let k = order_statistic_rank(n, alpha)?;
    Some(MedianInterval {
        median: sample_median(&sorted)?,
        lo: sorted[k - 1],
        hi: sorted[n - k],
    })
}

/// The largest `k >= 1` with `P(B < k) <= alpha / 2` for `B ~ Binomial(n, 1/2)`.
fn order_statistic_rank(n: usize, alpha: f64) -> Option<usize> {
    if n == 0 || n > 1_000 {
        // Above 1,000 samples `0.5^n` underflows; nobody runs that many rounds.
        return None;
    }
    let mut pmf = 0.5f64.powi(n as i32); // P(B = 0)
    let mut below = 0.0; // P(B < k), for k = 0 so far
    let mut k = 0;
    while k < n / 2 {
        if below + pmf > alpha / 2.0 {
            break;
        }
        below += pmf;
        // P(B = k + 1) from P(B = k).
        pmf *= (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    (k >= 1).then_some(k)
}

/// What the rounds so far say about `median <= limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The whole interval is at or below the limit: the claim holds.
    Holds(MedianInterval),
    /// The whole interval is above the limit: the claim is false.
    Broken(MedianInterval),
    /// The interval straddles the limit (or does not exist yet): more rounds are needed.
    Undecided(Option<MedianInterval>),
}

/// Judges the claim "the median of `samples` is at most `limit`".
pub fn decide(samples: &[f64], limit: f64) -> Verdict {
    match median_interval(samples, ALPHA) {
        Some(ci) if samples.len() >= MIN_ROUNDS && ci.hi <= limit => Verdict::Holds(ci),
        Some(ci) if samples.len() >= MIN_ROUNDS && ci.lo > limit => Verdict::Broken(ci),
        other => Verdict::Undecided(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_matches_the_binomial_tables() {
        // Known values of the 99 % and 95 % order-statistic ranks.
        assert_eq!(order_statistic_rank(7, 0.01), None);
        assert_eq!(order_statistic_rank(8, 0.01), Some(1));
        assert_eq!(order_statistic_rank(6, 0.05), Some(1));
        assert_eq!(order_statistic_rank(5, 0.05), None);
        assert_eq!(order_statistic_rank(20, 0.05), Some(6));
        assert_eq!(order_statistic_rank(20, 0.01), Some(4));
        assert_eq!(order_statistic_rank(100, 0.05), Some(40));
        assert_eq!(order_statistic_rank(0, 0.05), None);
    }

    #[test]
    fn interval_brackets_the_median() {
        let samples: Vec<f64> = (0..20).map(f64::from).collect();
        let ci = median_interval(&samples, 0.05).unwrap();
        assert_eq!(ci.median, 9.5);
        assert_eq!((ci.lo, ci.hi), (5.0, 14.0));
        assert_eq!(median_interval(&[1.0, f64::NAN, 2.0], 0.5), None);
        assert_eq!(sample_median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(sample_median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(sample_median(&[]), None);
    }

    #[test]
    fn verdicts_follow_the_interval() {
        let low: Vec<f64> = (0..12).map(|i| 0.1 + f64::from(i) * 0.01).collect();
        assert!(matches!(decide(&low, 1.0), Verdict::Holds(_)));
        let high: Vec<f64> = low.iter().map(|x| x + 2.0).collect();
        assert!(matches!(decide(&high, 1.0), Verdict::Broken(_)));
        let straddle: Vec<f64> = (0..12).map(|i| 0.5 + f64::from(i) * 0.1).collect();
        assert!(matches!(
            decide(&straddle, 1.0),
            Verdict::Undecided(Some(_))
        ));
        assert!(matches!(decide(&low[..5], 1.0), Verdict::Undecided(None)));
        // One wild round (a busy machine) does not flip a clear verdict.
        let mut noisy = low.clone();
        noisy[3] = 40.0;
        assert!(matches!(decide(&noisy, 1.0), Verdict::Holds(_)));
    }
}
