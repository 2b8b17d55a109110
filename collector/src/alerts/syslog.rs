//! Syslog delivery of alerts: UDP (RFC 5426, one datagram per line), TCP
//! (RFC 6587 octet counting) and TLS (RFC 5425, octet counting over TLS).
//!
//! ```text
//!  queue ──► line (format.rs) ──► connection (made on demand) ──► SIEM
//!                 ▲                     │ error: drop it, back off, reconnect,
//!                 └─────────────────────┘ send the same line again
//! ```
//!
//! A line that cannot be written is sent again on a new connection, so
//! nothing queued is lost while the SIEM is down; the queue's bound is what
//! caps memory then (overflow is counted as `dropped`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_insight::detect::Alert;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::format::{line, LineFormat};
use super::{AlertsError, Backoff, Deliveries};

/// How a syslog destination is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// `udp://host:port`, `tcp://host:port` or `tls://host:port`, with
/// `?format=cef` for CEF lines (RFC 5424 structured data otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    pub format: LineFormat,
}

impl FromStr for SyslogTarget {
    type Err = AlertsError;

    fn from_str(s: &str) -> Result<Self, AlertsError> {
        let bad = |reason: &str| AlertsError::Target {
            target: s.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected udp://, tcp:// or tls://"))?;
        let transport = match scheme {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => return Err(bad("the scheme must be udp, tcp or tls")),
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let format = match query {
            "" | "format=rfc5424" => LineFormat::Rfc5424,
            "format=cef" => LineFormat::Cef,
            _ => return Err(bad("the only option is format=rfc5424 or format=cef")),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(bad("expected host:port"));
        }
        Ok(SyslogTarget {
            transport,
            host: host.to_string(),
            port,
            format,
        })
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// One syslog destination and how to reach it.
#[derive(Clone)]
pub struct SyslogSink {
    pub target: SyslogTarget,
    /// Needed for `tls://`: the CA that signed the server's certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The HOSTNAME field of every line.
    pub hostname: String,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("target", &self.target)
            .finish()
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl SyslogSink {
    fn name(&self) -> String {
        format!("syslog-{}", self.target.transport.as_str())
    }

    async fn connect(&self) -> Result<Conn, String> {
        let addr = (self.target.host.as_str(), self.target.port);
        let timed = |e: tokio::time::error::Elapsed| e.to_string();
        match self.target.transport {
            Transport::Udp => {
                let bind = if self.target.host.contains(':') {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let s = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
                s.connect(addr).await.map_err(|e| e.to_string())?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(timed)?
                    .map_err(|e| e.to_string())?;
                if self.target.transport == Transport::Tcp {
                    return Ok(Conn::Tcp(tcp));
                }
                let config = self
                    .tls
                    .clone()
                    .ok_or("tls:// needs a CA file (--syslog-ca-file)")?;
                let name = ServerName::try_from(self.target.host.clone())
                    .map_err(|e| format!("{}: {e}", self.target.host))?;
                let tls = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    TlsConnector::from(config).connect(name, tcp),
                )
                .await
                .map_err(timed)?
                .map_err(|e| e.to_string())?;
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    async fn send(conn: &mut Conn, line: &str) -> std::io::Result<()> {
        match conn {
            Conn::Udp(s) => s.send(line.as_bytes()).await.map(|_| ()),
            Conn::Tcp(s) => {
                s.write_all(framed(line).as_bytes()).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(framed(line).as_bytes()).await?;
                s.flush().await
            }
        }
    }

    /// Sends every queued alert until the queue closes.
    pub async fn run(self, mut queue: mpsc::Receiver<Alert>, deliveries: Deliveries) {
        let sink = self.name();
        let mut conn: Option<Conn> = None;
        while let Some(alert) = queue.recv().await {
            let text = line(self.target.format, &alert, &self.hostname);
            let mut backoff = Backoff::default();
            loop {
                if conn.is_none() {
                    match self.connect().await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            tracing::warn!(sink, id = alert.id, "syslog connect failed: {e}");
                            deliveries.count(&sink, "retried");
                            backoff.wait().await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match Self::send(c, &text).await {
                    Ok(()) => {
                        deliveries.count(&sink, "sent");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(sink, id = alert.id, "syslog send failed: {e}");
                        deliveries.count(&sink, "retried");
                        conn = None;
                        backoff.wait().await;
                    }
                }
            }
        }
    }
}

/// RFC 6587 §3.4.1 octet counting: `LEN SP MSG`, which RFC 5425 requires
/// over TLS and rsyslog, syslog-ng and the SIEMs' receivers read over TCP.
pub fn framed(line: &str) -> String {
    format!("{} {line}", line.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_say_why() {
        let t: SyslogTarget = "tls://siem.example:6514?format=cef".parse().expect("ok");
        assert_eq!(t.transport, Transport::Tls);
        assert_eq!((t.host.as_str(), t.port), ("siem.example", 6514));
        assert_eq!(t.format, LineFormat::Cef);
        let t: SyslogTarget = "udp://[::1]:514".parse().expect("ok");
        assert_eq!((t.host.as_str(), t.format), ("::1", LineFormat::Rfc5424));
        for (bad, why) in [
            ("http://x:1", "scheme"),
            ("udp://x", "host:port"),
            ("tcp://x:port", "number"),
            ("tcp://x:1?format=json", "format"),
        ] {
            let e = bad.parse::<SyslogTarget>().expect_err(bad).to_string();
            assert!(e.contains(why) && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn octet_counting_counts_bytes() {
        assert_eq!(framed("<36>1 é"), "8 <36>1 é");
    }
}
