//! Tiers of buckets, retention, and which tier serves which stretch of time.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::StoreError;

/// A bucket width. Every record is added into its bucket in every tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tier {
    Minute,
    Hour,
    Day,
    /// Calendar months (UTC), kept as long as days: what long windows (a
    /// 400-day top talkers) read for every whole month they cover, so they
    /// sum a dozen rows per edge instead of hundreds.
    Month,
}

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Minute, Tier::Hour, Tier::Day, Tier::Month];

    /// Bucket width in seconds; `None` for months.
    pub fn width(self) -> Option<i64> {
        match self {
            Tier::Minute => Some(MINUTE),
            Tier::Hour => Some(HOUR),
            Tier::Day => Some(DAY),
            Tier::Month => None,
        }
    }

    /// The start of the bucket holding `second` (Unix seconds, UTC).
    pub fn bucket(self, second: i64) -> i64 {
        match self.width() {
            Some(w) => second.div_euclid(w) * w,
            None => month_floor(second),
        }
    }

    /// The end (exclusive) of the bucket starting at `bucket`.
    pub fn end(self, bucket: i64) -> i64 {
        match self.width() {
            Some(w) => bucket + w,
            None => month_ceil(bucket + 1),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::Minute => "minute",
            Tier::Hour => "hour",
            Tier::Day => "day",
            Tier::Month => "month",
        }
    }

    /// A small number naming the tier in SQL results.
    pub fn index(self) -> i64 {
        match self {
            Tier::Minute => 0,
            Tier::Hour => 1,
            Tier::Day => 2,
            Tier::Month => 3,
        }
    }

    pub fn from_index(i: i64) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.index() == i)
    }
}

fn civil(second: i64) -> jiff::civil::Date {
    Timestamp::from_second(second)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

fn utc_second(d: jiff::civil::Date) -> i64 {
    d.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or(0)
}

/// The first second of the UTC month holding `second`.
pub fn month_floor(second: i64) -> i64 {
    utc_second(civil(second).first_of_month())
}

/// The first month start at or after `second`.
pub fn month_ceil(second: i64) -> i64 {
    let floor = month_floor(second);
    if floor == second {
        return floor;
    }
    civil(second)
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .map(utc_second)
        .unwrap_or(floor)
}

/// How long each tier keeps its buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub minute: SignedDuration,
    pub hour: SignedDuration,
    pub day: SignedDuration,
}

impl Default for Retention {
    /// 14 days of minutes, 90 of hours, 400 of days.
    fn default() -> Self {
        Retention {
            minute: SignedDuration::from_hours(14 * 24),
            hour: SignedDuration::from_hours(90 * 24),
            day: SignedDuration::from_hours(400 * 24),
        }
    }
}

const ONE_DAY: SignedDuration = SignedDuration::from_hours(24);

impl Retention {
    /// Refuses retentions whose stretches would not meet on bucket
    /// boundaries: at least an hour of minutes, and each coarser tier at
    /// least a day longer than the finer one.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: &str, why: &str| {
            Err(StoreError::Config(format!(
                "retention of the {what} tier: {why}"
            )))
        };
        if self.minute < SignedDuration::from_hours(1) {
            return bad("minute", "must be at least 1h");
        }
        if self.hour < self.minute + ONE_DAY {
            return bad(
                "hour",
                "must be at least one day longer than the minute tier's",
            );
        }
        if self.day < self.hour {
            return bad("day", "must be at least as long as the hour tier's");
        }
        Ok(())
    }

    pub fn of(&self, tier: Tier) -> SignedDuration {
        match tier {
            Tier::Minute => self.minute,
            Tier::Hour => self.hour,
            Tier::Day | Tier::Month => self.day,
        }
    }
}

/// One stretch of a query: buckets of `tier` whose start is in `[from, to)`
/// (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stretch {
    pub tier: Tier,
    pub from: i64,
    pub to: i64,
}

fn align_up(second: i64, width: i64) -> i64 {
    -((-second).div_euclid(width) * width)
}

