//! kube-apiserver for the lab: TLS with client certificates, RBAC on,
//! service accounts signed by the lab's key, storage in the lab's etcd.
//!
//! There is no controller manager and no kubelet, so admission that waits on
//! them is off (`ServiceAccount` would refuse every pod until a controller
//! made the namespace's default account), and the `kubernetes` Service's
//! endpoints are not reconciled (a loopback address is not a valid endpoint).

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::certs::CertFiles;
use crate::error::Result;
use crate::kubectl::Kubectl;
use crate::process::{free_port, Lifetime, Process};
use crate::state::StateDir;

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What the API server is started with.
#[derive(Debug)]
pub struct ApiServerConfig<'a> {
    pub binary: &'a Path,
    pub etcd_url: &'a str,
    /// The address it listens on: loopback by default; an address on the
    /// lab's bridge when agents in node namespaces must reach it.
    pub bind_address: IpAddr,
    pub serving: &'a CertFiles,
    pub client_ca: &'a Path,
    pub service_account: &'a CertFiles,
}

/// A running kube-apiserver.
#[derive(Debug)]
pub struct ApiServer {
    pub process: Process,
    /// `https://<bind address>:<port>`.
    pub url: String,
}

impl ApiServer {
    /// Starts kube-apiserver; `wait_ready` waits for it to serve.
    pub fn start(
        config: &ApiServerConfig<'_>,
        state: &StateDir,
        lifetime: Lifetime,
    ) -> Result<Self> {
        let port = free_port(config.bind_address)?;
        let url = match config.bind_address {
            IpAddr::V4(ip) => format!("https://{ip}:{port}"),
            IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
        };
        let mut cmd = Command::new(config.binary);
        cmd.arg(format!("--etcd-servers={}", config.etcd_url))
            .arg(format!("--bind-address={}", config.bind_address))
            .arg(format!("--advertise-address={}", config.bind_address))
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", state.apiserver_certs().display()))
            .arg(format!("--tls-cert-file={}", config.serving.cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                config.serving.key.display()
            ))
            .arg(format!("--client-ca-file={}", config.client_ca.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--anonymous-auth=false")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                config.service_account.cert.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                config.service_account.key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--endpoint-reconciler-type=none")
            .arg("--allow-privileged=true")
            .arg("--profiling=false");
        let process = Process::spawn(state, "kube-apiserver", cmd, lifetime)?;
        Ok(Self { process, url })
    }

    /// Waits until `/readyz` answers ok to `admin` (a kubectl with admin rights).
    pub fn wait_ready(&mut self, admin: &Kubectl) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = admin.output(&["get", "--raw=/readyz", "--request-timeout=5s"], None)?;
            if out.success && out.stdout.trim() == "ok" {
                return Ok(());
            }
            if !self.process.is_running() || Instant::now() > deadline {
                return Err(self.process.not_ready("waiting for /readyz"));
            }
            sleep(Duration::from_millis(250));
        }
    }
}
