//! `simulate --to service:namespace/name`: a flow through a Service is
//! judged on the backend kube-proxy picks, so the answer is one verdict per
//! backend its EndpointSlices list (each judged as if sent to it directly).
//! `--port` is the backends' (target) port, as it is in rules.

use std::fmt::Write;

use bulkhead_policy::service::{Backend, ServiceRef};
use bulkhead_policy::snapshot::PodKey;
use bulkhead_policy::{FlowEnd, FlowQuery, Verdict};
use serde::Serialize;

use crate::args::{Format, SimulateArgs};
use crate::endpoint::{resolve, resolve_pod};
use crate::error::{Error, Result};
use crate::load::Inventory;
use crate::ports;
use crate::simulate::{report, text, Report};
use crate::{to_json, Compiled};

/// The prefix that makes `--to` a Service.
pub const PREFIX: &str = "service:";

/// The answer through a Service, as `-o json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceReport<'a> {
    /// `namespace/name`.
    pub service: String,
    /// `allow` when every backend is reached, `deny` when none is, else `mixed`.
    pub verdict: &'static str,
    /// One report per backend.
    pub backends: Vec<Report<'a>>,
}

/// Runs `simulate` with `--to service:...`.
pub fn run(args: &SimulateArgs, compiled: &Compiled, from: &str, to: &str) -> Result<String> {
    let inventory = &compiled.inventory;
    let service = parse("--to", to)?;
    let from = resolve("--from", from, inventory)?;
    let flow = ports::single(args)?;
    let ends = backends(&service, to, inventory)?;
    let mut results = Vec::with_capacity(ends.len());
    for end in ends {
        let query = FlowQuery {
            from: from.clone(),
            to: end,
            protocol: flow.protocol,
            port: flow.port,
        };
        let result = bulkhead_policy::simulate(&compiled.output, &query)?;
        results.push((query, result));
    }
    let reports: Vec<Report<'_>> = (results.iter())
        .map(|(q, r)| report(q, r, &compiled.output))
        .collect();
    let allowed = reports
        .iter()
        .filter(|r| r.result.verdict == Verdict::Allow);
    let verdict = match allowed.count() {
        0 => "deny",
        n if n == reports.len() => "allow",
        _ => "mixed",
    };
    let answer = ServiceReport {
        service: service.to_string(),
        verdict,
        backends: reports,
    };
    match args.output {
        Format::Json => to_json(&answer),
        Format::Text => {
            let mut s = format!(
                "Service {} ({} backend{}, each judged as the packet kube-proxy sends it): {}\n",
                answer.service,
                answer.backends.len(),
                if answer.backends.len() == 1 { "" } else { "s" },
                verdict.to_uppercase()
            );
            for r in &answer.backends {
                let _ = write!(s, "{}", text(r, &compiled.output));
            }
            Ok(s)
        }
    }
}

fn parse(flag: &'static str, text: &str) -> Result<ServiceRef> {
    let fail = |message: &str| Error::Endpoint {
        flag,
        value: text.to_string(),
        message: message.to_string(),
    };
    let rest = text.trim().strip_prefix(PREFIX).unwrap_or(text);
    match rest.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ServiceRef {
                namespace: ns.to_string(),
                name: name.to_string(),
            })
        }
        _ => Err(fail("a Service is written service:namespace/name")),
    }
}

/// The flow ends of the Service's backends, from the EndpointSlices in the input.
fn backends(service: &ServiceRef, text: &str, inventory: &Inventory) -> Result<Vec<FlowEnd>> {
    let fail = |message: String| Error::Endpoint {
        flag: "--to",
        value: text.to_string(),
        message,
    };
    let listed: Vec<&Backend> = (inventory.snapshot.endpoint_slices.values())
        .filter(|s| s.service.as_ref() == Some(service))
        .flat_map(|s| &s.endpoints)
        .collect();
    if listed.is_empty() {
        return Err(fail(format!(
            "no EndpointSlice in the input lists a backend of Service {service}: add them with \
             kubectl get endpointslices -n {} -l kubernetes.io/service-name={} -o yaml",
            service.namespace, service.name
        )));
    }
    let mut ends = Vec::new();
    for backend in listed {
        match &backend.pod {
            Some(key) if inventory.snapshot.pods.contains_key(key) => {
                ends.push(resolve_pod(key, inventory).map_err(&fail)?);
            }
            Some(key) if backend.addresses.is_empty() => {
                return Err(fail(missing_pod(key)));
            }
            _ => ends.extend(backend.addresses.iter().map(|a| FlowEnd::Address(*a))),
        }
    }
    ends.dedup();
    Ok(ends)
}

fn missing_pod(key: &PodKey) -> String {
    format!("its EndpointSlice names pod {key}, which is not in the input and has no address")
}
