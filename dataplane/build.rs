//! Compiles the XDP program (`bpf/fiberlb_xdp.c`) with `clang -target bpf` into OUT_DIR, where
//! `src/nic/afxdp/program.rs` embeds it with `include_bytes!`.
//!
//! clang, libbpf-dev and the kernel headers come from `scripts/deps-afxdp.sh`; `CLANG` overrides
//! the compiler.

use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "bpf/fiberlb_xdp.c";

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("fiberlb_xdp.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".to_string());

    // `-target bpf` does not look into the multiarch include dir where Debian keeps <asm/types.h>.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");

    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", SRC, "-o"])
        .arg(&obj)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            panic!(
                "compiling the XDP program {SRC} with `{clang}` failed ({}):\n{}\n\
                 If headers such as <bpf/bpf_helpers.h> or <asm/types.h> are missing, install the \
                 build dependencies with `sudo scripts/deps-afxdp.sh`.",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
        }
        Err(e) => {
            panic!(
                "cannot run `{clang}` to compile the XDP program {SRC}: {e}.\n\
                 clang (with the BPF target), libbpf-dev and the kernel headers are needed to \
                 build fiberlb-dataplane: install them with `sudo scripts/deps-afxdp.sh` \
                 (or set CLANG to a clang binary)."
            );
        }
    }
}
