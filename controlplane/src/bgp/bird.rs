//! Talking to BIRD 2: the include file fiberlbd writes, `birdc configure`, and the BGP
//! sessions read back from `birdc show protocols`.
//!
//! BIRD is the routing engine; fiberlbd only decides which VIP routes exist. The include file
//! holds two `protocol static` blocks (`<protocol>4`, `<protocol>6`) with one host route per
//! announced VIP; the operator's BGP protocols export them with
//! `export where proto = "fiberlb4";`. A reconfiguration that changes only static routes is
//! soft in BIRD: sessions stay up and only UPDATE/WITHDRAW messages are sent.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::BgpConfig;

/// How long a `birdc` call may take before it counts as failed.
pub const BIRDC_TIMEOUT: Duration = Duration::from_secs(5);

/// The include file's text announcing `vips` (sorted by the caller for stable output).
///
/// With a liveness interface the routes point at it (`via "fiberlb0"`) and the protocols
/// `check link`: when fiberlbd dies, even by SIGKILL, the kernel deletes its TAP device, BIRD's
/// device protocol sees the interface go and the routes are withdrawn without fiberlbd's help.
/// Without one they are `blackhole` routes, which stay until fiberlbd rewrites the file.
pub fn render(cfg: &BgpConfig, vips: &[IpAddr]) -> String {
    let mut out = String::from(
        "# Written by fiberlbd ([bgp] in its controlplane.toml) on every change; do not edit.\n\
         # Host routes for the VIPs this node serves now: export them to your BGP peers with\n",
    );
    let _ = writeln!(
        out,
        "#   export where proto = \"{0}4\" || proto = \"{0}6\";",
        cfg.protocol
    );
    let attrs = route_attributes(cfg);
    for (suffix, v6) in [("4", false), ("6", true)] {
        let _ = writeln!(out, "protocol static {}{} {{", cfg.protocol, suffix);
        let _ = writeln!(out, "    {};", if v6 { "ipv6" } else { "ipv4" });
        if !cfg.liveness_interface.is_empty() {
            let _ = writeln!(out, "    check link;");
        }
        for vip in vips.iter().filter(|v| v.is_ipv6() == v6) {
            let len = if v6 { 128 } else { 32 };
            let dest = if cfg.liveness_interface.is_empty() {
                "blackhole".to_string()
            } else {
                format!("via \"{}\"", cfg.liveness_interface)
            };
            let _ = writeln!(out, "    route {vip}/{len} {dest}{attrs};");
        }
        out.push_str("}\n");
    }
    out
}

