//! Upgrades across map layouts: retiring what an agent of an older layout
//! left pinned.
//!
//! Every layout version pins under its own directory
//! (`<bpffs>/<pin name>/v<N>/`, its TCX links under `links/`), so a new
//! agent never reads maps whose layout it does not know. The old links stay
//! attached after the old agent is gone (that is what keeps a node enforcing
//! across a restart), so without this module both layouts' programs would
//! run on every packet and the old one would enforce stale rules forever.
//!
//! Order, so that there is no moment without enforcement: the new layout's
//! programs are attached to an interface and its maps programmed first;
//! only then are the older layouts' links on that interface unpinned (the
//! pin is the link's last reference: removing it detaches the program).
//! A version directory with no links left is removed with its map pins.
//!
//! ```text
//!  v3/links/eth0_7_from-endpoint ─┐   v4 attached + programmed on eth0
//!  v3/links/eth0_7_to-endpoint   ─┴─► unpin (detach) ─► v3/ empty ─► rm v3/
//! ```

use std::path::{Path, PathBuf};

use aya::programs::links::PinnedLink;

/// Older layout versions found under `pin_root` (`v<N>` with N < `current`).
pub fn older_versions(pin_root: &Path, current: u32) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(pin_root) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version: u32 = name.strip_prefix('v')?.parse().ok()?;
            (version < current).then(|| (version, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Detaches and unpins the links that older layouts pinned for the
/// interface `interface` (ifindex `index`), whose programs of the current
/// layout are attached and programmed. Returns the pins removed.
pub fn retire_links(pin_root: &Path, current: u32, interface: &str, index: u32) -> Vec<PathBuf> {
    // Pins are named `<interface>_<ifindex>_<hook>` (attach.rs): the
    // ifindex tells an interface from an older one of the same name.
    let prefix = format!("{interface}_{index}_");
    let mut removed = Vec::new();
    for (version, dir) in older_versions(pin_root, current) {
        let Ok(entries) = std::fs::read_dir(dir.join("links")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            match PinnedLink::from_pin(&path) {
                // Unpinning drops the last reference: the kernel detaches it.
                Ok(link) => drop(link.unpin()),
                Err(e) => {
                    tracing::debug!(pin = %path.display(), error = %e, "not a link pin")
                }
            }
            if std::fs::remove_file(&path).is_ok() || !path.exists() {
                tracing::info!(
                    interface,
                    layout = version,
                    pin = %path.display(),
                    "upgrade: detached an older layout's program"
                );
                removed.push(path);
            }
        }
    }
    removed
}

/// Removes the directories of older layouts that hold no link any more
/// (their maps are then used by nothing). Returns the versions removed;
/// a version still attached somewhere this agent does not attach stays.
pub fn remove_unused(pin_root: &Path, current: u32) -> Vec<u32> {
    let mut removed = Vec::new();
    for (version, dir) in older_versions(pin_root, current) {
        let links_left = std::fs::read_dir(dir.join("links"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if links_left {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(layout = version, dir = %dir.display(), "upgrade: removed an older layout's pins");
                removed.push(version);
            }
            Err(e) => {
                tracing::warn!(layout = version, dir = %dir.display(), error = %e, "upgrade: could not remove an older layout's pins")
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lower_versions_are_older() {
        let root = std::env::temp_dir().join(format!("bh-upgrade-{}", std::process::id()));
        for d in ["v2", "v3", "v4", "v5", "vx", "links"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let got: Vec<u32> = older_versions(&root, 4).into_iter().map(|v| v.0).collect();
        assert_eq!(got, vec![2, 3]);
        // v2 and v3 have no links: both go; v4 and v5 stay.
        std::fs::create_dir_all(root.join("v3/links")).expect("mkdir");
        std::fs::write(root.join("v3/links/eth0_7_to-endpoint"), b"").expect("write");
        assert_eq!(remove_unused(&root, 4), vec![2]);
        assert_eq!(retire_links(&root, 4, "eth0", 8), Vec::<PathBuf>::new());
        assert_eq!(retire_links(&root, 4, "eth0", 7).len(), 1);
        assert_eq!(remove_unused(&root, 4), vec![3]);
        assert!(root.join("v4").exists() && root.join("v5").exists());
        std::fs::remove_dir_all(&root).ok();
    }
}
