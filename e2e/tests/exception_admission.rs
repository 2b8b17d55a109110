//! SegmentationException approval against a real kube-apiserver: the
//! admission policy in deploy/admission (and the chart's, which renders to
//! the same rules) reads `request.userInfo`, and people are impersonated.
//!
//! | who             | does                                   | answer                     |
//! |-----------------|----------------------------------------|----------------------------|
//! | alice (requester) | requests in her own name             | created, unapproved        |
//! | alice           | requests in bob's name                 | spec.requester refused     |
//! | alice           | approves her own, or in carol's name   | spec.approvedBy refused    |
//! | mallory (outsider, RBAC may patch) | approves           | not in the group           |
//! | bob (approver)  | approves naming carol                  | must name the approver     |
//! | bob             | approves                               | approved                   |
//! | alice           | widens the approved exception          | cannot change              |
//! | alice           | no expiresAt / 91 days / in the past   | refused naming spec.expiresAt |
//!
//! Needs the binaries from `make tools`; fails without them.

use std::path::Path;
use std::time::Duration;

use bulkhead_e2e::helm::chart_dir;
use bulkhead_e2e::kubeconfig::Impersonation;
use bulkhead_e2e::kubectl::Output;
use bulkhead_e2e::wait::wait_until;
use bulkhead_e2e::{ControlPlane, Helm, Kubectl};
use serde::Deserialize;
use serde_json::Value;

const APPROVERS: &str = "bulkhead:exception-approvers";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn person(plane: &ControlPlane, user: &str, groups: &[&str]) -> Kubectl {
    let who = Impersonation {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    };
    let config = plane
        .impersonating_kubeconfig(user, &who)
        .unwrap_or_else(|e| panic!("{e}"));
    plane.kubectl_as(&config)
}

fn exception(name: &str, requester: &str, expires_at: Option<&str>) -> String {
    let expiry = expires_at.map_or(String::new(), |t| format!("  expiresAt: \"{t}\"\n"));
    format!(
        r#"apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationException
metadata:
  name: {name}
spec:
  scope: {{selector: {{matchLabels: {{app: db}}}}}}
  direction: ingress
  peers: [{{selector: {{matchLabels: {{app: report}}}}}}]
  ports: [{{protocol: TCP, port: 5432}}]
  requester: {requester}
  reason: quarterly report
  ticket: REQ-1
{expiry}"#
    )
}

fn in_days(days: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days);
    t.round(jiff::Unit::Second).expect("round").to_string()
}

