//! Statistics over measured samples: percentiles of round-trip times and receive rates.

use std::time::Duration;

/// One-way latency of an entry: percentiles of round-trip time halved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneWay {
    /// Median one-way latency in nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile one-way latency in nanoseconds.
    pub p99_ns: u64,
    /// 99.9th percentile one-way latency in nanoseconds.
    pub p999_ns: u64,
    /// Number of round trips measured (warm-up excluded).
    pub samples: u64,
}

/// The `q`-quantile (0 < q ≤ 1) of `sorted` by the nearest-rank method: the smallest
/// sample that at least `q` of the samples are less than or equal to. `None` when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // The epsilon keeps float noise (0.99 * 1000 = 989.999…) from shifting the rank.
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of unsorted samples (sorts a copy). `None` when empty.
pub fn median(samples: &[u64]) -> Option<u64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, 0.5)
}

/// The mean of samples, rounded down. `None` when empty.
pub fn mean(samples: &[u64]) -> Option<u64> {
    let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    let n = u128::try_from(samples.len()).ok().filter(|&n| n > 0)?;
    u64::try_from(sum / n).ok()
}

/// One-way latency from round-trip times in nanoseconds (sorted in place). `None` when empty.
pub fn one_way(rtts: &mut [u64]) -> Option<OneWay> {
    rtts.sort_unstable();
    let half = |q| percentile(rtts, q).map(|rtt| rtt / 2);
    Some(OneWay {
        p50_ns: half(0.5)?,
        p99_ns: half(0.99)?,
        p999_ns: half(0.999)?,
        samples: rtts.len() as u64,
    })
}

/// Messages per second, `None` when nothing was counted or no time passed.
pub fn rate(messages: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    (messages > 0 && secs > 0.0).then(|| messages as f64 / secs)
}

/// A duration in whole nanoseconds, saturating (a round trip of 584 years is not expected).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), Some(500));
        assert_eq!(percentile(&v, 0.99), Some(990));
        assert_eq!(percentile(&v, 0.999), Some(999));
        assert_eq!(percentile(&v, 1.0), Some(1000));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[7], 0.999), Some(7));
    }

    #[test]
    fn small_sets_take_the_top_sample_for_high_percentiles() {
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 0.5), Some(5));
        assert_eq!(percentile(&v, 0.99), Some(10));
        assert_eq!(percentile(&v, 0.999), Some(10));
    }

    #[test]
    fn one_way_halves_sorted_round_trips() {
        let mut rtts: Vec<u64> = (1..=2000).rev().map(|x| x * 2).collect();
        let ow = one_way(&mut rtts).unwrap();
        assert_eq!(ow, OneWay { p50_ns: 1000, p99_ns: 1980, p999_ns: 1998, samples: 2000 });
        assert!(ow.p50_ns <= ow.p99_ns && ow.p99_ns <= ow.p999_ns);
        assert_eq!(one_way(&mut []), None);
    }

    #[test]
    fn median_does_not_reorder_its_input() {
        let v = vec![9, 1, 5];
        assert_eq!(median(&v), Some(5));
        assert_eq!(v, vec![9, 1, 5]);
    }

    #[test]
    fn means() {
        assert_eq!(mean(&[1, 2, 4]), Some(2));
        assert_eq!(mean(&[u64::MAX, u64::MAX]), Some(u64::MAX));
        assert_eq!(mean(&[]), None);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(1000, Duration::from_millis(500)), Some(2000.0));
        assert_eq!(rate(0, Duration::from_secs(1)), None);
        assert_eq!(rate(10, Duration::ZERO), None);
        assert_eq!(nanos(Duration::from_micros(3)), 3000);
    }
}
