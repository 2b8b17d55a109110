//! Kubeconfig files, one per identity, with the certificates embedded so a
//! file can be copied (into a node's namespace, to another shell) on its own.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::certs::CertFiles;
use crate::error::{Error, Result};

/// Writes `<dir>/<name>.yaml` for a client that trusts `ca` and presents `client`.
pub fn write(
    dir: &Path,
    name: &str,
    server: &str,
    ca: &Path,
    client: &CertFiles,
) -> Result<PathBuf> {
    let ca = read_b64(ca)?;
    let cert = read_b64(&client.cert)?;
    let key = read_b64(&client.key)?;
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: bulkhead-lab
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {name}@bulkhead-lab
  context:
    cluster: bulkhead-lab
    user: {name}
current-context: {name}@bulkhead-lab
"
    );
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, yaml).map_err(Error::io("write", path.clone()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .map_err(Error::io("chmod", path.clone()))?;
    Ok(path)
}

fn read_b64(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    Ok(STANDARD.encode(bytes))
}
