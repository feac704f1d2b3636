//! Ethernet ports: configuration, start/stop ([`Port`], closed when the last handle goes),
//! link status and counters, and one worker's queue pair ([`PortQueue`]).

use super::*;

pub(super) fn port_name(id: u16) -> String {
    let mut buf = [0 as std::os::raw::c_char; 64];
    // SAFETY: buf is 64 bytes, RTE_ETH_NAME_MAX_LEN; DPDK writes a NUL-terminated name.
    let rc = unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    if rc != 0 {
        return format!("port{id}");
    }
    // SAFETY: NUL-terminated on success.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Port settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// DPDK device name: a vdev name (`net_af_xdp0`) or a PCI address (`0000:01:00.0`).
    pub name: String,
    /// RX/TX queue pairs: one per worker. RSS spreads flows over them when more than one.
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Receive frames for any MAC (needed on a veth or a shared segment).
    pub promiscuous: bool,
    /// Spread flows over the queues with RSS when there are several (off for a `net_tap`
    /// host port: which queue the kernel's packets arrive on does not matter).
    pub rss: bool,
}

impl PortConfig {
    /// A port with `queues` queue pairs and default ring sizes.
    pub fn new(name: &str, queues: u16) -> Self {
        PortConfig {
            name: name.to_string(),
            queues,
            rx_desc: 1024,
            tx_desc: 1024,
            promiscuous: true,
            rss: true,
        }
    }
}

/// Link state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// A port's hardware counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the NIC: RX ring full.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// RX buffer allocation failures (mempool empty).
    pub rx_nombuf: u64,
}

#[derive(Debug)]
pub(super) struct PortInner {
    pub(super) id: u16,
    pub(super) name: String,
    pub(super) driver: String,
    pub(super) queues: u16,
    pub(super) rss: bool,
    pub(super) pool: Arc<MbufPool>,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: no queue handle exists any more (they hold the Arc), so no thread polls the
        // port; stop then close is DPDK's teardown order. The pool outlives this (field).
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}

/// A started DPDK port. Hand its [`PortQueue`]s to workers; the port stops and closes when
/// the port and every queue handle are dropped.
#[derive(Clone, Debug)]
pub struct Port {
    pub(super) inner: Arc<PortInner>,
}

