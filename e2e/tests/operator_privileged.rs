//! The real operator against the real API server, in the lab (root needed):
//! what people apply with kubectl becomes per-node rule maps and identity
//! shards, status and Events; pods, labels, mappings and policies change
//! them; identities survive restarts; two replicas elect one writer; the
//! operator catches up after its own outage and after the API server's.
//!
//! No agents run here (the agent's half is in the packet tests); where a
//! test needs a node to have programmed its map, the node's agent identity
//! writes the rule map's status, as the agent would.
//!
//! ```text
//!  node-1: prod/web-1 (web)   dev/api-1 (api)
//!  node-2: prod/api-2 (api)   prod/db-2 (db)
//!  node-3: dev/web-3 (web)    prod/web-3 (web)
//!  LabelMapping: app from the pod, env from the namespace (prod, dev)
//! ```

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_api::condition::{types, ConditionStatus};
use bulkhead_api::policy::{Action, EnforcementMode, Protocol};
use bulkhead_api::rule_map::{CompiledRule, Direction, PortRange};
use bulkhead_api::{IdentityMap, Labels, NodeRuleMap, SegmentationPolicy};
use bulkhead_e2e::lab::Agents;
use bulkhead_e2e::observe::{self, Directory};
use bulkhead_e2e::{kubelet, Lab, LabSpec, Workload};
use support::*;

/// app from the pod, env from its namespace.
const MAPPING: &str = include_str!("../fixtures/workloads-mapping.yaml");

/// The mapping with one more rule: pods in prod namespaces are tier gold.
const MAPPING_WITH_TIER: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: workloads}
spec:
  rules:
  - name: app-and-env
    match: {pods: {}}
    copyLabels:
    - {key: app, fromLabel: app}
    - {key: env, fromLabel: env, source: namespace}
  - name: gold
    match: {pods: {namespaceSelector: {matchLabels: {env: prod}}}}
    labels: {tier: gold}
"#;

fn prod_api_policy(port: u16) -> String {
    format!(
        r#"
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {{name: prod-api}}
spec:
  scope: {{selector: {{matchLabels: {{app: api, env: prod}}}}}}
  enforcement: full
  ingress:
  - name: from-prod-web
    action: allow
    peers: [{{selector: {{matchLabels: {{app: web, env: prod}}}}}}]
    ports: [{{protocol: TCP, port: {port}}}]
"#
    )
}

fn spec() -> LabSpec {
    let mut spec = LabSpec::new(3);
    spec.agents = Agents::Off;
    spec.namespaces = vec![
        ("prod".into(), kubelet::labels([("env", "prod")])),
        ("dev".into(), kubelet::labels([("env", "dev")])),
    ];
    spec.workloads = vec![
        Workload::new("prod", "web-1", "node-1", &[("app", "web")]),
        Workload::new("dev", "api-1", "node-1", &[("app", "api")]),
        Workload::new("prod", "api-2", "node-2", &[("app", "api")]),
        Workload::new("prod", "db-2", "node-2", &[("app", "db")]),
        Workload::new("dev", "web-3", "node-3", &[("app", "web")]),
        Workload::new("prod", "web-3", "node-3", &[("app", "web")]),
    ];
    spec
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    kubelet::labels(pairs.iter().copied())
}

fn directory(lab: &Lab) -> bulkhead_e2e::Result<Directory> {
    Ok(Directory::from_shards(
        observe::identity_maps(&lab.kubectl())?.values(),
    ))
}

/// Waits until `node`'s rule map satisfies `check` (given the identity
/// directory of the same moment); returns it.
fn rule_map_where(
    lab: &Lab,
    node: &str,
    what: &str,
    mut check: impl FnMut(&NodeRuleMap, &Directory) -> bool,
) -> NodeRuleMap {
    eventually(&format!("NodeRuleMap {node}: {what}"), || {
        let dir = directory(lab)?;
        Ok(observe::rule_map(&lab.kubectl(), node)?.filter(|m| check(m, &dir)))
    })
}

