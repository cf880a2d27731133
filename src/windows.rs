//! Change windows: when `rekey run` may rotate.
//!
//! A window is a cron pattern read on the wall clock of an IANA time zone plus how long it stays
//! open, measured in real time: a 4h window that opens just before clocks go forward still lasts
//! four hours. Where the wall clock skips a start time, the window opens at the first instant
//! after the skipped stretch; where it repeats one, a fixed start (`0 2 * * *`) opens once, at
//! the earlier instant, and a stepped or listed one on both (croner's DST rules).

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset as _, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::Serialize;
use std::fmt;

/// The longest a window may stay open, in minutes: one week.
const MAX_DURATION_MINUTES: i64 = 7 * 24 * 60;

/// A change window: opens at each occurrence of `cron` in `timezone`, stays open `duration`.
#[derive(Clone, Debug)]
pub struct Window {
    cron: Cron,
    tz: Tz,
    duration: Duration,
    /// The pattern as written, for messages (croner upper-cases and expands what it keeps).
    text: String,
}

impl Window {
    /// Err(message) names what is wrong in words fit for a config error. Accepts the 5-field
    /// cron of crontab(5) and croner's `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`;
    /// seconds and years are refused, as crontab has neither.
    pub fn parse(cron: &str, timezone: &str, duration_minutes: i64) -> Result<Window, String> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let text = cron.trim();
        let parsed = parser
            .parse(text)
            .map_err(|e| format!("cron '{text}': {e}"))?;
        let tz = timezone.trim().parse::<Tz>().map_err(|_| {
            format!("unknown time zone '{timezone}' (use an IANA name such as Europe/Berlin)")
        })?;
        if !(1..=MAX_DURATION_MINUTES).contains(&duration_minutes) {
            return Err(format!(
                "duration_minutes must be 1..={MAX_DURATION_MINUTES}, not {duration_minutes}"
            ));
        }
        Ok(Window {
            cron: parsed,
            tz,
            duration: Duration::minutes(duration_minutes),
            text: text.to_string(),
        })
    }

    /// When the window is open at `at`, the instant it closes: the close of the latest opening at
    /// or before `at`, which is the latest close when openings overlap. A later opening that
    /// overlaps or abuts this one keeps the window open past that instant; ask again then.
    pub fn open_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let opened = self
            .cron
            .find_previous_occurrence(&at.with_timezone(&self.tz), true)
            .ok()?;
        let closes = opened.with_timezone(&Utc) + self.duration;
        (closes > at).then_some(closes)
    }

    /// The first opening strictly after `after`, or None if the cron never fires again (e.g.
    /// `0 0 30 2 *`).
    pub fn next_opening(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|at| at.with_timezone(&Utc))
    }

    /// This window's open stretches that reach into `[from, end)` (Unix seconds), each the union
    /// of overlapping or abutting openings, in order.
    ///
    /// Walking every opening costs a time zone search each, far too slow for `*/5 * * * *` over
    /// two years. But a 5-field cron fires at the same wall clock times on every day it fires at
    /// all, so the walk goes day by day: a day on which the offset from UTC does not change
    /// between its first and last opening is that day's pattern shifted by the offset; only the
    /// days a clock change touches are walked opening by opening.
    fn open_stretches(&self, from: i64, end: i64) -> Vec<(i64, i64)> {
        let reach = self.duration.num_seconds();
        let local_date =
            |t: i64| DateTime::from_timestamp(t, 0).map(|t| t.with_timezone(&self.tz).date_naive());
        let (Some(first_day), Some(last_day)) = (local_date(from - reach), local_date(end)) else {
            return Vec::new();
        };
        let mut day = first_day.pred_opt().unwrap_or(first_day);
        // Wall clock times of day (seconds after midnight) the pattern fires at.
        let mut times: Vec<i64> = Vec::new();
        // Those times' openings merged, relative to midnight.
        let mut day_pattern: Vec<(i64, i64)> = Vec::new();
        let mut stretches = Vec::new();
        while day <= last_day {
            let Ok(first) = self.cron.find_next_occurrence(&midnight(day), true) else {
                break;
            };
            day = first.date();
            if day > last_day {
                break;
            }
            if times.is_empty() {
                times = self.times_of_day(first);
                day_pattern = merge(times.iter().map(|&t| (t, t + reach)));
            }
            let day_start = midnight(day).and_utc().timestamp();
            let first_at = day_start + times[0];
            let last_at = day_start + times[times.len() - 1];
            match (self.instant(first_at), self.instant(last_at)) {
                (Some(a), Some(b)) if b - a == last_at - first_at => {
                    let shift = a - first_at;
                    for &(open, close) in &day_pattern {
                        extend(
                            &mut stretches,
                            day_start + shift + open,
                            day_start + shift + close,
                        );
                    }
                }
                _ => {
                    for at in self.openings_on(day) {
                        extend(&mut stretches, at, at + reach);
                    }
                }
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
        stretches
    }

    /// The wall clock times, in seconds after midnight, the pattern fires at on `first`'s day
    /// (`first` being its first opening that day).
    fn times_of_day(&self, first: NaiveDateTime) -> Vec<i64> {
        let seconds = |t: NaiveDateTime| (t - midnight(t.date())).num_seconds();
        let mut times = vec![seconds(first)];
        let mut at = first;
        while let Ok(next) = self.cron.find_next_occurrence(&at, false) {
            if next.date() != first.date() {
                break;
            }
            times.push(seconds(next));
            at = next;
        }
        times
    }

    /// The Unix time of the wall clock time `local` (as seconds, read as if UTC) in this
    /// window's zone, when it happens exactly once.
    fn instant(&self, local: i64) -> Option<i64> {
        let naive = DateTime::from_timestamp(local, 0)?.naive_utc();
        self.tz
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.timestamp())
    }

    /// Every opening on the local date `day`, found one by one (for days a clock change touches).
    fn openings_on(&self, day: NaiveDate) -> Vec<i64> {
        let midnight_as_utc = midnight(day).and_utc();
        let offset = i64::from(
            self.tz
                .offset_from_utc_datetime(&midnight_as_utc.naive_utc())
                .fix()
                .local_minus_utc(),
        );
        // Three hours before local midnight: no zone moves its clock by that much, so this is
        // still the day before, and few openings lie in between.
        let start = midnight_as_utc - Duration::seconds(offset) - Duration::hours(3);
        let mut at = start.with_timezone(&self.tz);
        let mut openings = Vec::new();
        while let Ok(next) = self.cron.find_next_occurrence(&at, false) {
            let date = next.date_naive();
            if date > day {
                break;
            }
            if date == day {
                openings.push(next.timestamp());
            }
            at = next;
        }
        openings
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.duration.num_minutes();
        write!(f, "{} {} for ", self.text, self.tz.name())?;
        let (days, hours, minutes) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
        for (value, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Local midnight of `day` as a wall clock time.
fn midnight(day: NaiveDate) -> NaiveDateTime {
    day.and_time(chrono::NaiveTime::MIN)
}

/// `intervals` (sorted by start) with the overlapping or abutting ones joined.
fn merge(intervals: impl IntoIterator<Item = (i64, i64)>) -> Vec<(i64, i64)> {
    let mut merged = Vec::new();
    for (open, close) in intervals {
        extend(&mut merged, open, close);
    }
    merged
}

/// Appends `[open, close)` to `stretches`, joining it to the last one when they overlap or abut.
fn extend(stretches: &mut Vec<(i64, i64)>, open: i64, close: i64) {
    match stretches.last_mut() {
        Some(last) if last.0 <= open && open <= last.1 => last.1 = last.1.max(close),
        _ => stretches.push((open, close)),
    }
}

/// Whether rotation may run now, given a credential's windows (empty list = always).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WindowState {
    /// The credential has no windows: rotation may run at any time.
    Always,
    /// A window is open.
    Open {
        /// When the latest-closing open window closes (see [`Window::open_until`]).
        closes: DateTime<Utc>,
    },
    /// Every window is closed.
    Closed {
        /// When the next window opens; None if none ever opens again.
        opens: Option<DateTime<Utc>>,
    },
}

/// Whether rotation may run at `now` under `windows`.
pub fn window_state(windows: &[Window], now: DateTime<Utc>) -> WindowState {
    if windows.is_empty() {
        return WindowState::Always;
    }
    if let Some(closes) = windows.iter().filter_map(|w| w.open_until(now)).max() {
        return WindowState::Open { closes };
    }
    WindowState::Closed {
        opens: windows.iter().filter_map(|w| w.next_opening(now)).min(),
    }
}

/// The longest stretch within [from, from+horizon) during which no window is open, or None if no
/// window is open at any time within the horizon. Config load refuses windows where this is >=
/// renew_before: a certificate entering its renewal period right after a window closed could
/// expire before the next one opens. The stretches at either end of the horizon count as cut off
/// there, so the horizon should cover the pattern's longest cycle (two years catches yearly ones).
pub fn longest_closed(
    windows: &[Window],
    from: DateTime<Utc>,
    horizon: Duration,
) -> Option<Duration> {
    let start = from.timestamp();
    let end = start.checked_add(horizon.num_seconds())?;
    if end <= start {
        return None;
    }
    let mut stretches: Vec<(i64, i64)> = windows
        .iter()
        .flat_map(|w| w.open_stretches(start, end))
        .collect();
    // Each window's stretches are already in order: a stable sort merges those runs cheaply.
    stretches.sort_by_key(|&(open, _)| open);
    let (mut closed_since, mut longest, mut opened) = (start, 0, false);
    for (open, close) in stretches {
        if close <= start {
            continue;
        }
        if open >= end {
            break;
        }
        opened = true;
        longest = longest.max(open - closed_since);
        closed_since = closed_since.max(close);
    }
    if !opened {
        return None;
    }
    longest = longest.max(end - closed_since);
    Some(Duration::seconds(longest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn window(cron: &str, tz: &str, minutes: i64) -> Window {
        Window::parse(cron, tz, minutes).unwrap()
    }

    #[test]
    fn a_weekly_berlin_window_follows_the_wall_clock_across_dst() {
        let w = window("0 2 * * SAT", "Europe/Berlin", 240);
        assert_eq!(w.to_string(), "0 2 * * SAT Europe/Berlin for 4h");
        // Saturday 2026-03-28, still CET (UTC+1): 02:00 local is 01:00Z.
        assert_eq!(w.open_until(utc("2026-03-28T00:59:59Z")), None);
        assert_eq!(
            w.open_until(utc("2026-03-28T01:00:00Z")),
            Some(utc("2026-03-28T05:00:00Z"))
        );
        assert_eq!(
            w.open_until(utc("2026-03-28T04:59:59Z")),
            Some(utc("2026-03-28T05:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-03-28T05:00:00Z")), None);
        // Clocks go forward on Sunday 2026-03-29; the next Saturday is CEST (UTC+2).
        assert_eq!(
            w.next_opening(utc("2026-03-28T05:00:00Z")),
            Some(utc("2026-04-04T00:00:00Z"))
        );
        assert_eq!(
            w.open_until(utc("2026-04-04T03:59:00Z")),
            Some(utc("2026-04-04T04:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-04-04T04:00:00Z")), None);
        // Clocks go back on Sunday 2026-10-25: 00:30Z is open on the 24th, closed on the 31st.
        assert_eq!(
            w.open_until(utc("2026-10-24T00:30:00Z")),
            Some(utc("2026-10-24T04:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-10-31T00:30:00Z")), None);
        assert_eq!(
            window_state(&[w], utc("2026-10-31T00:30:00Z")),
            WindowState::Closed {
                opens: Some(utc("2026-10-31T01:00:00Z"))
            }
        );
    }

    #[test]
    fn durations_are_real_time_and_skipped_or_repeated_starts_open_once() {
        // Opens 01:30 CET (00:30Z) on the night clocks go forward; four real hours later is
        // 04:30Z, though the wall clock then says 06:30.
        let w = window("30 1 * * SUN", "Europe/Berlin", 240);
        assert_eq!(
            w.open_until(utc("2026-03-29T04:29:00Z")),
            Some(utc("2026-03-29T04:30:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-03-29T04:30:00Z")), None);
        // 02:30 does not exist on 2026-03-29: the window opens when the clock jumps (01:00Z).
        let skipped = window("30 2 * * *", "Europe/Berlin", 60);
        assert_eq!(
            skipped.next_opening(utc("2026-03-28T12:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        assert_eq!(
            skipped.open_until(utc("2026-03-29T01:30:00Z")),
            Some(utc("2026-03-29T02:00:00Z"))
        );
        // 02:30 happens twice on 2026-10-25 (00:30Z and 01:30Z): a fixed start opens once.
        let repeated = window("30 2 * * *", "Europe/Berlin", 30);
        assert_eq!(
            repeated.open_until(utc("2026-10-25T00:45:00Z")),
            Some(utc("2026-10-25T01:00:00Z"))
        );
        assert_eq!(repeated.open_until(utc("2026-10-25T01:45:00Z")), None);
    }

    #[test]
    fn a_window_spans_midnight() {
        let w = window("0 23 * * FRI", "UTC", 180);
        assert_eq!(
            w.open_until(utc("2026-05-16T01:59:00Z")),
            Some(utc("2026-05-16T02:00:00Z"))
        );
        assert_eq!(w.open_until(utc("2026-05-16T02:00:00Z")), None);
        assert_eq!(w.open_until(utc("2026-05-15T22:59:59Z")), None);
    }

    #[test]
    fn overlapping_openings_report_the_latest_close() {
        // Every two hours, open for three: at 02:30 both the 00:00 and 02:00 openings are open.
        let w = window("0 */2 * * *", "UTC", 180);
        assert_eq!(
            w.open_until(utc("2026-05-16T02:30:00Z")),
            Some(utc("2026-05-16T05:00:00Z"))
        );
        let other = window("0 3 * * *", "UTC", 600);
        assert_eq!(
            window_state(&[w.clone(), other], utc("2026-05-16T04:00:00Z")),
            WindowState::Open {
                closes: utc("2026-05-16T13:00:00Z")
            }
        );
        assert_eq!(
            longest_closed(&[w], utc("2026-05-16T00:00:00Z"), Duration::days(30)),
            Some(Duration::zero())
        );
    }

    #[test]
    fn an_impossible_cron_never_opens() {
        let w = window("0 0 30 2 *", "UTC", 60);
        assert_eq!(w.next_opening(utc("2026-01-01T00:00:00Z")), None);
        assert_eq!(w.open_until(utc("2026-01-01T00:00:00Z")), None);
        let now = utc("2026-01-01T00:00:00Z");
        assert_eq!(
            window_state(std::slice::from_ref(&w), now),
            WindowState::Closed { opens: None }
        );
        assert_eq!(window_state(&[], now), WindowState::Always);
        assert_eq!(longest_closed(&[w], now, Duration::days(730)), None);
    }

    #[test]
    fn parse_names_what_is_wrong() {
        let bad_cron = Window::parse("0 25 * * *", "UTC", 60).unwrap_err();
        assert!(bad_cron.starts_with("cron '0 25 * * *': "), "{bad_cron}");
        let with_seconds = Window::parse("0 0 2 * * SAT", "UTC", 60).unwrap_err();
        assert!(with_seconds.contains("5 fields"), "{with_seconds}");
        let zone = Window::parse("0 2 * * *", "Europe/Berln", 60).unwrap_err();
        assert_eq!(
            zone,
            "unknown time zone 'Europe/Berln' (use an IANA name such as Europe/Berlin)"
        );
        for minutes in [0, -5, 10_081] {
            let e = Window::parse("0 2 * * *", "UTC", minutes).unwrap_err();
            assert_eq!(
                e,
                format!("duration_minutes must be 1..=10080, not {minutes}")
            );
        }
        let weekly = window("@weekly", "America/New_York", 1530);
        assert_eq!(weekly.to_string(), "@weekly America/New_York for 1d1h30m");
        // @weekly is Sunday midnight, New York time (EDT in May).
        assert_eq!(
            weekly.next_opening(utc("2026-05-13T00:00:00Z")),
            Some(utc("2026-05-17T04:00:00Z"))
        );
    }

    #[test]
    fn longest_closed_is_the_period_less_the_duration() {
        let from = utc("2026-05-16T12:00:00Z");
        let two_years = Duration::days(730);
        let daily = window("0 2 * * *", "UTC", 240);
        assert_eq!(
            longest_closed(&[daily], from, two_years),
            Some(Duration::hours(20))
        );
        // In Berlin, the night clocks go back puts an extra hour between two 02:00s.
        let daily = window("0 2 * * *", "Europe/Berlin", 240);
        assert_eq!(
            longest_closed(&[daily], from, two_years),
            Some(Duration::hours(21))
        );
        let weekly = window("0 2 * * SAT", "Europe/Berlin", 240);
        assert_eq!(
            longest_closed(&[weekly], from, two_years),
            Some(Duration::days(7) - Duration::hours(3))
        );
        // 2027 is not a leap year: 2027-01-02 to 2028-01-01.
        let yearly = window("@yearly", "UTC", 1440);
        assert_eq!(
            longest_closed(&[yearly], from, two_years),
            Some(Duration::days(364))
        );
    }

    #[test]
    fn longest_closed_counts_the_edges_of_the_horizon() {
        let from = utc("2026-05-16T12:00:00Z");
        // Next opening 2028-02-29, 654 days in; the rest of the horizon is shorter.
        let leap_day = window("0 0 29 2 *", "UTC", 60);
        assert_eq!(
            longest_closed(&[leap_day], from, Duration::days(730)),
            Some(utc("2028-02-29T00:00:00Z") - from)
        );
        // Open at `from` (since 02:00) and never again within a day: closed from 06:00 to the end.
        let daily = window("0 2 * * *", "UTC", 240);
        assert_eq!(
            longest_closed(&[daily], utc("2026-05-16T03:00:00Z"), Duration::hours(20)),
            Some(Duration::hours(17))
        );
    }

    #[test]
    fn longest_closed_merges_windows() {
        let from = utc("2026-05-16T12:00:00Z");
        let saturday = window("0 2 * * SAT", "UTC", 240);
        let wednesday = window("0 2 * * WED", "UTC", 240);
        let never = window("0 0 30 2 *", "UTC", 60);
        // Saturday 06:00 to Wednesday 02:00 is 3 days 20 hours; Wednesday to Saturday 2 days 20.
        assert_eq!(
            longest_closed(&[saturday, wednesday, never], from, Duration::days(730)),
            Some(Duration::hours(92))
        );
        let halves = [
            window("0 0 * * *", "Europe/Berlin", 720),
            window("0 12 * * *", "Europe/Berlin", 720),
        ];
        assert_eq!(
            longest_closed(&halves, from, Duration::days(730)),
            Some(Duration::hours(1)),
            "the night clocks go back, 00:00 to 00:00 is 25h"
        );
        let every_five = window("*/5 * * * *", "Europe/Berlin", 5);
        assert_eq!(
            longest_closed(&[every_five], from, Duration::days(730)),
            Some(Duration::zero())
        );
        let every_five = window("*/5 * * * *", "Europe/Berlin", 3);
        assert_eq!(
            longest_closed(&[every_five], from, Duration::days(730)),
            Some(Duration::minutes(2))
        );
    }

    /// `longest_closed` computed the slow way: every opening, one by one.
    fn longest_closed_by_walking(w: &Window, from: DateTime<Utc>, horizon: Duration) -> Duration {
        let end = from + horizon;
        let mut closed_since = w.open_until(from).unwrap_or(from);
        let mut longest = Duration::zero();
        let mut at = from.with_timezone(&w.tz);
        while let Ok(next) = w.cron.find_next_occurrence(&at, false) {
            let open = next.with_timezone(&Utc);
            if open >= end {
                break;
            }
            longest = longest.max(open - closed_since);
            closed_since = closed_since.max(open + w.duration);
            at = next;
        }
        longest.max(end - closed_since)
    }

    #[test]
    fn longest_closed_agrees_with_walking_every_opening_across_clock_changes() {
        let patterns = [
            ("*/5 * * * *", 3),
            ("*/20 * * * *", 20),
            ("0 2 * * *", 240),
            ("30 2 * * *", 30),
            ("0 1,4 * * *", 60),
            ("0 2,3 * * *", 50),
            ("0 0-6 * * SUN", 30),
            ("15 */7 * * *", 100),
            ("0 0 * * *", 1439),
            ("45 1 L * *", 120),
        ];
        let zones = [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Lord_Howe",
            "America/Santiago",
            "UTC",
        ];
        // Around every clock change of these zones in 2026 (US: March 8, November 1; EU: March
        // 29, October 25; Lord Howe: April 5, October 4; Santiago: April 5, September 6).
        let starts = [
            "2026-03-01T00:00:00Z",
            "2026-03-20T00:00:00Z",
            "2026-09-01T05:00:00Z",
            "2026-10-20T13:17:00Z",
        ];
        for (cron, minutes) in patterns {
            for zone in zones {
                let w = window(cron, zone, minutes);
                for start in starts {
                    let from = utc(start);
                    let horizon = Duration::days(50);
                    assert_eq!(
                        longest_closed(std::slice::from_ref(&w), from, horizon),
                        Some(longest_closed_by_walking(&w, from, horizon)),
                        "{w} from {start}"
                    );
                }
            }
        }
    }
}
