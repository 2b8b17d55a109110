//! The prober: from inside the client pod, one UDP request every interval,
//! each from a new socket bound to the next port of a rotating range, so
//! every request is a new flow (no conntrack entry of an earlier one can
//! answer for it). One line per request once its fate is known:
//!
//! ```text
//! <seq> <send time, ns> <1 answered | 0 no answer within the timeout> <answer time, ns | 0>
//! ```
//!
//! Times are CLOCK_MONOTONIC (Python's `time.monotonic_ns`), which every
//! network namespace shares with the driver ([`now_ns`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns;
use crate::process::{Lifetime, Process};
use crate::state::StateDir;

/// CLOCK_MONOTONIC in nanoseconds: the clock the prober stamps with.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

const PROBER: &str = r#"
import collections, select, socket, sys, time
addr, port = sys.argv[1], int(sys.argv[2])
interval, timeout = int(sys.argv[3]), int(sys.argv[4])
first_port, last_port, stop_after = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
poller = select.epoll()
pending = {}
order = collections.deque()
seq, sport = 0, first_port
clock = time.monotonic_ns
start = clock()
next_send = start
out = sys.stdout
print("ready", flush=True)
def fresh_socket():
    global sport
    for _ in range(last_port - first_port + 1):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setblocking(False)
        p = sport
        sport = first_port if sport >= last_port else sport + 1
        try:
            s.bind((anywhere, p))
            return s
        except OSError:
            s.close()
    raise SystemExit("no free source port")
while clock() - start < stop_after:
    now = clock()
    if now >= next_send:
        s = fresh_socket()
        sent = clock()
        try:
            s.sendto(b"probe", (addr, port))
        except OSError:
            pass
        pending[s.fileno()] = (seq, s, sent)
        order.append((sent, s.fileno(), seq))
        poller.register(s.fileno(), select.EPOLLIN)
        seq += 1
        next_send += interval
        if next_send < now:
            next_send = now + interval
    lines = []
    while order:
        sent, fd, n = order[0]
        if fd in pending and pending[fd][0] == n and sent + timeout > clock():
            break
        order.popleft()
        if fd in pending and pending[fd][0] == n:
            _, s, _ = pending.pop(fd)
            poller.unregister(fd)
            s.close()
            lines.append("%d %d 0 0\n" % (n, sent))
    wake = min(next_send, order[0][0] + timeout if order else next_send)
    for fd, _ in poller.poll(max(0, wake - clock()) / 1e9):
        got = clock()
        n, s, sent = pending.pop(fd)
        poller.unregister(fd)
        try:
            answered = s.recv(64).startswith(b"ok")
        except OSError:
            answered = False
        s.close()
        lines.append("%d %d %d %d\n" % (n, sent, 1 if answered else 0, got if answered else 0))
    if lines:
        out.write("".join(lines))
        out.flush()
"#;

/// How the prober probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProberConfig {
    pub interval: Duration,
    /// A request with no answer after this long counts as not answered.
    pub timeout: Duration,
    /// It stops by itself after this long (the driver stops it sooner).
    pub max_run: Duration,
}

/// The source ports the prober rotates through: 40,000 requests before one
/// repeats (200 s at 5 ms).
const SOURCE_PORTS: (u16, u16) = (20_000, 59_999);

/// One request's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub send_ns: u64,
    pub answered: bool,
}

/// A running prober and what it has reported so far.
#[derive(Debug)]
pub struct Prober {
    process: Process,
    log: PathBuf,
    offset: u64,
    partial: String,
    /// By sequence number; `None` while its fate is unknown.
    samples: Vec<Option<Sample>>,
    /// How many leading samples are all known.
    known: usize,
}

impl Prober {
    /// Starts probing `addr:port` over UDP from inside `netns_name`.
    pub fn start(
        state: &StateDir,
        netns_name: &str,
        addr: IpAddr,
        port: u16,
        config: ProberConfig,
    ) -> Result<Self> {
        let mut cmd = netns::command_in(netns_name, "python3");
        cmd.args([
            "-u",
            "-c",
            PROBER,
            &addr.to_string(),
            &port.to_string(),
            &config.interval.as_nanos().to_string(),
            &config.timeout.as_nanos().to_string(),
            &SOURCE_PORTS.0.to_string(),
            &SOURCE_PORTS.1.to_string(),
            &config.max_run.as_nanos().to_string(),
        ]);
        let mut process = Process::spawn(state, "prober", cmd, Lifetime::Attached)?;
        let log = process.log_path().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().next() == Some("ready") {
                break;
            }
            if !process.is_running() || Instant::now() > deadline {
                return Err(process.not_ready("starting to probe"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            process,
            log,
            offset: 0,
            partial: String::new(),
            samples: Vec::new(),
            known: 0,
        })
    }

    /// Reads what the prober has written since the last call. An error when
    /// it has exited.
    pub fn refresh(&mut self) -> Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.log).map_err(Error::io("open", &self.log))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(Error::io("seek in", &self.log))?;
        let mut text = String::new();
        let read = file
            .read_to_string(&mut text)
            .map_err(Error::io("read", &self.log))?;
        self.offset += read as u64;
        self.partial.push_str(&text);
        let complete = self.partial.rfind('\n').map_or(0, |at| at + 1);
        let lines: String = self.partial.drain(..complete).collect();
        for line in lines.lines() {
            self.record(line)?;
        }
        while self.samples.get(self.known).is_some_and(Option::is_some) {
            self.known += 1;
        }
        if self.process.has_exited() {
            return Err(self.process.not_ready("probing"));
        }
        Ok(())
    }

    fn record(&mut self, line: &str) -> Result<()> {
        if line == "ready" {
            return Ok(());
        }
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.bad_line(line))?;
        let [seq, send_ns, answered, _] = fields[..] else {
            return Err(self.bad_line(line));
        };
        let seq = usize::try_from(seq).map_err(|_| self.bad_line(line))?;
        if self.samples.len() <= seq {
            self.samples.resize(seq + 1, None);
        }
        self.samples[seq] = Some(Sample {
            send_ns,
            answered: answered == 1,
        });
        Ok(())
    }

    fn bad_line(&self, line: &str) -> Error {
        Error::Unexpected {
            what: format!("the prober's log {}", self.log.display()),
            problem: format!("cannot read the line {line:?}"),
        }
    }

    /// Every request whose fate is known, in sending order, up to the first
    /// one still waiting for its answer or timeout.
    pub fn known(&self) -> impl DoubleEndedIterator<Item = Sample> + '_ {
        self.samples[..self.known].iter().flatten().copied()
    }

    pub fn stop(&mut self) -> Result<()> {
        self.process.kill()
    }
}
