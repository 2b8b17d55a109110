//! Kubeconfig files, one per identity, with the certificates embedded so a
//! file can be copied (into a node's namespace, to another shell) on its own.

use std::collections::BTreeMap;
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
    let cert = read_b64(&client.cert)?;
    let key = read_b64(&client.key)?;
    let user = format!("    client-certificate-data: {cert}\n    client-key-data: {key}\n");
    write_config(dir, name, server, ca, &user)
}

/// Writes `<dir>/<name>.yaml` for a client that trusts `ca` and presents a
/// bearer token (a ServiceAccount's, from the TokenRequest API).
pub fn write_token(
    dir: &Path,
    name: &str,
    server: &str,
    ca: &Path,
    token: &str,
) -> Result<PathBuf> {
    let user = format!("    token: {}\n", serde_json::Value::from(token));
    write_config(dir, name, server, ca, &user)
}

fn write_config(dir: &Path, name: &str, server: &str, ca: &Path, user: &str) -> Result<PathBuf> {
    let ca = read_b64(ca)?;
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
{user}contexts:
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

/// Whom a kubeconfig impersonates: the user, groups and extra fields it
/// asks the API server to act as (the Impersonate-* headers), as
/// `kubectl --as` does. kubectl has no flag for extra fields (such as the
/// node claim of a ServiceAccount token), but a kubeconfig's user can say it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Writes `<dir>/<name>.yaml`: the kubeconfig `base` (written by [`write`],
/// for an identity allowed to impersonate) asking to act as `who`.
pub fn impersonating(base: &Path, dir: &Path, name: &str, who: &Impersonation) -> Result<PathBuf> {
    let text = fs::read_to_string(base).map_err(Error::io("read", base))?;
    // JSON strings are YAML scalars, quoted and escaped.
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let mut fields = format!("    as: {}\n", q(&who.user));
    if !who.groups.is_empty() {
        fields.push_str("    as-groups:\n");
        for group in &who.groups {
            fields.push_str(&format!("    - {}\n", q(group)));
        }
    }
    if !who.extra.is_empty() {
        fields.push_str("    as-user-extra:\n");
        for (key, values) in &who.extra {
            fields.push_str(&format!("      {}:\n", q(key)));
            for value in values {
                fields.push_str(&format!("      - {}\n", q(value)));
            }
        }
    }
    let mut out = String::with_capacity(text.len() + fields.len());
    let mut inserted = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("    client-key-data: ") {
            out.push_str(&fields);
            inserted = true;
        }
    }
    if !inserted {
        return Err(Error::Unexpected {
            what: base.display().to_string(),
            problem: "has no client-key-data line to add impersonation to".into(),
        });
    }
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, out).map_err(Error::io("write", path.clone()))?;
    Ok(path)
}