fn create(kubectl: &Kubectl, yaml: &str) -> Output {
    kubectl
        .output(&["create", "-f", "-"], Some(yaml))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn approve(kubectl: &Kubectl, name: &str, by: &str) -> Output {
    let patch = format!(r#"{{"spec": {{"approvedBy": "{by}"}}}}"#);
    kubectl
        .output(
            &[
                "patch",
                "segmentationexception",
                name,
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

fn refused(out: &Output, words: &[&str], what: &str) {
    assert!(!out.success, "{what}: accepted");
    for w in words {
        assert!(
            out.stderr.contains(w),
            "{what}: {w:?} not in: {}",
            out.stderr
        );
    }
}

fn approved_by(kubectl: &Kubectl, name: &str) -> String {
    let args = ["get", "segex", name, "-o", "jsonpath={.spec.approvedBy}"];
    kubectl.run(&args).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn approval_is_a_different_person_from_the_approvers_group_and_expiry_is_bounded() {
    let plane = ControlPlane::start_temp().unwrap_or_else(|e| panic!("control plane: {e}"));
    let admin = plane.kubectl();
    for file in [
        "deploy/rbac/exceptions.yaml",
        "deploy/admission/exception-approval.yaml",
    ] {
        admin
            .apply(&repo_file(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // Requesters are the app teams; mallory gets the approvers' RBAC by
    // name, so only the admission policy can stop her.
    admin
        .apply(
            r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: app-teams-request-exceptions}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bulkhead-exception-requester}
subjects: [{kind: Group, apiGroup: rbac.authorization.k8s.io, name: app-teams}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: mallory-may-patch}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bulkhead-exception-approver}
subjects: [{kind: User, apiGroup: rbac.authorization.k8s.io, name: mallory}]
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let alice = person(&plane, "alice", &["app-teams"]);
    let bob = person(&plane, "bob", &[APPROVERS]);
    let mallory = person(&plane, "mallory", &["app-teams"]);

    // The policy takes effect once the API server has read it: wait for a
    // request it refuses (a forged requester), not for a fixed time.
    let forged = exception("forged", "bob", Some(&in_days(7)));
    let out = wait_until(
        "the exception admission policy in effect",
        Duration::from_secs(30),
        || {
            let out = create(&alice, &forged);
            Ok((!out.success && out.stderr.contains("ValidatingAdmissionPolicy")).then_some(out))
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    refused(
        &out,
        &["spec.requester must be the user who creates the exception (alice)"],
        "a forged requester",
    );

    let made = create(&alice, &exception("report-db", "alice", Some(&in_days(30))));
    assert!(made.success, "alice requests: {}", made.stderr);

    refused(
        &approve(&alice, "report-db", "alice"),
        &["spec.approvedBy", "cannot approve"],
        "self-approval",
    );
    refused(
        &approve(&alice, "report-db", "carol"),
        &["spec.approvedBy: alice requested this exception and cannot approve it"],
        "self-approval in another's name",
    );
    refused(
        &approve(&mallory, "report-db", "mallory"),
        &[&format!(
            "spec.approvedBy: mallory is not in group {APPROVERS}"
        )],
        "an outsider's approval",
    );
    refused(
        &approve(&bob, "report-db", "carol"),
        &["spec.approvedBy must name the approver, bob, not carol"],
        "an approver naming someone else",
    );
    assert_eq!(
        approved_by(&admin, "report-db"),
        "",
        "nothing above approved it"
    );
    let ok = approve(&bob, "report-db", "bob");
    assert!(ok.success, "bob approves: {}", ok.stderr);
    assert_eq!(approved_by(&admin, "report-db"), "bob");

    let widen = alice
        .output(
            &[
                "patch",
                "segex",
                "report-db",
                "--type=merge",
                "-p",
                r#"{"spec": {"ports": [{"protocol": "TCP", "port": 1}]}}"#,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    refused(
        &widen,
        &["an approved exception cannot change"],
        "widening an approved exception",
    );

    refused(
        &create(&alice, &exception("no-expiry", "alice", None)),
        &["spec.expiresAt", "Required value"],
        "no expiresAt",
    );
    refused(
        &create(&alice, &exception("too-long", "alice", Some(&in_days(91)))),
        &["spec.expiresAt must be at most 2160 hours (90 days) after the request"],
        "91 days",
    );
    refused(
        &create(&alice, &exception("past", "alice", Some(&in_days(-1)))),
        &["spec.expiresAt must be in the future"],
        "an expiry in the past",
    );
    let created_approved = format!(
        "{}  approvedBy: bob\n",
        exception("pre-approved", "alice", Some(&in_days(7)))
    );
    refused(
        &create(&alice, &created_approved),
        &["spec.approvedBy must be empty when an exception is requested"],
        "created approved",
    );
    let fine = create(
        &alice,
        &exception("eighty-nine", "alice", Some(&in_days(89))),
    );
    assert!(fine.success, "89 days is allowed: {}", fine.stderr);
}

/// The chart's policy is deploy/'s with the default values, so what the
/// test above proves holds for a Helm install too.
#[test]
fn the_chart_renders_the_deploy_policy_with_its_defaults() {
    let binary = Helm::locate().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let helm = Helm::new(&binary, home.path());
    let chart = chart_dir().display().to_string();
    let rendered = helm
        .run(&[
            "template",
            "bulkhead",
            &chart,
            "--show-only",
            "templates/exception-admission-policy.yaml",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    let specs = |yaml: &str| -> Vec<Value> {
        serde_yaml::Deserializer::from_str(yaml)
            .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("YAML: {e}")))
            .filter(|v| !v.is_null())
            .map(|mut v| {
                // Names differ (the release prefix); the rules must not.
                v["spec"]["policyName"] = Value::Null;
                v["spec"].clone()
            })
            .collect()
    };
    let deploy = specs(&repo_file("deploy/admission/exception-approval.yaml"));
    assert_eq!(deploy.len(), 2);
    assert_eq!(specs(&rendered), deploy);
}

/// The chart's requester and approver roles are deploy/'s, the approver
/// role bound to the values' group and the requester role to the values'
/// groups (none by default).
#[test]
fn the_chart_renders_the_deploy_roles_bound_to_its_groups() {
    let binary = Helm::locate().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let helm = Helm::new(&binary, home.path());
    let chart = chart_dir().display().to_string();
    let render = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "template",
            "bulkhead",
            chart.as_str(),
            "--show-only",
            "templates/exception-rbac.yaml",
        ];
        args.extend(extra);
        let text = helm.run(&args).unwrap_or_else(|e| panic!("{e}"));
        docs(&text)
    };
    let kinds = |objects: &[Value], kind: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    };
    let deploy = docs(&repo_file("deploy/rbac/exceptions.yaml"));
    let chart_default = render(&[]);
    let rules = |objects: &[Value]| -> Vec<Value> {
        kinds(objects, "ClusterRole")
            .iter()
            .map(|r| r["rules"].clone())
            .collect()
    };
    assert_eq!(rules(&chart_default), rules(&deploy));
    let bindings = kinds(&chart_default, "ClusterRoleBinding");
    assert_eq!(
        bindings.len(),
        1,
        "only the approvers' by default: {bindings:#?}"
    );
    assert_eq!(bindings[0]["subjects"][0]["name"], APPROVERS);
    assert_eq!(
        bindings[0]["roleRef"]["name"],
        "bulkhead-exception-approver"
    );

    let teams = render(&[
        "--set",
        "exceptions.approverGroup=security",
        "--set",
        "exceptions.rbac.requesterGroups={team-a,team-b}",
    ]);
    let bindings = kinds(&teams, "ClusterRoleBinding");
    let subjects = |role: &str| -> Vec<Value> {
        bindings
            .iter()
            .find(|b| b["roleRef"]["name"] == role)
            .unwrap_or_else(|| panic!("no binding of {role}: {bindings:#?}"))["subjects"]
            .as_array()
            .expect("subjects")
            .iter()
            .map(|s| s["name"].clone())
            .collect()
    };
    assert_eq!(subjects("bulkhead-exception-approver"), ["security"]);
    assert_eq!(
        subjects("bulkhead-exception-requester"),
        ["team-a", "team-b"]
    );
    let off = helm.run(&[
        "template",
        "bulkhead",
        chart.as_str(),
        "--show-only",
        "templates/exception-rbac.yaml",
        "--set",
        "exceptions.rbac.enabled=false",
    ]);
    assert!(off.is_err(), "rendered with rbac disabled: {off:?}");
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}
