//! Alerts to a real rsyslog (Debian's `rsyslog` and `rsyslog-gnutls`) that
//! the test starts on loopback with its own configuration: RFC 5424 over UDP,
//! TCP and TLS, CEF over UDP and TLS. rsyslog parses each line (app-name,
//! msgid, structured data) and writes what it understood to a file; the test
//! reads that back and parses the structured data and the CEF extension.
//! Fails when rsyslogd is missing (scripts/deps.sh installs it).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::rule_map::Direction;
use bulkhead_collector::alerts::syslog::{SyslogSink, SyslogTarget};
use bulkhead_collector::alerts::{client_tls, Pipeline};
use bulkhead_collector::metrics::Metrics;
use bulkhead_insight::detect::{DetectConfig, Detector, ScanConfig};
use common::fixtures::*;
use jiff::SignedDuration;

struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port(udp: bool) -> u16 {
    if udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp port");
        s.local_addr().expect("addr").port()
    } else {
        let s = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp port");
        s.local_addr().expect("addr").port()
    }
}

/// Until `check` holds on the file's text, or `limit` passes (then panics
/// with the text). A fact to wait for, not a sleep.
fn wait_for(path: &Path, limit: Duration, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if check(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}; {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_rsyslog(dir: &Path, udp: u16, tcp: u16, tls: u16) -> Rsyslog {
    let d = dir.display();
    let conf = format!(
        r#"global(workDirectory="{d}" processInternalMessages="on"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/cert.pem"
       defaultNetstreamDriverKeyFile="{d}/key.pem")
module(load="imudp")
module(load="imtcp" maxSessions="16")
input(type="imudp" address="127.0.0.1" port="{udp}" name="in-udp")
input(type="imtcp" address="127.0.0.1" port="{tcp}" name="in-tcp")
input(type="imtcp" address="127.0.0.1" port="{tls}" name="in-tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="parsed" type="string"
         string="%inputname%\t%pri%\t%app-name%\t%msgid%\t%structured-data%\t%msg%\n")
if $inputname startswith "in-" then {{
  action(type="omfile" file="{d}/received.log" template="parsed")
  stop
}}
action(type="omfile" file="{d}/internal.log")
"#
    );
    std::fs::write(dir.join("rsyslog.conf"), conf).expect("conf");
    let child = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(dir.join("rsyslog.conf"))
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.log")).expect("stderr"),
        ))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("rsyslogd: {e}; install it with `apt-get install -y rsyslog rsyslog-gnutls`")
        });
    let r = Rsyslog(child);
    // rsyslogd logs "start" once its inputs are listening.
    wait_for(
        &dir.join("internal.log"),
        Duration::from_secs(20),
        "rsyslogd did not start",
        |t| t.contains("] start"),
    );
    r
}

fn certificates(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "bulkhead test syslog CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let cert = params.signed_by(&key, &issuer).expect("cert");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("ca.pem");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key.pem");
}

/// The SD-PARAMs of one SD-ELEMENT, unescaping `\"`, `\\` and `\]`.
fn parse_sd(sd: &str) -> (String, BTreeMap<String, String>) {
    let inner = sd
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or_else(|| panic!("one SD-ELEMENT: {sd}"));
    let (id, mut rest) = inner.split_once(' ').expect("SD-ID and params");
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"").expect("name=\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next().expect("escaped").1),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        params.insert(name.trim().to_string(), value);
        rest = after[end..].trim_start();
    }
    (id.to_string(), params)
}

