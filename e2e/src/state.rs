//! The lab's state directory: everything `up` makes on disk, so that `down`
//! can remove exactly that.
//!
//! ```text
//! $BULKHEAD_LAB_DIR (default /tmp/bulkhead-lab)
//! ├── lab.json            what runs where (the marker that this directory is a lab's)
//! ├── pki/                CA, serving and client certificates, service-account keys
//! ├── kubeconfig/         admin.yaml, operator.yaml, agent-<node>.yaml
//! ├── etcd/               etcd's data directory
//! ├── apiserver/          kube-apiserver's --cert-dir
//! ├── pids/               NN-<name>.pid, one per process started, NN = start order
//! └── logs/               <name>.log, stdout and stderr of each process
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variable that chooses the state directory.
pub const LAB_DIR_ENV: &str = "BULKHEAD_LAB_DIR";
const RECORD: &str = "lab.json";

/// A lab's state directory and the paths inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `$BULKHEAD_LAB_DIR`, or `/tmp/bulkhead-lab`.
    pub fn default_root() -> PathBuf {
        std::env::var_os(LAB_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/bulkhead-lab"))
    }

    /// Refers to `root` without touching the disk.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Creates the directory tree for a new lab. Refuses a directory that
    /// holds anything already: a lab that is up, or files that are not ours.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let dir = Self::at(root);
        if dir.record_path().exists() {
            return Err(
                dir.problem("a lab is already recorded here; run `bulkhead-lab down` first")
            );
        }
        if let Ok(mut entries) = fs::read_dir(&dir.root) {
            if entries.next().is_some() {
                return Err(dir.problem("exists and is not empty; choose another directory"));
            }
        }
        for sub in ["pki", "kubeconfig", "etcd", "apiserver", "pids", "logs"] {
            let path = dir.root.join(sub);
            fs::create_dir_all(&path).map_err(Error::io("create", path))?;
        }
        // etcd refuses a data directory that others can read.
        set_mode(&dir.etcd_data(), 0o700)?;
        set_mode(&dir.pki(), 0o700)?;
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn kubeconfigs(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd")
    }
    pub fn apiserver_certs(&self) -> PathBuf {
        self.root.join("apiserver")
    }
    pub fn pids(&self) -> PathBuf {
        self.root.join("pids")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }
    pub fn record_path(&self) -> PathBuf {
        self.root.join(RECORD)
    }

    /// True when this directory was made by the lab (it holds `lab.json`, or
    /// the tree `create` makes).
    pub fn is_lab(&self) -> bool {
        self.record_path().exists() || (self.pids().is_dir() && self.pki().is_dir())
    }

    pub fn write_record(&self, record: &LabRecord) -> Result<()> {
        let path = self.record_path();
        let json = serde_json::to_vec_pretty(record).map_err(|source| Error::Record {
            path: path.clone(),
            source,
        })?;
        fs::write(&path, json).map_err(Error::io("write", path))
    }

    pub fn read_record(&self) -> Result<LabRecord> {
        let path = self.record_path();
        let bytes = fs::read(&path).map_err(Error::io("read", path.clone()))?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Record { path, source })
    }

    /// Removes the whole directory, if it is a lab's; a directory that is not
    /// is left alone and reported.
    pub fn remove(&self) -> Result<()> {
        if !self.root.exists() {
            return Ok(());
        }
        if !self.is_lab() {
            return Err(self.problem("does not look like a lab's state directory; not removing it"));
        }
        fs::remove_dir_all(&self.root).map_err(Error::io("remove", self.root.clone()))
    }

    fn problem(&self, problem: &str) -> Error {
        Error::StateDir {
            dir: self.root.clone(),
            problem: problem.to_owned(),
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(Error::io("chmod", path))
}

/// What a running lab is made of, written to `lab.json` by `up` and read by
/// `status`, `down` and the parts that join later (topology, operator, agents).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabRecord {
    /// The API server's URL, e.g. `https://127.0.0.1:41234`.
    pub server: String,
    /// etcd's client URL.
    pub etcd: String,
    /// The PEM file of the CA that signed the serving and client certificates.
    pub ca_cert: PathBuf,
    /// Kubeconfig per identity: `admin`, `operator`, `agent-<node>`.
    pub kubeconfigs: BTreeMap<String, PathBuf>,
    /// The kubectl the lab uses.
    pub kubectl: PathBuf,
    /// The topology, pods, operator replicas and agents (absent for a lab
    /// that is only a control plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<crate::lab::LabParts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn create_refuses_a_directory_with_anything_in_it() {
        let parent = temp();
        fs::write(parent.path().join("notes.txt"), "mine").unwrap_or_else(|e| panic!("{e}"));
        assert!(StateDir::create(parent.path()).is_err());
        assert!(parent.path().join("notes.txt").exists());
    }

    #[test]
    fn remove_takes_a_lab_directory_and_leaves_any_other_alone() {
        let parent = temp();
        let lab = StateDir::create(parent.path().join("lab")).unwrap_or_else(|e| panic!("{e}"));
        lab.write_record(&LabRecord::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            StateDir::create(lab.root()).is_err(),
            "a second lab in the same directory"
        );
        lab.remove().unwrap_or_else(|e| panic!("{e}"));
        assert!(!lab.root().exists());
        assert!(parent.path().exists());

        let other = parent.path().join("someone-elses");
        fs::create_dir(&other).unwrap_or_else(|e| panic!("{e}"));
        fs::write(other.join("data"), "keep").unwrap_or_else(|e| panic!("{e}"));
        assert!(StateDir::at(&other).remove().is_err());
        assert!(other.join("data").exists());
    }

    #[test]
    fn the_record_round_trips() {
        let parent = temp();
        let lab = StateDir::create(parent.path().join("lab")).unwrap_or_else(|e| panic!("{e}"));
        let mut record = LabRecord {
            server: "https://127.0.0.1:6443".into(),
            ..LabRecord::default()
        };
        record
            .kubeconfigs
            .insert("admin".into(), lab.kubeconfigs().join("admin.yaml"));
        lab.write_record(&record).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lab.read_record().unwrap_or_else(|e| panic!("{e}")), record);
    }
}
