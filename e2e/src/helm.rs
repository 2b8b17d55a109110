//! Running the real `helm` against the lab's API server, as users install
//! the chart (`charts/bulkhead`).
//!
//! helm is built by `e2e/tools.sh` like kubectl; `HELM` in the environment
//! overrides it. Each [`Helm`] keeps its configuration, cache and data
//! directories in a place of its own, so a test neither reads nor writes the
//! user's `~/.config/helm` (repositories, plugins).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::binaries;
use crate::error::{Error, Result};
use crate::kubectl::Output;

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("charts")
        .join("bulkhead")
}

/// helm, bound to one home directory and, for cluster commands, one kubeconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helm {
    pub binary: PathBuf,
    /// Holds helm's config, cache and data directories.
    pub home: PathBuf,
    pub kubeconfig: Option<PathBuf>,
}

impl Helm {
    /// `$HELM`, or the helm `e2e/tools.sh` built; never builds (`make tools` does).
    pub fn locate() -> Result<PathBuf> {
        binaries::locate_one("HELM", "helm")
    }

    pub fn new(binary: &Path, home: &Path) -> Self {
        Self {
            binary: binary.to_owned(),
            home: home.to_owned(),
            kubeconfig: None,
        }
    }

    /// The same helm, talking to the API server of `kubeconfig`.
    pub fn with_kubeconfig(&self, kubeconfig: &Path) -> Self {
        Self {
            kubeconfig: Some(kubeconfig.to_owned()),
            ..self.clone()
        }
    }

    /// Runs `helm <args>`; what it printed and whether it succeeded.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT")
            .stdin(Stdio::null());
        match &self.kubeconfig {
            Some(kubeconfig) => cmd.env("KUBECONFIG", kubeconfig),
            // Commands that need no cluster must not reach one by accident.
            None => cmd.env("KUBECONFIG", self.home.join("no-cluster")),
        };
        let out = cmd.output().map_err(|source| Error::Spawn {
            program: self.binary.display().to_string(),
            source,
        })?;
        Ok(Output::from(out))
    }

    /// Runs `helm <args>` and returns its stdout; an error if it fails.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.output(args)?
            .stdout_if_success(|| format!("helm {}", args.join(" ")))
    }
}
