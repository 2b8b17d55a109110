//! Real packets between pods: a listener in one pod's namespace that answers
//! on TCP and UDP ports, and a one-shot prober in another that says whether
//! an answer came back within its timeout. Both are small Python programs
//! run with `ip netns exec`, so what they see is what any workload would.

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Lifetime, Process};
use crate::state::StateDir;

/// The protocols the prober speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// The default time a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

const LISTENER: &str = r#"
import socket, sys, threading
tcp = [int(p) for p in sys.argv[1].split(",") if p]
udp = [int(p) for p in sys.argv[2].split(",") if p]
name = sys.argv[3].encode()
def converse(c):
    try:
        c.settimeout(30)
        while True:
            data = c.recv(64)
            if not data:
                break
            c.sendall(b"ok " + name)
    except OSError:
        pass
    finally:
        c.close()
def serve_tcp(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=converse, args=(c,), daemon=True).start()
def serve_udp(s):
    while True:
        _, peer = s.recvfrom(64)
        s.sendto(b"ok " + name, peer)
threads = []
def dual_stack(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    return s
for p in tcp:
    s = dual_stack(socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", p)); s.listen(64)
    threads.append(threading.Thread(target=serve_tcp, args=(s,), daemon=True))
for p in udp:
    s = dual_stack(socket.SOCK_DGRAM)
    s.bind(("::", p))
    threads.append(threading.Thread(target=serve_udp, args=(s,), daemon=True))
for t in threads: t.start()
print("ready", flush=True)
threading.Event().wait()
"#;

const PROBE: &str = r#"
import socket, sys
proto, addr, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
try:
    if proto == "tcp":
        s = socket.create_connection((addr, port), timeout=timeout)
        s.settimeout(timeout)
        s.sendall(b"ping")
        data = s.recv(64)
    else:
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(b"ping", (addr, port))
        data, _ = s.recvfrom(64)
    print(data.decode())
    sys.exit(0 if data.startswith(b"ok") else 1)
except OSError as e:
    print("no answer: %s" % e)
    sys.exit(1)
"#;

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Starts a listener in `netns` on the given ports and waits until it is bound.
pub fn start_listener(
    state: &StateDir,
    name: &str,
    netns_name: &str,
    tcp: &[u16],
    udp: &[u16],
    lifetime: Lifetime,
) -> Result<Process> {
    let list = |ports: &[u16]| {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args(["-u", "-c", LISTENER, &list(tcp), &list(udp), name]);
    let mut process = Process::spawn(state, &format!("listen-{name}"), cmd, lifetime)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(process.log_path()).unwrap_or_default();
        if log.lines().any(|l| l == "ready") {
            return Ok(process);
        }
        if !process.is_running() || Instant::now() > deadline {
            return Err(process.not_ready("binding its ports"));
        }
        sleep(Duration::from_millis(20));
    }
}

const CONVERSATION: &str = r#"
import socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((addr, port), timeout=2)
s.settimeout(0.5)
print("connected", flush=True)
while True:
    try:
        s.sendall(b"ping")
        data = s.recv(64)
        print("answered" if data else "closed", flush=True)
        if not data:
            break
    except socket.timeout:
        print("lost", flush=True)
    except OSError as e:
        print("error %s" % e, flush=True)
        break
    time.sleep(0.1)
"#;

/// A long-lived TCP connection from inside `netns` to `addr:port` that
/// sends a request every 100 ms and logs, one line each, whether the answer
/// came (`answered`), did not come within 500 ms (`lost`), or the
/// connection ended (`closed`, `error ...`). Waits until it is connected.
pub fn start_conversation(
    state: &StateDir,
    name: &str,
    netns_name: &str,
    addr: IpAddr,
    port: u16,
) -> Result<Process> {
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args([
        "-u",
        "-c",
        CONVERSATION,
        &addr.to_string(),
        &port.to_string(),
    ]);
    let mut process = Process::spawn(
        state,
        &format!("conversation-{name}"),
        cmd,
        Lifetime::Attached,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(process.log_path()).unwrap_or_default();
        if log.lines().any(|l| l == "connected") {
            return Ok(process);
        }
        if !process.is_running() || Instant::now() > deadline {
            return Err(process.not_ready("connecting"));
        }
        sleep(Duration::from_millis(20));
    }
}

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub answered: bool,
    /// The listener's answer (`ok <name>`), or why there was none.
    pub detail: String,
}

/// Sends one request from inside `netns` to `addr:port` and waits up to
/// `timeout` for the answer.
pub fn probe(
    netns_name: &str,
    proto: Proto,
    addr: IpAddr,
    port: u16,
    timeout: Duration,
) -> Result<ProbeResult> {
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args([
        "-c",
        PROBE,
        proto.name(),
        &addr.to_string(),
        &port.to_string(),
        &format!("{:.3}", timeout.as_secs_f64()),
    ])
    .stdin(Stdio::null());
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: python().into(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match out.status.code() {
        Some(0) => Ok(ProbeResult {
            answered: true,
            detail: stdout,
        }),
        Some(1) if stderr.is_empty() => Ok(ProbeResult {
            answered: false,
            detail: stdout,
        }),
        _ => Err(Error::Command {
            command: format!("probe {} {addr}:{port} from {netns_name}", proto.name()),
            status: format!("{:?}", out.status.code()),
            stderr: format!("{stdout}\n{stderr}"),
        }),
    }
}
