//! The data plane's side of `<region>.ports.json` (format and rules in
//! [`fiberlb_shared::port_stats`]): collecting each port's link state and counters, and writing
//! the file atomically once a second.
//!
//! Runs on the data plane's main thread (the tick of `run_workers` in `src/runtime.rs`), never
//! on a worker: reading counters takes syscalls (sysfs reads, getsockopt, bpf map lookups) or
//! driver calls that may take locks. The workers' sockets and queues are not touched: an AF_XDP
//! socket is read through an [`XskStatsReader`] (a duplicated descriptor, read-only
//! getsockopt), a DPDK port through its port-level stats and link calls.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fiberlb_shared::port_stats::{
    ports_path_for, PortCounters, PortsFile, XdpCounters as FileXdp, XskCounters,
    PUBLISH_INTERVAL_MS,
};
use fiberlb_shared::shm::region::monotonic_ns;

use crate::nic::afxdp::{XdpProgram, XskStatsReader};

/// Why the ports file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum PortStatsError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a ports file: {reason}")]
    Format { path: PathBuf, reason: String },
}

/// Writes `file` to `path` atomically ([`fiberlb_shared::atomic_file::write_atomic`]: a
/// temporary file beside it, owner-only, fsync, rename over the old one, fsync of the
/// directory), so a reader sees the whole old file or the whole new one.
///
/// # Errors
/// When the temporary file cannot be written or renamed.
pub fn write_ports_file(path: &Path, file: &PortsFile) -> Result<(), PortStatsError> {
    let io = |op, source| PortStatsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(file).map_err(|e| PortStatsError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    fiberlb_shared::atomic_file::write_atomic(path, &bytes, 0o600).map_err(|(op, e)| io(op, e))
}

/// Reads and parses the file at `path` (unknown fields ignored).
///
/// # Errors
/// Missing, unreadable or not a ports file.
pub fn read_ports_file(path: &Path) -> Result<PortsFile, PortStatsError> {
    let bytes = std::fs::read(path).map_err(|source| PortStatsError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| PortStatsError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Rewrites `<region>.ports.json` at most once per [`PUBLISH_INTERVAL_MS`]; removes it when
/// the data plane stops.
#[derive(Debug)]
pub struct PortStatsPublisher {
    path: PathBuf,
    instance_id: String,
    interval: Duration,
    next: Option<Instant>,
    /// The last write error, logged once until a write succeeds again.
    failing: bool,
}

impl PortStatsPublisher {
    /// For the data plane of the region at `region_path` with id `instance_id`.
    pub fn new(region_path: &Path, instance_id: u128) -> Self {
        PortStatsPublisher {
            path: ports_path_for(region_path),
            instance_id: format!("{instance_id:032x}"),
            interval: Duration::from_millis(PUBLISH_INTERVAL_MS),
            next: None,
            failing: false,
        }
    }

    /// Where the file goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the next write is due (at once for the first).
    pub fn is_due(&self) -> bool {
        self.next.is_none_or(|n| Instant::now() >= n)
    }

    /// Writes `ports` now, stamped with both clocks. A failure is logged once (until a write
    /// succeeds again) and otherwise ignored: the file is for observers, forwarding goes on.
    pub fn publish(&mut self, ports: Vec<PortCounters>) {
        self.next = Some(Instant::now() + self.interval);
        let file = PortsFile {
            instance_id: self.instance_id.clone(),
            written_monotonic_ns: monotonic_ns(),
            written_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            interval_ms: self.interval.as_millis() as u64,
            ports,
        };
        match write_ports_file(&self.path, &file) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                eprintln!("fiberlb-dataplane: warning: port counters not published: {e}");
            }
            Err(_) => {}
        }
    }

    /// Removes the file (the data plane stops: its numbers would only go stale).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One of a kernel interface's counters from sysfs (`/sys/class/net/<if>/statistics/<name>`).
fn sysfs_u64(ifname: &str, file: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/{file}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// An AF_XDP port's record: the interface's link and counters (sysfs of this network
/// namespace), its sockets' `XDP_STATISTICS` summed, its XDP program's counters.
pub fn afxdp_port(
    name: &str,
    ifname: &str,
    sockets: &[XskStatsReader],
    program: Option<&XdpProgram>,
) -> PortCounters {
    let mut errors = Vec::new();
    let mut stat = |f: &str| {
        sysfs_u64(ifname, &format!("statistics/{f}")).unwrap_or_else(|| {
            if errors.is_empty() {
                errors.push(format!("/sys/class/net/{ifname}/statistics unreadable"));
            }
            0
        })
    };
    let mut p = PortCounters {
        name: name.to_string(),
        driver: "afxdp".into(),
        device: ifname.to_string(),
        rx_packets: stat("rx_packets"),
        tx_packets: stat("tx_packets"),
        rx_bytes: stat("rx_bytes"),
        tx_bytes: stat("tx_bytes"),
        rx_missed: stat("rx_missed_errors").wrapping_add(stat("rx_fifo_errors")),
        rx_errors: stat("rx_errors"),
        tx_errors: stat("tx_errors"),
        rx_dropped: Some(stat("rx_dropped")),
        // Reading carrier of an interface that is down fails (EINVAL): down.
        link_up: sysfs_u64(ifname, "carrier") == Some(1),
        // -1 (unknown) does not parse as u64.
        speed_mbps: sysfs_u64(ifname, "speed")
            .filter(|s| *s > 0)
            .and_then(|s| u32::try_from(s).ok()),
        ..PortCounters::default()
    };
    let mut x = XskCounters::default();
    for s in sockets {
        match s.stats() {
            Ok(v) => {
                x.sockets += 1;
                x.rx_dropped = x.rx_dropped.wrapping_add(v.rx_dropped);
                x.rx_ring_full = x.rx_ring_full.wrapping_add(v.rx_ring_full);
                x.rx_fill_ring_empty = x.rx_fill_ring_empty.wrapping_add(v.rx_fill_ring_empty);
                x.rx_invalid_descs = x.rx_invalid_descs.wrapping_add(v.rx_invalid_descs);
                x.tx_invalid_descs = x.tx_invalid_descs.wrapping_add(v.tx_invalid_descs);
                x.tx_ring_empty = x.tx_ring_empty.wrapping_add(v.tx_ring_empty);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    p.rx_missed = p.rx_missed.wrapping_add(x.rx_ring_full);
    p.xsk = Some(x);
    if let Some(prog) = program {
        match prog.counters() {
            Ok(c) => {
                p.xdp = Some(FileXdp {
                    redirected: c.redirected,
                    passed: c.passed,
                    parse_errors: c.parse_errors,
                    no_socket: c.no_socket,
                })
            }
            Err(e) => errors.push(format!("XDP program counters: {e}")),
        }
    }
    if !errors.is_empty() {
        p.error = Some(errors.join("; "));
    }
    p
}

/// A DPDK port's record: `rte_eth_stats` and the link without waiting.
///
/// Called from the main thread while workers poll the port's queues: `rte_eth_stats_get` and
/// `rte_eth_link_get_nowait` are port-level control calls that read counters (or device
/// registers) and write none of the queues' state, and only this thread makes them. That holds
/// for the PMDs fiberlb runs on here (net_af_packet and net_null sum per-queue software
/// counters; net_af_xdp adds its sockets' XDP_STATISTICS; net_tap sums per-queue counters) and
/// for the hardware PMDs, whose stats come from device registers — testpmd's `show port stats`
/// does the same beside forwarding lcores.
#[cfg(feature = "dpdk")]
pub fn dpdk_port(name: &str, port: &crate::nic::dpdk::Port) -> PortCounters {
    let link = port.link();
    let mut p = PortCounters {
        name: name.to_string(),
        driver: "dpdk".into(),
        device: port.name().to_string(),
        pmd: Some(port.driver().to_string()),
        link_up: link.up,
        speed_mbps: (link.up && link.speed_mbps > 0 && link.speed_mbps != u32::MAX)
            .then_some(link.speed_mbps),
        ..PortCounters::default()
    };
    match port.stats() {
        Ok(s) => {
            p.rx_packets = s.rx_packets;
            p.tx_packets = s.tx_packets;
            p.rx_bytes = s.rx_bytes;
            p.tx_bytes = s.tx_bytes;
            p.rx_missed = s.rx_missed;
            p.rx_errors = s.rx_errors;
            p.tx_errors = s.tx_errors;
            p.rx_nombuf = Some(s.rx_nombuf);
        }
        Err(e) => p.error = Some(e.to_string()),
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use fiberlb_shared::port_stats::STALE_AFTER_MS;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fiberlb-ports-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> Vec<PortCounters> {
        vec![
            PortCounters {
                name: "client".into(),
                driver: "afxdp".into(),
                device: "l0".into(),
                link_up: true,
                speed_mbps: Some(10_000),
                rx_packets: 10,
                rx_missed: 2,
                rx_dropped: Some(1),
                xsk: Some(XskCounters {
                    sockets: 2,
                    rx_ring_full: 2,
                    ..XskCounters::default()
                }),
                xdp: Some(FileXdp {
                    redirected: 8,
                    passed: 2,
                    ..FileXdp::default()
                }),
                ..PortCounters::default()
            },
            PortCounters {
                name: "backend".into(),
                driver: "dpdk".into(),
                device: "net_af_xdp1".into(),
                pmd: Some("net_af_xdp".into()),
                rx_nombuf: Some(3),
                error: Some("x".into()),
                ..PortCounters::default()
            },
        ]
    }

    #[test]
    fn publish_then_read_round_trips_and_is_fresh() {
        let dir = temp_dir("rt");
        let region = dir.join("region");
        let mut p = PortStatsPublisher::new(&region, 0xabc);
        assert!(p.is_due(), "the first write is due at once");
        p.publish(sample());
        assert!(!p.is_due(), "the next one a second later");
        assert_eq!(p.path(), dir.join("region.ports.json"));
        let f = read_ports_file(p.path()).unwrap();
        assert_eq!(f.instance_id, format!("{:032x}", 0xabc));
        assert_eq!(f.ports, sample());
        assert_eq!(f.interval_ms, PUBLISH_INTERVAL_MS);
        assert!(f.written_unix_ms > 0);
        assert!(!f.is_stale(monotonic_ns()));
        assert!(f.age_ms(monotonic_ns()) < STALE_AFTER_MS);
        // Driver-specific fields are absent, not null, where they do not apply.
        let text = std::fs::read_to_string(p.path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["ports"][0].get("rx_nombuf").is_none(), "{text}");
        assert_eq!(v["ports"][1]["rx_nombuf"], 3);
        assert!(v["ports"][1].get("xsk").is_none(), "{text}");
        p.remove();
        assert!(!p.path().exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn replace_is_atomic_and_leaves_no_temporary_file() {
        let dir = temp_dir("atomic");
        let path = ports_path_for(&dir.join("region"));
        // A reader holding the old file keeps reading the old contents after the replace:
        // the new file is a new inode renamed over it, never the old one rewritten.
        let mut old = PortsFile {
            instance_id: "old".into(),
            ..PortsFile::default()
        };
        write_ports_file(&path, &old).unwrap();
        let held = std::fs::File::open(&path).unwrap();
        old.instance_id = "new".into();
        old.ports = sample();
        write_ports_file(&path, &old).unwrap();
        let seen: PortsFile = serde_json::from_reader(held).unwrap();
        assert_eq!(seen.instance_id, "old");
        assert_eq!(read_ports_file(&path).unwrap(), old);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["region.ports.json"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn stale_file_is_detected_by_age() {
        let f = PortsFile {
            written_monotonic_ns: monotonic_ns()
                .saturating_sub((STALE_AFTER_MS + 1000) * 1_000_000),
            ..PortsFile::default()
        };
        assert!(f.is_stale(monotonic_ns()));
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_optional_ones_default() {
        // A newer data plane's file: extra fields at both levels, a driver this build does not
        // know; an older one's: no interval, no written_unix_ms, no optional port fields.
        let text = r#"{"instance_id":"01","written_monotonic_ns":5,"future":{"a":1},
            "ports":[{"name":"c","driver":"newdrv","device":"x","link_up":true,
                      "rx_packets":1,"tx_packets":2,"rx_bytes":3,"tx_bytes":4,"rx_missed":5,
                      "rx_errors":6,"tx_errors":7,"rx_pause_frames":9,
                      "xsk":{"sockets":1,"rx_dropped":0,"rx_ring_full":0,
                             "rx_fill_ring_empty":0,"rx_invalid_descs":0,
                             "tx_invalid_descs":0,"tx_ring_empty":0,"busy_poll":4}}]}"#;
        let f: PortsFile = serde_json::from_str(text).unwrap();
        assert_eq!(f.interval_ms, 0);
        assert_eq!(f.ports[0].rx_missed, 5);
        assert_eq!(f.ports[0].rx_nombuf, None);
        assert_eq!(f.ports[0].speed_mbps, None);
        assert_eq!(f.ports[0].xsk.unwrap().sockets, 1);
        let broken = temp_dir("broken");
        let path = broken.join("region.ports.json");
        std::fs::write(&path, "{\"ports\": [").unwrap();
        assert!(matches!(
            read_ports_file(&path),
            Err(PortStatsError::Format { .. })
        ));
        assert!(matches!(
            read_ports_file(&broken.join("missing")),
            Err(PortStatsError::Io { .. })
        ));
        let _ = std::fs::remove_dir_all(broken);
    }

    #[test]
    fn afxdp_port_of_loopback_reads_sysfs() {
        // `lo` exists in every network namespace; no sockets, no program.
        if !Path::new("/sys/class/net/lo/statistics").exists() {
            return;
        }
        let p = afxdp_port("lo", "lo", &[], None);
        assert_eq!(p.driver, "afxdp");
        assert_eq!(p.error, None);
        assert_eq!(p.xsk, Some(XskCounters::default()));
        assert!(p.rx_dropped.is_some());
        let missing = afxdp_port("x", "fiberlb-nonexistent0", &[], None);
        assert!(!missing.link_up);
        assert!(missing.error.is_some());
    }
}
