//! etcd for the lab: one member on loopback, plain HTTP (nothing but the API
//! server on this machine talks to it), data in the state directory.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::process::{free_port, Lifetime, Process};
use crate::state::StateDir;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd.
#[derive(Debug)]
pub struct Etcd {
    pub process: Process,
    /// The client URL the API server uses, `http://127.0.0.1:<port>`.
    pub client_url: String,
    client_addr: SocketAddr,
}

impl Etcd {
    /// Starts etcd and waits until it answers `/health`.
    pub fn start(binary: &Path, state: &StateDir, lifetime: Lifetime) -> Result<Self> {
        let client_port = free_port(LOOPBACK)?;
        let peer_port = free_port(LOOPBACK)?;
        let client_url = format!("http://{LOOPBACK}:{client_port}");
        let peer_url = format!("http://{LOOPBACK}:{peer_port}");
        let mut cmd = Command::new(binary);
        cmd.arg("--name=bulkhead-lab")
            .arg(format!("--data-dir={}", state.etcd_data().display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bulkhead-lab={peer_url}"))
            // A lab's data is thrown away with it; fsync would only slow every write.
            .arg("--unsafe-no-fsync=true")
            .arg("--log-level=warn");
        let process = Process::spawn(state, "etcd", cmd, lifetime)?;
        let mut etcd = Self {
            process,
            client_url,
            client_addr: SocketAddr::new(LOOPBACK, client_port),
        };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if health(self.client_addr) {
                return Ok(());
            }
            if !self.process.is_running() || Instant::now() > deadline {
                return Err(self.process.not_ready("waiting for /health"));
            }
            sleep(Duration::from_millis(100));
        }
    }
}

/// True when etcd at `addr` reports itself healthy. A hand-written HTTP/1.0
/// request: one GET on loopback does not justify an HTTP client.
fn health(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains("\"health\":\"true\"")
}
