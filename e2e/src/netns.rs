//! iproute2 and sysctl, run as programs: the lab changes the host's network
//! the same way a person at a shell would, and every failure carries the
//! command line and its stderr.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs `program args...` and returns its stdout; an error naming the
/// command when it fails.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out
                .status
                .code()
                .map_or("killed".to_owned(), |c| format!("exit {c}")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// `ip <args>` in the root namespace; `args` is split on whitespace.
pub fn ip(args: &str) -> Result<String> {
    let args: Vec<&str> = args.split_whitespace().collect();
    run("ip", &args)
}

/// `ip -n <ns> <args>`.
pub fn ip_in(ns: &str, args: &str) -> Result<String> {
    let mut all = vec!["-n", ns];
    all.extend(args.split_whitespace());
    run("ip", &all)
}

/// `ip [-n <ns>] -batch -` with `commands`, one per line: many changes for
/// the price of one process. Stops at the first command that fails; the
/// error names the namespace and carries ip's message (which names the line).
pub fn ip_batch(ns: Option<&str>, commands: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_error = |source| Error::Spawn {
        program: "ip".into(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // An ip that stops early closes the pipe; its stderr says why.
        let _ = stdin.write_all(commands.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_error)?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: format!(
            "ip {}-batch ({} commands)",
            ns.map_or(String::new(), |ns| format!("-n {ns} ")),
            commands.lines().count()
        ),
        status: out
            .status
            .code()
            .map_or("killed".to_owned(), |c| format!("exit {c}")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Sets a sysctl inside `ns` (sysctls under net/ are per namespace).
pub fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<()> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ],
    )
    .map(drop)
}

/// A command that runs `program` inside network namespace `ns`.
pub fn command_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Whether a network namespace of that name exists.
pub fn netns_exists(ns: &str) -> bool {
    std::path::Path::new("/run/netns").join(ns).exists()
}

/// Whether an interface of that name exists in the root namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Deletes a network namespace; one that is already gone is fine.
pub fn delete_netns(ns: &str) -> Result<()> {
    if !netns_exists(ns) {
        return Ok(());
    }
    run("ip", &["netns", "del", ns]).map(drop)
}

/// Deletes a root-namespace interface; one that is already gone is fine.
pub fn delete_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    match run("ip", &["link", "del", name]) {
        Err(_) if !link_exists(name) => Ok(()),
        other => other.map(drop),
    }
}

/// The MAC address of `dev` inside `ns`.
pub fn mac_in(ns: &str, dev: &str) -> Result<String> {
    let out = ip_in(ns, &format!("-o link show dev {dev}"))?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| Error::Command {
            command: format!("ip -n {ns} -o link show dev {dev}"),
            status: "no link/ether in the output".into(),
            stderr: out.trim().to_owned(),
        })
}

/// Mounts a BPF filesystem at `path` (created if missing).
pub fn mount_bpffs(path: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(Error::io("create", path))?;
    let target = path.to_string_lossy();
    run("mount", &["-t", "bpf", "bpffs", &target]).map(drop)
}

/// Unmounts what is mounted at `path`, if anything.
pub fn unmount(path: &std::path::Path) -> Result<()> {
    if !is_mount_point(path) {
        return Ok(());
    }
    let target = path.to_string_lossy();
    run("umount", &["-l", &target]).map(drop)
}

/// Whether `path` is a mount point in this mount namespace.
pub fn is_mount_point(path: &std::path::Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some(want.as_ref()))
}
