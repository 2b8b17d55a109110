//! The Helm chart (`charts/bulkhead`) with the real `helm`: it lints
//! strictly, renders what the values say (and refuses bad values by name),
//! installs into a real kube-apiserver with its CRDs, RBAC and admission
//! policy, upgrades and uninstalls. The admission policy is proven with
//! impersonation: the agent of node-1 may write node-1's rule map status and
//! nothing else. The collector's objects (Deployment, claim, Service, RBAC
//! for TokenReview) and the agents' wiring to it (URL, projected token,
//! spool, metrics port and probes) are checked as rendered and as installed.
//!
//! There is no kubelet, scheduler or image registry here, so no pod ever
//! runs: these tests check the objects the API server accepts and what they
//! allow, not the operator or agent running from images.
//!
//! Needs helm, kube-apiserver, etcd and kubectl from `make tools`; without
//! them every test fails with the command to run.

use std::collections::BTreeMap;

use bulkhead_e2e::helm::chart_dir;
use bulkhead_e2e::kubeconfig::Impersonation;
use bulkhead_e2e::kubelet::POD_IMAGE;
use bulkhead_e2e::{ControlPlane, ControlPlaneConfig, Helm, Kubectl};
use serde::Deserialize;
use serde_json::Value;

const NS: &str = "bulkhead-system";
const RELEASE: &str = "bulkhead";
const OPERATOR: &str = "bulkhead-operator";
const AGENT: &str = "bulkhead-agent";
const COLLECTOR: &str = "bulkhead-collector";
const COLLECTOR_DATA: &str = "bulkhead-collector-data";
const COLLECTOR_URL: &str = "https://bulkhead-collector.bulkhead-system.svc:9470";
const POLICY: &str = "bulkhead-agent-own-rule-map";
const NODE_CLAIM: &str = "authentication.kubernetes.io/node-name";

/// helm with a home of its own, removed with the returned directory.
fn helm() -> (Helm, tempfile::TempDir) {
    let binary = Helm::locate().unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::Builder::new()
        .prefix("bulkhead-helm-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temporary helm home: {e}"));
    (Helm::new(&binary, home.path()), home)
}

fn chart() -> String {
    chart_dir().display().to_string()
}

/// `helm template` of the chart with `args`, as parsed objects.
fn render(helm: &Helm, args: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut all = vec!["template", RELEASE, &chart, "--namespace", NS];
    all.extend(args);
    parse_all(&helm.run(&all).unwrap_or_else(|e| panic!("{e}")))
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {}", names(objects)))
}

fn names(objects: &[Value]) -> String {
    let list: Vec<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
        .collect();
    list.join(", ")
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// Whether a ClusterRole lets its subjects read NetworkPolicies.
fn reads_network_policies(role: &Value) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        strings(&rule["apiGroups"]) == ["networking.k8s.io"]
            && strings(&rule["resources"]) == ["networkpolicies"]
            && strings(&rule["verbs"]) == ["get", "list", "watch"]
    })
}

#[test]
fn chart_lints_strictly_and_follows_the_workspace_version() {
    let (helm, _home) = helm();
    let chart = chart();
    for values in [
        &[][..],
        &["--set", "networkPolicy.enabled=true,logFormat=json"],
        &[
            "--set",
            "agent.privileged=false,agent.admissionPolicy=false",
        ],
        &[
            "--set",
            "operator.replicas=1,agent.hostInterfaces={eth0,eth1}",
        ],
        &["--set", "collector.enabled=false"],
        &[
            "--set",
            "collector.backend=clickhouse,collector.replicas=3,collector.clickhouse.url=http://ch:8123",
            "--set",
            "collector.clickhouse.passwordSecret.name=ch,collector.tokenAudience=bulkhead",
        ],
    ] {
        let mut args = vec!["lint", "--strict", &chart];
        args.extend(values);
        let out = helm.output(&args).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.success,
            "helm lint --strict {values:?} failed:\n{}{}",
            out.stdout, out.stderr
        );
    }
    let meta: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    assert_eq!(
        meta["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml's appVersion must be the workspace version"
    );
}

/// The collector serves HTTPS by default with a certificate the chart
/// generates for its Service's names, signed by a CA of which the agents get
/// only the certificate; without TLS, plain http and no Secret.
#[test]
fn template_serves_the_collector_over_tls_the_agents_trust() {
    use base64::Engine;
    let (helm, _home) = helm();
    let objects = render(&helm, &[]);
    let collector = COLLECTOR.to_string();
    let secret = object(&objects, "Secret", &format!("{collector}-tls"));
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let dir = tempfile::tempdir().expect("dir");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        let data = secret["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{key}"));
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        std::fs::write(dir.path().join(key), pem).expect("write");
    }
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl (Debian's package) on PATH");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let host = format!("{collector}.{NS}.svc");
    openssl(&[
        "verify",
        "-CAfile",
        "ca.crt",
        "-verify_hostname",
        &host,
        "tls.crt",
    ]);
    let sans = openssl(&["x509", "-in", "tls.crt", "-noout", "-ext", "subjectAltName"]);
    assert!(
        sans.contains(&format!("DNS:{host}.cluster.local")),
        "{sans}"
    );
    // The key belongs to the certificate.
    let modulus = |args: &[&str]| openssl(args);
    assert_eq!(
        modulus(&["x509", "-in", "tls.crt", "-noout", "-pubkey"]),
        modulus(&["pkey", "-in", "tls.key", "-pubout"])
    );

    let agent = object(&objects, "DaemonSet", AGENT);
    let args = strings(&container(agent)["args"]);
    assert!(
        args.contains(&format!("--collector=https://{host}:9470").as_str()),
        "{args:?}"
    );
    assert!(args.contains(&"--collector-ca-file=/etc/bulkhead/collector-ca/ca.crt"));
    let operator = object(&objects, "Deployment", OPERATOR);
    let operator_volumes = operator["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    assert_eq!(
        operator_volumes[0]["secret"]["items"],
        serde_json::json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "the operator, which asks the collector for promotion gates, trusts the same CA"
    );
    let volumes = agent["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes");
    let ca = volumes
        .iter()
        .find(|v| v["name"] == "collector-ca")
        .expect("the CA volume");
    assert_eq!(
        ca["secret"]["items"],
        serde_json::json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "agents get the CA, never the collector's key"
    );
    let deployment = object(&objects, "Deployment", &collector);
    let c = container(deployment);
    assert!(strings(&c["args"]).contains(&"--tls-cert-file=/etc/bulkhead-collector/tls/tls.crt"));
    assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTPS");

    let objects = render(&helm, &["--set", "collector.tls.enabled=false"]);
    assert!(!objects
        .iter()
        .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == format!("{collector}-tls")));
    let agent = object(&objects, "DaemonSet", AGENT);
    let args = strings(&container(agent)["args"]);
    assert!(
        args.contains(&format!("--collector=http://{host}:9470").as_str()),
        "{args:?}"
    );

    let objects = render(
        &helm,
        &["--set", "collector.tls.existingSecret=from-cert-manager"],
    );
    assert!(!objects
        .iter()
        .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == format!("{collector}-tls")));
    let deployment = object(&objects, "Deployment", &collector);
    let tls = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "tls"))
        .expect("tls volume");
    assert_eq!(tls["secret"]["secretName"], "from-cert-manager");
}

