//! Processes the lab starts: each gets a log file and a pid file in the state
//! directory, so that another invocation (`bulkhead-lab down`) can stop
//! exactly those processes and no others.
//!
//! A pid file `pids/NN-<name>.pid` holds the pid and the process's start time
//! (field 22 of `/proc/<pid>/stat`); a pid that was reused by an unrelated
//! process since has another start time and is never signalled. NN is the
//! start order, and `stop_recorded` stops in reverse.

use std::fs::{self, File};
use std::net::{IpAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::error::{Error, Result};
use crate::state::StateDir;

/// How long a process gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Whether a process outlives the program that started it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Stays in our process group, so Ctrl-C reaches it too (tests).
    Attached,
    /// Runs in a process group of its own, so it survives the terminal and
    /// the `bulkhead-lab up` that started it.
    Detached,
}

/// A process the lab started. Dropping it stops it, unless `keep` was called.
#[derive(Debug)]
pub struct Process {
    record: Recorded,
    log: PathBuf,
    child: Child,
    keep: bool,
}

impl Process {
    /// Starts `cmd` with its output in `logs/<name>.log` and records its pid.
    pub fn spawn(
        state: &StateDir,
        name: &str,
        mut cmd: Command,
        lifetime: Lifetime,
    ) -> Result<Self> {
        let log = state.log(name);
        let out = File::create(&log).map_err(Error::io("create", log.clone()))?;
        let err = out.try_clone().map_err(Error::io("open", log.clone()))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        if lifetime == Lifetime::Detached {
            cmd.process_group(0);
        }
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
        let sequence = next_sequence(state);
        let pid_file = state.pids().join(format!("{sequence:02}-{name}.pid"));
        let record = Recorded {
            name: name.to_owned(),
            pid,
            start: proc_start(pid),
            pid_file,
        };
        let process = Self {
            record,
            log,
            child,
            keep: false,
        };
        let line = format!("{} {}\n", pid, process.record.start.unwrap_or(0));
        fs::write(&process.record.pid_file, line)
            .map_err(Error::io("write", process.record.pid_file.clone()))?;
        Ok(process)
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn pid(&self) -> i32 {
        self.record.pid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// False once the process has exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// True once the process has exited (a zombie not yet reaped included);
    /// unlike `is_running`, needs no `&mut`.
    pub fn has_exited(&self) -> bool {
        proc_stat(self.record.pid).is_none_or(|(state, _)| matches!(state, 'Z' | 'X'))
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// An error for a process that exited or never became ready, with its log.
    pub fn not_ready(&mut self, problem: &str) -> Error {
        let problem = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited ({status}) while {problem}"),
            _ => problem.to_owned(),
        };
        Error::NotReady {
            component: self.record.name.clone(),
            problem,
            log: self.log_tail(30),
        }
    }

    /// Leaves the process running when this handle is dropped.
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// SIGTERM, then SIGKILL after `STOP_GRACE`; reaps it and removes its pid file.
    pub fn stop(&mut self) -> Result<()> {
        if self.is_running() {
            signal(&self.record, Signal::TERM)?;
            let deadline = Instant::now() + STOP_GRACE;
            while self.is_running() && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
            if self.is_running() {
                // The child handle knows its pid is still ours (not yet reaped).
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        remove_pid_file(&self.record.pid_file)
    }

    /// SIGKILL at once, as a crash would; reaps it and removes its pid file.
    pub fn kill(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_pid_file(&self.record.pid_file)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.stop();
        }
    }
}

/// A process as its pid file records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub name: String,
    pub pid: i32,
    /// Start time in clock ticks after boot, when it could be read.
    pub start: Option<u64>,
    pub pid_file: PathBuf,
}

impl Recorded {
    /// True while the recorded process (not a later one with its pid) runs.
    pub fn is_running(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => {
                !matches!(state, 'Z' | 'X') && self.start.is_none_or(|s| s == start)
            }
            None => false,
        }
    }

    /// SIGTERM, SIGKILL after `STOP_GRACE`, then removes the pid file.
    pub fn stop(&self) -> Result<()> {
        if self.is_running() {
            signal(self, Signal::TERM)?;
            let deadline = Instant::now() + STOP_GRACE;
            while self.is_running() && Instant::now() < deadline {
                sleep(Duration::from_millis(50));
            }
            if self.is_running() {
                signal(self, Signal::KILL)?;
            }
        }
        remove_pid_file(&self.pid_file)
    }
}

/// The processes recorded in the state directory, in start order.
pub fn recorded(state: &StateDir) -> Result<Vec<Recorded>> {
    let dir = state.pids();
    let mut files: Vec<PathBuf> = match fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", dir)(e)),
    };
    files.retain(|p| p.extension().is_some_and(|e| e == "pid"));
    files.sort_by_key(|p| (sequence_of(p), p.clone()));
    Ok(files
        .into_iter()
        .filter_map(|path| parse_pid_file(&path))
        .collect())
}

