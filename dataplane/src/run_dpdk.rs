//! `run` on DPDK ports (`driver = "dpdk"` in dataplane.toml, cargo feature `dpdk`): the EAL,
//! one mbuf pool per NUMA socket, each port started with one queue pair per worker, and one
//! pinned [`DpdkWorker`] per core, under the same control thread (QSBR snapshots, counters in
//! the shared-memory region, services applied by transaction) as the AF_XDP path. There are no
//! XDP maps to keep in step: a DPDK port hands every frame to the workers.
//!
//! Exception path: a port with `host_interface = "NAME"` gets a `net_tap` port beside it
//! (vdev `net_tap_fb<port index>,iface=NAME,persist`, one queue per worker, the physical
//! port's MAC, link up). Workers send it what is not fiberlb's and send what the kernel
//! transmits on it out of the physical port. The interface persists when fiberlb stops (down,
//! keeping the operator's addresses and routes for the next start). Its addresses are the
//! host's own: a thread reads them every second and publishes them to the workers
//! ([`LocalAddrs`]), so replies from nat backends to them (health checks made from this host)
//! go to the kernel instead of being un-NATed.
//!
//! Teardown order matters to DPDK: workers end (their queue handles dropped), then the ports
//! are stopped and closed, then the pools are freed, then `rte_eal_cleanup` runs — the
//! ownership in `nic::dpdk` enforces it; this module only drops things in that order.

/// Refusal without the feature: says how to get a binary that can.
#[cfg(not(feature = "dpdk"))]
pub fn run(
    cfg: fiberlb_dataplane::config::DataplaneConfig,
    _services: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let names: Vec<&str> = cfg.ports.iter().map(|p| p.display_name()).collect();
    anyhow::bail!(
        "ports {names:?} have driver = \"dpdk\", but this fiberlb-dataplane was built without \
         the dpdk feature: cargo build --features dpdk (with the system's DPDK installed, see \
         scripts/deps-dpdk.sh)"
    )
}

#[cfg(feature = "dpdk")]
pub use with_dpdk::run;

#[cfg(feature = "dpdk")]
mod with_dpdk {
    use std::net::IpAddr;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{bail, Context};
    use fiberlb_dataplane::config::{format_mac, DataplaneConfig};
    use fiberlb_dataplane::cpus::pin_to_core;
    use fiberlb_dataplane::nic::dpdk::{register_thread, Eal, Port, PortConfig};
    use fiberlb_dataplane::nic::host_addrs;
    use fiberlb_dataplane::pipeline::Pipeline;
    use fiberlb_dataplane::port_stats;
    use fiberlb_dataplane::snapshot::{LocalAddrs, MAX_LOCAL_ADDRS};
    use fiberlb_dataplane::worker::dpdk::DpdkWorker;

    use crate::runtime;

    /// Sets the calling thread's CPU mask to `cpus`.
    fn allow_cpus(cpus: &[usize]) -> Result<(), String> {
        // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus {
            if c < libc::CPU_SETSIZE as usize {
                // SAFETY: c is below CPU_SETSIZE, the set's capacity.
                unsafe { libc::CPU_SET(c, &mut set) };
            }
        }
        // SAFETY: pid 0 is the calling thread; the size and pointer describe `set`.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            return Err(format!(
                "cannot allow CPUs {cpus:?} for a worker thread: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// DPDK device name of the host (`net_tap`) port beside port `index`.
    fn tap_device(index: usize) -> String {
        format!("net_tap_fb{index}")
    }