/// Hosts in full mode keep Bulkhead's own traffic: the agents' export to
/// the collector and Prometheus scraping the agents, on the ports the chart
/// sets, plus whatever the user adds.
#[test]
fn template_keeps_the_collector_and_agent_metrics_ports_failsafe() {
    let (helm, _home) = helm();
    let failsafe = |set: &[&str]| -> Vec<String> {
        let objects = render(&helm, set);
        strings(&container(object(&objects, "Deployment", OPERATOR))["args"])
            .into_iter()
            .filter_map(|a| a.strip_prefix("--failsafe-port=").map(str::to_owned))
            .collect()
    };
    assert_eq!(
        failsafe(&[
            "--set",
            "collector.port=9999",
            "--set",
            "agent.metrics.port=9111",
            "--set",
            "operator.extraFailsafePorts={udp/4789/ingress}",
        ]),
        ["tcp/9999/egress", "tcp/9111/ingress", "udp/4789/ingress"]
    );
    assert_eq!(
        failsafe(&["--set", "collector.enabled=false"]),
        ["tcp/9465/ingress"],
        "no collector, no export port"
    );
}

#[test]
fn template_passes_network_policies_to_the_operator_only_when_enabled() {
    let (helm, _home) = helm();

    let objects = render(&helm, &[]);
    let deployment = object(&objects, "Deployment", OPERATOR);
    assert_eq!(deployment["metadata"]["namespace"], NS);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = strings(&container(deployment)["args"]);
    assert_eq!(
        args,
        [
            "--metrics-addr=0.0.0.0:9440",
            "--default-mode=visibility",
            "--identity-shards=16",
            "--failsafe-port=tcp/9470/egress",
            "--failsafe-port=tcp/9465/ingress",
            "--collector-url=https://bulkhead-collector.bulkhead-system.svc:9470",
            "--collector-ca-file=/etc/bulkhead/collector-ca/ca.crt",
            "--promotion-interval=1m",
            "--exception-max-hours=2160",
        ]
    );
    assert!(!reads_network_policies(object(
        &objects,
        "ClusterRole",
        OPERATOR
    )));

    let objects = render(&helm, &["--set", "networkPolicy.enabled=true"]);
    let deployment = object(&objects, "Deployment", OPERATOR);
    let args = strings(&container(deployment)["args"]);
    assert_eq!(
        args.iter().filter(|a| **a == "--network-policies").count(),
        1,
        "{args:?}"
    );
    assert!(reads_network_policies(object(
        &objects,
        "ClusterRole",
        OPERATOR
    )));
}

#[test]
fn template_defaults_give_agents_every_node_bpffs_and_the_host_network() {
    let (helm, _home) = helm();
    let objects = render(&helm, &[]);
    let daemonset = object(&objects, "DaemonSet", AGENT);
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["serviceAccountName"], AGENT);
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{"operator": "Exists"}])
    );
    let agent = container(daemonset);
    assert_eq!(agent["securityContext"]["privileged"], true);
    let node_name = agent["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME is set");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/sys/fs/bpf");
    assert_eq!(agent["volumeMounts"][0]["mountPath"], "/sys/fs/bpf");
    assert_eq!(
        agent["volumeMounts"][0]["mountPropagation"],
        "Bidirectional"
    );
    let operator = container(object(&objects, "Deployment", OPERATOR));
    assert_eq!(operator["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(operator["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        !objects.iter().any(|o| o["kind"] == "ServiceMonitor"),
        "no ServiceMonitor unless asked for"
    );

    // Without privileges: capabilities instead, and a bpffs the host mounted.
    let objects = render(&helm, &["--set", "agent.privileged=false,logFormat=json"]);
    let daemonset = object(&objects, "DaemonSet", AGENT);
    let agent = container(daemonset);
    assert!(agent["securityContext"]["privileged"].is_null());
    let caps = strings(&agent["securityContext"]["capabilities"]["add"]);
    for cap in ["BPF", "NET_ADMIN", "SYS_ADMIN"] {
        assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
    }
    assert_eq!(
        agent["volumeMounts"][0]["mountPropagation"],
        "HostToContainer"
    );
    assert!(strings(&agent["args"]).contains(&"--log-json"));
    let operator = container(object(&objects, "Deployment", OPERATOR));
    assert!(strings(&operator["args"]).contains(&"--log-json"));

    let objects = render(
        &helm,
        &[
            "--set",
            "operator.metrics.serviceMonitor.enabled=true",
            "--api-versions",
            "monitoring.coreos.com/v1",
        ],
    );
    let monitor = object(&objects, "ServiceMonitor", OPERATOR);
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

fn volume<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name} in {}", workload["metadata"]["name"]))
}

