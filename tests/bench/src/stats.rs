//! The figures the bench reports, computed from what it recorded: means and medians of timings,
//! and from the mints of every consumer the moment after which all of them sign with the new key.

use std::time::Duration;

/// Arithmetic mean; `None` for no samples.
pub(crate) fn mean(samples: &[Duration]) -> Option<Duration> {
    let n = u32::try_from(samples.len()).ok().filter(|n| *n > 0)?;
    Some(samples.iter().sum::<Duration>() / n)
}

/// Median (the mean of the two middle samples for an even count); `None` for no samples.
pub(crate) fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The `p`-th percentile (0 < p ≤ 100) by the nearest-rank method; `None` for no samples.
pub(crate) fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// One token request of one consumer, as it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MintRecord {
    /// Which consumer (0-based).
    pub(crate) consumer: usize,
    /// When the mint ended, from the start of the run.
    pub(crate) at: Duration,
    /// How long it took (all attempts).
    pub(crate) took: Duration,
    /// The fingerprint of the certificate of the key that signed the granted request; `None`
    /// for a failed mint.
    pub(crate) fingerprint: Option<String>,
}

impl MintRecord {
    /// Whether Salesforce issued a token.
    pub(crate) fn ok(&self) -> bool {
        self.fingerprint.is_some()
    }
}

/// Of the mints that ended from `from` to `to` (both included): how many, and how many failed.
pub(crate) fn within(records: &[MintRecord], from: Duration, to: Duration) -> (usize, usize) {
    let inside: Vec<&MintRecord> = records
        .iter()
        .filter(|r| (from..=to).contains(&r.at))
        .collect();
    (inside.len(), inside.iter().filter(|r| !r.ok()).count())
}

/// When every consumer had switched to the key with `new_fingerprint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    /// Every consumer switched. A consumer's switch is its first successful mint with the new
    /// key after which none of its successful mints used another key.
    All {
        /// The latest consumer's switch, from the start of the run.
        last: Duration,
        /// The median consumer's switch, from the start of the run.
        median: Duration,
    },
    /// This many of `of` consumers never reached that point before the run ended (their last
    /// successful mint used another key, or they had none).
    NotAll {
        /// Consumers that never switched.
        missing: usize,
        /// Consumers in all.
        of: usize,
    },
}

impl Switch {
    /// The same switch with its times counted from `origin` instead of the start of the run
    /// (a switch before `origin` counts as 0).
    pub(crate) fn since(self, origin: Duration) -> Switch {
        match self {
            Switch::All { last, median } => Switch::All {
                last: last.saturating_sub(origin),
                median: median.saturating_sub(origin),
            },
            not_all => not_all,
        }
    }
}

/// Each consumer's switch (numbered `0..consumers`), from the start of the run; `None` for a
/// consumer that never switched.
fn switches(
    records: &[MintRecord],
    consumers: usize,
    new_fingerprint: &str,
) -> Vec<Option<Duration>> {
    (0..consumers)
        .map(|consumer| {
            let mut granted: Vec<&MintRecord> = records
                .iter()
                .filter(|r| r.consumer == consumer && r.ok())
                .collect();
            granted.sort_by_key(|r| r.at);
            // The successful mints after the last one that used another key: the first of
            // them is the switch.
            let after_last_other = granted
                .iter()
                .rposition(|r| r.fingerprint.as_deref() != Some(new_fingerprint))
                .map_or(0, |i| i + 1);
            granted.get(after_last_other).map(|r| r.at)
        })
        .collect()
}

