//! Who may send flow batches: an [`Auth`] turns a bearer token into a
//! [`Caller`], or refuses it with a reason (logged; the token never is).
//!
//! - [`TokenReviewAuth`]: the agent's ServiceAccount token, checked by a
//!   TokenReview against the API server. Only `system:serviceaccount:<ns>:<sa>`
//!   passes; when the token is bound to a pod, the
//!   `authentication.kubernetes.io/node-name` extra names the node it may
//!   send for. Verdicts are cached briefly.
//! - [`TokenFileAuth`]: a file of `token node` lines, for hosts outside the
//!   cluster and for tests.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};

/// An authenticated sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Who it is (a username or `token-file:<line>`), for logs.
    pub subject: String,
    /// The node it may send batches for; `None` when the credential does
    /// not say (a ServiceAccount token that is not bound to a pod).
    pub node: Option<String>,
}

/// Why a token was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token not accepted: {0}")]
    Refused(String),
    /// The authority could not be asked (API server down): not the caller's fault.
    #[error("cannot check the token: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Config(String),
}

pub trait Auth: Send + Sync + 'static {
    fn authenticate(&self, token: &str) -> impl Future<Output = Result<Caller, AuthError>> + Send;
}

/// Compares without an early exit, so timing does not tell how much of a
/// guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `token node` per line; `#` comments and blank lines ignored.
#[derive(Clone)]
pub struct TokenFileAuth {
    entries: Vec<(Vec<u8>, String, usize)>,
}

impl std::fmt::Debug for TokenFileAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenFileAuth({} tokens)", self.entries.len())
    }
}

/// Tokens shorter than this are refused when the file is read.
pub const MIN_TOKEN_LEN: usize = 16;

impl TokenFileAuth {
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(token), Some(node), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(AuthError::Config(format!(
                    "token file line {n}: expected `token node`"
                )));
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(AuthError::Config(format!(
                    "token file line {n}: the token is shorter than {MIN_TOKEN_LEN} characters"
                )));
            }
            if entries
                .iter()
                .any(|(t, _, _): &(Vec<u8>, String, usize)| same(t, token.as_bytes()))
            {
                return Err(AuthError::Config(format!(
                    "token file line {n}: the token is listed twice"
                )));
            }
            entries.push((token.as_bytes().to_vec(), node.to_string(), n));
        }
        if entries.is_empty() {
            return Err(AuthError::Config("token file holds no tokens".into()));
        }
        Ok(TokenFileAuth { entries })
    }

    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError::Config(format!("token file {}: {e}", path.display())))?;
        Self::parse(&text)
    }
}

impl Auth for TokenFileAuth {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let mut found = None;
        for (t, node, line) in &self.entries {
            if same(t, token.as_bytes()) {
                found = Some((node, line));
            }
        }
        found
            .map(|(node, line)| Caller {
                subject: format!("token-file:{line}"),
                node: Some(node.clone()),
            })
            .ok_or_else(|| AuthError::Refused("not in the token file".into()))
    }
}

/// The extra a bound ServiceAccount token carries naming its pod's node.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

const ALLOW_TTL: Duration = Duration::from_secs(60);
const DENY_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 10_000;
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

type Verdict = Result<Caller, AuthError>;

/// TokenReview against the API server.
pub struct TokenReviewAuth {
    client: kube::Client,
    /// `system:serviceaccount:<ns>:<name>` of the agents.
    username: String,
    audiences: Vec<String>,
    cache: Mutex<HashMap<u64, (Instant, Verdict)>>,
    hasher: RandomState,
}

impl std::fmt::Debug for TokenReviewAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewAuth")
            .field("username", &self.username)
            .finish()
    }
}

