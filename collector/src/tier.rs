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

/// Splits `[since, until)` into stretches, each read from the coarsest
/// tier that answers it exactly and still holds it at `now`. The minute
/// tier serves from the first hour boundary inside its retention, the hour
/// tier from the first day boundary inside its own, the day tier the rest
/// back to its retention, except the whole months in that stretch, which
/// the month tier serves. Stretches meet on boundaries of the coarser tier,
/// so no record is read from two tiers. A bucket belongs to a stretch when
/// its start does.
pub fn plan(
    retention: &Retention,
    now: Timestamp,
    since: Option<i64>,
    until: Option<i64>,
) -> Vec<Stretch> {
    let now = now.as_second();
    let minute_from = align_up(now - retention.minute.as_secs(), HOUR);
    let hour_from = align_up(now - retention.hour.as_secs(), DAY).min(minute_from);
    let day_from = align_up(now - retention.day.as_secs(), DAY).min(hour_from);
    let lo = since.unwrap_or(i64::MIN);
    let hi = until.unwrap_or(i64::MAX);
    let clip = |tier, from: i64, to: i64| {
        let (from, to) = (from.max(lo), to.min(hi));
        (from < to).then_some(Stretch { tier, from, to })
    };
    let mut out = Vec::new();
    if let Some(days) = clip(Tier::Day, day_from, hour_from) {
        let (first, last) = (month_ceil(days.from), month_floor(days.to));
        if first < last {
            out.extend(clip(Tier::Day, days.from, first));
            out.push(Stretch {
                tier: Tier::Month,
                from: first,
                to: last,
            });
            out.extend(clip(Tier::Day, last, days.to));
        } else {
            out.push(days);
        }
    }
    out.extend(clip(Tier::Hour, hour_from, minute_from));
    out.extend(clip(Tier::Minute, minute_from, i64::MAX));
    out
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
        let p = plan(&r, now, None, None);
        let at = |s: &str| ts(s).as_second();
        let st = |tier, from: &str, to: &str| Stretch {
            tier,
            from: at(from),
            to: at(to),
        };
        assert_eq!(p.len(), 5);
        assert_eq!(
            p[0],
            st(Tier::Day, "2025-05-12T00:00:00Z", "2025-06-01T00:00:00Z")
        );
        assert_eq!(
            p[1],
            st(Tier::Month, "2025-06-01T00:00:00Z", "2026-03-01T00:00:00Z")
        );
        assert_eq!(
            p[2],
            st(Tier::Day, "2026-03-01T00:00:00Z", "2026-03-18T00:00:00Z")
        );
        assert_eq!(
            p[3],
            st(Tier::Hour, "2026-03-18T00:00:00Z", "2026-06-01T13:00:00Z")
        );
        assert_eq!(p[4].tier, Tier::Minute);
        assert_eq!(p[4].from, at("2026-06-01T13:00:00Z"));
        // No whole month in the day stretch: days only.
        let q = plan(
            &r,
            now,
            Some(at("2025-07-03T00:00:00Z")),
            Some(at("2025-07-20T00:00:00Z")),
        );
        assert_eq!(
            q,
            vec![st(
                Tier::Day,
                "2025-07-03T00:00:00Z",
                "2025-07-20T00:00:00Z"
            )]
        );
        // A range inside the minute tier reads only it.
        let q = plan(
            &r,
            now,
            Some(at("2026-06-15T00:00:00Z")),
            Some(at("2026-06-15T01:00:00Z")),
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
        assert!(plan(&r, now, None, Some(at("2024-01-01T00:00:00Z"))).is_empty());
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
