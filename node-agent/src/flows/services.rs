//! Service addresses to Service names, for the `service` of flow records.
//! Pure: Services in, a lookup out; the cluster-mode watch feeds it.
//!
//! ```text
//!  Service shop/web  clusterIPs [10.96.0.10]      ports [{http, 80/TCP, nodePort 30080}]
//!                    externalIPs [192.0.2.7]
//!                    status.loadBalancer.ingress [{ip: 198.51.100.4}]
//!
//!  (10.96.0.10, 80, TCP)    ─┐
//!  (192.0.2.7, 80, TCP)     ─┼─► shop/web, port "http"
//!  (198.51.100.4, 80, TCP)  ─┘
//!  (any address, 30080, TCP) ──► shop/web, port "http"   (NodePort: only
//!                                 when no address above matched)
//! ```
//!
//! The datapath says a flow went through a Service (a VIA_SERVICE conntrack
//! entry); this only names it. An address two Services claim (a
//! misconfigured externalIP) names the first in namespace/name order.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::flow::FlowRecord;
use bulkhead_api::policy::Protocol;
use k8s_openapi::api::core::v1::Service;

/// What a Service address names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
    /// The Service port's name; `None` for an unnamed (single) port.
    pub port_name: Option<String>,
}

/// Every Service address this agent knows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceIndex {
    by_address: BTreeMap<(IpAddr, u16, Protocol), ServiceName>,
    by_node_port: BTreeMap<(u16, Protocol), ServiceName>,
}

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        "SCTP" => Some(Protocol::Sctp),
        _ => None,
    }
}

/// The addresses a client may send to: clusterIPs (or the legacy
/// clusterIP), externalIPs, and load balancer ingress IPs. Unparsable
/// entries (`None` for headless) are skipped.
fn addresses(svc: &Service) -> Vec<IpAddr> {
    let mut text: Vec<&str> = Vec::new();
    if let Some(spec) = &svc.spec {
        match &spec.cluster_ips {
            Some(ips) if !ips.is_empty() => text.extend(ips.iter().map(String::as_str)),
            _ => text.extend(spec.cluster_ip.as_deref()),
        }
        text.extend(spec.external_ips.iter().flatten().map(String::as_str));
    }
    let ingress = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    text.extend(
        ingress
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()),
    );
    let mut out: Vec<IpAddr> = text.iter().filter_map(|t| t.parse().ok()).collect();
    out.sort();
    out.dedup();
    out
}

