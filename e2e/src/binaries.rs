//! Finding kube-apiserver, etcd and kubectl.
//!
//! `e2e/tools.sh` owns where they live (a versioned cache, or
//! `KUBEBUILDER_ASSETS`) and builds them; this module only asks it, so the
//! versions are written in one place. `KUBE_APISERVER`, `ETCD` and `KUBECTL`
//! in the environment override it (`eval "$(e2e/tools.sh env)"` sets all three).

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
