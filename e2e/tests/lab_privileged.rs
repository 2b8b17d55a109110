//! The lab itself (root needed): nodes and pods as network namespaces that
//! reach each other on one node and across nodes, registered in the API
//! server as a kubelet and a CNI plugin would; `bulkhead-lab up` leaves it
//! all running and `down` removes exactly it.

mod support;

use std::path::Path;

use bulkhead_e2e::lab::{self, Agents, Probe};
use bulkhead_e2e::{netns, Kubectl, LabSpec, Proto, StateDir, Workload};
use support::*;

/// Whether `from` reaches `to` on port 8080 over both IPv4 and IPv6.
fn reachable(lab: &bulkhead_e2e::Lab, from: &str, to: &str, proto: Proto) -> bool {
    let v4 = Probe {
        from: from.into(),
        to: to.into(),
        proto,
        port: 8080,
        v6: false,
    };
    let results = ok(
        lab.probe_all(&[v4.clone(), v4.v6()]),
        &format!("probing {from} -> {to}"),
    );
    results.iter().all(|r| r.answered)
}

#[test]
fn pods_reach_each_other_on_a_node_and_across_nodes_and_are_registered() {
    let mut spec = LabSpec::new(2);
    spec.operators.clear();
    spec.agents = Agents::Off;
    spec.namespaces = vec![("shop".into(), Default::default())];
    spec.workloads = vec![
        Workload::new("shop", "web-1", "node-1", &[("app", "web")]),
        Workload::new("shop", "web-2", "node-1", &[("app", "web")]),
        Workload::new("shop", "db", "node-2", &[("app", "db")]),
    ];
    let mut lab = start(spec);
    for pod in ["web-1", "web-2", "db"] {
        ok(
            lab.listen("shop", pod, &[8080], &[8080]),
            "starting a listener",
        );
    }
    for (from, to) in [
        ("shop/web-1", "shop/web-2"),
        ("shop/web-2", "shop/web-1"),
        ("shop/web-1", "shop/db"),
        ("shop/db", "shop/web-2"),
    ] {
        for proto in [Proto::Tcp, Proto::Udp] {
            assert!(
                reachable(&lab, from, to, proto),
                "{from} -> {to} over {proto:?}"
            );
        }
    }

    // As the API server sees them: Nodes with their addresses, Pods Running
    // on their node with the address their namespace has.
    let kubectl = lab.kubectl();
    let nodes = ok(kubectl.json(&["get", "nodes"]), "listing nodes");
    for node in nodes["items"].as_array().into_iter().flatten() {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let net = ok(lab.node(name), "the node's network");
        assert_eq!(node["status"]["addresses"][0]["type"], "InternalIP");
        assert_eq!(
            node["status"]["addresses"][0]["address"],
            net.address.to_string()
        );
        assert_eq!(
            node["status"]["addresses"][1]["address"],
            net.address6.to_string()
        );
    }
    for pod in lab.pods() {
        let object = ok(
            kubectl.json(&["get", "pod", "-n", &pod.namespace, &pod.name]),
            "getting a pod",
        );
        assert_eq!(object["spec"]["nodeName"], pod.node.as_str());
        assert_eq!(object["status"]["phase"], "Running");
        assert_eq!(object["status"]["podIP"], pod.address.to_string());
        assert_eq!(object["status"]["podIPs"][0]["ip"], pod.address.to_string());
        assert_eq!(
            object["status"]["podIPs"][1]["ip"],
            pod.address6.to_string()
        );
    }

    // Deleting a pod removes its object and its namespace; a new pod reuses
    // the free address.
    let gone = ok(lab.pod("shop", "web-2"), "pod").clone();
    ok(lab.delete_pod("shop", "web-2"), "deleting a pod");
    assert!(!netns::netns_exists(&gone.netns));
    let get = ok(
        kubectl.output(&["get", "pod", "-n", "shop", "web-2"], None),
        "get",
    );
    assert!(!get.success, "the pod object must be gone");
    let again = ok(
        lab.add_pod(&Workload::new("shop", "web-3", "node-1", &[("app", "web")])),
        "adding a pod",
    );
    assert_eq!(again.address, gone.address);
    ok(lab.listen("shop", "web-3", &[8080], &[]), "listener");
    assert!(reachable(&lab, "shop/db", "shop/web-3", Proto::Tcp));

    // Dropping the lab removes every namespace and the bridge.
    let topology = lab.topology().clone();
    drop(lab);
    for node in &topology.nodes {
        assert!(
            !netns::netns_exists(&node.netns),
            "{} left behind",
            node.netns
        );
        for pod in &node.pods {
            assert!(
                !netns::netns_exists(&pod.netns),
                "{} left behind",
                pod.netns
            );
        }
        assert!(
            !netns::link_exists(&node.uplink),
            "{} left behind",
            node.uplink
        );
    }
    assert!(
        !netns::link_exists(&topology.bridge),
        "{} left behind",
        topology.bridge
    );
}

/// Runs `bulkhead-lab down` for a lab a failed assertion left behind.
struct DownOnDrop(std::path::PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = lab::down(&StateDir::at(&self.0));
        }
    }
}

fn lab_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_bulkhead-lab"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running bulkhead-lab: {e}"))
}

