//! The EAL: its arguments ([`EalConfig`]), the hugepage check, the process's one [`Eal`]
//! and the registration of non-EAL threads (workers).

use super::*;

/// EAL settings (the dpdk section of dataplane.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EalConfig {
    /// CPUs the EAL's main thread may run on. Workers are our own threads, pinned by the
    /// worker code and registered with DPDK; empty: every CPU the process may use.
    pub cores: Vec<usize>,
    /// Memory to reserve at start (`-m`, MiB); `None`: DPDK grows it on demand (with
    /// hugepages) or 256 MiB (`no_huge`).
    pub memory_mb: Option<u32>,
    /// Run on ordinary pages (`--no-huge`): slower, for tests and machines without hugepages.
    pub no_huge: bool,
    /// Virtual devices (`--vdev`), e.g. `net_af_xdp0,iface=eth0,start_queue=0,queue_count=1`.
    pub vdevs: Vec<String>,
    /// PCI devices DPDK may take (`-a`); empty: no PCI devices at all (`--no-pci`), so a test
    /// never grabs a real NIC.
    pub pci_allow: Vec<String>,
    /// Runtime file prefix; `None`: `fiberlb-<pid>`, unique per process as DPDK requires.
    pub file_prefix: Option<String>,
    /// `--in-memory`: no files in /dev/hugepages or /var/run/dpdk, so a killed process leaves
    /// nothing behind (fiberlb uses no DPDK multi-process features). Ignored with `no_huge`.
    pub in_memory: bool,
    /// EAL log level (`--log-level`, e.g. `notice`); `None`: DPDK's default.
    pub log_level: Option<String>,
    /// Anything else, passed through verbatim.
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            cores: Vec::new(),
            memory_mb: None,
            no_huge: false,
            vdevs: Vec::new(),
            pci_allow: Vec::new(),
            file_prefix: None,
            in_memory: true,
            log_level: None,
            extra_args: Vec::new(),
        }
    }
}

impl EalConfig {
    /// The `rte_eal_init` argument vector (argv[0] included).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["fiberlb-dataplane".to_string()];
        let cores = if self.cores.is_empty() {
            crate::cpus::available_cores()
        } else {
            self.cores.clone()
        };
        if !cores.is_empty() {
            let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
            // One lcore (0) for the main thread, allowed on all these CPUs: EAL pins the
            // thread calling rte_eal_init, and that thread is not a worker.
            a.push(format!("--lcores=0@({})", list.join(",")));
        }
        let prefix = self
            .file_prefix
            .clone()
            .unwrap_or_else(|| format!("fiberlb-{}", std::process::id()));
        a.push(format!("--file-prefix={prefix}"));
        // --no-huge implies legacy memory, which EAL refuses with --in-memory; it leaves no
        // hugepage files behind anyway.
        if self.in_memory && !self.no_huge {
            a.push("--in-memory".into());
        }
        if self.no_huge {
            a.push("--no-huge".into());
            a.push(format!("-m{}", self.memory_mb.unwrap_or(256)));
        } else if let Some(m) = self.memory_mb {
            a.push(format!("-m{m}"));
        }
        if self.pci_allow.is_empty() {
            a.push("--no-pci".into());
        }
        for p in &self.pci_allow {
            a.push(format!("-a{p}"));
        }
        for v in &self.vdevs {
            a.push(format!("--vdev={v}"));
        }
        if let Some(l) = &self.log_level {
            a.push(format!("--log-level={l}"));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// Checks `/proc/meminfo` text for enough free hugepages: at least one, and `want_mb` MiB
/// when given.
///
/// # Errors
/// [`DpdkError::NoHugepages`] naming what was found.
pub fn check_hugepages(meminfo: &str, want_mb: Option<u32>) -> Result<(), DpdkError> {
    let field = |name: &str| crate::meminfo::field(meminfo, name);
    let free = field("HugePages_Free").unwrap_or(0);
    let size_kb = field("Hugepagesize").unwrap_or(2048);
    let free_mb = free * size_kb / 1024;
    if free == 0 {
        return Err(DpdkError::NoHugepages {
            detail: format!(
                "HugePages_Free is 0 of {} pages",
                field("HugePages_Total").unwrap_or(0)
            ),
        });
    }
    if let Some(w) = want_mb {
        if free_mb < u64::from(w) {
            return Err(DpdkError::NoHugepages {
                detail: format!("{free_mb} MiB free in hugepages, memory_mb = {w} requested"),
            });
        }
    }
    Ok(())
}

/// 0: never initialised, 1: initialised (an [`Eal`] may be alive), 2: cleaned up.
pub(super) static EAL_STATE: AtomicU8 = AtomicU8::new(0);

#[derive(Debug)]
pub(super) struct EalInner {
    pub(super) args: Vec<String>,
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: the last reference to the EAL is going away: every pool and port holding
        // an Arc<EalInner> was dropped before, so no DPDK object is used after cleanup.
        unsafe {
            sys::rte_eal_cleanup();
        }
        EAL_STATE.store(2, Ordering::Release);
    }
}

/// The process's DPDK environment. Cheap to clone; cleaned up when the last clone, pool and
/// port are gone (after which DPDK cannot be initialised again in this process).
#[derive(Clone, Debug)]
pub struct Eal {
    pub(super) inner: Arc<EalInner>,
}

impl Eal {
    /// Initialises the EAL.
    ///
    /// # Errors
    /// No hugepages (when `no_huge` is off), an EAL already initialised, or `rte_eal_init`
    /// failing (typically a vdev or PCI device that does not exist).
    pub fn init(cfg: &EalConfig) -> Result<Eal, DpdkError> {
        if !cfg.no_huge {
            let meminfo = crate::meminfo::read();
            check_hugepages(&meminfo, cfg.memory_mb)?;
        }
        if EAL_STATE
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        let args = cfg.args();
        let mut cargs = Vec::with_capacity(args.len());
        for a in &args {
            match CString::new(a.as_str()) {
                Ok(c) => cargs.push(c),
                Err(_) => {
                    EAL_STATE.store(0, Ordering::Release);
                    return Err(DpdkError::InvalidConfig(format!(
                        "EAL argument {a:?} contains a NUL byte"
                    )));
                }
            }
        }
        // EAL may keep pointers into argv and permutes it: give it a vector that lives for
        // the rest of the process (a few hundred bytes, once).
        let argv: &'static mut [*mut std::os::raw::c_char] = Box::leak(
            cargs
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = argv.len() as i32;
        // SAFETY: argv holds `argc` valid NUL-terminated strings that are never freed; this is
        // the only rte_eal_init call of the process (EAL_STATE moved 0 -> 1 above).
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let errno = rte_errno();
            // EAL cannot be retried after a failed init either.
            EAL_STATE.store(2, Ordering::Release);
            return Err(DpdkError::EalInit {
                args,
                errno,
                msg: strerror(errno),
            });
        }
        Ok(Eal {
            inner: Arc::new(EalInner { args }),
        })
    }

