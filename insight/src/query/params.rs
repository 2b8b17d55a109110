//! Query parameters of the HTTP API, turned into a [`FlowFilter`], a
//! [`GroupBy`] and a limit. Every error names its parameter.

use std::collections::BTreeMap;

use super::{parse_protocol, EndpointMatch, FlowFilter, GroupBy, ServiceName, VerdictFilter};
use jiff::{SignedDuration, Timestamp};

/// A parameter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {param}: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

fn err(param: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        param: param.into(),
        message: message.into(),
    }
}

/// The default and largest `limit` of `/api/v1/flows`.
pub const DEFAULT_LIMIT: usize = 1_000;
pub const MAX_LIMIT: usize = 100_000;

/// `90s`, `15m`, `1h`, `30d`, `2w`.
pub fn duration(value: &str) -> Option<SignedDuration> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(secs).map(SignedDuration::from_secs)
}

/// RFC 3339 (`2026-01-02T03:04:05Z`) or a duration back from `now`
/// (`90s`, `15m`, `1h`, `30d`, `2w`).
pub fn time(param: &str, value: &str, now: Timestamp) -> Result<Timestamp, ParamError> {
    let v = value.trim();
    if let Ok(t) = v.parse::<Timestamp>() {
        return Ok(t);
    }
    let bad = || {
        err(
            param,
            format!("{value:?} is neither RFC 3339 nor a duration like 30d, 1h or 15m"),
        )
    };
    let back = duration(v).ok_or_else(bad)?;
    now.checked_sub(back).map_err(|_| bad())
}

const FILTER_PARAMS: [&str; 10] = [
    "since",
    "until",
    "from",
    "to",
    "verdict",
    "port",
    "protocol",
    "node",
    "service",
    "serviceName",
];

/// What a query asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub filter: FlowFilter,
    pub limit: usize,
    /// Records to skip (`offset`, paging through more than `limit`).
    pub offset: usize,
    pub group_by: Option<GroupBy>,
}