fn policy_where(
    lab: &Lab,
    what: &str,
    mut check: impl FnMut(&SegmentationPolicy) -> bool,
) -> SegmentationPolicy {
    eventually(&format!("SegmentationPolicy prod-api: {what}"), || {
        Ok(observe::policy(&lab.kubectl(), "prod-api")?.filter(|p| check(p)))
    })
}

/// The endpoint's (identity labels, mode) in a rule map.
fn endpoint<'a>(
    map: &'a NodeRuleMap,
    name: &str,
) -> Option<&'a bulkhead_api::rule_map::LocalEndpoint> {
    map.spec.endpoints.iter().find(|e| e.name == name)
}

fn has_labels(dir: &Directory, id: u32, want: &[(&str, &str)]) -> bool {
    dir.labels.get(&id) == Some(&labels(want))
}

fn prod_api_rules(map: &NodeRuleMap) -> Vec<&CompiledRule> {
    map.spec
        .rules
        .iter()
        .filter(|r| r.policy == "prod-api")
        .collect()
}

/// The one prod-api rule of a map, resolved: (subjects, peers, ports) as labels.
fn the_prod_api_rule(
    map: &NodeRuleMap,
    dir: &Directory,
) -> Option<(Vec<String>, Vec<String>, Vec<PortRange>)> {
    let rules = prod_api_rules(map);
    let [rule] = rules.as_slice() else {
        return None;
    };
    if rule.direction != Direction::Ingress || rule.action != Action::Allow || rule.any_peer {
        return None;
    }
    let names = |ids: &[u32]| {
        let mut v: Vec<String> = ids.iter().map(|i| dir.describe(*i)).collect();
        v.sort();
        v
    };
    Some((
        names(&rule.subjects),
        names(&rule.peers),
        rule.ports.clone(),
    ))
}

fn tcp(port: u16) -> Vec<PortRange> {
    vec![PortRange {
        protocol: Protocol::Tcp,
        first: port,
        last: port,
    }]
}

fn condition(policy: &SegmentationPolicy, type_: &str) -> Option<ConditionStatus> {
    policy
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status)
}

