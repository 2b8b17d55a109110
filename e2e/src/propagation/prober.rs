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
        let mut cmd = netns::command_in(netns_name, crate::traffic::python());
        cmd.args([
            "-u",
            "-c",
            crate::traffic::TRAFFIC,
            "newflows",
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