    /// The arguments the EAL was started with.
    pub fn args(&self) -> &[String] {
        &self.inner.args
    }

    /// NUMA sockets DPDK found (at least one).
    pub fn sockets(&self) -> Vec<i32> {
        // SAFETY: EAL is initialised (self exists); these only read EAL's topology.
        let n = unsafe { sys::rte_socket_count() };
        let mut v: Vec<i32> = (0..n)
            // SAFETY: idx < rte_socket_count().
            .map(|i| unsafe { sys::rte_socket_id_by_idx(i) })
            .filter(|s| *s >= 0)
            .collect();
        if v.is_empty() {
            v.push(0);
        }
        v
    }

    /// Names of every port DPDK probed (vdevs and allowed PCI devices).
    pub fn port_names(&self) -> Vec<String> {
        let mut ids = [0u16; 64];
        // SAFETY: the buffer holds 64 ids; the shim writes at most `max` of them.
        let n = unsafe { sys::fiberlb_eth_ports(ids.as_mut_ptr(), ids.len() as u16) };
        ids[..usize::from(n).min(ids.len())]
            .iter()
            .map(|&id| port_name(id))
            .collect()
    }

    /// One mbuf pool per NUMA socket DPDK found, `mbufs` buffers each.
    ///
    /// # Errors
    /// When a pool cannot be created (not enough memory).
    pub fn pools(&self, mbufs: u32) -> Result<Pools, DpdkError> {
        let pools = self
            .sockets()
            .into_iter()
            .map(|s| MbufPool::new(self, s, mbufs).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pools(pools))
    }
}

/// Registers the calling thread with DPDK, so mempool per-lcore caches work for it. Idempotent.
///
/// # Errors
/// When DPDK has no lcore id left.
pub fn register_thread(_eal: &Eal) -> Result<u32, DpdkError> {
    // SAFETY: the EAL is initialised (an Eal exists); registering a thread has no other
    // precondition and is a no-op for an already registered one.
    let id = unsafe { sys::fiberlb_thread_register() };
    u32::try_from(id).map_err(|_| DpdkError::ThreadRegister)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn eal_args_cover_the_config() {
        let cfg = EalConfig {
            cores: vec![0, 1],
            memory_mb: Some(128),
            no_huge: true,
            vdevs: vec!["net_null0".into()],
            pci_allow: vec![],
            file_prefix: Some("t1".into()),
            in_memory: true,
            log_level: Some("notice".into()),
            extra_args: vec!["--huge-unlink".into()],
        };
        assert_eq!(
            cfg.args(),
            [
                "fiberlb-dataplane",
                "--lcores=0@(0,1)",
                "--file-prefix=t1",
                "--no-huge",
                "-m128",
                "--no-pci",
                "--vdev=net_null0",
                "--log-level=notice",
                "--huge-unlink"
            ]
        );
        let pci = EalConfig {
            pci_allow: vec!["0000:01:00.0".into()],
            in_memory: false,
            ..EalConfig::default()
        };
        let a = pci.args();
        assert!(a.contains(&"-a0000:01:00.0".to_string()), "{a:?}");
        assert!(!a.contains(&"--no-pci".to_string()));
        assert!(a.contains(&format!("--file-prefix=fiberlb-{}", std::process::id())));
    }

    #[test]
    pub(super) fn hugepage_check_names_what_is_missing() {
        let none =
            "HugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n";
        let e = check_hugepages(none, None).unwrap_err();
        assert!(matches!(e, DpdkError::NoHugepages { .. }));
        assert!(e.to_string().contains("nr_hugepages"), "{e}");
        let some =
            "HugePages_Total:      64\nHugePages_Free:       64\nHugepagesize:       2048 kB\n";
        check_hugepages(some, None).unwrap();
        check_hugepages(some, Some(128)).unwrap();
        let e = check_hugepages(some, Some(256)).unwrap_err();
        assert!(e.to_string().contains("128 MiB free"), "{e}");
        assert!(check_hugepages("", None).is_err());
    }
}