fn process_gone(pid: i32) -> bool {
    // Gone, or a zombie waiting for its parent to reap it.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn lab_up_leaves_the_whole_lab_running_and_down_removes_exactly_it() {
    require_root();
    let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = parent.path().join("lab");
    let _cleanup = DownOnDrop(dir.clone());

    let up = lab_cli(
        &dir,
        &["up", "--nodes", "2", "--pods", "2", "--agents", "none"],
    );
    assert!(
        up.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&up.stderr)
    );

    // `up` has exited; what it started still runs.
    let state = StateDir::at(&dir);
    let record = state.read_record().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&String> = record.kubeconfigs.keys().collect();
    assert_eq!(names, ["admin", "agent-node-1", "agent-node-2", "operator"]);
    let parts = record
        .parts
        .clone()
        .expect("lab.json records the lab's parts");
    let topology = parts.topology.clone().expect("and its topology");
    assert_eq!(topology.nodes.len(), 2);
    assert_eq!(parts.pods.len(), 4, "2 pods on each of 2 nodes");
    for node in &topology.nodes {
        assert!(netns::netns_exists(&node.netns), "{}", node.netns);
    }
    let status = lab::status(&state).unwrap_or_else(|e| panic!("{e}"));
    let running: Vec<(&str, bool)> = status
        .processes
        .iter()
        .map(|p| (p.name.as_str(), p.running))
        .collect();
    let (listeners, others): (Vec<_>, Vec<_>) = running
        .into_iter()
        .partition(|(name, _)| name.starts_with("listen-"));
    assert_eq!(
        others,
        [
            ("etcd", true),
            ("kube-apiserver", true),
            ("collector", true),
            ("operator-a", true)
        ]
    );
    assert_eq!(listeners.len(), 4, "a listener in every pod: {listeners:?}");
    assert!(listeners.iter().all(|(_, running)| *running));
    let cli_status = lab_cli(&dir, &["status"]);
    assert!(
        cli_status.status.success(),
        "{}",
        String::from_utf8_lossy(&cli_status.stdout)
    );

    // The operator publishes a rule map for every node.
    let admin = Kubectl::new(&record.kubectl, &record.kubeconfigs["admin"]);
    let maps = eventually("a NodeRuleMap per node", || {
        let out = admin.run(&["get", "noderulemaps", "-o", "name"])?;
        Ok((out.lines().count() == 2).then_some(out))
    });
    assert!(maps.contains("noderulemap.bulkhead.dev/node-1"), "{maps}");

    let down = lab_cli(&dir, &["down"]);
    assert!(
        down.status.success(),
        "down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!dir.exists(), "down must remove the state directory");
    for p in &status.processes {
        assert!(
            process_gone(p.pid),
            "{} (pid {}) still runs after down",
            p.name,
            p.pid
        );
    }
    for node in &topology.nodes {
        assert!(
            !netns::netns_exists(&node.netns),
            "{} left behind",
            node.netns
        );
        for pod in &node.pods {
            assert!(
                !netns::netns_exists(&pod.netns),
                "{} left behind",
                pod.netns
            );
        }
    }
    assert!(
        !netns::link_exists(&topology.bridge),
        "{} left behind",
        topology.bridge
    );
    assert!(
        parent.path().exists(),
        "down must not remove more than the lab's directory"
    );
}

#[test]
fn prune_takes_down_a_crashed_lab_and_leaves_a_live_one() {
    require_root();
    let parent = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (live, crashed) = (parent.path().join("live"), parent.path().join("crashed"));
    let _cleanup = (DownOnDrop(live.clone()), DownOnDrop(crashed.clone()));
    for dir in [&live, &crashed] {
        let up = lab_cli(
            dir,
            &[
                "up",
                "--nodes",
                "1",
                "--pods",
                "1",
                "--agents",
                "none",
                "--no-operator",
            ],
        );
        assert!(
            up.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
    }
    let topology = |dir: &Path| {
        StateDir::at(dir)
            .read_record()
            .ok()
            .and_then(|r| r.parts)
            .and_then(|p| p.topology)
            .expect("a recorded topology")
    };
    let (live_net, crashed_net) = (topology(&live), topology(&crashed));

    // A crash: every process of the lab is killed, nothing is cleaned up.
    let processes = lab::status(&StateDir::at(&crashed))
        .unwrap_or_else(|e| panic!("{e}"))
        .processes;
    for p in &processes {
        netns::run("kill", &["-KILL", &p.pid.to_string()]).unwrap_or_else(|e| panic!("{e}"));
    }
    let wait = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes.iter().all(|p| process_gone(p.pid)) && std::time::Instant::now() < wait {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let prune = lab_cli(parent.path(), &["prune"]);
    assert!(
        prune.status.success(),
        "prune failed: {}",
        String::from_utf8_lossy(&prune.stderr)
    );
    assert!(
        !crashed.exists(),
        "prune must take down the crashed lab's directory"
    );
    assert!(
        !netns::link_exists(&crashed_net.bridge),
        "{} left behind",
        crashed_net.bridge
    );
    for node in &crashed_net.nodes {
        assert!(
            !netns::netns_exists(&node.netns),
            "{} left behind",
            node.netns
        );
    }
    assert!(live.exists(), "prune must leave a live lab alone");
    assert!(netns::link_exists(&live_net.bridge));
    let status = lab_cli(&live, &["status"]);
    assert!(
        status.status.success(),
        "the live lab must still run: {}",
        String::from_utf8_lossy(&status.stdout)
    );
}