/// Stops every recorded process, the last started first; returns their names.
pub fn stop_recorded(state: &StateDir) -> Result<Vec<String>> {
    let mut stopped = Vec::new();
    for process in recorded(state)?.into_iter().rev() {
        process.stop()?;
        stopped.push(process.name);
    }
    Ok(stopped)
}

/// A TCP port nobody listens on right now, on `ip`.
pub fn free_port(ip: IpAddr) -> Result<u16> {
    let listener =
        TcpListener::bind((ip, 0)).map_err(Error::io("bind a port on", ip.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("bind a port on", ip.to_string()))?
        .port();
    Ok(port)
}

/// One more than the highest start number recorded, so a process restarted
/// later (the API server after an outage) is stopped before older ones.
fn next_sequence(state: &StateDir) -> u32 {
    let Ok(entries) = fs::read_dir(state.pids()) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| sequence_of(&e.path()))
        .max()
        .map_or(0, |n| n + 1)
}

fn sequence_of(pid_file: &Path) -> Option<u32> {
    pid_file
        .file_name()?
        .to_str()?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

fn parse_pid_file(path: &Path) -> Option<Recorded> {
    let text = fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start = fields
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| *s != 0);
    let stem = path.file_stem()?.to_string_lossy();
    let name = stem
        .split_once('-')
        .map_or(stem.as_ref(), |(_, name)| name)
        .to_owned();
    Some(Recorded {
        name,
        pid,
        start,
        pid_file: path.to_owned(),
    })
}

fn signal(process: &Recorded, sig: Signal) -> Result<()> {
    let error = |source| Error::Signal {
        name: process.name.clone(),
        pid: process.pid,
        source,
    };
    let pid = Pid::from_raw(process.pid)
        .ok_or_else(|| error(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    match kill_process(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(error(e.into())),
    }
}

fn remove_pid_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// (state, start time) from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; what
    // follows its last ')' is field 3 onward.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn proc_start(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, start)| start)
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_running_and_a_reused_pid_does_not() {
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let start = proc_start(pid);
        assert!(start.is_some());
        let me = Recorded {
            name: "me".into(),
            pid,
            start,
            pid_file: PathBuf::new(),
        };
        assert!(me.is_running());
        let impostor = Recorded {
            start: start.map(|s| s + 1),
            ..me
        };
        assert!(
            !impostor.is_running(),
            "same pid, other start time: not ours"
        );
    }

    #[test]
    fn pid_files_parse_in_start_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let state = StateDir::create(dir.path().join("lab")).unwrap_or_else(|e| panic!("{e}"));
        for (file, line) in [
            ("01-kube-apiserver.pid", "200 77\n"),
            ("00-etcd.pid", "100 66\n"),
        ] {
            fs::write(state.pids().join(file), line).unwrap_or_else(|e| panic!("{e}"));
        }
        let got: Vec<(String, i32, Option<u64>)> = recorded(&state)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|r| (r.name, r.pid, r.start))
            .collect();
        assert_eq!(
            got,
            [
                ("etcd".into(), 100, Some(66)),
                ("kube-apiserver".into(), 200, Some(77))
            ]
        );
    }
}
