//! Compiles the C programs in `bpf/` with `clang -g -O2 -target bpf` into
//! `$OUT_DIR`, where `src/loader.rs` embeds them with `include_bytes_aligned!`.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["bpf_endpoint", "bpf_host"];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let bpf = manifest.join("..").join("bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = std::env::var("BPF_CLANG").unwrap_or_else(|_| "clang".to_string());

    rerun_for_tree(&bpf);
    println!("cargo:rerun-if-env-changed=BPF_CLANG");

    let mut args = vec![
        "-g".to_string(),
        "-O2".to_string(),
        "-target".to_string(),
        "bpf".to_string(),
        "-Wall".to_string(),
        "-Werror".to_string(),
        format!("-I{}", bpf.join("include").display()),
        format!("-I{}", bpf.join("lib").display()),
    ];
    // linux/types.h wants asm/types.h, which Debian keeps under the multiarch dir.
    if let Some(dir) = multiarch_include() {
        args.push(format!("-I{}", dir.display()));
    }
    for program in PROGRAMS {
        let src = bpf.join(format!("{program}.c"));
        let obj = out.join(format!("{program}.o"));
        let status = Command::new(&clang)
            .args(&args)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("running {clang} (install it with node-agent/deps.sh): {e}")
            });
        assert!(status.success(), "{clang} failed on {}", src.display());
    }
}

fn rerun_for_tree(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rerun_for_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

fn multiarch_include() -> Option<PathBuf> {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => return Some(PathBuf::from(format!("/usr/include/{other}-linux-gnu"))),
    };
    let dir = PathBuf::from(format!("/usr/include/{triple}"));
    dir.exists().then_some(dir)
}