/// Splits `[since, until)` into stretches over the tiers that still hold
/// them at `now`: the minute tier from the first hour boundary inside its
/// retention, the hour tier from the first day boundary inside its own,
/// the day tier the rest back to its retention. Stretches meet on
/// boundaries of the coarser tier, so no record is read from two tiers. A
/// bucket belongs to a stretch when its start does.
///
/// With `coarsen` (aggregates), every whole bucket of a coarser tier inside
/// a stretch is read from that tier instead (its sum is the same), down to
/// whole months: a 400-day window reads about 30 rows per edge, not 400
/// days plus 2,000 hours. Without it (records), each stretch keeps its own
/// tier's resolution.
pub fn plan(
    retention: &Retention,
    now: Timestamp,
    since: Option<i64>,
    until: Option<i64>,
    coarsen: bool,
) -> Vec<Stretch> {
    let now = now.as_second();
    let minute_from = align_up(now - retention.minute.as_secs(), HOUR);
    let hour_from = align_up(now - retention.hour.as_secs(), DAY).min(minute_from);
    let day_from = align_up(now - retention.day.as_secs(), DAY).min(hour_from);
    let lo = since.unwrap_or(i64::MIN);
    let hi = until.unwrap_or(i64::MAX);
    let mut out = Vec::new();
    for (tier, from, to) in [
        (Tier::Day, day_from, hour_from),
        (Tier::Hour, hour_from, minute_from),
        (Tier::Minute, minute_from, i64::MAX),
    ] {
        let (from, to) = (from.max(lo), to.min(hi));
        if coarsen {
            split(tier, from, to, &mut out);
        } else if from < to {
            out.push(Stretch { tier, from, to });
        }
    }
    out.sort_by_key(|s| s.from);
    out
}

impl Tier {
    fn coarser(self) -> Option<Tier> {
        match self {
            Tier::Minute => Some(Tier::Hour),
            Tier::Hour => Some(Tier::Day),
            Tier::Day => Some(Tier::Month),
            Tier::Month => None,
        }
    }

    /// The first bucket start at or after `s`.
    fn ceil(self, s: i64) -> i64 {
        match self.width() {
            Some(w) => align_up(s, w),
            None => month_ceil(s),
        }
    }
}

/// `[from, to)` at `tier`, with the whole buckets of coarser tiers inside
/// handed to them. `to` may be unbounded (`i64::MAX`): a coarser bucket
/// that has not ended yet holds exactly what was seen of it so far.
fn split(tier: Tier, from: i64, to: i64, out: &mut Vec<Stretch>) {
    if from >= to {
        return;
    }
    if let Some(c) = tier.coarser() {
        let first = c.ceil(from);
        let last = if to == i64::MAX { to } else { c.bucket(to) };
        if first < last {
            split(tier, from, first, out);
            split(c, first, last, out);
            split(tier, last, to, out);
            return;
        }
    }
    out.push(Stretch { tier, from, to });
}

/// The monthly partition (`YYYYMM`, UTC) of a bucket starting at `second`.
pub fn partition(second: i64) -> u32 {
    let civil = Timestamp::from_second(second)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC);
    // Years are 4 digits in jiff's range the stores accept (validated on insert).
    (civil.year().max(0) as u32) * 100 + civil.month() as u32
}

