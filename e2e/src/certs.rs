//! The lab's PKI: one CA that signs the API server's serving certificate and
//! every client certificate, and the service-account signing key pair.
//!
//! Client certificates carry the Kubernetes identity: the CN is the user name
//! and the O is a group, which is all the API server's x509 authenticator
//! reads. RBAC then decides what each identity may do. (rcgen writes one
//! value per attribute type, so an identity here has at most one group.)

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// A Kubernetes user as a client certificate presents it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The file stem of its certificate, key and kubeconfig: `admin`, `operator`, `agent-<node>`.
    pub name: String,
    /// The user name (certificate CN).
    pub user: String,
    /// The group (certificate O), if any.
    pub group: Option<String>,
}

/// The group every node agent is in; RBAC grants the agents' rights to it.
pub const AGENTS_GROUP: &str = "bulkhead:agents";
/// An agent's user name is this prefix and its node name, so a rule can tie
/// an agent to the one NodeRuleMap named after its node.
pub const AGENT_USER_PREFIX: &str = "bulkhead:agent:";
/// The operator's user name.
pub const OPERATOR_USER: &str = "bulkhead-operator";
/// The operator's group.
pub const OPERATORS_GROUP: &str = "bulkhead:operators";

impl Identity {
    /// A cluster administrator (group `system:masters`, which RBAC cannot restrict).
    pub fn admin() -> Self {
        Self::new("admin", "bulkhead-admin", Some("system:masters"))
    }

    /// The operator; its rights come from RBAC like any other user's.
    pub fn operator() -> Self {
        Self::new("operator", OPERATOR_USER, Some(OPERATORS_GROUP))
    }

    /// The agent of `node`.
    pub fn agent(node: &str) -> Self {
        Self::new(
            &format!("agent-{node}"),
            &format!("{AGENT_USER_PREFIX}{node}"),
            Some(AGENTS_GROUP),
        )
    }

    pub fn new(name: &str, user: &str, group: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            user: user.to_owned(),
            group: group.map(str::to_owned),
        }
    }
}

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA and the files it has issued, under one directory.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

const CA_NAME: &str = "bulkhead-lab-ca";

impl Pki {
    /// Makes a new CA in `dir` (`ca.crt`, `ca.key`).
    pub fn create(dir: &Path) -> Result<Self> {
        let ca_key = KeyPair::generate().map_err(cert_error(CA_NAME))?;
        let ca_params = ca_params();
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(cert_error(CA_NAME))?;
        let pki = Self {
            dir: dir.to_owned(),
            ca_params,
            ca_key,
        };
        write_file(&pki.ca_cert(), ca_cert.pem().as_bytes(), 0o644)?;
        write_file(
            &dir.join("ca.key"),
            pki.ca_key.serialize_pem().as_bytes(),
            0o600,
        )?;
        Ok(pki)
    }

    /// Reopens the CA that `create` made, to issue more certificates later
    /// (an agent for a node added after `up`).
    pub fn load(dir: &Path) -> Result<Self> {
        let key_path = dir.join("ca.key");
        let pem = fs::read_to_string(&key_path).map_err(Error::io("read", key_path))?;
        let ca_key = KeyPair::from_pem(&pem).map_err(cert_error(CA_NAME))?;
        // Issuing needs only the CA's subject and key: the same parameters
        // rebuild the same subject, and the key identifier comes from the key.
        Ok(Self {
            dir: dir.to_owned(),
            ca_params: ca_params(),
            ca_key,
        })
    }

    /// The CA certificate (PEM), what clients and the API server trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A serving certificate for `sans` (IP addresses or DNS names).
    pub fn serving(&self, name: &str, sans: &[String]) -> Result<CertFiles> {
        let mut params = CertificateParams::new(sans.to_vec()).map_err(cert_error(name))?;
        params.distinguished_name = dn(name, None);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params)
    }

    /// A client certificate for `identity`.
    pub fn client(&self, identity: &Identity) -> Result<CertFiles> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&identity.user, identity.group.as_deref());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&identity.name, params)
    }

    /// The key pair that signs service-account tokens: (`sa.pub`, `sa.key`).
    pub fn service_account_keys(&self) -> Result<CertFiles> {
        let key = KeyPair::generate().map_err(cert_error("service-account"))?;
        let files = CertFiles {
            cert: self.dir.join("sa.pub"),
            key: self.dir.join("sa.key"),
        };
        write_file(&files.cert, key.public_key_pem().as_bytes(), 0o644)?;
        write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(files)
    }

    fn issue(&self, name: &str, params: CertificateParams) -> Result<CertFiles> {
        let key = KeyPair::generate().map_err(cert_error(name))?;
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).map_err(cert_error(name))?;
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        write_file(&files.cert, cert.pem().as_bytes(), 0o644)?;
        write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        Ok(files)
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(CA_NAME, Some("bulkhead"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn dn(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn cert_error(name: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |source| Error::Certificate {
        name: name.to_owned(),
        source,
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io("create", path))?;
    file.write_all(contents).map_err(Error::io("write", path))
}
