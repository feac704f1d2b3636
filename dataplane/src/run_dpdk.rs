//! `run` on DPDK ports (`driver = "dpdk"` in dataplane.toml, cargo feature `dpdk`): the EAL,
//! one mbuf pool per NUMA socket, each port started with one queue pair per worker, and one
//! pinned [`DpdkWorker`] per core, under the same control thread (QSBR snapshots, counters in
//! the shared-memory region, services applied by transaction) as the AF_XDP path. There are no
//! XDP maps to keep in step: a DPDK port hands every frame to the workers.
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
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::{bail, Context};
    use fiberlb_dataplane::config::{format_mac, DataplaneConfig};
    use fiberlb_dataplane::control::{ControlOptions, ControlThread};
    use fiberlb_dataplane::nic::dpdk::{register_thread, DpdkWorker, Eal, Port, PortConfig};
    use fiberlb_dataplane::pipeline::Pipeline;
    use fiberlb_dataplane::snapshot::SnapshotBuilder;
    use fiberlb_dataplane::worker::{available_cores, pin_to_core, WorkerSettings};
    use fiberlb_shared::shm::counters::CountersLayout;
    use fiberlb_shared::shm::region::{Region, RegionConfig};

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
        let cores = available_cores();
        for c in &cfg.workers.cores {
            if !cores.contains(c) {
                bail!(
                    "workers.cores: core {c} does not exist or is not allowed for this process \
                     (available: {cores:?})"
                );
            }
        }
        let queues = u16::try_from(workers).context("too many workers for a DPDK port")?;
        let base = cfg.pipeline();
        // The services file is checked completely before anything is set up.
        let initial = match services {
            Some(p) => {
                let set = fiberlb_shared::services::load_services(p)?;
                SnapshotBuilder::new(base.max_listeners, base.max_backends)
                    .build(&set, 1)
                    .with_context(|| format!("{}: configuration refused", p.display()))?;
                Some(set)
            }
            None => None,
        };

        // The region first: a second instance on the same path stops here, before the EAL
        // takes any device.
        let shm_path = cfg.shm.resolved_path();
        let layout = CountersLayout {
            workers: workers as u32,
            listeners: base.max_listeners.clamp(1, 4096) as u32,
            backends: base.max_backends.clamp(1, 65536) as u32,
        };
        let region = Region::create(
            &shm_path,
            &RegionConfig {
                counters: layout,
                ..RegionConfig::default()
            },
        )
        .with_context(|| format!("shared-memory region {}", shm_path.display()))?;

        let eal = Eal::init(&sec.eal_config()).context("[dpdk]")?;
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
        let pcfg = cfg.pipeline_with_port_macs(|i| ports[i].mac());

        let mut ctl = ControlThread::new(
            region,
            ControlOptions {
                workers,
                max_listeners: pcfg.max_listeners,
                max_backends: pcfg.max_backends,
                ..ControlOptions::default()
            },
        )?;
        if let Some(set) = initial {
            let g = ctl.apply_initial(set)?;
            eprintln!("fiberlb-dataplane: services file applied as generation {g}");
        }
        // No XDP maps: a DPDK port delivers every frame to the workers. The hook only logs,
        // so the applied generations show in the log as with AF_XDP.
        ctl.set_apply_hook(Box::new(|snap| {
            eprintln!(
                "fiberlb-dataplane: generation {} applied ({} listener(s))",
                snap.generation,
                snap.listeners.len()
            );
        }));

        let settings = WorkerSettings {
            burst: cfg.workers.burst,
            idle_backoff: cfg.workers.idle_backoff,
        };
        let mut built = Vec::with_capacity(workers);
        for (i, core) in cfg.workers.cores.iter().enumerate() {
            let q = i as u16;
            let queues = ports
                .iter()
                .map(|p| p.queue(q))
                .collect::<Result<Vec<_>, _>>()?;
            let pipeline =
                Pipeline::new(pcfg.clone()).with_context(|| format!("worker {i}: flow table"))?;
            let (reader, sink) = ctl.worker_handles(i)?;
            let w = DpdkWorker::new(
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
            built.push((*core, w));
        }

        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
        }
        let port_desc: Vec<String> = cfg
            .ports
            .iter()
            .zip(&ports)
            .map(|(c, p)| {
                let link = p.link();
                format!(
                    "{} ({}, {}, {:?}, MAC {}, {} queue(s){}, link {})",
                    c.display_name(),
                    p.name(),
                    p.driver(),
                    c.role,
                    format_mac(&p.mac()),
                    p.queues(),
                    if p.rss() { " with RSS" } else { "" },
                    if link.up { "up" } else { "down" }
                )
            })
            .collect();
        eprintln!(
            "fiberlb-dataplane: forwarding on {} (DPDK) with {} worker(s) on cores {:?}; region {}; \
             client side MAC {} -> {}, backend side MAC {} -> {}",
            port_desc.join(", "),
            workers,
            cfg.workers.cores,
            shm_path.display(),
            pcfg.client_side_mac
                .map(|m| format_mac(&m))
                .unwrap_or_default(),
            pcfg.client_gateway_mac
                .map(|m| format_mac(&m))
                .unwrap_or_else(|| "(none)".into()),
            pcfg.backend_side_mac
                .map(|m| format_mac(&m))
                .unwrap_or_default(),
            pcfg.backend_gateway_mac
                .map(|m| format_mac(&m))
                .unwrap_or_else(|| "(backend MACs)".into()),
        );

        let control = ctl.spawn(stop.clone())?;
        let result = std::thread::scope(|scope| -> anyhow::Result<()> {
            let mut handles = Vec::new();
            for (core, mut w) in built {
                let stop = &*stop;
                let cores = &cores;
                let h = std::thread::Builder::new()
                    .name(format!("fiberlb-w{}", w.index))
                    .spawn_scoped(scope, move || -> Result<_, String> {
                        // This thread inherited the EAL main thread's CPUs ([dpdk] cores);
                        // core_affinity only pins within the current mask, so widen it first.
                        allow_cpus(cores)?;
                        pin_to_core(core)?;
                        w.run(stop).map_err(|e| e.to_string())?;
                        Ok(w)
                    })
                    .context("spawning a worker thread")?;
                handles.push(h);
            }
            // Wait for a signal (or a worker that ended early: pinning or lcore registration).
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if handles.iter().any(|h| h.is_finished()) {
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            let mut worker_err = None;
            for h in handles {
                match h.join() {
                    Ok(Ok(w)) => {
                        let c = w.pipeline().counters();
                        eprintln!(
                            "fiberlb-dataplane: worker {}: {} received, {} forwarded, {} dropped; {:?}",
                            w.index,
                            c.rx_packets,
                            c.forwarded,
                            c.dropped(),
                            w.stats()
                        );
                        // Dropping the worker releases its queue handles.
                    }
                    Ok(Err(e)) => worker_err = Some(e),
                    Err(_) => eprintln!("fiberlb-dataplane: error: a worker panicked"),
                }
            }
            match worker_err {
                Some(e) => Err(anyhow::anyhow!("worker: {e}")),
                None => Ok(()),
            }
        });
        match control.join() {
            Ok(ctl) => {
                let c = ctl.stats().counts();
                eprintln!("fiberlb-dataplane: control thread: {c:?}");
                drop(ctl);
            }
            Err(_) => eprintln!("fiberlb-dataplane: error: the control thread panicked"),
        }
        // Port counters, then stop and close the ports, free the pools, clean up the EAL.
        // (The main thread is EAL's main lcore; registering is a no-op that keeps the mempool
        // caches valid for the frees below.)
        let _ = register_thread(&eal);
        for (c, p) in cfg.ports.iter().zip(&ports) {
            match p.stats() {
                Ok(s) => eprintln!(
                    "fiberlb-dataplane: port {} ({}): {s:?}",
                    c.display_name(),
                    p.name()
                ),
                Err(e) => eprintln!("fiberlb-dataplane: port {}: {e}", c.display_name()),
            }
        }
        drop(ports);
        drop(pools);
        drop(eal);
        eprintln!("fiberlb-dataplane: stopped (DPDK ports closed, EAL cleaned up)");
        result
    }
}