/// Parses `params`; `extra` names the parameters this endpoint takes
/// besides the filter (`limit`, `offset`, `groupBy`). Unknown parameters are refused.
pub fn parse(
    params: &BTreeMap<String, String>,
    extra: &[&str],
    now: Timestamp,
) -> Result<Query, ParamError> {
    for k in params.keys() {
        if !FILTER_PARAMS.contains(&k.as_str()) && !extra.contains(&k.as_str()) {
            let mut known: Vec<&str> = FILTER_PARAMS.to_vec();
            known.extend(extra);
            return Err(err(
                k,
                format!("unknown; expected one of {}", known.join(", ")),
            ));
        }
    }
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut f = FlowFilter::default();
    if let Some(v) = get("since") {
        f.since = Some(time("since", v, now)?);
    }
    if let Some(v) = get("until") {
        f.until = Some(time("until", v, now)?);
    }
    if let (Some(s), Some(u)) = (f.since, f.until) {
        if s >= u {
            return Err(err("since", format!("{s} is not before until {u}")));
        }
    }
    for (param, slot) in [("from", &mut f.from), ("to", &mut f.to)] {
        if let Some(v) = get(param) {
            *slot = Some(EndpointMatch::parse(v).map_err(|e| err(param, e.to_string()))?);
        }
    }
    if let Some(v) = get("verdict") {
        f.verdict = Some(
            v.parse::<VerdictFilter>()
                .map_err(|e| err("verdict", e.to_string()))?,
        );
    }
    if let Some(v) = get("port") {
        f.port = Some(
            v.parse::<u16>()
                .map_err(|_| err("port", format!("{v:?} is not a port (0-65535)")))?,
        );
    }
    if let Some(v) = get("protocol") {
        f.protocol = Some(parse_protocol(v).map_err(|e| err("protocol", e.to_string()))?);
    }
    if let Some(v) = get("node") {
        f.node = Some(v.to_string());
    }
    if let Some(v) = get("service") {
        f.service = Some(v.parse().map_err(|_| {
            err(
                "service",
                format!("{v:?} is not a Service address (an IP address)"),
            )
        })?);
    }
    if let Some(v) = get("serviceName") {
        f.service_name =
            Some(ServiceName::parse(v).map_err(|e| err("serviceName", e.to_string()))?);
    }
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(err(
                    "limit",
                    format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let offset = match get("offset") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| err("offset", format!("{v:?} is not a number of records")))?,
    };
    let group_by = match get("groupBy") {
        None if extra.contains(&"groupBy") => {
            return Err(err(
                "groupBy",
                "required, e.g. source.app,destination.app,port",
            ))
        }
        None => None,
        Some(v) => Some(GroupBy::parse(v).map_err(|e| err("groupBy", e.to_string()))?),
    };
    Ok(Query {
        filter: f,
        limit,
        offset,
        group_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)], extra: &[&str]) -> Result<Query, ParamError> {
        let now: Timestamp = "2026-06-15T12:00:00Z".parse().expect("ts");
        let m = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&m, extra, now)
    }

    #[test]
    fn times() {
        let now: Timestamp = "2026-06-15T12:00:00Z".parse().expect("ts");
        let cases = [
            ("30d", "2026-05-16T12:00:00Z"),
            ("1h", "2026-06-15T11:00:00Z"),
            ("15m", "2026-06-15T11:45:00Z"),
            ("2w", "2026-06-01T12:00:00Z"),
            ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
            ("2026-01-02T03:04:05+02:00", "2026-01-02T01:04:05Z"),
        ];
        for (input, want) in cases {
            assert_eq!(
                time("since", input, now).map(|t| t.to_string()),
                Ok(want.to_string()),
                "{input}"
            );
        }
        for bad in ["", "d", "30x", "-1d", "yesterday", "99999999999999999d"] {
            let e = time("since", bad, now).expect_err(bad);
            assert_eq!(e.param, "since");
        }
    }

    #[test]
    fn every_error_names_its_parameter() {
        let cases: [(&[(&str, &str)], &str); 10] = [
            (&[("since", "soon")], "since"),
            (&[("until", "30x")], "until"),
            (&[("since", "1h"), ("until", "2h")], "since"),
            (&[("from", "a/b/c")], "from"),
            (&[("to", "node:")], "to"),
            (&[("verdict", "maybe")], "verdict"),
            (&[("port", "70000")], "port"),
            (&[("protocol", "gre")], "protocol"),
            (&[("limit", "0")], "limit"),
            (&[("colour", "red")], "colour"),
        ];
        for (pairs, param) in cases {
            let e = q(pairs, &["limit"]).expect_err(param);
            assert_eq!(e.param, param, "{e}");
        }
        assert_eq!(q(&[], &["groupBy"]).expect_err("groupBy").param, "groupBy");
        assert_eq!(
            q(&[("groupBy", "colour")], &["groupBy"])
                .expect_err("groupBy")
                .param,
            "groupBy"
        );
    }

    #[test]
    fn a_full_query() {
        let got = q(
            &[
                ("since", "1d"),
                ("from", "app=web"),
                ("to", "shop/db-0"),
                ("verdict", "would-deny"),
                ("port", "5432"),
                ("protocol", "tcp"),
                ("node", "n1"),
                ("limit", "10"),
            ],
            &["limit"],
        )
        .expect("parses");
        assert_eq!(got.limit, 10);
        assert_eq!(
            got.filter.since.map(|t| t.to_string()),
            Some("2026-06-14T12:00:00Z".into())
        );
        assert_eq!(got.filter.verdict, Some(VerdictFilter::WouldDeny));
        assert_eq!(got.filter.port, Some(5432));
        assert_eq!(got.filter.node.as_deref(), Some("n1"));
        assert!(got.group_by.is_none());
    }
}
