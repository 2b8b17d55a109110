//! Finding kube-apiserver, etcd, kubectl and helm.
//!
//! `e2e/tools.sh` owns where they live (a versioned cache, or
//! `KUBEBUILDER_ASSETS`) and builds them; this module only asks it, so the
//! versions are written in one place. `KUBE_APISERVER`, `ETCD`, `KUBECTL`
//! and `HELM` in the environment override it (`eval "$(e2e/tools.sh env)"`
//! sets them all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The script that builds and locates the binaries.
pub fn tools_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools.sh")
}

/// Paths of the control-plane programs the lab runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binaries {
    pub kube_apiserver: PathBuf,
    pub etcd: PathBuf,
    pub kubectl: PathBuf,
}

const VARS: [&str; 3] = ["KUBE_APISERVER", "ETCD", "KUBECTL"];

impl Binaries {
    /// Finds the three programs, or says how to get them. Never builds: a
    /// cold build takes many minutes and belongs to `make tools`.
    pub fn locate() -> Result<Self> {
        let mut found: BTreeMap<&str, PathBuf> = VARS
            .iter()
            .filter_map(|var| std::env::var_os(var).map(|v| (*var, PathBuf::from(v))))
            .collect();
        if found.len() < VARS.len() {
            for (key, path) in ask_tools_script()? {
                if let Some(var) = VARS.iter().find(|v| **v == key) {
                    found.entry(var).or_insert(path);
                }
            }
        }
        let mut take = |var: &str| -> Result<PathBuf> {
            let path = found
                .remove(var)
                .ok_or_else(|| missing(&format!("{var} is not set")))?;
            if is_executable(&path) {
                Ok(path)
            } else {
                Err(missing(&format!(
                    "{var}={} is not an executable file",
                    path.display()
                )))
            }
        };
        Ok(Self {
            kube_apiserver: take("KUBE_APISERVER")?,
            etcd: take("ETCD")?,
            kubectl: take("KUBECTL")?,
        })
    }
}

/// One more program `e2e/tools.sh` provides (helm, which only the chart's
/// tests need): `$var`, or the path the script reports under `var`.
pub fn locate_one(var: &str, program: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => ask_tools_script()?
            .into_iter()
            .find(|(key, _)| key == var)
            .map(|(_, path)| path)
            .ok_or_else(|| {
                Error::MissingBinaries(format!(
                    "{program} is not built: run `make tools` ({}), or set {var}",
                    tools_script().display()
                ))
            })?,
    };
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(Error::MissingBinaries(format!(
            "{var}={} is not an executable file",
            path.display()
        )))
    }
}

fn ask_tools_script() -> Result<Vec<(String, PathBuf)>> {
    let script = tools_script();
    let output = Command::new("bash")
        .arg(&script)
        .arg("paths")
        .output()
        .map_err(|source| Error::Spawn {
            program: script.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(missing(String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), PathBuf::from(v.trim())))
        .collect())
}

fn missing(why: &str) -> Error {
    Error::MissingBinaries(format!(
        "the lab needs kube-apiserver, etcd and kubectl ({why}). Build them once with \
         `make tools` (runs {}; a cold build takes a while), or point KUBEBUILDER_ASSETS at \
         a directory holding kube-apiserver and etcd, or set KUBE_APISERVER, ETCD and KUBECTL.",
        tools_script().display()
    ))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The project's own programs the lab runs: the operator and the node agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectBinaries {
    pub operator: PathBuf,
    pub agent: PathBuf,
}

/// Environment variables that name prebuilt binaries instead.
pub const OPERATOR_ENV: &str = "BULKHEAD_OPERATOR";
pub const AGENT_ENV: &str = "BULKHEAD_AGENT";

impl ProjectBinaries {
    /// `kubectl-bulkhead`, built beside the operator.
    pub fn cli(&self) -> PathBuf {
        self.operator.with_file_name("kubectl-bulkhead")
    }

    /// `bulkhead-collector`, built beside the operator.
    pub fn collector(&self) -> PathBuf {
        self.operator.with_file_name("bulkhead-collector")
    }

    /// `$BULKHEAD_OPERATOR` and `$BULKHEAD_AGENT` when both are set;
    /// otherwise builds both with cargo (once per process, so a test run
    /// always drives the code of this checkout) and uses the workspace's.
    pub fn locate() -> Result<Self> {
        if let (Some(operator), Some(agent)) =
            (std::env::var_os(OPERATOR_ENV), std::env::var_os(AGENT_ENV))
        {
            return Ok(Self {
                operator: operator.into(),
                agent: agent.into(),
            });
        }
        static BUILT: std::sync::OnceLock<std::result::Result<ProjectBinaries, String>> =
            std::sync::OnceLock::new();
        BUILT
            .get_or_init(|| build_project().map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::MissingBinaries)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build_project() -> Result<ProjectBinaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        // The whole workspace's binaries, with the features `cargo build
        // --workspace` unifies: building two packages alone would resolve
        // other features and relink them on every alternation.
        .args(["build", "--quiet", "--workspace", "--bins"])
        .output()
        .map_err(|source| Error::Spawn {
            program: cargo.to_string_lossy().into_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: "cargo build --workspace --bins".into(),
            status: output
                .status
                .code()
                .map_or("killed".to_owned(), |c| format!("exit {c}")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("debug");
    let binaries = ProjectBinaries {
        operator: target.join("bulkhead-operator"),
        agent: target.join("bulkhead-agent"),
    };
    for path in [&binaries.operator, &binaries.agent, &binaries.collector()] {
        if !is_executable(path) {
            return Err(Error::MissingBinaries(format!(
                "cargo built, but {} is not there",
                path.display()
            )));
        }
    }
    Ok(binaries)
}
