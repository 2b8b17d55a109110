//! The SIEM line formats of an `alert/v1` alert (`docs/integrations.md`):
//! RFC 5424 with structured data, and CEF carried in an RFC 5424 line.
//! Pure functions: the transports frame and send what these return.

use std::fmt::Write as _;
use std::net::IpAddr;

use bulkhead_insight::detect::{Alert, AlertEndpoint};

/// The structured-data id. 32473 is the Private Enterprise Number RFC 5612
/// reserves for documentation and examples; Bulkhead has none of its own,
/// and the id is versioned by the `schema` parameter inside it.
pub const SD_ID: &str = "bulkhead@32473";
/// RFC 5424 facility 4: security/authorization messages.
pub const FACILITY: u8 = 4;
pub const APP_NAME: &str = "bulkhead";

/// Which line a syslog destination gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// RFC 5424, the alert's fields as SD-PARAMs of [`SD_ID`], the summary as MSG.
    Rfc5424,
    /// RFC 5424 header, no structured data, a CEF:0 event as MSG.
    Cef,
}

/// `"`, `\` and `]` are the characters RFC 5424 §6.3.3 says to escape.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// HOSTNAME and the like: printable US-ASCII, no spaces, at most `max`.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

fn ports(a: &Alert) -> String {
    let p: Vec<String> = a.ports.iter().map(u16::to_string).collect();
    p.join(",")
}

fn labels(e: &AlertEndpoint) -> String {
    let l: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.join(",")
}

/// RFC 5424 TIMESTAMP: UTC, microseconds (the most it allows).
fn timestamp(t: jiff::Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_microsecond().unsigned_abs()
    )
}

fn header(a: &Alert, hostname: &str) -> String {
    let pri = u16::from(FACILITY) * 8 + u16::from(a.severity.syslog());
    format!(
        "<{pri}>1 {} {} {APP_NAME} - {}",
        timestamp(a.end),
        header_field(hostname, 255),
        header_field(a.detector.as_str(), 32),
    )
}

/// The SD-PARAMs, in this order; empty values are left out.
fn params(a: &Alert) -> Vec<(&'static str, String)> {
    let mut p = vec![
        ("schema", a.schema.clone()),
        ("id", a.id.clone()),
        ("detector", a.detector.as_str().to_string()),
        ("severity", a.severity.as_str().to_string()),
        ("start", a.start.to_string()),
        ("end", a.end.to_string()),
        ("node", a.node.clone()),
        ("src", a.source.address.to_string()),
        ("srcIdentity", a.source.identity.to_string()),
        ("srcName", a.source.name.clone().unwrap_or_default()),
        ("srcLabels", labels(&a.source)),
    ];
    if let Some(d) = &a.destination {
        p.push(("dst", d.address.to_string()));
        p.push(("dstIdentity", d.identity.to_string()));
        p.push(("dstName", d.name.clone().unwrap_or_default()));
        p.push(("dstLabels", labels(d)));
    }
    p.extend([
        ("proto", format!("{:?}", a.protocol).to_uppercase()),
        ("ports", ports(a)),
        ("destinations", a.destinations.to_string()),
        ("flows", a.flows.to_string()),
        ("verdict", format!("{:?}", a.verdict).to_lowercase()),
    ]);
    p.retain(|(_, v)| !v.is_empty());
    p
}

/// One RFC 5424 line (without framing or trailing newline).
pub fn rfc5424(a: &Alert, hostname: &str) -> String {
    let mut line = header(a, hostname);
    let _ = write!(line, " [{SD_ID}");
    for (k, v) in params(a) {
        let _ = write!(line, " {k}=\"{}\"", sd_escape(&v));
    }
    let _ = write!(line, "] {}", a.summary);
    line
}

/// CEF header fields escape `|` and `\`.
fn cef_header(v: &str) -> String {
    v.replace('\\', "\\\\").replace('|', "\\|")
}

/// CEF extension values escape `\`, `=` and line breaks.
fn cef_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// The CEF:0 event alone (what the CEF line carries as MSG).
pub fn cef_event(a: &Alert) -> String {
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", a.end.as_millisecond().to_string()),
        ("externalId", a.id.clone()),
        ("cat", a.detector.as_str().to_string()),
        ("act", format!("{:?}", a.verdict).to_lowercase()),
        ("proto", format!("{:?}", a.protocol).to_uppercase()),
        ("cnt", a.flows.to_string()),
        ("dvchost", a.node.clone()),
    ];
    let mut addr = |which: &str, ip: IpAddr, e: &AlertEndpoint| {
        // CEF's src/dst are IPv4 only; IPv6 goes in the custom v6 fields.
        match (which, ip) {
            ("src", IpAddr::V4(_)) => ext.push(("src", ip.to_string())),
            ("dst", IpAddr::V4(_)) => ext.push(("dst", ip.to_string())),
            ("src", IpAddr::V6(_)) => {
                ext.push(("c6a2", ip.to_string()));
                ext.push(("c6a2Label", "Source IPv6 Address".into()));
            }
            _ => {
                ext.push(("c6a3", ip.to_string()));
                ext.push(("c6a3Label", "Destination IPv6 Address".into()));
            }
        }
        let host_key = if which == "src" { "shost" } else { "dhost" };
        if let Some(n) = &e.name {
            ext.push((host_key, n.clone()));
        }
    };
    addr("src", a.source.address, &a.source);
    if let Some(d) = &a.destination {
        addr("dst", d.address, d);
    }
    if a.ports.len() == 1 {
        ext.push(("dpt", a.ports[0].to_string()));
    }
    ext.extend([
        ("cs1Label", "ports".to_string()),
        ("cs1", ports(a)),
        ("cs2Label", "sourceLabels".to_string()),
        ("cs2", labels(&a.source)),
        ("cs3Label", "destinationLabels".to_string()),
        (
            "cs3",
            a.destination.as_ref().map(labels).unwrap_or_default(),
        ),
        ("cn1Label", "destinations".to_string()),
        ("cn1", a.destinations.to_string()),
        ("msg", a.summary.clone()),
    ]);
    let ext: Vec<String> = ext
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "CEF:0|Bulkhead|bulkhead-collector|{}|{}|{}|{}|{}",
        cef_header(env!("CARGO_PKG_VERSION")),
        cef_header(a.detector.as_str()),
        cef_header(a.detector.title()),
        a.severity.cef(),
        ext.join(" ")
    )
}

/// One CEF line: RFC 5424 header, `-` for structured data, the event as MSG.
pub fn cef(a: &Alert, hostname: &str) -> String {
    format!("{} - {}", header(a, hostname), cef_event(a))
}

pub fn line(format: LineFormat, a: &Alert, hostname: &str) -> String {
    match format {
        LineFormat::Rfc5424 => rfc5424(a, hostname),
        LineFormat::Cef => cef(a, hostname),
    }
}
