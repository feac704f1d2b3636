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

/// Whether the tests run as root (network namespaces, XDP, AF_XDP and DPDK need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether libdpdk is installed (`pkg-config --exists libdpdk`; scripts/deps-dpdk.sh).
pub fn dpdk_installed() -> bool {
    std::process::Command::new("pkg-config")
        .args(["--exists", "libdpdk"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The folder holding the workspace's binaries `names` (all of them), as
/// [`bin_path`] finds or builds them: what the e2e scripts take as `FIBERLB_BIN_DIR`.
///
/// # Panics
/// As [`bin_path`], when one of them cannot be found or built.
pub fn bin_dir(names: &[&str]) -> PathBuf {
    let paths: Vec<PathBuf> = names.iter().map(|n| bin_path(n)).collect();
    paths
        .first()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .expect("name at least one binary")
}

/// One run of an end-to-end script of `tests/e2e/` (see [`run_e2e_script`]).
#[derive(Debug)]
pub struct E2eScript<'a> {
    /// The script's file name in `tests/e2e/`, e.g. `"dataplane.sh"`.
    pub script: &'a str,
    /// The folder with the binaries the script runs, passed as `FIBERLB_BIN_DIR`.
    pub bin_dir: &'a std::path::Path,
    /// The variable the script takes its network namespaces' name prefix from, e.g.
    /// `"FE2E_PREFIX"` (each script's header names it).
    pub prefix_var: &'a str,
    /// The prefix's letters: the run's prefix is these followed by the test process's id, so
    /// it is this run's own (keep it short: DPDK's script builds interface names from it).
    pub prefix_tag: &'a str,
    /// More environment for the script.
    pub env: &'a [(&'a str, &'a str)],
    /// Checks that must have passed: the report must have a line starting with each (e.g.
    /// `"PASS start"`).
    pub required: &'a [&'a str],
}

/// What an end-to-end script reported: its standard output's lines (`PASS name ...`,
/// `FAIL name ...`, `RESULT ...`, and whatever else it printed).
#[derive(Debug)]
pub struct ScriptReport {
    /// The script's standard output.
    pub stdout: String,
    /// The prefix of the run's network namespaces.
    pub prefix: String,
}

impl ScriptReport {
    /// The report's lines.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines()
    }

    /// Whether the report has exactly this line.
    pub fn has_line(&self, line: &str) -> bool {
        self.lines().any(|l| l == line)
    }

    /// The value of `key=` in the first `RESULT <check> ...` line.
    pub fn result_field(&self, check: &str, key: &str) -> Option<&str> {
        let prefix = format!("RESULT {check} ");
        let line = self.lines().find(|l| l.starts_with(&prefix))?;
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Runs `bash tests/e2e/<script>` (with `FIBERLB_BIN_DIR`, a namespace prefix of its own and
/// `env`), prints its output, and asserts what every end-to-end script promises: it did not
/// skip, no `FAIL` line, a `PASS` line for each of `required`, `RESULT fails=0`, exit status
/// 0, and no network namespace with the run's prefix left behind. Returns the report for the
/// caller's own assertions (the numbers in its `RESULT` lines).
///
/// # Panics
/// When the script cannot be run or an assertion fails: the test fails.
pub fn run_e2e_script(run: &E2eScript) -> ScriptReport {
    let prefix = format!("{}{}", run.prefix_tag, std::process::id());
    let script = workspace_root().join("tests/e2e").join(run.script);
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("FIBERLB_BIN_DIR", run.bin_dir)
        .env(run.prefix_var, &prefix)
        .envs(run.env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let report = ScriptReport {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        prefix,
    };
    eprintln!(
        "{}\n{}",
        report.stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let skipped: Vec<&str> = report.lines().filter(|l| l.starts_with("SKIP")).collect();
    assert!(
        skipped.is_empty(),
        "{} skipped although the test runs as root: {skipped:?}",
        run.script
    );
    let failed: Vec<&str> = report.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(failed.is_empty(), "failed checks: {failed:#?}");
    for want in run.required {
        assert!(
            report.lines().any(|l| l.starts_with(want)),
            "missing {want:?} in the report"
        );
    }
    assert!(report.has_line("RESULT fails=0"), "no final result line");
    assert!(out.status.success(), "script exit status {:?}", out.status);
    // No namespace of this run survives. (A name continuing with a digit belongs to another
    // run whose process id starts with this one's.)
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    let listed = String::from_utf8_lossy(&ns.stdout);
    let left: Vec<&str> = listed
        .lines()
        .filter(|l| {
            l.strip_prefix(report.prefix.as_str())
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    report
}