/// Writes `node`'s rule map status as its agent would after programming it,
/// with the agent's own credentials.
fn agent_programs(lab: &mut Lab, node: &str) {
    let generation = ok(
        observe::rule_map(&lab.kubectl(), node),
        "reading the rule map",
    )
    .and_then(|m| m.metadata.generation)
    .unwrap_or_else(|| panic!("NodeRuleMap {node} has no generation"));
    let kubeconfig = ok(lab.plane_mut().agent_kubeconfig(node), "agent kubeconfig");
    let agent = lab.plane().kubectl_as(&kubeconfig);
    let patch = format!(r#"{{"status": {{"programmedGeneration": {generation}}}}}"#);
    ok(
        agent.run(&[
            "patch",
            "noderulemap",
            node,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]),
        &format!("the agent of {node} writing its rule map's status"),
    );
}

#[test]
fn rule_maps_status_and_events_follow_pods_labels_mappings_and_policies() {
    let mut lab = start(spec());
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(lab.apply(&prod_api_policy(8080)), "applying the policy");

    // Every node has a map; the policy's rule is on node-2 alone, the only
    // node with a prod api; its endpoint there is in full enforcement.
    let api_prod = &[("app", "api"), ("env", "prod")];
    let node2 = rule_map_where(
        &lab,
        "node-2",
        "prod/api-2 in full mode under the rule",
        |m, dir| {
            endpoint(m, "prod/api-2").is_some_and(|e| {
                e.mode == EnforcementMode::Full && has_labels(dir, e.identity, api_prod)
            }) && the_prod_api_rule(m, dir).is_some()
        },
    );
    let dir = ok(directory(&lab), "identities");
    assert_eq!(
        the_prod_api_rule(&node2, &dir),
        Some((
            vec!["app=api,env=prod".into()],
            vec!["app=web,env=prod".into()],
            tcp(8080)
        )),
        "{node2:#?}"
    );
    let db = endpoint(&node2, "prod/db-2").expect("prod/db-2 on node-2");
    assert_eq!(
        db.mode,
        EnforcementMode::Visibility,
        "outside the policy's scope: the default mode"
    );
    assert!(has_labels(
        &dir,
        db.identity,
        &[("app", "db"), ("env", "prod")]
    ));
    let pod = ok(lab.pod("prod", "api-2"), "pod");
    assert_eq!(
        endpoint(&node2, "prod/api-2").map(|e| e.addresses.clone()),
        Some(vec![pod.address.to_string(), pod.address6.to_string()])
    );
    for prefix in [
        format!("{}/32", pod.address),
        format!("{}/128", pod.address6),
    ] {
        assert_eq!(
            dir.prefixes.get(&prefix).map(|id| dir.describe(*id)),
            Some("app=api,env=prod".into()),
            "the shards map the pod's address {prefix} to its identity"
        );
    }
    for node in ["node-1", "node-3"] {
        let map = rule_map_where(&lab, node, "published", |_, _| true);
        assert!(
            prod_api_rules(&map).is_empty(),
            "{node} has no prod api: {map:#?}"
        );
        assert!(map
            .spec
            .endpoints
            .iter()
            .all(|e| e.mode == EnforcementMode::Visibility));
    }
    assert_operator_agrees_with_offline_compile(&lab, "after the first policy");

    // Status: what it matched, and Reconciling until the node programs it.
    let policy = policy_where(&lab, "1 endpoint, 0/1 nodes programmed, Reconciling", |p| {
        p.status.as_ref().is_some_and(|s| {
            s.matched_endpoints == 1 && s.nodes_total == 1 && s.nodes_programmed == 0
        }) && condition(p, types::RECONCILING) == Some(ConditionStatus::True)
    });
    let status = policy.status.clone().unwrap_or_default();
    assert_eq!(
        condition(&policy, types::READY),
        Some(ConditionStatus::False)
    );
    assert_eq!(status.observed_generation, policy.metadata.generation);
    assert_eq!(status.nodes_summary.as_deref(), Some("0/1"));
    let table = ok(
        lab.kubectl().run(&["get", "segpol", "prod-api"]),
        "kubectl get segpol",
    );
    assert!(
        table.contains("0/1"),
        "kubectl get shows nodes programmed: {table}"
    );

    // node-2's agent programs its map: Ready, 1/1, and a Normal event.
    agent_programs(&mut lab, "node-2");
    policy_where(&lab, "Ready with 1/1 nodes programmed", |p| {
        p.status.as_ref().is_some_and(|s| s.nodes_programmed == 1)
            && condition(p, types::READY) == Some(ConditionStatus::True)
            && condition(p, types::RECONCILING) == Some(ConditionStatus::False)
    });
    let events = eventually("an Event about prod-api", || {
        let events = observe::events_about(&lab.kubectl(), "SegmentationPolicy", "prod-api")?;
        Ok((!events.is_empty()).then_some(events))
    });
    assert_eq!(events[0]["reason"], "Programmed", "{events:#?}");
    assert_eq!(events[0]["type"], "Normal");
    assert_eq!(events[0]["reportingController"], "bulkhead-operator");

    // A pod's label changes: prod/db-2 becomes an api and comes into scope;
    // node-2's map changes, so it is no longer programmed.
    ok(
        lab.relabel_pod("prod", "db-2", &[("app", Some("api"))]),
        "relabeling a pod",
    );
    rule_map_where(
        &lab,
        "node-2",
        "prod/db-2 is a prod api in full mode",
        |m, dir| {
            endpoint(m, "prod/db-2").is_some_and(|e| {
                e.mode == EnforcementMode::Full && has_labels(dir, e.identity, api_prod)
            })
        },
    );
    policy_where(&lab, "2 endpoints, Reconciling again (0/1)", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.matched_endpoints == 2 && s.nodes_programmed == 0)
            && condition(p, types::RECONCILING) == Some(ConditionStatus::True)
    });

    // A namespace's label changes: dev becomes env=prod, so dev/api-1 is a
    // prod api and node-1 gets the rule.
    ok(
        lab.relabel_namespace("dev", &[("env", Some("prod"))]),
        "relabeling a namespace",
    );
    rule_map_where(
        &lab,
        "node-1",
        "dev/api-1 governed by prod-api",
        |m, dir| {
            endpoint(m, "dev/api-1").is_some_and(|e| {
                e.mode == EnforcementMode::Full && has_labels(dir, e.identity, api_prod)
            }) && the_prod_api_rule(m, dir).is_some()
        },
    );
    policy_where(&lab, "3 endpoints on 2 nodes", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.matched_endpoints == 3 && s.nodes_total == 2)
    });

    // The LabelMapping changes: prod pods get tier=gold, a new label set,
    // so new identities; the policy still selects them (a subset match).
    let before = ok(directory(&lab), "identities");
    ok(lab.apply(MAPPING_WITH_TIER), "changing the LabelMapping");
    let node2 = rule_map_where(&lab, "node-2", "prod/api-2 is tier gold", |m, dir| {
        endpoint(m, "prod/api-2").is_some_and(|e| {
            has_labels(
                dir,
                e.identity,
                &[("app", "api"), ("env", "prod"), ("tier", "gold")],
            )
        }) && the_prod_api_rule(m, dir).is_some_and(|(s, p, _)| {
            s == ["app=api,env=prod,tier=gold"] && p == ["app=web,env=prod,tier=gold"]
        })
    });
    let gold = endpoint(&node2, "prod/api-2").map(|e| e.identity);
    assert_ne!(
        gold,
        before.identity_of(&labels(api_prod)),
        "a new label set is a new identity"
    );
    let mapping = eventually("the mapping's status", || {
        Ok(observe::mapping(&lab.kubectl(), "workloads")?.filter(|m| {
            m.status.as_ref().is_some_and(|s| {
                s.observed_generation == m.metadata.generation && s.endpoints_labeled == 6
            })
        }))
    });
    assert_eq!(mapping.status.map(|s| s.conflicts), Some(0));

    // The policy changes: port 8080 becomes 9090.
    ok(lab.apply(&prod_api_policy(9090)), "changing the policy");
    rule_map_where(&lab, "node-2", "the rule on port 9090", |m, dir| {
        the_prod_api_rule(m, dir).is_some_and(|(_, _, ports)| ports == tcp(9090))
    });
    policy_where(&lab, "observedGeneration follows the spec", |p| {
        p.metadata.generation == Some(2)
            && p.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == Some(2))
    });

    // A pod is created on node-3, which had no prod api: its map gains the
    // endpoint and the rule, the shards its address.
    let new = ok(
        lab.add_pod(&Workload::new("prod", "api-3", "node-3", &[("app", "api")])),
        "creating a pod",
    );
    rule_map_where(&lab, "node-3", "prod/api-3 and the rule", |m, dir| {
        endpoint(m, "prod/api-3").is_some_and(|e| {
            e.mode == EnforcementMode::Full
                && e.addresses == [new.address.to_string(), new.address6.to_string()]
        }) && the_prod_api_rule(m, dir).is_some()
    });
    let prefix = format!("{}/32", new.address);
    let prefix6 = format!("{}/128", new.address6);
    eventually("the new pod's addresses in the shards", || {
        let dir = directory(&lab)?;
        Ok(dir
            .prefixes
            .get(&prefix)
            .zip(dir.prefixes.get(&prefix6))
            .map(drop))
    });
    policy_where(&lab, "4 endpoints on 3 nodes", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.matched_endpoints == 4 && s.nodes_total == 3)
    });
    assert_operator_agrees_with_offline_compile(
        &lab,
        "after pod, namespace, mapping and policy changes",
    );

    // ... and deleted again: endpoint, rule and address go.
    ok(lab.delete_pod("prod", "api-3"), "deleting a pod");
    rule_map_where(&lab, "node-3", "without prod/api-3 or the rule", |m, _| {
        endpoint(m, "prod/api-3").is_none() && prod_api_rules(m).is_empty()
    });
    eventually("the deleted pod's addresses out of the shards", || {
        let dir = directory(&lab)?;
        Ok(
            (!dir.prefixes.contains_key(&prefix) && !dir.prefixes.contains_key(&prefix6))
                .then_some(()),
        )
    });
    policy_where(&lab, "3 endpoints on 2 nodes again", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.matched_endpoints == 3 && s.nodes_total == 2)
    });
}

