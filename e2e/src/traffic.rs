//! Real packets between pods: a listener in one pod's namespace that answers
//! on TCP and UDP ports (and SCTP, on a raw socket), and probers in another
//! that say whether an answer came back within their timeout: one request,
//! or a batch of them at once from one pod. All are small Python programs
//! run with `ip netns exec`, so what they see is what any workload would.
//!
//! SCTP without the kernel's SCTP module: the prober sends an INIT chunk
//! from a raw socket and waits for a packet from the destination with the
//! ports swapped; the listener's raw socket answers every INIT with an
//! INIT ACK. Both packets cross the datapath like any SCTP association's
//! first two would (it reads ports, not checksums).

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
    Sctp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// The default time a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

const LISTENER: &str = r#"
import socket, struct, sys, threading
tcp = [int(p) for p in sys.argv[1].split(",") if p]
udp = [int(p) for p in sys.argv[2].split(",") if p]
name = sys.argv[3].encode()
sctp = [int(p) for p in sys.argv[4].split(",") if p] if len(sys.argv) > 4 else []
def serve_sctp(fam):
    s = socket.socket(fam, socket.SOCK_RAW, 132)
    while True:
        data, addr = s.recvfrom(4096)
        if fam == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 16 or data[12] != 1:  # INIT chunks only
            continue
        sport, dport = struct.unpack("!HH", data[:4])
        if dport not in sctp:
            continue
        ack = struct.pack("!HHII", dport, sport, 0, 0) + struct.pack("!BBH", 2, 0, 20) + bytes(16)
        s.sendto(ack, (addr[0], 0))
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
if sctp:
    for fam in (socket.AF_INET, socket.AF_INET6):
        threads.append(threading.Thread(target=serve_sctp, args=(fam,), daemon=True))
for t in threads: t.start()
print("ready", flush=True)
threading.Event().wait()
"#;

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The ports a listener answers on, per protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub tcp: Vec<u16>,
    pub udp: Vec<u16>,
    pub sctp: Vec<u16>,
}

/// Starts a listener in `netns` on the given ports and waits until it is bound.
pub fn start_listener(
    state: &StateDir,
    name: &str,
    netns_name: &str,
    ports: &Ports,
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
    cmd.args([
        "-u",
        "-c",
        LISTENER,
        &list(&ports.tcp),
        &list(&ports.udp),
        name,
        &list(&ports.sctp),
    ]);
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
/// `timeout` for the answer (a batch of one).
pub fn probe(
    netns_name: &str,
    proto: Proto,
    addr: IpAddr,
    port: u16,
    timeout: Duration,
) -> Result<ProbeResult> {
    let mut results = probe_batch(netns_name, &[(proto, addr, port)], timeout)?;
    Ok(results.remove(0))
}

const BATCH: &str = r#"
import random, select, socket, struct, sys, threading, time
timeout = float(sys.argv[1])
targets = [t.split(",") for t in sys.argv[2:]]
results = [None] * len(targets)
def fam(a):
    return socket.AF_INET6 if ":" in a else socket.AF_INET
def tcp(a, p):
    s = socket.socket(fam(a), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((a, p)); s.sendall(b"ping"); d = s.recv(64)
        return d.startswith(b"ok"), d.decode(errors="replace")
    finally:
        s.close()
def udp(a, p):
    s = socket.socket(fam(a), socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(b"ping", (a, p)); d, _ = s.recvfrom(64)
        return d.startswith(b"ok"), d.decode(errors="replace")
    finally:
        s.close()
def sctp(a, p, sport):
    s = socket.socket(fam(a), socket.SOCK_RAW, 132)
    try:
        init = struct.pack("!HHII", sport, p, 0, 0) + struct.pack("!BBH", 1, 0, 20) + bytes(16)
        s.sendto(init, (a, 0))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                return False, "no INIT ACK"
            data, addr = s.recvfrom(4096)
            if fam(a) == socket.AF_INET:
                data = data[(data[0] & 0x0F) * 4:]
            if addr[0] == a and len(data) >= 13 and struct.unpack("!HH", data[:4]) == (p, sport) and data[12] == 2:
                return True, "INIT ACK"
    finally:
        s.close()
base = random.randint(20000, 50000)
def run(i):
    proto, a, p = targets[i]
    try:
        if proto == "tcp":
            results[i] = tcp(a, int(p))
        elif proto == "udp":
            results[i] = udp(a, int(p))
        else:
            results[i] = sctp(a, int(p), base + i)
    except OSError as e:
        results[i] = (False, "no answer: %s" % e)
threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
for t in threads: t.start()
for t in threads: t.join()
for ok, detail in results:
    print("%s %s" % ("ok" if ok else "no", detail.replace("\n", " ")))
"#;

/// Sends every request of `targets` from inside `netns` at once, each on a
/// new socket (a new flow), and waits up to `timeout` for each answer.
/// Results come in the order of `targets`.
pub fn probe_batch(
    netns_name: &str,
    targets: &[(Proto, IpAddr, u16)],
    timeout: Duration,
) -> Result<Vec<ProbeResult>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = netns::command_in(netns_name, python());
    cmd.args(["-c", BATCH, &format!("{:.3}", timeout.as_secs_f64())])
        .args(
            targets
                .iter()
                .map(|(proto, addr, port)| format!("{},{addr},{port}", proto.name())),
        )
        .stdin(Stdio::null());
    let command = || format!("{} probes from {netns_name}", targets.len());
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: python().into(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<ProbeResult> = stdout
        .lines()
        .map(|line| {
            let (mark, detail) = line.split_once(' ').unwrap_or((line, ""));
            ProbeResult {
                answered: mark == "ok",
                detail: detail.to_owned(),
            }
        })
        .collect();
    if !out.status.success() || results.len() != targets.len() {
        return Err(Error::Command {
            command: command(),
            status: format!("{:?}", out.status.code()),
            stderr: format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(results)
}