impl TokenReviewAuth {
    /// `agent` is `namespace:name` of the agents' ServiceAccount.
    pub fn new(
        client: kube::Client,
        agent: &str,
        audiences: Vec<String>,
    ) -> Result<Self, AuthError> {
        let (ns, name) = agent
            .split_once(':')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains(':'))
            .ok_or_else(|| {
                AuthError::Config(format!(
                    "agent service account {agent:?}: expected namespace:name"
                ))
            })?;
        Ok(TokenReviewAuth {
            client,
            username: format!("system:serviceaccount:{ns}:{name}"),
            audiences,
            cache: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        })
    }

    async fn review(&self, token: &str) -> Verdict {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            api.create(&kube::api::PostParams::default(), &review),
        )
        .await
        .map_err(|_| {
            AuthError::Unavailable(format!("no TokenReview answer within {REVIEW_TIMEOUT:?}"))
        })?
        .map_err(|e| AuthError::Unavailable(format!("TokenReview: {e}")))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status.error.unwrap_or_else(|| "not authenticated".into());
            return Err(AuthError::Refused(format!("TokenReview: {why}")));
        }
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        if username != self.username {
            return Err(AuthError::Refused(format!(
                "{username:?} is not the agent service account {:?}",
                self.username
            )));
        }
        let node = user
            .extra
            .as_ref()
            .and_then(|x| x.get(NODE_NAME_EXTRA))
            .and_then(|v| v.first())
            .cloned();
        Ok(Caller {
            subject: username,
            node,
        })
    }
}

impl Auth for TokenReviewAuth {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let key = self.hasher.hash_one(token);
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(&key).and_then(|(at, v)| {
                let ttl = if v.is_ok() { ALLOW_TTL } else { DENY_TTL };
                (at.elapsed() < ttl).then(|| v.clone())
            })
        });
        if let Some(v) = cached {
            return v;
        }
        let verdict = self.review(token).await;
        // An unavailable API server is not a verdict on the token.
        if !matches!(verdict, Err(AuthError::Unavailable(_))) {
            if let Ok(mut c) = self.cache.lock() {
                if c.len() >= CACHE_MAX {
                    c.retain(|_, (at, _)| at.elapsed() < ALLOW_TTL);
                    if c.len() >= CACHE_MAX {
                        c.clear();
                    }
                }
                c.insert(key, (Instant::now(), verdict.clone()));
            }
        }
        verdict
    }
}

/// The authenticator chosen at start-up (`--auth`).
#[derive(Debug)]
pub enum AnyAuth {
    TokenReview(Box<TokenReviewAuth>),
    TokenFile(TokenFileAuth),
}

impl Auth for AnyAuth {
    async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        match self {
            AnyAuth::TokenReview(a) => a.authenticate(token).await,
            AnyAuth::TokenFile(a) => a.authenticate(token).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn token_file() {
        let auth = TokenFileAuth::parse(
            "# agents outside the cluster\n\nsecret-token-for-n1 n1\n  secret-token-for-n2   n2  \n",
        )
        .expect("parses");
        let c = auth.authenticate("secret-token-for-n2").await.expect("n2");
        assert_eq!(
            c,
            Caller {
                subject: "token-file:4".into(),
                node: Some("n2".into())
            }
        );
        assert!(matches!(
            auth.authenticate("secret-token-for-n3").await,
            Err(AuthError::Refused(_))
        ));
        assert!(matches!(
            auth.authenticate("").await,
            Err(AuthError::Refused(_))
        ));
    }

    #[test]
    fn bad_token_files_name_the_line() {
        let cases = [
            ("tok-only-no-node-here\n", "line 1: expected `token node`"),
            (
                "ok-token-0123456789 n1\nshort n2\n",
                "line 2: the token is shorter",
            ),
            ("a-token-0123456789 n1 extra\n", "line 1: expected"),
            (
                "same-token-0123456789 n1\nsame-token-0123456789 n2\n",
                "line 2: the token is listed twice",
            ),
            ("# nothing\n", "holds no tokens"),
        ];
        for (text, want) in cases {
            let e = TokenFileAuth::parse(text).expect_err(want).to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
    }
}
