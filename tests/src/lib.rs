//! Helpers for fiberlb's end-to-end tests and demo.

pub mod sample;

use std::path::PathBuf;
use std::sync::OnceLock;

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Path of one of the workspace's binaries (`fiberlb-dataplane`, ...). Uses
/// `$FIBERLB_BIN_DIR` when set (scripts/test.sh builds release binaries and sets it);
/// otherwise builds the release binaries once with cargo.
///
/// # Panics
/// When the binary cannot be found or built: the test cannot run without it.
pub fn bin_path(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("FIBERLB_BIN_DIR") {
            return PathBuf::from(d);
        }
        let root = workspace_root();
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--release", "--workspace", "--bins"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --release --bins failed");
        root.join("target/release")
    });
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found (set FIBERLB_BIN_DIR or build the workspace)",
        p.display()
    );
    p
}
