//! `scripts/install.sh` into a temporary DESTDIR: the tree it stages, the files' modes and
//! contents, that existing configuration survives a reinstall, that `systemd-analyze verify`
//! accepts the units (when systemd-analyze is installed), that the installed configuration
//! files load, and that `scripts/uninstall.sh` removes what was installed. No root needed.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fiberlb_tests::{bin_path, workspace_root};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fiberlb-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file (not directory) under `root`, as absolute paths inside the staged system.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(format!("/{}", rel.display()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

fn run_script(script: &str, destdir: &Path, args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(workspace_root().join(script))
        .args(args)
        .env("DESTDIR", destdir)
        .output()
        .expect("run script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?} failed:\n{text}");
    text
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn install_tree_units_and_uninstall() {
    let bin_dir = bin_path("fiberlb-dataplane")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    for b in ["fiberlbd", "fiberlbctl"] {
        assert!(
            bin_dir.join(b).exists(),
            "{b} not built in {}",
            bin_dir.display()
        );
    }
    let tmp = TempDir::new("install");
    let d = tmp.0.join("root");
    let bin_arg = bin_dir.to_string_lossy().into_owned();
    let out = run_script(
        "scripts/install.sh",
        &d,
        &["--prefix", "/usr", "--bin-dir", &bin_arg],
    );
    assert!(out.contains("staged"), "{out}");

    // The tree: exactly these files.
    let mut want: BTreeSet<String> = [
        "/usr/bin/fiberlb-dataplane",
        "/usr/bin/fiberlbd",
        "/usr/bin/fiberlbctl",
        "/etc/fiberlb/dataplane.toml",
        "/etc/fiberlb/controlplane.toml",
        "/usr/lib/systemd/system/fiberlb-dataplane.service",
        "/usr/lib/systemd/system/fiberlbd.service",
        "/usr/lib/systemd/system/fiberlb-bpffs.service",
        "/usr/lib/sysctl.d/90-fiberlb-hugepages.conf",
        "/usr/lib/sysusers.d/fiberlb.conf",
        "/usr/share/doc/fiberlb/README.md",
        "/usr/share/doc/fiberlb/examples/services.yaml",
        "/usr/share/bash-completion/completions/fiberlbctl",
        "/usr/share/zsh/vendor-completions/_fiberlbctl",
        "/usr/share/fish/vendor_completions.d/fiberlbctl.fish",
        "/usr/share/man/man1/fiberlbctl.1",
        "/usr/share/fiberlb/install-manifest",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for e in std::fs::read_dir(workspace_root().join("docs"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            want.insert(format!("/usr/share/doc/fiberlb/{name}"));
        }
    }
    for e in std::fs::read_dir(workspace_root().join("packaging/bird"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        want.insert(format!("/usr/share/doc/fiberlb/examples/bird/{name}"));
    }
    if workspace_root().join("packaging/fiberlb.nix").exists() {
        want.insert("/usr/share/fiberlb/fiberlb.nix".into());
    }
    let got = files_under(&d);
    assert_eq!(got, want, "installed tree differs");
    // Completions and the manual page come from fiberlbctl's clap definitions: every command.
    let bash = read(&d.join("usr/share/bash-completion/completions/fiberlbctl"));
    for word in ["apply", "diff", "node", "drain", "lookup"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let man = read(&d.join("usr/share/man/man1/fiberlbctl.1"));
    assert!(
        man.starts_with(".ie") || man.contains(".TH fiberlbctl"),
        "{man}"
    );
    assert!(man.contains("diff") && man.contains("node"), "{man}");

    // Binaries executable, the same bytes as the build; configs and units not executable.
    for b in ["fiberlb-dataplane", "fiberlbd", "fiberlbctl"] {
        let p = d.join("usr/bin").join(b);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(bin_dir.join(b)).unwrap()
        );
    }
    for f in [
        "etc/fiberlb/dataplane.toml",
        "usr/lib/systemd/system/fiberlbd.service",
    ] {
        assert_eq!(
            std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
    // The manifest lists every installed file but the /etc configuration (kept on uninstall).
    let manifest: BTreeSet<String> = read(&d.join("usr/share/fiberlb/install-manifest"))
        .lines()
        .map(String::from)
        .collect();
    let not_etc: BTreeSet<String> = want
        .iter()
        .filter(|f| !f.starts_with("/etc/"))
        .cloned()
        .collect();
    assert_eq!(manifest, not_etc);

    // Units: paths substituted, the data plane's privileges and limits, the control plane's none.
    let unit_dir = d.join("usr/lib/systemd/system");
    let dp = read(&unit_dir.join("fiberlb-dataplane.service"));
    let cp = read(&unit_dir.join("fiberlbd.service"));
    for (name, text) in [("dataplane", &dp), ("fiberlbd", &cp)] {
        assert!(!text.contains('@'), "{name}: unsubstituted placeholder");
        assert!(text.contains("Restart=on-failure"), "{name}");
        assert!(text.contains("User=fiberlb"), "{name}");
        assert!(text.contains("StandardError=journal"), "{name}");
    }
    assert!(dp
        .contains("ExecStart=/usr/bin/fiberlb-dataplane run --config /etc/fiberlb/dataplane.toml"));
    let caps_line = dp
        .lines()
        .find(|l| l.starts_with("AmbientCapabilities="))
        .expect("AmbientCapabilities");
    for cap in [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_IPC_LOCK",
    ] {
        assert!(caps_line.contains(cap), "{caps_line}");
    }
    assert!(!caps_line.contains("CAP_SYS_ADMIN"), "{caps_line}");
    assert!(dp.contains("LimitMEMLOCK=infinity") && dp.contains("\nCPUAffinity="));
    assert!(cp.contains("ExecStart=/usr/bin/fiberlbd --config /etc/fiberlb/controlplane.toml"));
    assert!(cp.contains("\nCapabilityBoundingSet=\n") && cp.contains("\nAmbientCapabilities=\n"));
    assert!(!cp.contains("Requires=fiberlb-dataplane"));
    assert!(
        read(&d.join("usr/lib/sysctl.d/90-fiberlb-hugepages.conf")).contains("vm.nr_hugepages = ")
    );

    // The installed data-plane configuration loads, and the two files agree on the region and
    // the hash seed.
    let dcfg =
        fiberlb_dataplane::config::DataplaneConfig::load(&d.join("etc/fiberlb/dataplane.toml"))
            .expect("installed dataplane.toml loads");
    let ctext = read(&d.join("etc/fiberlb/controlplane.toml"));
    assert!(ctext.contains(&format!(
        "shm_path = \"{}\"",
        dcfg.shm.resolved_path().display()
    )));
    assert!(ctext.contains(&format!("hash_seed = {}", dcfg.forwarding.hash_seed)));
    check_controlplane_config_starts(&ctext, &bin_dir, &tmp.0);

    // systemd-analyze accepts the units (with the staged binaries' paths).
    verify_units(&unit_dir, &d, &tmp.0);

    // Reinstall over an edited configuration: kept, the new example beside it.
    let edited = "# edited by the administrator\n";
    std::fs::write(d.join("etc/fiberlb/dataplane.toml"), edited).unwrap();
    let out = run_script(
        "scripts/install.sh",
        &d,
        &["--prefix", "/usr", "--bin-dir", &bin_arg],
    );
    assert!(out.contains("kept /etc/fiberlb/dataplane.toml"), "{out}");
    assert_eq!(read(&d.join("etc/fiberlb/dataplane.toml")), edited);
    assert!(d.join("etc/fiberlb/dataplane.toml.dist").exists());

    // Uninstall: only the configuration stays; --purge removes it too.
    run_script("scripts/uninstall.sh", &d, &["--prefix", "/usr"]);
    let left = files_under(&d);
    let want_left: BTreeSet<String> = [
        "/etc/fiberlb/dataplane.toml",
        "/etc/fiberlb/controlplane.toml",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(left, want_left);
    run_script(
        "scripts/install.sh",
        &d,
        &["--prefix", "/usr", "--bin-dir", &bin_arg],
    );
    run_script("scripts/uninstall.sh", &d, &["--prefix", "/usr", "--purge"]);
    assert!(files_under(&d).is_empty(), "{:?}", files_under(&d));
}

/// fiberlbd accepts the installed controlplane.toml: started with it (paths moved into the
/// temporary directory), it serves its API socket.
fn check_controlplane_config_starts(text: &str, bin_dir: &Path, tmp: &Path) {
    let sock = tmp.join("fiberlbd.sock");
    let moved = text
        .replace("/run/fiberlb/fiberlbd.sock", &sock.to_string_lossy())
        .replace(
            "/var/lib/fiberlb/store.redb",
            &tmp.join("store.redb").to_string_lossy(),
        )
        .replace(
            "/dev/hugepages/fiberlb-shm/region",
            &tmp.join("no-region").to_string_lossy(),
        )
        .replace("127.0.0.1:9750", "127.0.0.1:0");
    assert_ne!(
        moved, text,
        "the installed controlplane.toml changed its paths"
    );
    let cfg = tmp.join("controlplane.toml");
    std::fs::write(&cfg, moved).unwrap();
    let log = tmp.join("fiberlbd.log");
    let mut child = Command::new(bin_dir.join("fiberlbd"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start fiberlbd");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while Instant::now() < deadline {
        if sock.exists() {
            up = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        up,
        "fiberlbd did not start with the installed controlplane.toml:\n{}",
        read(&log)
    );
}

fn verify_units(unit_dir: &Path, destdir: &Path, tmp: &Path) {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("systemd-analyze not installed: unit verification skipped (scripts/setup.sh installs it)");
        return;
    }
    // The units name /usr/bin/...; point them at the staged binaries so `verify` can check
    // that every command exists and is executable.
    let vdir = tmp.join("verify");
    std::fs::create_dir_all(&vdir).unwrap();
    let staged_bin = destdir.join("usr/bin");
    let mut units = Vec::new();
    for e in std::fs::read_dir(unit_dir).unwrap().flatten() {
        let text = read(&e.path()).replace(
            "/usr/bin/fiberlb",
            &format!("{}/fiberlb", staged_bin.display()),
        );
        let p = vdir.join(e.file_name());
        std::fs::write(&p, text).unwrap();
        units.push(p);
    }
    assert_eq!(units.len(), 3);
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("run systemd-analyze verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `verify` exits 0 on unknown keys but names them: any line about our units is a failure.
    let about_ours: Vec<&str> = text.lines().filter(|l| l.contains("fiberlb")).collect();
    assert!(
        out.status.success() && about_ours.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
}
