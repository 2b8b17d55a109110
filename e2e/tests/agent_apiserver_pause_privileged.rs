//! Issue 15, defect 2, the agent's half: its single loop used to await its
//! status write before attaching new veths and draining the ring buffer,
//! so a slow API server stopped new pods from being guarded. Here the API
//! server is paused (SIGSTOP: connections accepted, nothing answered, the
//! way a stalled server looks, unlike a dead one) for the whole test, and
//! the agent must still attach to a veth that appears and still write the
//! flows it sees. (The operator's half, leadership that ends when the
//! Lease cannot be renewed in time, is in operator_privileged.rs.)
//!
//! ```text
//!  node-1: prod/web-1 ──TCP 8080──► prod/api-1     (+ a veth made while paused)
//! ```

mod support;

use std::time::Duration;

use bulkhead_e2e::lab::wait_until;
use bulkhead_e2e::traffic::Proto;
use bulkhead_e2e::{kubelet, LabSpec, Workload};
use support::*;

/// How long the agent gets, with the API server paused, for what it does
/// every loop (attach, drain): a few poll intervals and flow windows, well
/// below the API client's timeouts, which a blocked loop would wait out.
const WITHOUT_API: Duration = Duration::from_secs(8);

#[test]
fn defect_2_a_paused_api_server_delays_neither_attaching_new_veths_nor_draining_flows() {
    let mut spec = LabSpec::new(1);
    spec.collector = false;
    spec.listen = vec![8080];
    spec.namespaces = vec![("prod".into(), kubelet::labels([("env", "prod")]))];
    spec.workloads = vec![
        Workload::new("prod", "web-1", "node-1", &[("app", "web")]),
        Workload::new("prod", "api-1", "node-1", &[("app", "api")]),
    ];
    let mut lab = start(spec);
    ok(lab.sync_agents(SETTLE), "the agent programs its rule map");
    let api = ok(lab.pod("prod", "api-1"), "pod").address.to_string();
    let flow_log = ok(lab.agent_flow_log("node-1"), "flow log");
    let flows_to_api = || {
        std::fs::read_to_string(&flow_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&api) && l.contains("8080"))
            .count()
    };

    let paused = Paused::api_server(&lab);

    // A veth appears while nothing answers: the agent attaches both hooks.
    let net = ok(
        lab.add_pod_network("node-1"),
        "a pod's veth while the API server is paused",
    );
    ok(
        wait_until("the agent to attach to the new veth", WITHOUT_API, || {
            Ok((lab.agent_links("node-1", &net.veth)? == 2).then_some(()))
        }),
        "attaching with the API server paused",
    );

    // Traffic while nothing answers: its flows reach the flow log.
    let before = flows_to_api();
    let result = ok(
        lab.probe("prod/web-1", "prod/api-1", Proto::Tcp, 8080),
        "probing",
    );
    assert!(
        result.answered,
        "web-1 -> api-1 TCP 8080 (no policy): {result:?}"
    );
    ok(
        wait_until("the flow to be written", WITHOUT_API, || {
            Ok((flows_to_api() > before).then_some(()))
        }),
        "draining flows with the API server paused",
    );

    drop(paused);
    // Resumed: the agent is alive and caught up.
    ok(lab.sync_agents(SETTLE), "the agent after the pause");
}