impl ServiceIndex {
    /// The index of these Services (any order: the result is the same).
    pub fn new<'a>(services: impl IntoIterator<Item = &'a Service>) -> Self {
        let mut sorted: Vec<&Service> = services.into_iter().collect();
        sorted.sort_by(|a, b| {
            let key = |s: &Service| (s.metadata.namespace.clone(), s.metadata.name.clone());
            key(a).cmp(&key(b))
        });
        let mut index = ServiceIndex::default();
        for svc in sorted {
            let (Some(namespace), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name)
            else {
                continue;
            };
            let addresses = addresses(svc);
            let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
            for port in ports.into_iter().flatten() {
                let (Some(proto), Ok(number)) =
                    (protocol(port.protocol.as_deref()), u16::try_from(port.port))
                else {
                    continue;
                };
                let named = ServiceName {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    port_name: port.name.clone().filter(|n| !n.is_empty()),
                };
                for addr in &addresses {
                    index
                        .by_address
                        .entry((*addr, number, proto))
                        .or_insert_with(|| named.clone());
                }
                if let Some(np) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
                    index
                        .by_node_port
                        .entry((np, proto))
                        .or_insert_with(|| named.clone());
                }
            }
        }
        index
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty() && self.by_node_port.is_empty()
    }

    /// The Service behind an address and port a client sent to.
    pub fn lookup(&self, address: IpAddr, port: u16, protocol: Protocol) -> Option<&ServiceName> {
        self.by_address
            .get(&(address, port, protocol))
            .or_else(|| self.by_node_port.get(&(port, protocol)))
    }

    /// Names the record's `service`, when it has one and it is known.
    pub fn name(&self, r: &mut FlowRecord) {
        let protocol = r.protocol;
        let Some(svc) = r.service.as_mut() else {
            return;
        };
        if let Some(n) = self.lookup(svc.address, svc.port, protocol) {
            svc.namespace = Some(n.namespace.clone());
            svc.name = Some(n.name.clone());
            svc.port_name = n.port_name.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        serde_yaml::from_str(yaml).expect("a Service")
    }

    fn web() -> Service {
        service(
            r#"
metadata: {namespace: shop, name: web}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00::10"]
  externalIPs: [192.0.2.7]
  ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
    - {name: dns, port: 53, protocol: UDP}
status:
  loadBalancer: {ingress: [{ip: 198.51.100.4}, {hostname: lb.example.com}]}
"#,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn every_address_of_a_service_names_it_with_the_port_asked_for() {
        let index = ServiceIndex::new(&[web()]);
        let http = Some(ServiceName {
            namespace: "shop".into(),
            name: "web".into(),
            port_name: Some("http".into()),
        });
        for addr in ["10.96.0.10", "fd00::10", "192.0.2.7", "198.51.100.4"] {
            assert_eq!(
                index.lookup(ip(addr), 80, Protocol::Tcp).cloned(),
                http,
                "{addr}"
            );
        }
        let dns = index.lookup(ip("10.96.0.10"), 53, Protocol::Udp);
        assert_eq!(dns.and_then(|n| n.port_name.as_deref()), Some("dns"));
        // The port and the protocol are part of the address.
        assert_eq!(index.lookup(ip("10.96.0.10"), 53, Protocol::Tcp), None);
        assert_eq!(index.lookup(ip("10.96.0.10"), 81, Protocol::Tcp), None);
        assert_eq!(index.lookup(ip("10.96.0.11"), 80, Protocol::Tcp), None);
        // A NodePort, on whatever node address the client used.
        assert_eq!(
            index.lookup(ip("10.0.0.1"), 30080, Protocol::Tcp).cloned(),
            http
        );
    }

    #[test]
    fn headless_and_nameless_services_name_nothing_and_the_order_does_not_matter() {
        let headless = service(
            "metadata: {namespace: shop, name: db}\nspec: {clusterIP: None, ports: [{port: 5432}]}",
        );
        assert!(ServiceIndex::new(&[headless]).is_empty());
        // A legacy single clusterIP and an unnamed port.
        let legacy = service(
            "metadata: {namespace: a, name: one}\nspec: {clusterIP: 10.96.0.20, ports: [{port: 443}]}",
        );
        let clash = service(
            "metadata: {namespace: b, name: two}\nspec: {clusterIP: 10.96.0.21, externalIPs: [10.96.0.20], ports: [{port: 443, name: ''}]}",
        );
        let one = ServiceIndex::new(&[legacy.clone(), clash.clone()]);
        assert_eq!(one, ServiceIndex::new(&[clash, legacy]));
        let named = one.lookup(ip("10.96.0.20"), 443, Protocol::Tcp).cloned();
        assert_eq!(
            named,
            Some(ServiceName {
                namespace: "a".into(),
                name: "one".into(),
                port_name: None
            })
        );
        let two = one.lookup(ip("10.96.0.21"), 443, Protocol::Tcp);
        assert_eq!(two.map(|n| n.name.as_str()), Some("two"));
        assert_eq!(two.and_then(|n| n.port_name.clone()), None, "'' is no name");
    }

    #[test]
    fn a_record_through_a_known_service_gets_its_name_and_others_stay_as_they_are() {
        let index = ServiceIndex::new(&[web()]);
        let text = r#"{"schema":"flow/v1","start":"2026-01-01T10:00:00Z","end":"2026-01-01T10:00:10Z",
            "node":"n1","source":{"address":"10.1.0.5","identity":1000,"kind":"pod","reported":true},
            "destination":{"address":"10.1.0.9","identity":1001,"kind":"pod","reported":true},
            "port":8080,"protocol":"TCP","direction":"egress","verdict":"allow","wouldVerdict":"allow",
            "mode":"full","reason":"default","flows":1,"packets":2,"bytes":3,
            "service":{"address":"10.96.0.10","port":80}}"#;
        let mut r: FlowRecord = serde_json::from_str(text).expect("record");
        index.name(&mut r);
        let svc = r.service.clone().expect("service");
        assert_eq!(svc.service().as_deref(), Some("shop/web"));
        assert_eq!(svc.port_name.as_deref(), Some("http"));
        assert_eq!(svc.address, ip("10.96.0.10"), "the VIP stays");
        assert_eq!(r.destination.address, ip("10.1.0.9"), "so does the backend");

        let mut unknown = r.clone();
        unknown.service = Some(bulkhead_api::flow::ServiceAddress {
            address: ip("10.96.9.9"),
            port: 80,
            namespace: None,
            name: None,
            port_name: None,
        });
        let before = unknown.clone();
        index.name(&mut unknown);
        assert_eq!(unknown, before);
        let mut direct = r;
        direct.service = None;
        index.name(&mut direct);
        assert_eq!(direct.service, None);
    }
}