/// Partitions of `tier` that `maintain(now)` drops: every month that ended
/// before the tier's cutoff, i.e. each `p` with `p < cutoff_partition`.
pub fn cutoff_partition(retention: &Retention, tier: Tier, now: Timestamp) -> u32 {
    partition(now.as_second() - retention.of(tier).as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect(s)
    }

    #[test]
    fn stretches_meet_on_boundaries() {
        let r = Retention::default();
        let now = ts("2026-06-15T12:34:56Z");
        let at = |s: &str| ts(s).as_second();
        let st = |tier, from: &str, to: &str| Stretch {
            tier,
            from: at(from),
            to: at(to),
        };
        let p = plan(&r, now, None, None, false);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0],
            st(Tier::Day, "2025-05-12T00:00:00Z", "2026-03-18T00:00:00Z")
        );
        assert_eq!(
            p[1],
            st(Tier::Hour, "2026-03-18T00:00:00Z", "2026-06-01T13:00:00Z")
        );
        assert_eq!(p[2].tier, Tier::Minute);
        assert_eq!(p[2].from, at("2026-06-01T13:00:00Z"));
        let c = plan(&r, now, None, None, true);
        let mut want = vec![
            st(Tier::Day, "2025-05-12T00:00:00Z", "2025-06-01T00:00:00Z"),
            st(Tier::Month, "2025-06-01T00:00:00Z", "2026-03-01T00:00:00Z"),
            st(Tier::Day, "2026-03-01T00:00:00Z", "2026-03-18T00:00:00Z"),
            st(Tier::Day, "2026-03-18T00:00:00Z", "2026-04-01T00:00:00Z"),
            st(Tier::Month, "2026-04-01T00:00:00Z", "2026-06-01T00:00:00Z"),
            st(Tier::Hour, "2026-06-01T00:00:00Z", "2026-06-01T13:00:00Z"),
            st(Tier::Hour, "2026-06-01T13:00:00Z", "2026-06-02T00:00:00Z"),
            st(Tier::Day, "2026-06-02T00:00:00Z", "2026-07-01T00:00:00Z"),
        ];
        want.push(Stretch {
            tier: Tier::Month,
            from: at("2026-07-01T00:00:00Z"),
            to: i64::MAX,
        });
        assert_eq!(c, want);
        // No whole hour in a short range: its own tier only.
        let q = plan(
            &r,
            now,
            Some(at("2026-06-15T10:30:00Z")),
            Some(at("2026-06-15T11:30:00Z")),
            true,
        );
        assert_eq!(
            q,
            vec![st(
                Tier::Minute,
                "2026-06-15T10:30:00Z",
                "2026-06-15T11:30:00Z"
            )]
        );
        // A range inside the minute tier reads only it.
        let q = plan(
            &r,
            now,
            Some(at("2026-06-15T00:00:00Z")),
            Some(at("2026-06-15T01:00:00Z")),
            false,
        );
        assert_eq!(
            q,
            vec![Stretch {
                tier: Tier::Minute,
                from: at("2026-06-15T00:00:00Z"),
                to: at("2026-06-15T01:00:00Z")
            }]
        );
        // A range older than every tier reads nothing.
        assert!(plan(&r, now, None, Some(at("2024-01-01T00:00:00Z")), true).is_empty());
    }

    #[test]
    fn months() {
        assert_eq!(
            month_floor(ts("2026-02-17T05:00:00Z").as_second()),
            ts("2026-02-01T00:00:00Z").as_second()
        );
        assert_eq!(
            month_ceil(ts("2026-02-17T05:00:00Z").as_second()),
            ts("2026-03-01T00:00:00Z").as_second()
        );
        assert_eq!(
            month_ceil(ts("2026-03-01T00:00:00Z").as_second()),
            ts("2026-03-01T00:00:00Z").as_second()
        );
        let dec = ts("2025-12-01T00:00:00Z").as_second();
        assert_eq!(Tier::Month.end(dec), ts("2026-01-01T00:00:00Z").as_second());
        assert_eq!(Tier::Month.bucket(dec + 86_400 * 20), dec);
    }

    #[test]
    fn partitions_are_utc_months() {
        assert_eq!(partition(ts("2026-01-31T23:59:59Z").as_second()), 202601);
        assert_eq!(partition(ts("2026-02-01T00:00:00Z").as_second()), 202602);
        let r = Retention::default();
        assert_eq!(
            cutoff_partition(&r, Tier::Minute, ts("2026-03-10T00:00:00Z")),
            202602
        );
    }

    #[test]
    fn retention_is_validated() {
        assert!(Retention::default().validate().is_ok());
        let short = Retention {
            minute: SignedDuration::from_mins(5),
            ..Retention::default()
        };
        assert!(short.validate().is_err());
        let overlap = Retention {
            hour: SignedDuration::from_hours(14 * 24),
            ..Retention::default()
        };
        let e = overlap.validate().expect_err("hour == minute").to_string();
        assert!(e.contains("hour tier"), "{e}");
    }
}