/// The switch over `consumers` consumers (numbered `0..consumers`), from their mints.
pub(crate) fn switch(records: &[MintRecord], consumers: usize, new_fingerprint: &str) -> Switch {
    let each = switches(records, consumers, new_fingerprint);
    let switched: Vec<Duration> = each.iter().flatten().copied().collect();
    if switched.len() < consumers {
        return Switch::NotAll {
            missing: consumers - switched.len(),
            of: consumers,
        };
    }
    Switch::All {
        last: switched.iter().max().copied().unwrap_or_default(),
        median: median(&switched).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn mint(consumer: usize, at: u64, fingerprint: Option<&str>) -> MintRecord {
        MintRecord {
            consumer,
            at: ms(at),
            took: ms(5),
            fingerprint: fingerprint.map(str::to_string),
        }
    }

    #[test]
    fn mean_median_and_percentiles() {
        assert_eq!(mean(&[]), None);
        assert_eq!(median(&[]), None);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(mean(&[ms(10), ms(20), ms(60)]), Some(ms(30)));
        assert_eq!(median(&[ms(60), ms(10), ms(20)]), Some(ms(20)));
        assert_eq!(median(&[ms(40), ms(10), ms(20), ms(30)]), Some(ms(25)));
        let hundred: Vec<Duration> = (1..=100).rev().map(ms).collect();
        assert_eq!(percentile(&hundred, 50.0), Some(ms(50)));
        assert_eq!(percentile(&hundred, 99.0), Some(ms(99)));
        assert_eq!(percentile(&hundred, 100.0), Some(ms(100)));
        assert_eq!(percentile(&[ms(7)], 1.0), Some(ms(7)));
    }

    #[test]
    fn the_switch_is_the_latest_first_new_mint_after_the_last_old_one() {
        let records = vec![
            // Consumer 0 switches at 300, goes back to the old key at 400 (a PREVIOUS mint),
            // and is on the new key for good from 600 on; a failure in between changes nothing.
            mint(0, 100, Some("old")),
            mint(0, 300, Some("new")),
            mint(0, 400, Some("old")),
            mint(0, 500, None),
            mint(0, 600, Some("new")),
            mint(0, 700, Some("new")),
            // Consumer 1 switches at 250 and stays; recorded out of order.
            mint(1, 350, Some("new")),
            mint(1, 250, Some("new")),
            mint(1, 150, Some("old")),
        ];
        let all = switch(&records, 2, "new");
        assert_eq!(
            all,
            Switch::All {
                last: ms(600),
                median: ms(425)
            }
        );
        assert_eq!(
            all.since(ms(500)),
            Switch::All {
                last: ms(100),
                median: ms(0)
            }
        );
        // Only new mints from the start: the first one is the switch.
        let early = [mint(0, 80, Some("new")), mint(0, 90, Some("new"))];
        assert_eq!(
            switch(&early, 1, "new"),
            Switch::All {
                last: ms(80),
                median: ms(80)
            }
        );
    }

    #[test]
    fn mints_within_a_window_are_counted_with_their_failures() {
        let records = [
            mint(0, 100, Some("old")),
            mint(0, 200, None),
            mint(1, 250, Some("new")),
            mint(1, 300, None),
            mint(0, 301, None),
        ];
        assert_eq!(within(&records, ms(200), ms(300)), (3, 2));
        assert_eq!(within(&records, ms(0), ms(99)), (0, 0));
        assert_eq!(within(&records, ms(0), ms(1000)), (5, 3));
    }

    #[test]
    fn consumers_that_never_switched_are_counted() {
        let records = vec![
            mint(0, 100, Some("old")),
            mint(0, 200, Some("new")),
            // Consumer 1 ends on the old key; consumer 2 only failed; consumer 3 never minted.
            mint(1, 100, Some("new")),
            mint(1, 200, Some("old")),
            mint(2, 100, None),
        ];
        assert_eq!(
            switch(&records, 4, "new"),
            Switch::NotAll { missing: 3, of: 4 }
        );
        assert_eq!(
            switch(&[], 0, "new"),
            Switch::All {
                last: Duration::ZERO,
                median: Duration::ZERO
            }
        );
        let not_all = Switch::NotAll { missing: 1, of: 2 };
        assert_eq!(not_all.clone().since(ms(100)), not_all);
    }
}
