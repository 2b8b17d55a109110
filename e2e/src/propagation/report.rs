//! The table: for each kind of change and each stage, p50, p90, p99 and max
//! over the trials, one column group per lab, the baseline first.

use std::fmt::Write;

use super::{Change, LabResult, Trial};

/// The nearest-rank percentile of `values` (sorted or not); `None` when empty.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

type Stage = (&'static str, fn(&Trial) -> Option<u64>);

const STAGES: [Stage; 8] = [
    ("kubectl returned", |t| Some(t.applied)),
    ("committed (watch)", |t| t.committed),
    ("published (watch)", |t| t.published),
    ("programmed (agent status)", |t| t.programmed),
    ("enforced (first packet)", |t| t.enforced),
    ("  of which to denied", |t| {
        t.enforced.filter(|_| !t.to_allowed)
    }),
    ("  of which to allowed", |t| {
        t.enforced.filter(|_| t.to_allowed)
    }),
    // The part Bulkhead owns: from the API server's commit to the packet.
    ("enforced - committed", |t| {
        Some(t.enforced?.saturating_sub(t.committed?))
    }),
];

const LABEL_WIDTH: usize = 30;
const COLUMN: usize = 8;

/// The whole report as text.
pub fn table(labs: &[LabResult], interval_ms: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Propagation latency, ms from just before kubectl starts (nearest-rank percentiles; \
         prober resolution {interval_ms} ms)"
    );
    let _ = write!(out, "{:LABEL_WIDTH$}", "");
    for lab in labs {
        let title = format!("{} nodes x {} pods", lab.nodes, lab.pods_per_node);
        let _ = write!(out, " | {title:<w$}", w = COLUMN * 4 + 4);
    }
    out.push('\n');
    let _ = write!(out, "{:LABEL_WIDTH$}", "");
    for _ in labs {
        let _ = write!(out, " | ");
        for head in ["p50", "p90", "p99", "max"] {
            let _ = write!(out, "{head:>COLUMN$}");
        }
        let _ = write!(out, "{:>4}", "n");
    }
    out.push('\n');
    for (change, title) in [
        (Change::Policy, "policy change (kubectl apply)"),
        (Change::Label, "pod label change (kubectl label)"),
    ] {
        let _ = writeln!(out, "{title}");
        for (name, stage) in STAGES {
            let _ = write!(out, "  {name:w$}", w = LABEL_WIDTH - 2);
            for lab in labs {
                let values: Vec<u64> = lab
                    .trials
                    .iter()
                    .filter(|t| t.change == change)
                    .filter_map(stage)
                    .collect();
                let _ = write!(out, " | ");
                for p in [50.0, 90.0, 99.0, 100.0] {
                    let cell = percentile(&values, p)
                        .map_or("-".into(), |v| format!("{:.1}", v as f64 / 1e6));
                    let _ = write!(out, "{cell:>COLUMN$}");
                }
                let _ = write!(out, "{:>4}", values.len());
            }
            out.push('\n');
        }
        let _ = write!(out, "  {:w$}", "trials not settled", w = LABEL_WIDTH - 2);
        for lab in labs {
            let missed = lab
                .trials
                .iter()
                .filter(|t| t.change == change && t.enforced.is_none())
                .count();
            let _ = write!(out, " | {missed:<w$}", w = COLUMN * 4 + 4);
        }
        out.push('\n');
    }
    let _ = write!(out, "{:LABEL_WIDTH$}", "lab start-up (s)");
    for lab in labs {
        let cell = format!("{:.1}", lab.startup.as_secs_f64());
        let _ = write!(out, " | {cell:<w$}", w = COLUMN * 4 + 4);
    }
    out.push('\n');
    let _ = write!(out, "{:LABEL_WIDTH$}", "requests sent / unanswered");
    for lab in labs {
        let cell = format!("{} / {}", lab.probes, lab.unanswered);
        let _ = write!(out, " | {cell:<w$}", w = COLUMN * 4 + 4);
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=60).collect();
        assert_eq!(percentile(&v, 50.0), Some(30));
        assert_eq!(percentile(&v, 90.0), Some(54));
        assert_eq!(percentile(&v, 99.0), Some(60));
        assert_eq!(percentile(&v, 100.0), Some(60));
        assert_eq!(percentile(&[7], 0.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
