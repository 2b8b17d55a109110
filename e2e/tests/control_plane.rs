//! The lab's control plane against a real kube-apiserver and etcd: the CRDs
//! install and validate what users apply with the messages they will read,
//! the printer columns make `kubectl get` useful, every kubeconfig
//! authenticates as its identity under RBAC, and the API server comes back
//! after an outage. (`up` and `down` of the whole lab: lab_privileged.rs.)
//!
//! Needs the binaries from `make tools` (e2e/tools.sh); without them every
//! test here fails with the command to run, it does not skip.

use bulkhead_e2e::{ControlPlane, Kubectl};

fn control_plane() -> ControlPlane {
    ControlPlane::start_temp().unwrap_or_else(|e| panic!("starting the control plane: {e}"))
}

fn policy(name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!("apiVersion: bulkhead.dev/v1alpha1\nkind: SegmentationPolicy\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

fn run(kubectl: &Kubectl, args: &[&str]) -> String {
    kubectl.run(args).unwrap_or_else(|e| panic!("{e}"))
}

const WEB: &str = "scope: {selector: {matchLabels: {app: web}}}";

/// One case of the malformed-object table shared with the CEL test
/// (api/tests/cel.rs) and the CLI's loader (cli/tests/malformed.rs).
#[derive(serde::Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    valid: bool,
    field: Option<String>,
    message: Option<String>,
    object: serde_json::Value,
}

#[test]
fn api_server_rejects_every_malformed_object_naming_its_field() {
    let plane = control_plane();
    let kubectl = plane.kubectl();
    let cases: Vec<Case> =
        serde_yaml::from_str(include_str!("../../api/tests/fixtures/malformed.yaml"))
            .expect("the shared fixture");
    let mut failures = Vec::new();
    let (mut rejected, mut accepted) = (0, 0);
    for case in &cases {
        let mut object = case.object.clone();
        object["metadata"]["name"] = case.name.clone().into();
        let yaml = serde_yaml::to_string(&object).expect("yaml");
        let out = kubectl.try_apply(&yaml).unwrap_or_else(|e| panic!("{e}"));
        if case.valid {
            accepted += 1;
            if !out.success {
                failures.push(format!(
                    "{}: should be accepted, got {}",
                    case.name, out.stderr
                ));
            }
            continue;
        }
        let field = case.field.as_deref().expect("field");
        if out.success {
            failures.push(format!("{}: accepted, should fail at {field}", case.name));
            continue;
        }
        rejected += 1;
        let said = &out.stderr;
        if !said.contains(field) || case.message.as_deref().is_some_and(|m| !said.contains(m)) {
            failures.push(format!(
                "{}: should name {field} ({:?}), got {said}",
                case.name, case.message
            ));
        }
        let kind = object["kind"].as_str().expect("kind").to_lowercase();
        let get = kubectl
            .output(&["get", &kind, &case.name], None)
            .unwrap_or_else(|e| panic!("{e}"));
        if get.success {
            failures.push(format!("{}: rejected, yet it exists", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert!(rejected >= 50, "{rejected} malformed objects checked");
    assert!(accepted >= 5, "{accepted} valid objects checked");
}

#[test]
fn kubectl_get_segpol_shows_mode_endpoints_nodes_and_ready() {
    let plane = control_plane();
    let kubectl = plane.kubectl();
    kubectl
        .apply(&policy(
            "web-full",
            &format!(
                "{WEB}\nenforcement: full\nowner: team-web\ncontact: web-oncall@example.com\nreviewBy: \"2027-06-30\""
            ),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    // The operator writes this status; the admin stands in for it here.
    let status = r#"{"status": {"matchedEndpoints": 4, "nodesTotal": 3, "nodesProgrammed": 2,
        "nodesSummary": "2/3", "effectiveMode": "full", "conditions": [{"type": "Ready", "status": "False",
        "reason": "Programming", "message": "2 of 3 nodes programmed"}]}}"#;
    run(
        &kubectl,
        &[
            "patch",
            "segpol",
            "web-full",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );

    let table = run(&kubectl, &["get", "segpol"]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "MODE",
            "EFFECTIVE",
            "PROMOTED",
            "OWNER",
            "REVIEW",
            "ENDPOINTS",
            "NODES",
            "READY",
            "AGE"
        ],
        "{table}"
    );
    // No promotion gate: PROMOTED is empty, so the row has one cell fewer.
    assert_eq!(
        rows[1][..8],
        [
            "web-full",
            "full",
            "full",
            "team-web",
            "2027-06-30",
            "4",
            "2/3",
            "False"
        ],
        "{table}"
    );

    let by_short_name = run(&kubectl, &["get", "sp", "-o", "name"]);
    assert_eq!(
        by_short_name.trim(),
        "segmentationpolicy.bulkhead.dev/web-full"
    );
    let by_category = run(&kubectl, &["get", "bulkhead", "-o", "name"]);
    assert!(
        by_category.contains("segmentationpolicy.bulkhead.dev/web-full"),
        "{by_category}"
    );
}

#[test]
fn each_kubeconfig_authenticates_as_its_identity_and_rbac_is_on() {
    let mut plane = control_plane();
    let agent = plane
        .agent_kubeconfig("node-1")
        .unwrap_or_else(|e| panic!("{e}"));
    let identities = [
        (
            plane.admin_kubeconfig().to_owned(),
            "bulkhead-admin",
            "system:masters",
            "yes",
        ),
        (
            plane.operator_kubeconfig().to_owned(),
            "bulkhead-operator",
            "bulkhead:operators",
            "no",
        ),
        (agent, "bulkhead:agent:node-1", "bulkhead:agents", "no"),
    ];
    for (kubeconfig, user, group, may_list_policies) in identities {
        let kubectl = plane.kubectl_as(&kubeconfig);
        let review: serde_json::Value =
            serde_json::from_str(&run(&kubectl, &["auth", "whoami", "-o", "json"]))
                .unwrap_or_else(|e| panic!("whoami as {user}: {e}"));
        let info = &review["status"]["userInfo"];
        assert_eq!(info["username"], user);
        let groups: Vec<&str> = info["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g.as_str())
            .collect();
        assert!(
            groups.contains(&group),
            "{user} should be in {group}, is in {groups:?}"
        );
        // With no bindings yet, only the admin may read policies: RBAC is on.
        let can_i = kubectl
            .output(
                &["auth", "can-i", "list", "segmentationpolicies.bulkhead.dev"],
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            can_i.stdout.trim(),
            may_list_policies,
            "{user}: {}",
            can_i.stderr
        );
    }
}

#[test]
fn api_server_comes_back_on_the_same_url_with_its_objects() {
    let mut plane = control_plane();
    let kubectl = plane.kubectl();
    kubectl
        .apply(&policy("survivor", WEB))
        .unwrap_or_else(|e| panic!("{e}"));
    let server = plane.server().to_owned();

    plane.stop_api_server().unwrap_or_else(|e| panic!("{e}"));
    let during = kubectl
        .output(&["get", "segpol", "survivor", "--request-timeout=2s"], None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !during.success,
        "the API server is stopped, yet kubectl got: {}",
        during.stdout
    );

    plane.start_api_server().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plane.server(), server);
    let names = run(&kubectl, &["get", "segpol", "-o", "name"]);
    assert_eq!(names.trim(), "segmentationpolicy.bulkhead.dev/survivor");
}
