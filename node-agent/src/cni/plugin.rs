//! The plugin's commands against the kernel: the pinned programs, links
//! and `bh_guarded` of the agent's layout.

use std::path::{Path, PathBuf};

use aya::programs::links::PinnedLink;
use aya::programs::SchedClassifier;
use serde_json::Value;

use super::{code, host_interface, pass_through, version_info, CniEnv, CniError, NetConf};
use crate::attach::{attach_pinned, ifindex, link_pin, Hook};
use crate::loader::program_pin;
use crate::maps::guarded::Guarded;

/// Runs one CNI command: what to print on success (nothing for DEL, GC
/// and STATUS), or the error to print.
pub fn run(env: &CniEnv, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    if env.command == "VERSION" {
        return Ok(Some(version_info()));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command.as_str() {
        "ADD" => add(env, &conf).map(Some),
        "DEL" => del(env, &conf).map(|()| None),
        "CHECK" => check(env, &conf).map(|()| None),
        "STATUS" => pinned_programs(&conf.pin_dir())
            .map(|_| None)
            .map_err(|e| CniError::new(code::PLUGIN_NOT_AVAILABLE, e.msg)),
        "GC" => Ok(None),
        other => Err(CniError::new(
            code::INVALID_ENVIRONMENT,
            format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, STATUS, GC or VERSION"),
        )),
    }
}

/// The pins of both endpoint programs, or the error naming the missing one.
fn pinned_programs(pin_dir: &Path) -> Result<[(Hook, PathBuf); 2], CniError> {
    let pins = Hook::ENDPOINT.map(|h| (h, program_pin(pin_dir, h.program())));
    for (_, pin) in &pins {
        if !pin.exists() {
            return Err(CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "{} is missing: bulkhead-agent has not programmed this node yet (or runs another layout); refusing to start a pod it cannot guard",
                    pin.display()
                ),
            ));
        }
    }
    Ok(pins)
}

fn host_side(env: &CniEnv, conf: &NetConf) -> Result<(String, u32), CniError> {
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "no prevResult: bulkhead-cni is a chained plugin, listed after the main plugin",
        )
    })?;
    let name = host_interface(prev, &env.ifname, &conf.endpoint_prefixes)?;
    let index =
        ifindex(&name).map_err(|e| CniError::new(code::CONTAINER_UNKNOWN, e.to_string()))?;
    Ok((name, index))
}

/// Guards the host-side veth, then attaches the agent's pinned programs to
/// it where the agent would, pinned where the agent adopts them.
fn add(env: &CniEnv, conf: &NetConf) -> Result<Value, CniError> {
    env.require_container()?;
    let result = pass_through(conf)?;
    let pin_dir = conf.pin_dir();
    let pins = pinned_programs(&pin_dir)?;
    let (interface, index) = host_side(env, conf)?;
    let io = |e: crate::Error| CniError::new(code::IO_FAILURE, format!("{interface}: {e}"));
    // Guarded before attached: the first packet the programs see is judged so.
    Guarded::from_pin(&pin_dir)
        .and_then(|mut g| g.insert(index))
        .map_err(io)?;
    let links = pin_dir.join("links");
    std::fs::create_dir_all(&links)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("{}: {e}", links.display())))?;
    for (hook, pin) in pins {
        let mut prog = SchedClassifier::from_pin(&pin)
            .map_err(|e| CniError::new(code::IO_FAILURE, format!("{}: {e}", pin.display())))?;
        let link = link_pin(&links, &interface, index, hook);
        match attach_pinned(&mut prog, &interface, hook, &link).map_err(io)? {
            Ok(_) => {}
            Err(tcx) => {
                return Err(CniError::new(
                    code::IO_FAILURE,
                    format!(
                        "{interface}: attaching {} with TCX (kernel 6.6 or later): {tcx}",
                        hook.program()
                    ),
                ))
            }
        }
    }
    Ok(result)
}

/// Stops guarding the pod's interface; succeeds when there is nothing to
/// do (no prevResult, the interface or the agent's pins already gone). The
/// links go with the veth; the agent removes their pins.
fn del(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    let Ok((_, index)) = host_side(env, conf) else {
        return Ok(());
    };
    if let Ok(mut guarded) = Guarded::from_pin(&conf.pin_dir()) {
        guarded
            .remove(index)
            .map_err(|e| CniError::new(code::IO_FAILURE, e.to_string()))?;
    }
    Ok(())
}

/// The pod's interface is guarded and both programs' links are pinned.
fn check(env: &CniEnv, conf: &NetConf) -> Result<(), CniError> {
    env.require_container()?;
    let pin_dir = conf.pin_dir();
    pinned_programs(&pin_dir)?;
    let (interface, index) = host_side(env, conf)?;
    let guarded = Guarded::from_pin(&pin_dir)
        .and_then(|g| g.contains(index))
        .map_err(|e| CniError::new(code::IO_FAILURE, e.to_string()))?;
    if !guarded {
        return Err(CniError::new(
            code::IO_FAILURE,
            format!("{interface} (ifindex {index}) is not in bh_guarded"),
        ));
    }
    for hook in Hook::ENDPOINT {
        let link = link_pin(&pin_dir.join("links"), &interface, index, hook);
        if PinnedLink::from_pin(&link).is_err() {
            return Err(CniError::new(
                code::IO_FAILURE,
                format!(
                    "{interface}: no {} link pinned at {}",
                    hook.program(),
                    link.display()
                ),
            ));
        }
    }
    Ok(())
}