impl Port {
    /// Finds, configures and starts a port: `queues` RX/TX queue pairs, RX buffers from the
    /// pool of the port's NUMA socket, RSS over IP/TCP/UDP when `queues > 1`.
    ///
    /// # Errors
    /// No port of that name, not enough queues, or a DPDK setup call failing.
    pub fn start(eal: &Eal, pools: &Pools, cfg: &PortConfig) -> Result<Port, DpdkError> {
        let cname =
            CString::new(cfg.name.as_str()).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let mut id = 0u16;
        // SAFETY: name is NUL-terminated; id is a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::NoSuchPort {
                name: cfg.name.clone(),
                available: eal.port_names(),
            });
        }
        Self::start_id(pools, id, cfg)
    }

    pub(super) fn start_id(pools: &Pools, id: u16, cfg: &PortConfig) -> Result<Port, DpdkError> {
        let err = |op: &'static str, rc: i32| {
            let errno = rc.abs();
            DpdkError::Port {
                port: cfg.name.clone(),
                op,
                errno,
                msg: strerror(errno),
            }
        };
        if cfg.queues == 0 {
            return Err(DpdkError::InvalidConfig(format!(
                "port {:?}: queues must be at least 1",
                cfg.name
            )));
        }
        let mut info = sys::fiberlb_port_info::default();
        // SAFETY: id is a probed port; info is a valid out-pointer.
        let rc = unsafe { sys::fiberlb_port_info(id, &mut info) };
        if rc != 0 {
            return Err(err("rte_eth_dev_info_get", rc));
        }
        // SAFETY: the shim NUL-terminates driver_name.
        let driver = unsafe { CStr::from_ptr(info.driver_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        if info.max_rx_queues < cfg.queues || info.max_tx_queues < cfg.queues {
            return Err(DpdkError::NotEnoughQueues {
                port: cfg.name.clone(),
                driver,
                max_rx: info.max_rx_queues,
                max_tx: info.max_tx_queues,
                want: cfg.queues,
            });
        }
        let rss_hf = if cfg.queues > 1 && cfg.rss {
            let hf = sys::fiberlb_rss_default & info.flow_type_rss_offloads;
            if hf == 0 {
                log::warn!(
                    "port {:?} ({driver}) has no RSS; its {} queues receive what the device \
                     puts on them",
                    cfg.name,
                    cfg.queues
                );
            }
            hf
        } else {
            0
        };
        // SAFETY: id is a probed, stopped port.
        let rc = unsafe { sys::fiberlb_port_configure(id, cfg.queues, cfg.queues, rss_hf) };
        if rc != 0 {
            return Err(err("rte_eth_dev_configure", rc));
        }
        // SAFETY: id is a valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let pool = pools.for_socket(socket).clone();
        let clamp = |want: u16, max: u16| if max == 0 { want } else { want.min(max) };
        let rx_desc = clamp(cfg.rx_desc, info.rx_desc_max);
        let tx_desc = clamp(cfg.tx_desc, info.tx_desc_max);
        let sock = if socket < 0 { pool.socket } else { socket } as u32;
        for q in 0..cfg.queues {
            // SAFETY: the port is configured with `queues` RX queues; NULL conf = driver
            // defaults; the pool outlives the port (PortInner holds it).
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(id, q, rx_desc, sock, std::ptr::null(), pool.raw())
            };
            if rc != 0 {
                return Err(err("rte_eth_rx_queue_setup", rc));
            }
            // SAFETY: as above, for TX.
            let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, sock, std::ptr::null()) };
            if rc != 0 {
                return Err(err("rte_eth_tx_queue_setup", rc));
            }
        }
        // SAFETY: every queue is set up.
        let rc = unsafe { sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(err("rte_eth_dev_start", rc));
        }
        if cfg.promiscuous {
            // Not every vdev supports it (ring, null): not fatal.
            // SAFETY: started port.
            let _ = unsafe { sys::rte_eth_promiscuous_enable(id) };
        }
        Ok(Port {
            inner: Arc::new(PortInner {
                id,
                name: cfg.name.clone(),
                driver,
                queues: cfg.queues,
                rss: rss_hf != 0,
                pool,
            }),
        })
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Device name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Driver name (`net_af_xdp`, `net_ice`, ...).
    pub fn driver(&self) -> &str {
        &self.inner.driver
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.inner.queues
    }

    /// Whether RSS spreads flows over the queues.
    pub fn rss(&self) -> bool {
        self.inner.rss
    }

    /// The pool RX buffers come from.
    pub fn pool(&self) -> &Arc<MbufPool> {
        &self.inner.pool
    }

    /// Queue `q`'s handle for one worker.
    ///
    /// # Errors
    /// When `q` is not a configured queue.
    pub fn queue(&self, q: u16) -> Result<PortQueue, DpdkError> {
        if q >= self.inner.queues {
            return Err(DpdkError::InvalidConfig(format!(
                "port {:?} has {} queues, no queue {q}",
                self.inner.name, self.inner.queues
            )));
        }
        Ok(PortQueue {
            port: self.inner.clone(),
            queue: q,
        })
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port and out-pointer.
        unsafe { sys::rte_eth_macaddr_get(self.inner.id, &mut a) };
        a.addr_bytes
    }

    /// Sets the port's MAC address (a `net_tap` host port takes its physical port's, so the
    /// kernel accepts the frames addressed to it and answers ARP with it).
    ///
    /// # Errors
    /// When the driver refuses.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port; DPDK copies the address.
        let rc = unsafe { sys::rte_eth_dev_default_mac_addr_set(self.inner.id, &mut a) };
        if rc != 0 {
            return Err(DpdkError::Port {
                port: self.inner.name.clone(),
                op: "rte_eth_dev_default_mac_addr_set",
                errno: rc.abs(),
                msg: strerror(rc.abs()),
            });
        }
        Ok(())
    }

    /// Sets the link up (for a `net_tap` port: the kernel interface goes up).
    ///
    /// # Errors
    /// When the driver refuses.
    pub fn set_link_up(&self) -> Result<(), DpdkError> {
        // SAFETY: valid, started port.
        let rc = unsafe { sys::rte_eth_dev_set_link_up(self.inner.id) };
        if rc != 0 {
            return Err(DpdkError::Port {
                port: self.inner.name.clone(),
                op: "rte_eth_dev_set_link_up",
                errno: rc.abs(),
                msg: strerror(rc.abs()),
            });
        }
        Ok(())
    }

    /// Link state, without waiting.
    pub fn link(&self) -> LinkStatus {
        let mut l = sys::fiberlb_link::default();
        // SAFETY: valid port and out-pointer.
        let rc = unsafe { sys::fiberlb_link_get(self.inner.id, &mut l) };
        if rc != 0 {
            return LinkStatus::default();
        }
        LinkStatus {
            up: l.up != 0,
            speed_mbps: l.speed_mbps,
            full_duplex: l.full_duplex != 0,
        }
    }

    /// The port's counters.
    ///
    /// # Errors
    /// When the driver cannot report them.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let rc = unsafe { sys::rte_eth_stats_get(self.inner.id, &mut s) };
        if rc != 0 {
            return Err(DpdkError::Port {
                port: self.inner.name.clone(),
                op: "rte_eth_stats_get",
                errno: rc.abs(),
                msg: strerror(rc.abs()),
            });
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

/// One RX/TX queue pair of a port, owned by one worker (DPDK queues are not thread-safe).
#[derive(Debug)]
pub struct PortQueue {
    pub(super) port: Arc<PortInner>,
    pub(super) queue: u16,
}

impl PortQueue {
    /// The port's name.
    pub fn port_name(&self) -> &str {
        &self.port.name
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `max` packets into an empty burst; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut RxBurst, max: usize) -> usize {
        burst.mbufs.clear();
        let max = max.min(BURST) as u16;
        // SAFETY: this handle is the queue's only user (&mut self, one handle per queue);
        // ptrs has room for BURST >= max mbufs, which become owned by the burst.
        let n = unsafe {
            sys::fiberlb_rx_burst(self.port.id, self.queue, burst.mbufs.ptrs.as_mut_ptr(), max)
        };
        burst.mbufs.len = usize::from(n);
        if n > 0 {
            burst.load_views();
        }
        usize::from(n)
    }

    /// Receives up to `max` packets into an empty array, for forwarding them unchanged
    /// (no views loaded); returns how many.
    #[inline]
    pub fn rx_into(&mut self, out: &mut MbufArray, max: usize) -> usize {
        out.clear();
        let max = max.min(BURST) as u16;
        // SAFETY: sole user of this RX queue (&mut self); ptrs has room for BURST >= max
        // mbufs, which become owned by the array.
        let n =
            unsafe { sys::fiberlb_rx_burst(self.port.id, self.queue, out.ptrs.as_mut_ptr(), max) };
        out.len = usize::from(n).min(BURST);
        out.len
    }

    /// Sends the array's mbufs; those sent leave the array, the rest stay (the caller frees
    /// or retries them). Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut MbufArray) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        // SAFETY: sole user of this TX queue; the first `sent` mbufs become DPDK's and are
        // forgotten by the array, the rest stay owned by it.
        let sent = unsafe {
            sys::fiberlb_tx_burst(
                self.port.id,
                self.queue,
                pkts.ptrs.as_mut_ptr(),
                pkts.len as u16,
            )
        };
        pkts.forget_front(usize::from(sent));
        usize::from(sent)
    }
}
