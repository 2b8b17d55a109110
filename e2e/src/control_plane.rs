//! The control plane as one value: PKI, etcd, kube-apiserver, kubeconfigs and
//! the CRDs, started in that order and stopped in reverse.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use crate::apiserver::{ApiServer, ApiServerConfig};
use crate::binaries::Binaries;
use crate::certs::{Identity, Pki};
use crate::error::{Error, Result};
use crate::etcd::Etcd;
use crate::kubeconfig;
use crate::kubectl::Kubectl;
use crate::process::Lifetime;
use crate::state::{LabRecord, StateDir};

/// Set to keep a test's state directory (logs, certificates) after it ends.
pub const KEEP_ENV: &str = "BULKHEAD_KEEP_LAB";

/// Set to a directory of CRD manifests to install instead of the workspace's.
pub const CRDS_ENV: &str = "BULKHEAD_CRDS";

/// The CRDs the lab installs: `$BULKHEAD_CRDS`, or the ones the workspace
/// generates (`crds/*.yaml`).
pub fn workspace_crds() -> PathBuf {
    std::env::var_os(CRDS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("crds")
        })
}

/// How to start a control plane.
#[derive(Clone, Debug)]
pub struct ControlPlaneConfig {
    /// The state directory; must not exist or be empty.
    pub dir: PathBuf,
    pub binaries: Binaries,
    /// Where the API server listens (loopback unless agents in other network
    /// namespaces must reach it).
    pub bind_address: IpAddr,
    /// The API server's port; `None` for a free one. A lab on its own bridge
    /// address uses 6443, the port agents' failsafe rules keep open.
    pub port: Option<u16>,
    /// Names and addresses the serving certificate covers besides
    /// `bind_address`, 127.0.0.1 and localhost.
    pub extra_sans: Vec<String>,
    /// Nodes whose agents get a kubeconfig at start; more can be added later.
    pub agents: Vec<String>,
    /// A directory of CRD manifests to apply, or none.
    pub crds: Option<PathBuf>,
    pub lifetime: Lifetime,
}

impl ControlPlaneConfig {
    /// Loopback, the workspace's CRDs, no agents, processes tied to this one.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(Self {
            dir: dir.into(),
            binaries: Binaries::locate()?,
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            extra_sans: Vec::new(),
            agents: Vec::new(),
            crds: Some(workspace_crds()),
            lifetime: Lifetime::Attached,
        })
    }
}

/// A running etcd and kube-apiserver with the lab's identities and CRDs.
/// Dropping it stops both, unless it was detached.
#[derive(Debug)]
pub struct ControlPlane {
    state: StateDir,
    binaries: Binaries,
    pki: Pki,
    record: LabRecord,
    admin: PathBuf,
    operator: PathBuf,
    apiserver: ApiServer,
    etcd: Etcd,
    detached: bool,
    temp: Option<tempfile::TempDir>,
}

impl ControlPlane {
    /// Starts a control plane in `dir`, tied to this process.
    pub fn start(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::start_with(ControlPlaneConfig::new(dir)?)
    }