#[test]
fn an_agent_may_write_only_its_own_rule_maps_status() {
    let mut lab = start(spec());
    rule_map_where(&lab, "node-2", "published", |_, _| true);
    let kubeconfig = ok(
        lab.plane_mut().agent_kubeconfig("node-1"),
        "agent kubeconfig",
    );
    let agent = lab.plane().kubectl_as(&kubeconfig);
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        ok(agent.output(&all, None), "kubectl auth can-i")
            .stdout
            .trim()
            .to_owned()
    };
    assert_eq!(can(&["get", "noderulemaps/node-1"]), "yes");
    assert_eq!(can(&["watch", "noderulemaps/node-1"]), "yes");
    assert_eq!(
        can(&["patch", "noderulemaps/node-1", "--subresource=status"]),
        "yes"
    );
    assert_eq!(can(&["list", "identitymaps"]), "yes");
    assert_eq!(
        can(&["get", "noderulemaps/node-2"]),
        "no",
        "another node's map"
    );
    assert_eq!(
        can(&["patch", "noderulemaps/node-2", "--subresource=status"]),
        "no"
    );
    assert_eq!(
        can(&["patch", "noderulemaps/node-1"]),
        "no",
        "the spec is the operator's"
    );
    assert_eq!(can(&["patch", "identitymaps/shard-0"]), "no");
    assert_eq!(can(&["list", "pods"]), "no");
    assert_eq!(can(&["list", "segmentationpolicies"]), "no");
    let patch = r#"{"status": {"programmedGeneration": 1}}"#;
    let denied = ok(
        agent.output(
            &[
                "patch",
                "noderulemap",
                "node-2",
                "--subresource=status",
                "--type=merge",
                "-p",
                patch,
            ],
            None,
        ),
        "patch",
    );
    assert!(
        !denied.success && denied.stderr.contains("forbidden"),
        "{}",
        denied.stderr
    );
}