/// The seven CEF header fields and the extension's key=value pairs.
fn parse_cef(msg: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut header = Vec::new();
    let mut field = String::new();
    let mut chars = msg.chars();
    while header.len() < 7 {
        match chars.next().expect("7 header fields") {
            '\\' => field.push(chars.next().expect("escaped")),
            '|' => header.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    let ext: String = chars.collect();
    // A key starts after a space and runs to an unescaped '='.
    let mut pairs = BTreeMap::new();
    let (mut key, mut value, mut in_key) = (String::new(), String::new(), true);
    let mut it = ext.chars().peekable();
    while let Some(c) = it.next() {
        if in_key {
            if c == '=' {
                in_key = false;
            } else {
                key.push(c);
            }
            continue;
        }
        match c {
            '\\' => match it.next() {
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                Some(e) => value.push(e),
                None => {}
            },
            ' ' => {
                let rest: String = it.clone().collect();
                let next_key = rest.split(' ').next().unwrap_or("");
                if next_key.contains('=') && !next_key.starts_with('=') {
                    pairs.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                    in_key = true;
                } else {
                    value.push(' ');
                }
            }
            c => value.push(c),
        }
    }
    pairs.insert(key, value);
    (header, pairs)
}

fn sweep() -> Vec<FlowRecord> {
    let mut probe = pod("10.0.9.9", "dev", "probe", &[("app", "probe")]);
    // Characters RFC 5424 makes us escape, to see them come back intact.
    probe.name = Some(r#"dev/probe"a]b\c"#.into());
    (1..=3)
        .map(|n| {
            let dst = pod(
                &format!("10.0.1.{n}"),
                "prod",
                &format!("db-{n}"),
                &[("app", "db")],
            );
            let mut r = rec(
                "node-1",
                ts("2026-06-15T12:00:00Z") + SignedDuration::from_secs(n),
                probe.clone(),
                dst,
                5432,
                Direction::Egress,
            );
            r.verdict = FlowVerdict::Deny;
            r.would_verdict = FlowVerdict::Deny;
            r
        })
        .collect()
}

#[test]
fn alerts_reach_rsyslog_over_udp_tcp_and_tls_and_parse_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    certificates(dir.path());
    let (udp, tcp, tls) = (free_port(true), free_port(false), free_port(false));
    let _rsyslog = start_rsyslog(dir.path(), udp, tcp, tls);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let alert = rt.block_on(async {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Metrics::register(&mut registry);
        let config = DetectConfig {
            scan: ScanConfig {
                hosts: 3,
                ..ScanConfig::default()
            },
            ..DetectConfig::default()
        };
        let mut pipeline = Pipeline::new(Detector::new(config).expect("config"), &metrics);
        let ca = Arc::new(client_tls(Some(&dir.path().join("ca.pem")), "ca").expect("ca"));
        for target in [
            format!("udp://127.0.0.1:{udp}"),
            format!("udp://127.0.0.1:{udp}?format=cef"),
            format!("tcp://127.0.0.1:{tcp}"),
            format!("tls://127.0.0.1:{tls}"),
            format!("tls://127.0.0.1:{tls}?format=cef"),
        ] {
            pipeline.add_syslog(SyslogSink {
                target: target.parse::<SyslogTarget>().expect("target"),
                tls: Some(ca.clone()),
                hostname: "collector-0".into(),
            });
        }
        let raised = pipeline.observe(&sweep());
        assert_eq!(raised.len(), 1, "{raised:#?}");
        // The same batch again (a retried POST) raises nothing.
        assert!(pipeline.observe(&sweep()).is_empty());
        let alert = raised.into_iter().next().expect("one");
        let received = dir.path().join("received.log");
        tokio::task::spawn_blocking(move || {
            wait_for(&received, Duration::from_secs(30), "5 lines", |t| {
                t.lines().count() >= 5
            })
        })
        .await
        .expect("wait");
        alert
    });

    let text = std::fs::read_to_string(dir.path().join("received.log")).expect("received");
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 5, "each sink sent once:\n{text}");
    let mut seen = BTreeMap::new();
    for f in &lines {
        let [input, pri, app, msgid, sd, msg] = f[..] else {
            panic!("6 fields: {f:?}");
        };
        // auth (4) * 8 + error (3): a scan is high severity.
        assert_eq!((pri, app, msgid), ("35", "bulkhead", "scan"), "{f:?}");
        let msg = msg.trim_start();
        if let Some(cef) = msg.strip_prefix("CEF:") {
            assert_eq!(sd, "-", "CEF lines carry no structured data");
            let (header, ext) = parse_cef(&format!("CEF:{cef}"));
            assert_eq!(header[0], "CEF:0");
            assert_eq!(&header[1..3], ["Bulkhead", "bulkhead-collector"]);
            assert_eq!(&header[4..7], ["scan", "Port or host scan", "8"]);
            assert_eq!(ext["externalId"], alert.id);
            assert_eq!(ext["src"], "10.0.9.9");
            assert_eq!(ext["shost"], r#"dev/probe"a]b\c"#);
            assert_eq!(ext["act"], "deny");
            assert_eq!(ext["cn1"], "3");
            assert_eq!(ext["dpt"], "5432");
            assert_eq!(ext["msg"], alert.summary);
            *seen.entry((input, "cef")).or_insert(0) += 1;
        } else {
            let (id, p) = parse_sd(sd);
            assert_eq!(id, "bulkhead@32473");
            assert_eq!(p["schema"], "alert/v1");
            assert_eq!(p["id"], alert.id);
            assert_eq!(p["detector"], "scan");
            assert_eq!(p["severity"], "high");
            assert_eq!(p["src"], "10.0.9.9");
            assert_eq!(p["srcName"], r#"dev/probe"a]b\c"#);
            assert_eq!(p["srcLabels"], "app=probe");
            assert_eq!(p["destinations"], "3");
            assert_eq!(p["ports"], "5432");
            assert_eq!(p["verdict"], "deny");
            assert!(!p.contains_key("dst"), "a host scan has no one destination");
            assert_eq!(msg, alert.summary);
            *seen.entry((input, "rfc5424")).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<(&str, &str), i32> = [
        (("in-udp", "rfc5424"), 1),
        (("in-udp", "cef"), 1),
        (("in-tcp", "rfc5424"), 1),
        (("in-tls", "rfc5424"), 1),
        (("in-tls", "cef"), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen, expected);
}
