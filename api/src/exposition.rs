//! The two Prometheus exposition formats every Bulkhead `/metrics` serves.
//!
//! `prometheus-client` writes OpenMetrics, which Prometheus asks for in its
//! `Accept` header. Clients that ask for nothing in particular (curl,
//! `promtool check metrics`, older scrapers) get the classic text format
//! 0.0.4, in which a counter's HELP and TYPE name the `_total` series and
//! there is no `# EOF`. [`negotiate`] picks by the `Accept` header.

/// `Content-Type` of OpenMetrics 1.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic text format.
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The body and content type for a request with this `Accept` header.
pub fn negotiate(openmetrics: String, accept: Option<&str>) -> (String, &'static str) {
    if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        (openmetrics, OPENMETRICS)
    } else {
        (to_text(&openmetrics), TEXT)
    }
}

/// OpenMetrics text as the classic text format 0.0.4.
pub fn to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // HELP comes before TYPE; a counter's HELP must be renamed once TYPE says so.
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = pending_help.take() {
                push_help(&mut out, name, text);
            }
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (series, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                "info" => (format!("{name}_info"), "gauge"),
                _ => (name.to_string(), "untyped"),
            };
            let help = pending_help.take().filter(|(n, _)| *n == name);
            if let Some((_, text)) = help {
                push_help(&mut out, &series, text);
            }
            out.push_str(&format!("# TYPE {series} {kind}\n"));
            continue;
        }
        if let Some((name, text)) = pending_help.take() {
            push_help(&mut out, name, text);
        }
        if line.starts_with('#') {
            continue;
        }
        // Samples: drop exemplars and `_created` series, which 0.0.4 has not.
        let sample = line.split(" # ").next().unwrap_or(line);
        let series = sample.split(['{', ' ']).next().unwrap_or("");
        if series.ends_with("_created") {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    if let Some((name, text)) = pending_help {
        push_help(&mut out, name, text);
    }
    out
}

fn push_help(out: &mut String, name: &str, text: &str) {
    out.push_str(&format!("# HELP {name} {text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = "# HELP bulkhead_agent_flows Connections seen.\n\
# TYPE bulkhead_agent_flows counter\n\
bulkhead_agent_flows_total{verdict=\"allow\"} 3\n\
bulkhead_agent_flows_created{verdict=\"allow\"} 1.7e9\n\
# HELP bulkhead_agent_generation The generation.\n\
# TYPE bulkhead_agent_generation gauge\n\
bulkhead_agent_generation 7\n\
# HELP bulkhead_seconds Durations.\n\
# TYPE bulkhead_seconds histogram\n\
# UNIT bulkhead_seconds seconds\n\
bulkhead_seconds_bucket{le=\"+Inf\"} 1 # {trace=\"x\"} 0.5\n\
bulkhead_seconds_sum 0.5\n\
bulkhead_seconds_count 1\n\
# EOF\n";

    #[test]
    fn counters_are_named_by_their_total_series_and_the_rest_stays() {
        let text = to_text(OM);
        assert_eq!(
            text,
            "# HELP bulkhead_agent_flows_total Connections seen.\n\
# TYPE bulkhead_agent_flows_total counter\n\
bulkhead_agent_flows_total{verdict=\"allow\"} 3\n\
# HELP bulkhead_agent_generation The generation.\n\
# TYPE bulkhead_agent_generation gauge\n\
bulkhead_agent_generation 7\n\
# HELP bulkhead_seconds Durations.\n\
# TYPE bulkhead_seconds histogram\n\
bulkhead_seconds_bucket{le=\"+Inf\"} 1\n\
bulkhead_seconds_sum 0.5\n\
bulkhead_seconds_count 1\n"
        );
    }

    #[test]
    fn prometheus_gets_openmetrics_and_everyone_else_text() {
        let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
        assert_eq!(
            negotiate(OM.into(), Some(accept)),
            (OM.to_string(), OPENMETRICS)
        );
        assert_eq!(negotiate(OM.into(), None).1, TEXT);
        assert_eq!(negotiate(OM.into(), Some("*/*")).1, TEXT);
    }
}