/// A lab with the mapping and the prod-api policy (port 8080) applied and
/// node-2's rule map carrying its rule.
fn with_the_rule(spec: LabSpec) -> Lab {
    let lab = start(spec);
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(lab.apply(&prod_api_policy(8080)), "applying the policy");
    rule_map_where(&lab, "node-2", "the rule", |m, dir| {
        the_prod_api_rule(m, dir).is_some()
    });
    lab
}

fn shards_and_maps(lab: &Lab) -> (BTreeMap<String, IdentityMap>, BTreeMap<String, NodeRuleMap>) {
    let kubectl = lab.kubectl();
    (
        ok(observe::identity_maps(&kubectl), "listing IdentityMaps"),
        ok(observe::rule_maps(&kubectl), "listing NodeRuleMaps"),
    )
}

fn resource_versions<K: kube::Resource>(
    objects: &BTreeMap<String, K>,
) -> BTreeMap<String, Option<String>> {
    objects
        .iter()
        .map(|(n, o)| (n.clone(), o.meta().resource_version.clone()))
        .collect()
}

#[test]
fn a_restarted_operator_keeps_identities_and_catches_up_on_what_changed_while_it_was_down() {
    let mut lab = with_the_rule(spec());
    assert_operator_agrees_with_offline_compile(&lab, "before the restart");
    let (shards, maps) = shards_and_maps(&lab);
    // Stopped and started again with nothing changed: same identities, and
    // nothing rewritten (not one resourceVersion moves).
    ok(lab.stop_operator("a"), "stopping the operator");
    ok(lab.start_operator("a"), "starting the operator again");
    published_once(&mut lab, "a");
    let (shards_after, maps_after) = shards_and_maps(&lab);
    let specs = |s: &BTreeMap<String, IdentityMap>| {
        s.iter()
            .map(|(n, o)| (n.clone(), o.spec.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        specs(&shards_after),
        specs(&shards),
        "identities after a restart"
    );
    assert_eq!(
        resource_versions(&shards_after),
        resource_versions(&shards),
        "IdentityMaps rewritten"
    );
    assert_eq!(
        resource_versions(&maps_after),
        resource_versions(&maps),
        "NodeRuleMaps rewritten"
    );
    let metrics = ok(lab.operator("a").and_then(|o| o.metrics()), "metrics");
    for kind in ["noderulemap", "identitymap"] {
        let written = observe::metric_sum_where(
            &metrics,
            "bulkhead_operator_writes_total",
            &format!("kind=\"{kind}\""),
        );
        assert_eq!(
            written, 0.0,
            "a restarted operator with nothing to change rewrote {kind}s:\n{metrics}"
        );
    }

    // Stopped while the API server keeps running; the cluster changes.
    let dir = ok(directory(&lab), "identities");
    ok(lab.stop_operator("a"), "stopping the operator");
    ok(
        lab.relabel_pod("prod", "db-2", &[("app", Some("api"))]),
        "relabel",
    );
    let new = ok(
        lab.add_pod(&Workload::new(
            "dev",
            "cache-3",
            "node-3",
            &[("app", "cache")],
        )),
        "adding a pod",
    );
    ok(lab.delete_pod("prod", "web-3"), "deleting a pod");
    let unchanged = ok(observe::rule_map(&lab.kubectl(), "node-2"), "rule map");
    assert_eq!(
        unchanged.map(|m| m.spec),
        maps.get("node-2").map(|m| m.spec.clone()),
        "nobody publishes while it is down"
    );

    ok(lab.start_operator("a"), "starting the operator again");
    rule_map_where(
        &lab,
        "node-2",
        "prod/db-2 caught up as a prod api",
        |m, dir| {
            endpoint(m, "prod/db-2").is_some_and(|e| {
                e.mode == EnforcementMode::Full
                    && has_labels(dir, e.identity, &[("app", "api"), ("env", "prod")])
            })
        },
    );
    rule_map_where(&lab, "node-3", "cache-3 added, prod/web-3 gone", |m, _| {
        endpoint(m, "dev/cache-3")
            .is_some_and(|e| e.addresses == [new.address.to_string(), new.address6.to_string()])
            && endpoint(m, "prod/web-3").is_none()
    });
    let after = ok(directory(&lab), "identities");
    for (id, labels) in &dir.labels {
        if let Some(now) = after.labels.get(id) {
            assert_eq!(
                now, labels,
                "identity {id} changed its labels across the restart"
            );
        }
        if after.identity_of(labels).is_some() {
            assert_eq!(
                after.identity_of(labels),
                Some(*id),
                "{labels:?} was renumbered"
            );
        }
    }
    assert_operator_agrees_with_offline_compile(&lab, "after catching up");
}

/// kstatus: `lastTransitionTime` moves only when a condition's status does.
/// A restarted operator that rewrites the same conditions must keep them.
#[test]
fn conditions_keep_their_transition_times_across_an_operator_restart() {
    let mut lab = start(spec());
    ok(lab.apply(MAPPING), "applying the LabelMapping");
    ok(lab.apply(&prod_api_policy(8080)), "applying the policy");
    policy_where(&lab, "Reconciling (0/1 nodes programmed)", |p| {
        condition(p, types::RECONCILING) == Some(ConditionStatus::True)
    });
    let transitions = |lab: &Lab| {
        let policy = ok(observe::policy(&lab.kubectl(), "prod-api"), "policy");
        policy
            .and_then(|p| p.status)
            .map(|s| {
                s.conditions
                    .into_iter()
                    .map(|c| (c.type_, c.status, c.last_transition_time))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let before = transitions(&lab);
    assert!(!before.is_empty(), "the policy has conditions");

    ok(lab.stop_operator("a"), "stopping the operator");
    ok(lab.start_operator("a"), "starting the operator again");
    published_once(&mut lab, "a");
    assert_eq!(
        transitions(&lab),
        before,
        "no condition changed status across the restart, so none may have a new lastTransitionTime"
    );
}

/// Waits until `replica` has finished a full publish pass (rule maps,
/// shards and every status): after it, whatever a restart would rewrite has
/// been rewritten.
fn published_once(lab: &mut Lab, replica: &str) {
    eventually(
        &format!("a full publish pass of operator {replica}"),
        || {
            let text = lab.operator(replica)?.metrics()?;
            let passes =
                observe::metric_sum_where(&text, "bulkhead_operator_passes_total", "kind=\"full\"");
            Ok((passes >= 1.0).then_some(()))
        },
    );
}

/// Adds pod `dev/<app>-1` on node-1 with a new label set and waits until
/// the leader has numbered it; returns its labels.
fn add_numbered_pod(lab: &mut Lab, app: &str) -> Labels {
    let pod = Workload::new("dev", &format!("{app}-1"), "node-1", &[("app", app)]);
    ok(lab.add_pod(&pod), "adding a pod");
    let set = labels(&[("app", app), ("env", "dev")]);
    eventually(&format!("the leader to number app={app}"), || {
        Ok(directory(lab)?.identity_of(&set))
    });
    set
}

/// Every endpoint's identity number in every rule map.
fn endpoint_numbers(lab: &Lab) -> BTreeMap<(String, String), u32> {
    let (_, maps) = shards_and_maps(lab);
    maps.iter()
        .flat_map(|(node, m)| {
            m.spec
                .endpoints
                .iter()
                .map(|e| ((node.clone(), e.name.clone()), e.identity))
        })
        .collect()
}

fn leader(lab: &Lab) -> String {
    eventually("a Lease holder", || observe::lease_holder(&lab.kubectl()))
}

fn writes(lab: &mut Lab, replica: &str) -> f64 {
    let text = ok(lab.operator(replica).and_then(|o| o.metrics()), "metrics");
    observe::metric_sum(&text, "bulkhead_operator_writes_total")
}

#[test]
fn of_two_replicas_only_the_lease_holder_writes_and_the_other_takes_over_when_it_dies() {
    let mut spec = spec();
    spec.operators = vec!["a".into(), "b".into()];
    let mut lab = with_the_rule(spec);

    let first = leader(&lab);
    let standby = if first == "a" { "b" } else { "a" };
    assert!(["a", "b"].contains(&first.as_str()), "holder {first:?}");

    // The standby's history differs from the leader's: a label set comes and
    // goes while it is down, so its own numbering (from the shards at its
    // start) would not be the leader's for the next new label set.
    ok(lab.stop_operator(standby), "stopping the standby");
    let temp = add_numbered_pod(&mut lab, "temp");
    ok(lab.delete_pod("dev", "temp-1"), "deleting the pod");
    eventually("the leader to release app=temp", || {
        let gone = directory(&lab)?.identity_of(&temp).is_none();
        Ok(gone.then_some(()))
    });
    ok(lab.start_operator(standby), "starting the standby again");
    add_numbered_pod(&mut lab, "fresh");
    let numbers_before = endpoint_numbers(&lab);
    let dir_before = ok(directory(&lab), "identities");
    let leading = |lab: &mut Lab, r: &str| {
        ok(
            lab.operator(r)
                .and_then(|o| o.metric("bulkhead_operator_leader")),
            "metrics",
        )
    };
    assert_eq!(leading(&mut lab, &first), Some(1.0));
    assert_eq!(leading(&mut lab, standby), Some(0.0));
    assert!(writes(&mut lab, &first) > 0.0, "the leader published");
    assert_eq!(
        writes(&mut lab, standby),
        0.0,
        "the standby wrote something"
    );

    // The leader crashes (no hand-over): once its Lease expires, the standby
    // leads and publishes what changed meanwhile.
    ok(lab.kill_operator(&first), "killing the leader");
    ok(lab.apply(&prod_api_policy(9090)), "changing the policy");
    let took_over = eventually("the standby to take the Lease", || {
        Ok(observe::lease_holder(&lab.kubectl())?.filter(|h| h == standby))
    });
    assert_eq!(took_over, standby);
    rule_map_where(
        &lab,
        "node-2",
        "the rule on port 9090, from the new leader",
        |m, dir| the_prod_api_rule(m, dir).is_some_and(|(_, _, ports)| ports == tcp(9090)),
    );
    assert!(writes(&mut lab, standby) > 0.0, "the new leader wrote");
    assert_eq!(leading(&mut lab, standby), Some(1.0));

    // Defect 1: the new leader publishes the old leader's numbers, not its
    // own: every endpoint keeps its identity number, every label set its.
    assert_eq!(
        endpoint_numbers(&lab),
        numbers_before,
        "identity numbers moved in the failover"
    );
    let dir_after = ok(directory(&lab), "identities");
    for (id, labels) in &dir_before.labels {
        assert_eq!(
            dir_after.identity_of(labels),
            Some(*id),
            "{labels:?} was {id} before the failover"
        );
    }
}

/// Defect 2: the Lease call of a leader had no deadline; with the API server
/// paused (SIGSTOP: connections accepted, nothing answered), the leader went
/// on believing it led long after its Lease expired.
#[test]
fn defect_2_a_paused_api_server_ends_the_leadership_before_the_lease_expires() {
    let mut lab = with_the_rule(spec());
    let leading = |lab: &mut Lab| {
        ok(
            lab.operator("a")
                .and_then(|o| o.metric("bulkhead_operator_leader")),
            "metrics",
        )
    };
    assert_eq!(leading(&mut lab), Some(1.0));

    let paused = Paused::api_server(&lab);
    // The Lease lasts 15 s after the last renewal; the renew deadline is
    // 10 s. The leader must have stopped before anyone could take over.
    let stepped_down = bulkhead_e2e::wait::wait_until(
        "the leader to step down while the API server is paused",
        Duration::from_secs(14),
        || {
            let text = lab.operator("a")?.metrics()?;
            let leading = observe::metric_sum(&text, "bulkhead_operator_leader");
            Ok((leading == 0.0).then_some(()))
        },
    );
    assert!(
        ok(lab.operator("a"), "operator").is_running(),
        "the operator must survive the pause"
    );
    drop(paused);
    ok(stepped_down, "stepping down");

    // Resumed: it leads again and publishes what changes next.
    eventually("the operator to lead again", || {
        let text = lab.operator("a")?.metrics()?;
        let leading = observe::metric_sum(&text, "bulkhead_operator_leader");
        Ok((leading == 1.0).then_some(()))
    });
    ok(lab.apply(&prod_api_policy(9090)), "changing the policy");
    rule_map_where(
        &lab,
        "node-2",
        "the change made after the pause",
        |m, dir| the_prod_api_rule(m, dir).is_some_and(|(_, _, ports)| ports == tcp(9090)),
    );
    assert_operator_agrees_with_offline_compile(&lab, "after the pause");
}

#[test]
fn the_operator_rides_out_an_api_server_outage_and_catches_up() {
    let mut lab = with_the_rule(spec());

    ok(lab.plane_mut().stop_api_server(), "stopping the API server");
    // The outage itself (not a wait for a fact): 5 s without an API server.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        ok(lab.operator("a"), "operator").is_running(),
        "the operator must survive the outage"
    );
    ok(
        lab.plane_mut().start_api_server(),
        "starting the API server",
    );

    ok(lab.apply(&prod_api_policy(9090)), "changing the policy");
    ok(
        lab.relabel_pod("prod", "db-2", &[("app", Some("api"))]),
        "relabel",
    );
    rule_map_where(
        &lab,
        "node-2",
        "the changes made after the outage",
        |m, dir| {
            the_prod_api_rule(m, dir).is_some_and(|(_, _, ports)| ports == tcp(9090))
                && endpoint(m, "prod/db-2").is_some_and(|e| {
                    has_labels(dir, e.identity, &[("app", "api"), ("env", "prod")])
                })
        },
    );
    assert!(ok(lab.operator("a"), "operator").is_running());
    assert_operator_agrees_with_offline_compile(&lab, "after the outage");
}