/// ` { bgp_med = 50; bgp_community.add((65000,100)); }` or empty.
fn route_attributes(cfg: &BgpConfig) -> String {
    let mut body = String::new();
    if let Some(med) = cfg.med {
        let _ = write!(body, " bgp_med = {med};");
    }
    for c in &cfg.communities {
        if let Some((a, b)) = super::parse_community(c) {
            let _ = write!(body, " bgp_community.add(({a},{b}));");
        }
    }
    if body.is_empty() {
        body
    } else {
        format!(" {{{body} }}")
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, fsync, rename, fsync of
/// the directory. BIRD never reads a half-written file, and a crash leaves the old or the new.
///
/// # Errors
/// The I/O error, with the path.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    // 0o666 less the umask: what `File::create` gives.
    fiberlb_shared::atomic_file::write_atomic(path, text.as_bytes(), 0o666)
        .map_err(|(_, e)| format!("cannot write {}: {e}", path.display()))
}

/// Runs `birdc -s <socket> <args>` and returns its output.
///
/// # Errors
/// BIRD unreachable, birdc missing or hanging, or a non-zero exit, as a message.
pub async fn birdc(cfg: &BgpConfig, args: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(&cfg.birdc);
    cmd.arg("-s").arg(&cfg.socket).args(args).kill_on_drop(true);
    let run = tokio::time::timeout(BIRDC_TIMEOUT, cmd.output());
    let out = match run.await {
        Err(_) => {
            return Err(format!(
                "`{} -s {} {}` did not answer in {} s",
                cfg.birdc.display(),
                cfg.socket.display(),
                args.join(" "),
                BIRDC_TIMEOUT.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot run {}: {e}", cfg.birdc.display())),
        Ok(Ok(o)) => o,
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!(
            "`birdc {}` failed ({}): {}",
            args.join(" "),
            out.status,
            one_line(&text)
        ));
    }
    Ok(text)
}

/// `birdc configure`: BIRD re-reads its configuration, with our include file.
///
/// # Errors
/// BIRD's own message when it refused the configuration or could not be reached.
pub async fn configure(cfg: &BgpConfig) -> Result<(), String> {
    let text = birdc(cfg, &["configure"]).await?;
    configure_result(&text)
}

/// Whether `birdc configure` output says the new configuration was taken.
///
/// # Errors
/// The output, on one line, otherwise (parse errors name file, line and column).
pub fn configure_result(text: &str) -> Result<(), String> {
    // "Reconfigured", "Reconfiguration in progress", "Reconfiguration already in progress,
    // queueing new config" (all taken); anything else (a parse error "file:line:col ...",
    // "Unable to connect to server control socket") is a failure.
    if text.contains("Reconfigured") || text.contains("Reconfiguration") {
        Ok(())
    } else {
        Err(format!(
            "BIRD refused the configuration: {}",
            one_line(text)
        ))
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("BIRD ") && *l != "ready.")
        .collect::<Vec<_>>()
        .join("; ")
}

/// One BGP protocol of the local BIRD, as `birdc show protocols` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Session {
    pub name: String,
    /// `up`, `start`, `down`, ...
    pub state: String,
    pub since: String,
    /// `Established`, `Active  Socket: Connection refused`, ...
    pub info: String,
}

impl Session {
    /// The session carries routes.
    pub fn established(&self) -> bool {
        self.state == "up" && self.info.starts_with("Established")
    }
}

/// The BGP protocols in `birdc show protocols` output.
pub fn parse_protocols(text: &str) -> Vec<Session> {
    let mut out = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Name Proto Table State Since [Info...]
        if cols.len() < 5 || cols[1] != "BGP" {
            continue;
        }
        out.push(Session {
            name: cols[0].to_string(),
            state: cols[3].to_string(),
            since: cols[4].to_string(),
            info: cols[5..].join(" "),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(liveness: &str) -> BgpConfig {
        BgpConfig {
            liveness_interface: liveness.to_string(),
            ..BgpConfig::for_tests()
        }
    }

    #[test]
    fn render_routes_per_family() {
        let vips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        let t = render(&cfg("fiberlb0"), &vips);
        assert!(t.contains("protocol static fiberlb4 {\n    ipv4;\n    check link;\n    route 10.0.0.1/32 via \"fiberlb0\";\n}"), "{t}");
        assert!(t.contains("protocol static fiberlb6 {\n    ipv6;\n    check link;\n    route fd00::1/128 via \"fiberlb0\";\n}"), "{t}");
        let t = render(&cfg(""), &vips[..1]);
        assert!(t.contains("route 10.0.0.1/32 blackhole;"), "{t}");
        assert!(!t.contains("check link"), "{t}");
        assert!(
            t.contains("protocol static fiberlb6 {\n    ipv6;\n}"),
            "{t}"
        );
        let mut c = cfg("fiberlb0");
        c.med = Some(50);
        c.communities = vec!["65000:100".into()];
        let t = render(&c, &vips[..1]);
        assert!(
            t.contains("route 10.0.0.1/32 via \"fiberlb0\" { bgp_med = 50; bgp_community.add((65000,100)); };"),
            "{t}"
        );
    }

    /// BIRD itself parses what we write (`bird -p`), when it is installed (setup.sh installs
    /// bird2, so CI runs this).
    #[test]
    fn bird_accepts_the_include_file() {
        let Ok(out) = std::process::Command::new("bird").arg("--version").output() else {
            eprintln!("bird not installed: skipping");
            return;
        };
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("BIRD")
                || String::from_utf8_lossy(&out.stdout).contains("BIRD")
        );
        let dir = std::env::temp_dir().join(format!("fiberlb-bird-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vips: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        for (liveness, med) in [("fiberlb0", Some(7)), ("", None)] {
            let mut c = cfg(liveness);
            c.med = med;
            c.communities = vec!["65000:100".into(), "1:2".into()];
            let inc = dir.join("fiberlb.conf");
            write_atomic(&inc, &render(&c, &vips)).unwrap();
            let main = dir.join("bird.conf");
            std::fs::write(
                &main,
                format!(
                    "router id 192.0.2.1;\nprotocol device {{}}\ninclude \"{}\";\n\
                     protocol bgp up {{ local as 65001; neighbor 192.0.2.2 as 65000;\n\
                     ipv4 {{ import none; export where proto = \"fiberlb4\"; }};\n\
                     ipv6 {{ import none; export where proto = \"fiberlb6\"; }}; }}\n",
                    inc.display()
                ),
            )
            .unwrap();
            let out = std::process::Command::new("bird")
                .arg("-p")
                .arg("-c")
                .arg(&main)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bird -p rejected:\n{}\n{}",
                std::fs::read_to_string(&inc).unwrap(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The example node configuration shipped in packaging/bird parses with our file.
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/bird/bird.conf"),
        )
        .unwrap()
        .replace(
            "/etc/bird/fiberlb.d/vips.conf",
            &dir.join("fiberlb.conf").display().to_string(),
        );
        let ex = dir.join("example.conf");
        std::fs::write(&ex, example).unwrap();
        let out = std::process::Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(&ex)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bird -p rejected packaging/bird/bird.conf: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And rejects a broken file, so the check above can fail.
        let inc = dir.join("fiberlb.conf");
        std::fs::write(
            &inc,
            "protocol static x { ipv4; route 10.0.0.1/33 blackhole; }\n",
        )
        .unwrap();
        let out = std::process::Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(dir.join("bird.conf"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn protocols_and_configure_output() {
        let text = "BIRD 2.0.12 ready.\n\
            Name       Proto      Table      State  Since         Info\n\
            device1    Device     ---        up     09:01:02.345  \n\
            fiberlb4   Static     master4    up     09:01:02.345  \n\
            upstream   BGP        ---        up     09:01:04.001  Established   \n\
            backup     BGP        ---        start  09:01:02.345  Active        Socket: Connection refused\n";
        let s = parse_protocols(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "upstream");
        assert!(s[0].established());
        assert_eq!(s[1].info, "Active Socket: Connection refused");
        assert!(!s[1].established());
        assert!(configure_result("BIRD 2.0.12 ready.\nReconfigured\n").is_ok());
        assert!(configure_result("Reconfiguration in progress\n").is_ok());
        let e = configure_result(
            "BIRD 2.0.12 ready.\n/etc/bird/fiberlb.conf:3:9 syntax error, unexpected '/'\n",
        )
        .unwrap_err();
        assert!(e.contains("fiberlb.conf:3:9"), "{e}");
        assert!(configure_result(
            "Unable to connect to server control socket (/x): No such file or directory\n"
        )
        .is_err());
    }
}
