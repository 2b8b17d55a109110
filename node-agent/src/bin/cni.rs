//! `bulkhead-cni`: the chained CNI plugin that guards a pod's veth at
//! creation (`bulkhead_agent::cni`). Reads the CNI_* environment and the
//! network configuration on stdin; prints the result or the CNI error.

use std::io::{Read, Write};

use bulkhead_agent::cni::{code, plugin, CniEnv, CniError};

fn main() -> std::process::ExitCode {
    let env = CniEnv::from_vars(|k| std::env::var(k).ok());
    let mut stdin = Vec::new();
    let read = if env.command == "VERSION" {
        Ok(0)
    } else {
        std::io::stdin().read_to_end(&mut stdin)
    };
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .unwrap_or_else(|| "1.0.0".to_string());
    let outcome = match read {
        Ok(_) => plugin::run(&env, &stdin),
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("reading stdin: {e}"),
        )),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(result) => {
            if let Some(result) = result {
                writeln!(out, "{result}").ok();
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            writeln!(out, "{}", e.to_json(&version)).ok();
            eprintln!("bulkhead-cni {}: {}", env.command, e.msg);
            std::process::ExitCode::FAILURE
        }
    }
}