/// Where `volume` is mounted in the workload's first container.
fn mount_path<'a>(workload: &'a Value, volume: &str) -> &'a str {
    container(workload)["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == volume)
        .and_then(|m| m["mountPath"].as_str())
        .unwrap_or_else(|| panic!("volume {volume} is not mounted"))
}

/// The value of `--flag=` among `args`, if given once.
fn flag<'a>(args: &[&'a str], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    let found: Vec<&str> = args
        .iter()
        .filter_map(|a| a.strip_prefix(&prefix))
        .collect();
    assert!(
        found.len() <= 1,
        "{flag} given {} times: {args:?}",
        found.len()
    );
    found.first().copied()
}

#[test]
fn template_deploys_the_collector_with_its_claim_service_and_tokenreview_rbac() {
    let (helm, _home) = helm();
    let objects = render(&helm, &[]);
    let deployment = object(&objects, "Deployment", COLLECTOR);
    assert_eq!(deployment["metadata"]["namespace"], NS);
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], COLLECTOR);
    let collector = container(deployment);
    assert_eq!(
        collector["image"],
        "ghcr.io/bulkhead-dev/bulkhead-collector:0.1.0"
    );
    assert_eq!(
        strings(&collector["args"]),
        [
            "--listen=0.0.0.0:9470",
            "--data-dir=/var/lib/bulkhead-collector",
            "--backend=sqlite",
            "--retention-minute=14d",
            "--retention-hour=90d",
            "--retention-day=400d",
            "--auth=tokenreview",
            "--agent-service-account=bulkhead-system:bulkhead-agent",
            "--log-format=text",
            "--tls-cert-file=/etc/bulkhead-collector/tls/tls.crt",
            "--tls-key-file=/etc/bulkhead-collector/tls/tls.key",
        ]
    );
    assert_eq!(collector["ports"][0]["name"], "http");
    assert_eq!(collector["ports"][0]["containerPort"], 9470);
    assert_eq!(collector["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(collector["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(collector["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(
        volume(deployment, "data")["persistentVolumeClaim"]["claimName"],
        COLLECTOR_DATA
    );
    assert_eq!(
        mount_path(deployment, "data"),
        "/var/lib/bulkhead-collector"
    );

    let claim = object(&objects, "PersistentVolumeClaim", COLLECTOR_DATA);
    assert_eq!(strings(&claim["spec"]["accessModes"]), ["ReadWriteOnce"]);
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert!(claim["spec"]["storageClassName"].is_null());
    assert_eq!(
        claim["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let service = object(&objects, "Service", COLLECTOR);
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
    assert_eq!(service["spec"]["ports"][0]["port"], 9470);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(service["spec"]["sessionAffinity"], "ClientIP");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    object(&objects, "ServiceAccount", COLLECTOR);
    let role = object(&objects, "ClusterRole", COLLECTOR);
    assert_eq!(
        grants(std::slice::from_ref(role), "ClusterRole"),
        [(
            "authentication.k8s.io".to_owned(),
            "tokenreviews".to_owned(),
            "create".to_owned()
        )]
        .into_iter()
        .collect()
    );
    let binding = object(&objects, "ClusterRoleBinding", COLLECTOR);
    assert_eq!(binding["roleRef"]["name"], COLLECTOR);
    assert_eq!(binding["subjects"][0]["name"], COLLECTOR);
    assert_eq!(binding["subjects"][0]["namespace"], NS);

    // Size, class, audience and retention as set.
    let objects = render(
        &helm,
        &[
            "--set",
            "collector.persistence.size=50Gi,collector.persistence.storageClass=fast",
            "--set",
            "collector.persistence.keepOnUninstall=false,collector.retention.day=800d",
            "--set",
            "collector.tokenAudience=bulkhead-collector,logFormat=json",
        ],
    );
    let claim = object(&objects, "PersistentVolumeClaim", COLLECTOR_DATA);
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    assert!(claim["metadata"]["annotations"].is_null());
    let args = strings(&container(object(&objects, "Deployment", COLLECTOR))["args"]);
    assert_eq!(flag(&args, "--retention-day"), Some("800d"));
    assert_eq!(flag(&args, "--token-audience"), Some("bulkhead-collector"));
    assert_eq!(flag(&args, "--log-format"), Some("json"));
    let agents = object(&objects, "DaemonSet", AGENT);
    assert_eq!(
        volume(agents, "collector-token")["projected"]["sources"][0]["serviceAccountToken"]
            ["audience"],
        "bulkhead-collector"
    );
}

#[test]
fn template_runs_collector_replicas_on_clickhouse_only() {
    let (helm, _home) = helm();
    let objects = render(
        &helm,
        &[
            "--set",
            "collector.backend=clickhouse,collector.replicas=3",
            "--set",
            "collector.clickhouse.url=http://clickhouse.db.svc:8123,collector.clickhouse.user=flows",
            "--set",
            "collector.clickhouse.passwordSecret.name=ch-secret,collector.clickhouse.passwordSecret.key=pw",
        ],
    );
    assert!(
        !objects.iter().any(|o| o["kind"] == "PersistentVolumeClaim"),
        "no claim with ClickHouse: {}",
        names(&objects)
    );
    let deployment = object(&objects, "Deployment", COLLECTOR);
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(
        deployment["spec"]["strategy"].is_null(),
        "rolling, not Recreate"
    );
    let args = strings(&container(deployment)["args"]);
    assert_eq!(flag(&args, "--backend"), Some("clickhouse"));
    assert_eq!(
        flag(&args, "--clickhouse-url"),
        Some("http://clickhouse.db.svc:8123")
    );
    assert_eq!(flag(&args, "--clickhouse-database"), Some("bulkhead"));
    assert_eq!(flag(&args, "--clickhouse-user"), Some("flows"));
    let password = flag(&args, "--clickhouse-password-file").expect("a password file");
    let secret = volume(deployment, "clickhouse-password");
    assert_eq!(secret["secret"]["secretName"], "ch-secret");
    assert_eq!(secret["secret"]["items"][0]["key"], "pw");
    let file = secret["secret"]["items"][0]["path"].as_str().expect("path");
    assert_eq!(
        password,
        format!("{}/{file}", mount_path(deployment, "clickhouse-password"))
    );
    assert!(volume(deployment, "data")["emptyDir"].is_object());

    // No password, no file.
    let objects = render(
        &helm,
        &[
            "--set",
            "collector.backend=clickhouse,collector.clickhouse.url=http://ch:8123",
        ],
    );
    let args = strings(&container(object(&objects, "Deployment", COLLECTOR))["args"]);
    assert_eq!(flag(&args, "--clickhouse-password-file"), None);
    assert_eq!(flag(&args, "--clickhouse-user"), None);
}

#[test]
fn template_wires_agents_to_the_collector_with_a_bound_token_spool_and_probes() {
    let (helm, _home) = helm();
    let objects = render(&helm, &[]);
    let daemonset = object(&objects, "DaemonSet", AGENT);
    let agent = container(daemonset);
    let args = strings(&agent["args"]);
    assert_eq!(flag(&args, "--collector"), Some(COLLECTOR_URL));
    assert_eq!(flag(&args, "--metrics-addr"), Some("0.0.0.0:9465"));
    assert_eq!(flag(&args, "--spool-max-mib"), Some("512"));
    // The token file is the projected, pod-bound ServiceAccount token.
    let token_file = flag(&args, "--collector-token-file").expect("--collector-token-file");
    let token = volume(daemonset, "collector-token");
    let source = &token["projected"]["sources"][0]["serviceAccountToken"];
    assert!(
        source["audience"].is_null(),
        "no audience by default: {source}"
    );
    assert!(source["expirationSeconds"]
        .as_u64()
        .is_some_and(|s| s >= 600));
    assert_eq!(
        token_file,
        format!(
            "{}/{}",
            mount_path(daemonset, "collector-token"),
            source["path"].as_str().expect("path")
        )
    );
    // The spool is on the node.
    assert_eq!(
        flag(&args, "--spool-dir"),
        Some(mount_path(daemonset, "spool"))
    );
    let spool = volume(daemonset, "spool");
    assert_eq!(spool["hostPath"]["path"], "/var/lib/bulkhead/spool");
    assert_eq!(spool["hostPath"]["type"], "DirectoryOrCreate");
    // Metrics and probes.
    assert_eq!(agent["ports"][0]["name"], "metrics");
    assert_eq!(agent["ports"][0]["containerPort"], 9465);
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(agent["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(agent["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(agent["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "PodMonitor" || o["kind"] == "ServiceMonitor"),
        "no monitors unless asked for"
    );

    // Another release name and namespace: the URL follows both.
    let chart = chart();
    let out = helm
        .run(&["template", "edge", &chart, "--namespace", "sec"])
        .unwrap_or_else(|e| panic!("{e}"));
    let objects = parse_all(&out);
    let args = strings(&container(object(&objects, "DaemonSet", "edge-bulkhead-agent"))["args"]);
    assert_eq!(
        flag(&args, "--collector"),
        Some("https://edge-bulkhead-collector.sec.svc:9470")
    );
    object(&objects, "Service", "edge-bulkhead-collector");
    let collector = object(&objects, "Deployment", "edge-bulkhead-collector");
    let args = strings(&container(collector)["args"]);
    assert_eq!(
        flag(&args, "--agent-service-account"),
        Some("sec:edge-bulkhead-agent")
    );

    // Without the collector: none of its objects, no --collector, the spool
    // and metrics stay.
    let objects = render(
        &helm,
        &["--set", "collector.enabled=false,agent.metrics.port=9500"],
    );
    let left: Vec<String> = objects
        .iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains("collector"))
        })
        .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
        .collect();
    assert!(
        left.is_empty(),
        "collector objects while disabled: {left:?}"
    );
    let daemonset = object(&objects, "DaemonSet", AGENT);
    let args = strings(&container(daemonset)["args"]);
    assert_eq!(flag(&args, "--collector"), None);
    assert_eq!(flag(&args, "--collector-token-file"), None);
    assert_eq!(flag(&args, "--metrics-addr"), Some("0.0.0.0:9500"));
    assert!(flag(&args, "--spool-dir").is_some());
    assert_eq!(container(daemonset)["ports"][0]["containerPort"], 9500);
    let volumes = &daemonset["spec"]["template"]["spec"]["volumes"];
    assert!(
        !volumes
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v["name"] == "collector-token"),
        "{volumes}"
    );

    // Monitors, when the cluster has their CRDs.
    let objects = render(
        &helm,
        &[
            "--set",
            "agent.metrics.podMonitor.enabled=true,collector.serviceMonitor.enabled=true",
            "--set",
            "agent.metrics.podMonitor.labels.release=prom",
            "--api-versions",
            "monitoring.coreos.com/v1",
        ],
    );
    let pods = object(&objects, "PodMonitor", AGENT);
    assert_eq!(pods["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
    assert_eq!(pods["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");
    assert_eq!(pods["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        pods["spec"]["selector"]["matchLabels"],
        object(&objects, "DaemonSet", AGENT)["spec"]["selector"]["matchLabels"]
    );
    let service = object(&objects, "ServiceMonitor", COLLECTOR);
    assert_eq!(service["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(service["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn bad_values_fail_with_the_key_and_the_reason() {
    let (helm, _home) = helm();
    let chart = chart();
    let cases = [
        (
            "operator.defaultMode=strict",
            "at '/operator/defaultMode': value must be one of 'visibility', 'selective', 'full'",
        ),
        (
            "operator.identityShards=0",
            "at '/operator/identityShards': minimum: got 0, want 1",
        ),
        ("operator.replicas=0", "at '/operator/replicas': minimum"),
        (
            "logFormat=xml",
            "at '/logFormat': value must be one of 'text', 'json'",
        ),
        ("agent.flowLog=/var/log/flows", "at '/agent/flowLog'"),
        ("agent.bpffs=sys/fs/bpf", "at '/agent/bpffs'"),
        (
            "operator.replica=3",
            "at '/operator': additional properties 'replica' not allowed",
        ),
        (
            "operator.metrics.serviceMonitor.enabled=true",
            "operator.metrics.serviceMonitor.enabled is true, but the cluster has no ServiceMonitor",
        ),
        (
            "agent.metrics.podMonitor.enabled=true",
            "agent.metrics.podMonitor.enabled is true, but the cluster has no PodMonitor",
        ),
        (
            "collector.serviceMonitor.enabled=true",
            "collector.serviceMonitor.enabled is true, but the cluster has no ServiceMonitor",
        ),
        (
            "collector.backend=duckdb",
            "at '/collector/backend': value must be one of 'sqlite', 'clickhouse'",
        ),
        (
            "collector.replicas=2",
            "collector.replicas is 2, but collector.backend sqlite keeps one store file",
        ),
        (
            "collector.backend=clickhouse",
            "collector.backend is clickhouse, but collector.clickhouse.url is empty",
        ),
        (
            "collector.retention.day=400",
            "at '/collector/retention/day'",
        ),
        (
            "collector.clickhouse.url=clickhouse:8123",
            "at '/collector/clickhouse/url'",
        ),
        ("agent.spool.hostPath=spool", "at '/agent/spool/hostPath'"),
    ];
    for (set, message) in cases {
        let out = helm
            .output(&["template", RELEASE, &chart, "--set", set])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!out.success, "--set {set} should be refused, was rendered");
        assert!(
            out.stderr.contains(message),
            "--set {set} should be refused with {message:?}, got: {}",
            out.stderr
        );
    }
    let out = helm
        .output(&["template", RELEASE, &chart, "--kube-version", "1.29.0"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !out.success
            && out
                .stderr
                .contains("chart requires kubeVersion: >=1.30.0-0"),
        "Kubernetes 1.29 has no ValidatingAdmissionPolicy v1; got: {}",
        out.stderr
    );
}

/// (group, resource, verb) of every rule of every `kind` object in `objects`.
/// Names a rule is limited to are left out: the chart and the lab's RBAC
/// name different objects (the lab has one role per agent).
fn grants(objects: &[Value], kind: &str) -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for object in objects.iter().filter(|o| o["kind"] == kind) {
        for rule in object["rules"].as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.insert((group.into(), resource.into(), verb.into()));
                    }
                }
            }
        }
    }
    out
}

fn parse_all(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The lab runs the operator and agents under `deploy/rbac/`; whatever it
/// grants them (and the tests prove they need), the chart must grant too,
/// or the operator works in the lab and fails in a cluster.
#[test]
fn chart_grants_everything_the_lab_rbac_grants() {
    let (helm, _home) = helm();
    let chart = render(&helm, &["--set", "networkPolicy.enabled=true"]);
    let rbac = chart_dir().join("../../deploy/rbac");
    let read = |file: &str| {
        std::fs::read_to_string(rbac.join(file))
            .unwrap_or_else(|e| panic!("deploy/rbac/{file}: {e}"))
    };
    let operator = parse_all(&read("operator.yaml"));
    let agent = parse_all(&read("agent.yaml.tmpl").replace("NODE", "node-1"));
    let collector = parse_all(&read("collector.yaml"));
    let chart_role = |name: &str| vec![object(&chart, "ClusterRole", name).clone()];
    let lease = format!("{OPERATOR}-lease");
    for (what, lab, chart) in [
        (
            "operator ClusterRole",
            grants(&operator, "ClusterRole"),
            grants(&chart_role(OPERATOR), "ClusterRole"),
        ),
        (
            "operator lease Role",
            grants(&operator, "Role"),
            grants(&[object(&chart, "Role", &lease).clone()], "Role"),
        ),
        (
            "agent ClusterRole",
            grants(&agent, "ClusterRole"),
            grants(&chart_role(AGENT), "ClusterRole"),
        ),
        (
            "collector ClusterRole",
            grants(&collector, "ClusterRole"),
            grants(&chart_role(COLLECTOR), "ClusterRole"),
        ),
    ] {
        assert!(!lab.is_empty(), "deploy/rbac has no {what}");
        let missing: Vec<_> = lab.difference(&chart).collect();
        assert!(
            missing.is_empty(),
            "the chart's {what} lacks what deploy/rbac grants: {missing:?}"
        );
    }
}

/// Every value has a row in the chart README's table (a leaf, or a map
/// documented as a whole such as `operator.resources`), and every row names
/// a value.
#[test]
fn every_value_is_documented_in_the_readme() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml is YAML");
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("README.md");
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(key, _)| key))
        .collect();
    assert!(!documented.is_empty(), "README.md has no values table");

    let mut leaves = Vec::new();
    collect_leaves(&values, "", &mut leaves);
    let undocumented: Vec<&String> = leaves
        .iter()
        .filter(|leaf| {
            !documented
                .iter()
                .any(|key| *leaf == key || leaf.starts_with(&format!("{key}.")))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "values missing from README.md: {undocumented:?}"
    );
    let unknown: Vec<&&str> = documented
        .iter()
        .filter(|key| lookup(&values, key).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "README.md documents no such values: {unknown:?}"
    );
}

fn collect_leaves(v: &Value, path: &str, out: &mut Vec<String>) {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect_leaves(child, &path, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

/// A control plane without the workspace's CRDs: the chart installs them.
fn bare_control_plane() -> (ControlPlane, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("bulkhead-lab-helm-")
        .tempdir()
        .unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let mut config = ControlPlaneConfig::new(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    config.crds = None;
    let plane = ControlPlane::start_with(config)
        .unwrap_or_else(|e| panic!("starting the control plane: {e}"));
    (plane, dir)
}

fn run(kubectl: &Kubectl, args: &[&str]) -> String {
    kubectl.run(args).unwrap_or_else(|e| panic!("{e}"))
}

fn rule_map(node: &str) -> String {
    format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: NodeRuleMap
metadata:
  name: {node}
spec:
  nodeKind: Node
  host: {{name: {node}, identity: 2, mode: visibility}}
"
    )
}

/// kubectl as the agent's ServiceAccount, with the node claim of a token
/// bound to a pod on `node` (none if `node` is None).
fn agent_on(plane: &ControlPlane, node: Option<&str>) -> Kubectl {
    let mut who = Impersonation {
        user: service_account(AGENT),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{NS}"),
        ],
        extra: BTreeMap::new(),
    };
    if let Some(node) = node {
        who.extra.insert(NODE_CLAIM.into(), vec![node.into()]);
    }
    let name = format!("agent-sa-{}", node.unwrap_or("nowhere"));
    let kubeconfig = plane
        .impersonating_kubeconfig(&name, &who)
        .unwrap_or_else(|e| panic!("{e}"));
    plane.kubectl_as(&kubeconfig)
}

fn patch_status(kubectl: &Kubectl, node: &str, generation: u32) -> bulkhead_e2e::kubectl::Output {
    let patch = format!(r#"{{"status": {{"programmedGeneration": {generation}}}}}"#);
    kubectl
        .output(
            &[
                "patch",
                "noderulemap",
                node,
                "--subresource=status",
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

fn can_i(kubectl: &Kubectl, user: &str, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i", "--as", user];
    all.extend(args);
    let out = kubectl.output(&all, None).unwrap_or_else(|e| panic!("{e}"));
    out.stdout.trim().to_owned()
}

fn exists(kubectl: &Kubectl, args: &[&str]) -> bool {
    let mut all = args.to_vec();
    all.extend(["-o", "name"]);
    let out = kubectl.output(&all, None).unwrap_or_else(|e| panic!("{e}"));
    out.success && !out.stdout.trim().is_empty()
}

const CRDS: [&str; 5] = [
    "externalnodes.bulkhead.dev",
    "identitymaps.bulkhead.dev",
    "labelmappings.bulkhead.dev",
    "noderulemaps.bulkhead.dev",
    "segmentationpolicies.bulkhead.dev",
];

/// A stand-in for the Prometheus operator's CRD: all helm's capability
/// check and the API server need to accept a ServiceMonitor.
const SERVICE_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

#[test]
fn helm_install_upgrade_uninstall_against_a_real_api_server() {
    let (plane, _dir) = bare_control_plane();
    let (helm, _home) = helm();
    let helm = helm.with_kubeconfig(plane.admin_kubeconfig());
    install_makes_crds_workloads_rbac_and_the_admission_policy(&plane, &helm);
    rbac_grants_each_service_account_what_it_needs(&plane);
    admission_policy_keeps_each_agent_to_its_own_rule_map_status(&plane);
    pod_bound_tokens_carry_the_node_claim_the_policy_reads(&plane);
    upgrade_applies_changed_values(&plane, &helm);
    uninstall_removes_the_release_but_not_crds_or_rule_maps(&plane, &helm);
}

fn service_account(name: &str) -> String {
    format!("system:serviceaccount:{NS}:{name}")
}

fn install_makes_crds_workloads_rbac_and_the_admission_policy(plane: &ControlPlane, helm: &Helm) {
    let kubectl = plane.kubectl();
    let chart = chart();
    // Pods never start here, so no --wait: the objects are what is checked.
    helm.run(&[
        "install",
        RELEASE,
        &chart,
        "--namespace",
        NS,
        "--create-namespace",
    ])
    .unwrap_or_else(|e| panic!("{e}"));

    let crds: Vec<String> = CRDS.iter().map(|c| format!("crd/{c}")).collect();
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    wait.extend(crds.iter().map(String::as_str));
    run(&kubectl, &wait);
    for (kind, name, namespaced) in [
        ("deployment", OPERATOR, true),
        ("daemonset", AGENT, true),
        ("serviceaccount", OPERATOR, true),
        ("serviceaccount", AGENT, true),
        ("service", "bulkhead-operator-metrics", true),
        ("poddisruptionbudget", OPERATOR, true),
        ("role", "bulkhead-operator-lease", true),
        ("rolebinding", "bulkhead-operator-lease", true),
        ("clusterrole", OPERATOR, false),
        ("clusterrolebinding", OPERATOR, false),
        ("clusterrole", AGENT, false),
        ("clusterrolebinding", AGENT, false),
        ("validatingadmissionpolicy", POLICY, false),
        ("validatingadmissionpolicybinding", POLICY, false),
        ("namespace", "bulkhead-external-nodes", false),
        (
            "validatingadmissionpolicy",
            "bulkhead-external-node-own-objects",
            false,
        ),
        ("deployment", COLLECTOR, true),
        ("persistentvolumeclaim", COLLECTOR_DATA, true),
        ("service", COLLECTOR, true),
        ("serviceaccount", COLLECTOR, true),
        ("clusterrole", COLLECTOR, false),
        ("clusterrolebinding", COLLECTOR, false),
    ] {
        let object = format!("{kind}/{name}");
        let mut args = vec!["get", &object];
        if namespaced {
            args.extend(["-n", NS]);
        }
        assert!(exists(&kubectl, &args), "helm install made no {object}");
    }
    let deployment = kubectl
        .json(&["get", "deployment", OPERATOR, "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!strings(&container(&deployment)["args"]).contains(&"--network-policies"));
    // As the API server keeps them: the agents point at the collector's
    // Service, which selects the collector's pods.
    let daemonset = kubectl
        .json(&["get", "daemonset", AGENT, "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    let args = strings(&container(&daemonset)["args"]);
    assert_eq!(flag(&args, "--collector"), Some(COLLECTOR_URL), "{args:?}");
    let service = kubectl
        .json(&["get", "service", COLLECTOR, "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(service["spec"]["ports"][0]["port"], 9470);
    let collector = kubectl
        .json(&["get", "deployment", COLLECTOR, "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    let labels = &collector["spec"]["template"]["metadata"]["labels"];
    let selector = service["spec"]["selector"].as_object().expect("a selector");
    assert!(
        selector.iter().all(|(k, v)| labels[k] == *v),
        "{selector:?} does not select {labels}"
    );
}

fn rbac_grants_each_service_account_what_it_needs(plane: &ControlPlane) {
    let kubectl = plane.kubectl();
    let operator_sa = service_account(OPERATOR);
    let agent_sa = service_account(AGENT);
    let collector_sa = service_account(COLLECTOR);
    // What RBAC lets each ServiceAccount do.
    let rbac = [
        (&operator_sa, "list noderulemaps.bulkhead.dev", "yes"),
        (
            &operator_sa,
            "patch segmentationpolicies.bulkhead.dev --subresource=status",
            "yes",
        ),
        (
            &operator_sa,
            "update leases.coordination.k8s.io/bulkhead-operator -n bulkhead-system",
            "yes",
        ),
        (
            &operator_sa,
            "update leases.coordination.k8s.io/other -n bulkhead-system",
            "no",
        ),
        (&operator_sa, "list networkpolicies.networking.k8s.io", "no"),
        (
            &operator_sa,
            "watch endpointslices.discovery.k8s.io -A",
            "yes",
        ),
        (&agent_sa, "list endpointslices.discovery.k8s.io -A", "no"),
        (&operator_sa, "list secrets -A", "no"),
        (&agent_sa, "watch identitymaps.bulkhead.dev", "yes"),
        (&agent_sa, "watch services -A", "yes"),
        (&agent_sa, "get secrets -A", "no"),
        (
            &agent_sa,
            "patch noderulemaps.bulkhead.dev --subresource=status",
            "yes",
        ),
        (&agent_sa, "patch noderulemaps.bulkhead.dev", "no"),
        (&agent_sa, "delete noderulemaps.bulkhead.dev", "no"),
        (&agent_sa, "create tokenreviews.authentication.k8s.io", "no"),
        (
            &collector_sa,
            "create tokenreviews.authentication.k8s.io",
            "yes",
        ),
        (&collector_sa, "list pods -A", "no"),
        (&collector_sa, "list secrets -A", "no"),
        (&collector_sa, "list noderulemaps.bulkhead.dev", "no"),
    ];
    for (user, question, answer) in rbac {
        let args: Vec<&str> = question.split(' ').collect();
        assert_eq!(
            can_i(&kubectl, user, &args),
            answer,
            "{user}: can-i {question}"
        );
    }
}

fn admission_policy_keeps_each_agent_to_its_own_rule_map_status(plane: &ControlPlane) {
    let kubectl = plane.kubectl();
    // The admission policy: each agent writes only its own node's status.
    for node in ["node-1", "node-2"] {
        kubectl
            .apply(&rule_map(node))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let node1 = agent_on(plane, Some("node-1"));
    let own = patch_status(&node1, "node-1", 7);
    assert!(
        own.success,
        "node-1's agent writes its own status: {}",
        own.stderr
    );
    let programmed = run(
        &kubectl,
        &[
            "get",
            "noderulemap",
            "node-1",
            "-o",
            "jsonpath={.status.programmedGeneration}",
        ],
    );
    assert_eq!(programmed, "7");

    let other = patch_status(&node1, "node-2", 7);
    assert!(!other.success, "node-1's agent wrote node-2's status");
    for words in [
        &format!("ValidatingAdmissionPolicy '{POLICY}'")[..],
        "the Bulkhead agent of node node-1 may write only NodeRuleMap node-1, not node-2",
    ] {
        assert!(
            other.stderr.contains(words),
            "{words:?} not in: {}",
            other.stderr
        );
    }

    let spec = node1
        .output(
            &[
                "patch",
                "noderulemap",
                "node-1",
                "--type=merge",
                "-p",
                r#"{"spec": {"host": {"mode": "full"}}}"#,
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!spec.success, "the agent wrote a rule map's spec");
    assert!(spec.stderr.contains("forbidden"), "{}", spec.stderr);
    let mode = run(
        &kubectl,
        &[
            "get",
            "noderulemap",
            "node-1",
            "-o",
            "jsonpath={.spec.host.mode}",
        ],
    );
    assert_eq!(mode, "visibility");

    let nowhere = patch_status(&agent_on(plane, None), "node-1", 8);
    assert!(
        !nowhere.success,
        "credentials without a node claim wrote a status"
    );
    assert!(
        nowhere
            .stderr
            .contains("the Bulkhead agent's credentials name no node"),
        "{}",
        nowhere.stderr
    );
    // Other users are not matched: the admin (standing in for the operator) still writes.
    let admin = patch_status(&kubectl, "node-2", 3);
    assert!(
        admin.success,
        "the admin writes any status: {}",
        admin.stderr
    );
}

/// What the impersonation above stands in for: a token bound to the agent's
/// pod on node-1, as the kubelet would mount it, authenticates with the
/// node claim, and the policy holds the real credentials to node-1.
fn pod_bound_tokens_carry_the_node_claim_the_policy_reads(plane: &ControlPlane) {
    let kubectl = plane.kubectl();
    // What the scheduler would have made: a Node and an agent pod bound to it.
    let pod = "bulkhead-agent-on-node-1";
    kubectl
        .apply(&format!(
            "apiVersion: v1
kind: Node
metadata: {{name: node-1}}
---
apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: {NS}}}
spec:
  nodeName: node-1
  serviceAccountName: {AGENT}
  containers: [{{name: agent, image: {POD_IMAGE}}}]
"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let token = run(
        &kubectl,
        &[
            "create",
            "token",
            AGENT,
            "-n",
            NS,
            "--bound-object-kind=Pod",
            &format!("--bound-object-name={pod}"),
            "--duration=10m",
        ],
    );
    let kubeconfig = plane
        .token_kubeconfig("agent-token-node-1", token.trim())
        .unwrap_or_else(|e| panic!("{e}"));
    let agent = plane.kubectl_as(&kubeconfig);

    let review = agent
        .json(&["auth", "whoami"])
        .unwrap_or_else(|e| panic!("{e}"));
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], service_account(AGENT));
    assert_eq!(
        strings(&user["extra"][NODE_CLAIM]),
        ["node-1"],
        "the token carries no node claim: {user}"
    );
    let own = patch_status(&agent, "node-1", 11);
    assert!(own.success, "{}", own.stderr);
    let other = patch_status(&agent, "node-2", 11);
    assert!(!other.success, "node-1's pod token wrote node-2's status");
    assert!(
        other.stderr.contains(
            "the Bulkhead agent of node node-1 may write only NodeRuleMap node-1, not node-2"
        ),
        "{}",
        other.stderr
    );
}

fn upgrade_applies_changed_values(plane: &ControlPlane, helm: &Helm) {
    let kubectl = plane.kubectl();
    let chart = chart();
    let operator_sa = service_account(OPERATOR);
    // Upgrade: NetworkPolicies on, more replicas, a ServiceMonitor now that its CRD exists.
    kubectl
        .apply(SERVICE_MONITOR_CRD)
        .unwrap_or_else(|e| panic!("{e}"));
    run(
        &kubectl,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
        ],
    );
    helm.run(&[
        "upgrade",
        RELEASE,
        &chart,
        "--namespace",
        NS,
        "--set",
        "networkPolicy.enabled=true,operator.replicas=3,operator.defaultMode=full",
        "--set",
        "operator.metrics.serviceMonitor.enabled=true,collector.serviceMonitor.enabled=true",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let deployment = kubectl
        .json(&["get", "deployment", OPERATOR, "-n", NS])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deployment["spec"]["replicas"], 3);
    let args = strings(&container(&deployment)["args"]);
    assert!(args.contains(&"--network-policies"), "{args:?}");
    assert!(args.contains(&"--default-mode=full"), "{args:?}");
    assert_eq!(
        can_i(
            &kubectl,
            &operator_sa,
            &["list", "networkpolicies.networking.k8s.io"]
        ),
        "yes"
    );
    assert!(exists(
        &kubectl,
        &["get", "servicemonitor", OPERATOR, "-n", NS]
    ));
    assert!(exists(
        &kubectl,
        &["get", "servicemonitor", COLLECTOR, "-n", NS]
    ));
    let status: Value = serde_json::from_str(
        &helm
            .run(&["status", RELEASE, "--namespace", NS, "-o", "json"])
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .expect("helm status -o json");
    assert_eq!(status["version"], 2);
    assert_eq!(status["info"]["status"], "deployed");
}

fn uninstall_removes_the_release_but_not_crds_or_rule_maps(plane: &ControlPlane, helm: &Helm) {
    let kubectl = plane.kubectl();
    let agent_sa = service_account(AGENT);
    let node1 = agent_on(plane, Some("node-1"));
    // Uninstall: the release's objects go; CRDs (Helm never deletes crds/)
    // and the cluster's rule maps stay.
    helm.run(&["uninstall", RELEASE, "--namespace", NS, "--wait"])
        .unwrap_or_else(|e| panic!("{e}"));
    for (object, namespaced) in [
        (format!("deployment/{OPERATOR}"), true),
        (format!("daemonset/{AGENT}"), true),
        (format!("servicemonitor/{OPERATOR}"), true),
        (format!("clusterrole/{OPERATOR}"), false),
        (format!("clusterrole/{AGENT}"), false),
        (format!("validatingadmissionpolicy/{POLICY}"), false),
        (format!("validatingadmissionpolicybinding/{POLICY}"), false),
        (format!("deployment/{COLLECTOR}"), true),
        (format!("service/{COLLECTOR}"), true),
        (format!("servicemonitor/{COLLECTOR}"), true),
        (format!("clusterrole/{COLLECTOR}"), false),
    ] {
        let mut args = vec!["get", object.as_str(), "--ignore-not-found"];
        if namespaced {
            args.extend(["-n", NS]);
        }
        assert!(!exists(&kubectl, &args), "{object} outlived helm uninstall");
    }
    for crd in CRDS {
        assert!(
            exists(&kubectl, &["get", "crd", crd]),
            "helm uninstall removed {crd}"
        );
    }
    assert!(exists(&kubectl, &["get", "noderulemap", "node-1"]));
    // The flow history outlives the release (collector.persistence.keepOnUninstall).
    assert!(
        exists(&kubectl, &["get", "pvc", COLLECTOR_DATA, "-n", NS]),
        "helm uninstall removed the collector's store"
    );
    assert_eq!(
        can_i(
            &kubectl,
            &agent_sa,
            &["patch", "noderulemaps.bulkhead.dev", "--subresource=status"]
        ),
        "no",
        "the agent keeps its rights after uninstall"
    );
    assert!(!patch_status(&node1, "node-1", 9).success);
}