    /// The IP addresses of the interfaces named in `names` (in this network namespace),
    /// sorted.
    fn interface_addresses(names: &[String]) -> Result<Vec<IpAddr>, std::io::Error> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(host_addrs::interface_addrs(&names)?.into_iter().collect())
    }

    /// Publishes the host interfaces' addresses to `table` now and then every second until
    /// `stop`, logging each change.
    fn watch_host_addresses(names: Vec<String>, table: Arc<LocalAddrs>, stop: Arc<AtomicBool>) {
        let mut last: Option<Vec<IpAddr>> = None;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next = Instant::now() + Duration::from_secs(1);
                match interface_addresses(&names) {
                    Ok(addrs) if last.as_ref() != Some(&addrs) => {
                        let taken = table.publish(&addrs);
                        eprintln!(
                            "fiberlb-dataplane: host addresses on {names:?}: {addrs:?}{}",
                            if taken < addrs.len() {
                                format!(" (only the first {MAX_LOCAL_ADDRS} are used)")
                            } else {
                                String::new()
                            }
                        );
                        last = Some(addrs);
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "fiberlb-dataplane: warning: cannot read the host interfaces' \
                         addresses (getifaddrs: {e}); keeping the previous ones"
                    ),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Forwards on the configured DPDK ports until SIGTERM/SIGINT.
    pub fn run(cfg: DataplaneConfig, services: Option<&Path>) -> anyhow::Result<()> {
        let sec = cfg
            .dpdk
            .clone()
            .context("ports with driver = \"dpdk\" need a [dpdk] section")?;
        let (client_port, backend_port) = cfg
            .port_roles()
            .context("no port faces clients or backends")?;
        let workers = cfg.workers.cores.len();
        let cores = runtime::check_cores(&cfg)?;
        let queues = u16::try_from(workers).context("too many workers for a DPDK port")?;
        let base = cfg.pipeline();
        // The services file is checked completely before anything is set up.
        let initial = runtime::load_services(services, &base)?;

        // The region first: a second instance on the same path stops here, before the EAL
        // takes any device.
        let (region, shm_path) = runtime::create_region(&cfg, &base)?;

        // The host (net_tap) ports: vdevs added to the EAL's, named after the port index.
        let mut eal_cfg = sec.eal_config();
        let mut host_names = Vec::new();
        for (i, p) in cfg.ports.iter().enumerate() {
            let Some(h) = &p.host_interface else { continue };
            let dev = tap_device(i);
            if eal_cfg
                .vdevs
                .iter()
                .any(|v| v.split(',').next() == Some(dev.as_str()))
            {
                bail!(
                    "[dpdk] vdevs already has a device named {dev:?}, which fiberlb uses for \
                     the host_interface of port {:?}; rename that vdev",
                    p.display_name()
                );
            }
            eal_cfg.vdevs.push(format!("{dev},iface={h},persist"));
            host_names.push(h.clone());
        }
        let eal = Eal::init(&eal_cfg).context("[dpdk]")?;
        eprintln!("fiberlb-dataplane: DPDK EAL arguments {:?}", eal.args());
        // EAL pinned this (main) thread to [dpdk] cores; the control thread spawned from it
        // must not share one CPU with whatever else runs there, so give it back every CPU.
        allow_cpus(&cores).map_err(anyhow::Error::msg)?;
        let pools = eal.pools(sec.mbufs).context("[dpdk] mbufs")?;
        let mut ports = Vec::with_capacity(cfg.ports.len());
        for p in &cfg.ports {
            let device = p.device.as_deref().unwrap_or_default();
            let port = Port::start(
                &eal,
                &pools,
                &PortConfig {
                    rx_desc: sec.rx_desc,
                    tx_desc: sec.tx_desc,
                    ..PortConfig::new(device, queues)
                },
            )
            .with_context(|| format!("port {:?}", p.display_name()))?;
            ports.push(port);
        }
        // Each host port after its physical port: it takes that port's MAC, so the kernel
        // accepts the frames sent to it and answers ARP for the host's addresses with it.
        let mut hosts: Vec<Option<Port>> = Vec::with_capacity(cfg.ports.len());
        for (i, p) in cfg.ports.iter().enumerate() {
            let Some(h) = &p.host_interface else {
                hosts.push(None);
                continue;
            };
            let ctx = || format!("port {:?}: host_interface {h:?}", p.display_name());
            let tap = Port::start(
                &eal,
                &pools,
                &PortConfig {
                    rx_desc: sec.rx_desc,
                    tx_desc: sec.tx_desc,
                    promiscuous: false,
                    rss: false,
                    ..PortConfig::new(&tap_device(i), queues)
                },
            )
            .with_context(ctx)?;
            let mac = p.mac.unwrap_or_else(|| ports[i].mac());
            tap.set_mac(mac).with_context(ctx)?;
            tap.set_link_up().with_context(ctx)?;
            hosts.push(Some(tap));
        }
        let local_addrs = Arc::new(LocalAddrs::new());
        let pcfg = cfg.pipeline_with_port_macs(|i| ports[i].mac());

        let mut ctl = runtime::control_thread(region, &cfg.workers.cores, &pcfg, initial)?;
        // No XDP maps: a DPDK port delivers every frame to the workers. The hook only logs,
        // so the applied generations show in the log as with AF_XDP.
        ctl.set_apply_hook(Box::new(|snap| {
            eprintln!(
                "fiberlb-dataplane: generation {} applied ({} listener(s))",
                snap.generation,
                snap.listeners.len()
            );
        }));

        let settings = runtime::worker_settings(&cfg);
        let mut built = Vec::with_capacity(workers);
        for (i, core) in cfg.workers.cores.iter().enumerate() {
            let q = i as u16;
            let queues = ports
                .iter()
                .map(|p| p.queue(q))
                .collect::<Result<Vec<_>, _>>()?;
            let mut pipeline =
                Pipeline::new(pcfg.clone()).with_context(|| format!("worker {i}: flow table"))?;
            pipeline.set_local_addrs(local_addrs.clone());
            let host_queues = hosts
                .iter()
                .map(|h| h.as_ref().map(|h| h.queue(q)).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            let (reader, sink) = ctl.worker_handles(i)?;
            let mut w = DpdkWorker::new(
                i,
                &eal,
                queues,
                client_port,
                backend_port,
                pipeline,
                reader,
                sink,
                settings,
            )?;
            w.set_host_queues(host_queues)?;
            built.push((*core, w));
        }

        let stop = runtime::stop_on_signals()?;
        let port_desc: Vec<String> = cfg
            .ports
            .iter()
            .zip(&ports)
            .zip(&hosts)
            .map(|((c, p), h)| {
                let link = p.link();
                format!(
                    "{} ({}, {}, {:?}, MAC {}, {} queue(s){}, link {}{})",
                    c.display_name(),
                    p.name(),
                    p.driver(),
                    c.role,
                    format_mac(&p.mac()),
                    p.queues(),
                    if p.rss() { " with RSS" } else { "" },
                    if link.up { "up" } else { "down" },
                    match (h, &c.host_interface) {
                        (Some(h), Some(name)) => format!(
                            ", host interface {name} ({}, MAC {})",
                            h.name(),
                            format_mac(&h.mac())
                        ),
                        _ => String::new(),
                    }
                )
            })
            .collect();
        runtime::announce(&port_desc, " (DPDK)", &cfg, &shm_path, &pcfg);

        // Publish the host addresses once before the workers start, then keep them current.
        let watcher = if host_names.is_empty() {
            None
        } else {
            match interface_addresses(&host_names) {
                Ok(a) => {
                    local_addrs.publish(&a);
                }
                Err(e) => eprintln!(
                    "fiberlb-dataplane: warning: cannot read the host interfaces' addresses \
                     (getifaddrs: {e})"
                ),
            }
            let (names, table, stop) = (host_names.clone(), local_addrs.clone(), stop.clone());
            Some(
                std::thread::Builder::new()
                    .name("fiberlb-hostaddr".into())
                    .spawn(move || watch_host_addresses(names, table, stop))
                    .context("spawning the host address thread")?,
            )
        };
        let mut port_stats = runtime::port_stats_publisher(&ctl);
        let control = ctl.spawn(stop.clone())?;
        let result = runtime::run_workers(
            built,
            &stop,
            |core, w: &mut DpdkWorker<_, _>| {
                // This thread inherited the EAL main thread's CPUs ([dpdk] cores);
                // core_affinity only pins within the current mask, so widen it first.
                allow_cpus(&cores)?;
                pin_to_core(core)?;
                w.run(&stop).map_err(|e| e.to_string())
            },
            // Once a second, the ports' link state and `rte_eth_stats` (port-level calls from
            // this thread, see `port_stats::dpdk_port`), host ports after physical ones.
            || {
                if port_stats.is_due() {
                    let physical = cfg
                        .ports
                        .iter()
                        .zip(&ports)
                        .map(|(c, p)| port_stats::dpdk_port(c.display_name(), p));
                    let host = cfg.ports.iter().zip(&hosts).filter_map(|(c, h)| {
                        let h = h.as_ref()?;
                        Some(port_stats::dpdk_port(
                            &format!("{}-host", c.display_name()),
                            h,
                        ))
                    });
                    port_stats.publish(physical.chain(host).collect());
                }
            },
            |w| {
                let c = w.pipeline().counters();
                eprintln!(
                    "fiberlb-dataplane: worker {}: {} received, {} forwarded, {} to host, \
                     {} dropped; {:?}; {:?}",
                    w.index,
                    c.rx_packets,
                    c.forwarded,
                    c.to_host,
                    c.dropped(),
                    w.stats(),
                    w.host_stats()
                );
                // Dropping the worker releases its queue handles.
            },
        );
        if let Some(h) = watcher {
            if h.join().is_err() {
                eprintln!("fiberlb-dataplane: error: the host address thread panicked");
            }
        }
        runtime::join_control(control);
        port_stats.remove();
        // Port counters, then stop and close the ports, free the pools, clean up the EAL.
        // (The main thread is EAL's main lcore; registering is a no-op that keeps the mempool
        // caches valid for the frees below.)
        let _ = register_thread(&eal);
        let all = cfg.ports.iter().zip(&ports).chain(
            cfg.ports
                .iter()
                .zip(&hosts)
                .filter_map(|(c, h)| h.as_ref().map(|h| (c, h))),
        );
        for (c, p) in all {
            match p.stats() {
                Ok(s) => eprintln!(
                    "fiberlb-dataplane: port {} ({}): {s:?}",
                    c.display_name(),
                    p.name()
                ),
                Err(e) => eprintln!("fiberlb-dataplane: port {}: {e}", c.display_name()),
            }
        }
        drop(hosts);
        drop(ports);
        drop(pools);
        drop(eal);
        eprintln!("fiberlb-dataplane: stopped (DPDK ports closed, EAL cleaned up)");
        result
    }
}
