//! `--config FILE`: the agent's flags from a YAML file, such as the package's
//! `/etc/bulkhead/agent.yaml`.
//!
//! Each key is a long flag without its dashes, and its value is what the flag
//! takes: `node-name: web-1`, `flow-interval-ms: 1000`, `log-json: true`, a
//! list for a repeatable flag (`host-interface: [eth0, eth1]`). The file's
//! flags go in front of the command line's, so a flag given on the command
//! line overrides the file's value (repeatable flags add up). There is one
//! vocabulary, the flags', so `--help` documents the file too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{ArgAction, Command, Parser};
use serde_yaml::Value;

/// Keys a file may not set: they are not settings.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("config file {path}: the top level must map flag names to values")]
    NotAMapping { path: PathBuf },
    #[error("config file {path}: unknown key {key:?} (keys are the long flags: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("config file {path}: key {key:?}: {reason}")]
    BadValue {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Flags(#[from] clap::Error),
}

/// Parses `argv` as `P`, with the flags of the file `--config` names in front
/// of the command line's. Exits as clap does on `--help`, `--version` and a
/// bad flag; returns the file's errors.
pub fn parse<P: Parser>(argv: impl IntoIterator<Item = OsString>) -> Result<P, ConfigFileError> {
    match try_parse(argv) {
        Err(ConfigFileError::Flags(e)) => e.exit(),
        other => other,
    }
}

pub fn try_parse<P: Parser>(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<P, ConfigFileError> {
    // A flag given twice (in the file, then on the command line) takes the
    // later value instead of being an error.
    let cmd = P::command().args_override_self(true);
    let argv = expand(&cmd, argv.into_iter().collect())?;
    let matches = cmd.try_get_matches_from(argv)?;
    Ok(P::from_arg_matches(&matches)?)
}

fn expand(cmd: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let Some(path) = config_path(&argv) else {
        return Ok(argv);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigFileError::Read {
        path: path.clone(),
        source,
    })?;
    let from_file = flags_from_yaml(cmd, &path, &text)?;
    let mut argv = argv.into_iter();
    let mut out: Vec<OsString> = argv.next().into_iter().collect();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(argv);
    Ok(out)
}

/// The value of `--config FILE` or `--config=FILE`, before any `--`.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
    }
    None
}

fn flags_from_yaml(cmd: &Command, path: &Path, text: &str) -> Result<Vec<String>, ConfigFileError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|source| ConfigFileError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let mapping = match doc {
        // An empty file, or one of comments only, sets nothing.
        Value::Null => return Ok(Vec::new()),
        Value::Mapping(mapping) => mapping,
        _ => {
            return Err(ConfigFileError::NotAMapping {
                path: path.to_path_buf(),
            })
        }
    };
    let bad = |key: &str, reason: &str| ConfigFileError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let mut flags = Vec::new();
    for (key, value) in mapping {
        let key = match key {
            Value::String(key) => key,
            other => serde_yaml::to_string(&other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let Some(arg) = settable(cmd).find(|a| a.get_long() == Some(key.as_str())) else {
            return Err(ConfigFileError::UnknownKey {
                path: path.to_path_buf(),
                known: settable(cmd)
                    .filter_map(|a| a.get_long())
                    .collect::<Vec<_>>()
                    .join(", "),
                key,
            });
        };
        if !arg.get_action().takes_values() {
            match value {
                Value::Bool(true) => flags.push(format!("--{key}")),
                Value::Bool(false) => {}
                _ => return Err(bad(&key, "takes true or false")),
            }
            continue;
        }
        let values = match value {
            Value::Sequence(items) if matches!(arg.get_action(), ArgAction::Append) => items,
            Value::Sequence(_) => return Err(bad(&key, "takes one value, not a list")),
            one => vec![one],
        };
        for value in values {
            let value = scalar(&value).map_err(|reason| bad(&key, reason))?;
            // `--flag=value`, so that a value starting with `-` is not a flag.
            flags.push(format!("--{key}={value}"));
        }
    }
    Ok(flags)
}

fn settable(cmd: &Command) -> impl Iterator<Item = &clap::Arg> {
    cmd.get_arguments().filter(|a| {
        a.get_long()
            .is_some_and(|long| !NOT_IN_FILE.contains(&long))
    })
}

fn scalar(value: &Value) -> Result<String, &'static str> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("has no value"),
        _ => Err("takes a plain value, not a mapping or a nested list"),
    }
}

#[cfg(test)]
#[path = "config_file_tests.rs"]
mod tests;