    /// Starts a control plane in a fresh temporary directory, removed when it
    /// is dropped (kept if `BULKHEAD_KEEP_LAB` is set). For tests.
    pub fn start_temp() -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("bulkhead-lab-test-")
            .tempdir()
            .map_err(Error::io(
                "create a temporary directory in",
                std::env::temp_dir(),
            ))?;
        let mut plane = Self::start(temp.path())?;
        plane.temp = Some(temp);
        Ok(plane)
    }

    pub fn start_with(config: ControlPlaneConfig) -> Result<Self> {
        let state = StateDir::create(&config.dir)?;
        let pki = Pki::create(&state.pki())?;
        let mut sans = vec![
            config.bind_address.to_string(),
            "127.0.0.1".into(),
            "localhost".into(),
        ];
        for san in &config.extra_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        if sans[0] == sans[1] {
            sans.remove(0);
        }
        let serving = pki.serving("apiserver", &sans)?;
        let service_account = pki.service_account_keys()?;

        let etcd = Etcd::start(&config.binaries.etcd, &state, config.lifetime)?;
        let apiserver_config = ApiServerConfig {
            binary: config.binaries.kube_apiserver.clone(),
            etcd_url: etcd.client_url.clone(),
            bind_address: config.bind_address,
            port: config.port,
            serving,
            client_ca: pki.ca_cert(),
            service_account,
            lifetime: config.lifetime,
        };
        let apiserver = ApiServer::start(apiserver_config, &state)?;
        let record = LabRecord {
            server: apiserver.url.clone(),
            etcd: etcd.client_url.clone(),
            ca_cert: pki.ca_cert(),
            kubectl: config.binaries.kubectl.clone(),
            ..LabRecord::default()
        };
        let mut plane = Self {
            state,
            binaries: config.binaries,
            pki,
            record,
            admin: PathBuf::new(),
            operator: PathBuf::new(),
            apiserver,
            etcd,
            detached: false,
            temp: None,
        };
        plane.admin = plane.add_identity(&Identity::admin())?;
        plane.operator = plane.add_identity(&Identity::operator())?;
        for node in &config.agents {
            plane.add_agent(node)?;
        }
        let admin = plane.kubectl();
        plane.apiserver.wait_ready(&admin)?;
        if let Some(crds) = &config.crds {
            plane.apply_crds(crds)?;
        }
        plane.state.write_record(&plane.record)?;
        Ok(plane)
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.record.server
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    pub fn record(&self) -> &LabRecord {
        &self.record
    }

    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }

    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }

    pub fn operator_kubeconfig(&self) -> &Path {
        &self.operator
    }

    /// The kubeconfig of `node`'s agent, issuing it on first use.
    pub fn agent_kubeconfig(&mut self, node: &str) -> Result<PathBuf> {
        match self.record.kubeconfigs.get(&Identity::agent(node).name) {
            Some(path) => Ok(path.clone()),
            None => {
                let path = self.add_agent(node)?;
                self.state.write_record(&self.record)?;
                Ok(path)
            }
        }
    }

    /// A kubeconfig of the admin's that impersonates `who` (user, groups
    /// and extra fields such as a ServiceAccount token's node claim), written
    /// as `<name>.yaml` beside the others.
    pub fn impersonating_kubeconfig(
        &self,
        name: &str,
        who: &kubeconfig::Impersonation,
    ) -> Result<PathBuf> {
        kubeconfig::impersonating(&self.admin, &self.state.kubeconfigs(), name, who)
    }

    /// A kubeconfig that authenticates with `token` alone (a ServiceAccount
    /// token from `kubectl create token`), written as `<name>.yaml`.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> Result<PathBuf> {
        kubeconfig::write_token(
            &self.state.kubeconfigs(),
            name,
            &self.record.server,
            &self.pki.ca_cert(),
            token,
        )
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self) -> Kubectl {
        self.kubectl_as(self.admin_kubeconfig())
    }

    /// kubectl with another identity's kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path) -> Kubectl {
        Kubectl::new(&self.binaries.kubectl, kubeconfig)
    }

    /// Leaves etcd and the API server running after this value is gone
    /// (`bulkhead-lab up`); `bulkhead-lab down` stops them by their pid files.
    pub fn detach(mut self) -> LabRecord {
        self.detached = true;
        if let Some(process) = self.apiserver.process.as_mut() {
            process.keep();
        }
        self.etcd.process.keep();
        std::mem::take(&mut self.record)
    }

    /// Stops the API server, then etcd.
    pub fn stop(mut self) -> Result<()> {
        self.stop_processes()
    }

    /// Stops the API server alone, as an outage would; etcd and every
    /// object stay. `start_api_server` brings it back on the same URL.
    pub fn stop_api_server(&mut self) -> Result<()> {
        self.apiserver.stop()
    }

    /// Restarts the API server after `stop_api_server` and waits until it serves.
    pub fn start_api_server(&mut self) -> Result<()> {
        self.apiserver.restart(&self.state)?;
        let admin = self.kubectl();
        self.apiserver.wait_ready(&admin)
    }

    fn stop_processes(&mut self) -> Result<()> {
        let apiserver = self.apiserver.stop();
        let etcd = self.etcd.process.stop();
        apiserver.and(etcd)
    }

    fn add_agent(&mut self, node: &str) -> Result<PathBuf> {
        self.add_identity(&Identity::agent(node))
    }

    fn add_identity(&mut self, identity: &Identity) -> Result<PathBuf> {
        let client = self.pki.client(identity)?;
        let path = kubeconfig::write(
            &self.state.kubeconfigs(),
            &identity.name,
            &self.record.server,
            &self.pki.ca_cert(),
            &client,
        )?;
        self.record
            .kubeconfigs
            .insert(identity.name.clone(), path.clone());
        Ok(path)
    }

    /// Applies every manifest in `dir` and waits until each CRD is Established.
    fn apply_crds(&self, dir: &Path) -> Result<()> {
        let dir = dir.to_string_lossy();
        let kubectl = self.kubectl();
        // Server-side: a large CRD does not fit the client-side last-applied annotation.
        kubectl.run(&[
            "apply",
            "--server-side",
            "--field-manager=bulkhead-lab",
            "-f",
            &dir,
        ])?;
        kubectl.run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &dir,
        ])?;
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let _ = self.stop_processes();
        if let Some(temp) = self.temp.take() {
            if std::env::var_os(KEEP_ENV).is_some() {
                eprintln!("bulkhead-lab: kept {}", temp.keep().display());
            }
        }
    }
}
