//! Running the real kubectl against the lab, as tests and users do.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// kubectl bound to one kubeconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kubectl {
    pub binary: PathBuf,
    pub kubeconfig: PathBuf,
}

/// What a kubectl run produced, whether it succeeded or not: a test of a
/// rejection needs the failure's message, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub success: bool,
    /// The exit code; `None` when a signal ended kubectl.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(binary: &Path, kubeconfig: &Path) -> Self {
        Self {
            binary: binary.to_owned(),
            kubeconfig: kubeconfig.to_owned(),
        }
    }

    /// Runs `kubectl <args>`, with `stdin` fed to it when given.
    pub fn output(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let spawn_error = |source| Error::Spawn {
            program: self.binary.display().to_string(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A kubectl that exits early closes the pipe; its stderr says why.
            let _ = pipe.write_all(input.as_bytes());
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        Ok(Output::from(out))
    }

    /// Runs `kubectl <args>` and returns its stdout; an error if it fails.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.checked(args, None)
    }

    /// `kubectl apply -f -` of `yaml`; an error if the server refuses it.
    pub fn apply(&self, yaml: &str) -> Result<String> {
        self.checked(&["apply", "-f", "-"], Some(yaml))
    }

    /// `kubectl apply -f -` of `yaml`, returning the outcome either way.
    pub fn try_apply(&self, yaml: &str) -> Result<Output> {
        self.output(&["apply", "-f", "-"], Some(yaml))
    }

    /// Runs `kubectl <args>` with `stdin` fed to it; its stdout, or an error if it fails.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        self.checked(args, Some(stdin))
    }

    /// Runs `kubectl <args> -o json` and parses what it prints.
    pub fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.run(&all)?;
        serde_json::from_str(&out).map_err(|e| Error::Unexpected {
            what: format!("kubectl {}", all.join(" ")),
            problem: format!("output is not JSON: {e}"),
        })
    }

    fn checked(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        self.output(args, stdin)?
            .stdout_if_success(|| format!("kubectl {}", args.join(" ")))
    }
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Self {
        Self {
            success: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Output {
    /// The stdout of a run that succeeded; else an error naming `command`
    /// with the exit status and stderr.
    pub fn stdout_if_success(self, command: impl FnOnce() -> String) -> Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            Err(Error::Command {
                command: command(),
                status: self
                    .code
                    .map_or("killed".to_owned(), |c| format!("exit {c}")),
                stderr: self.stderr.trim().to_owned(),
            })
        }
    }
}
