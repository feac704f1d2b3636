//! `fiberlb-dataplane`: the data plane process.
//!
//! Subcommands:
//! - `run --config dataplane.toml [--services services.yaml]`: forward on the configured AF_XDP
//!   ports until SIGTERM/SIGINT; every check (root, interfaces, cores, memory, a second
//!   instance) happens before any packet is touched. Ports with `driver = "dpdk"` run through
//!   `run_dpdk.rs` (cargo feature `dpdk`).
//! - `stats [--config dataplane.toml | --shm PATH] [--json]`: the running data plane's counters
//!   from shared memory.
//! - `apply --services services.yaml [--config dataplane.toml | --shm PATH]`: replace the
//!   running data plane's configuration with a services file, through the shared-memory
//!   protocol (as a control plane would; refused while one is attached).
//! - `replay --services services.yaml --in in.pcap --out out.pcap [--config dataplane.toml] [--json]`:
//!   run a capture through the forwarding pipeline offline and print the counters.
//! - `doctor --config dataplane.toml`: check this machine (kernel, privileges, NIC drivers and
//!   their XDP support, queues, hugepages, cores, IRQs, memlock, vfio-pci) against the
//!   configuration and say how to fix each finding; exits non-zero when `run` cannot work.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fiberlb_dataplane::config::DataplaneConfig;
use fiberlb_dataplane::pipeline::Pipeline;
use fiberlb_dataplane::snapshot::SnapshotBuilder;
use fiberlb_dataplane::worker::replay::replay_files;

mod run_dpdk;
mod runtime;

#[derive(Parser, Debug)]
#[command(name = "fiberlb-dataplane", version, about = "fiberlb data plane")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Forward traffic on the configured ports (AF_XDP, or DPDK with the `dpdk` feature)
    /// until SIGTERM/SIGINT.
    Run {
        /// Node settings (dataplane.toml): ports, workers, shm, umem, forwarding, timeouts.
        #[arg(long)]
        config: PathBuf,
        /// Services to forward from the start (applied through the control thread, as a
        /// control plane's transaction would be).
        #[arg(long)]
        services: Option<PathBuf>,
    },
    /// Replace a running data plane's configuration with a services file, without restart.
    Apply {
        /// The new configuration.
        #[arg(long)]
        services: PathBuf,
        /// Take the region path from this dataplane.toml.
        #[arg(long, conflicts_with = "shm")]
        config: Option<PathBuf>,
        /// The region path.
        #[arg(long)]
        shm: Option<PathBuf>,
    },
    /// Print the running data plane's counters (read from its shared-memory region).
    Stats {
        /// Take the region path from this dataplane.toml.
        #[arg(long, conflicts_with = "shm")]
        config: Option<PathBuf>,
        /// The region path.
        #[arg(long)]
        shm: Option<PathBuf>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check this machine against a configuration before `run`, explaining each finding and
    /// how to fix it. Exits non-zero when fiberlb cannot run here.
    Doctor {
        /// Node settings (dataplane.toml) to check the machine against.
        #[arg(long)]
        config: PathBuf,
    },
    /// Replay a pcap capture through the forwarding pipeline and write what comes out.
    Replay {
        /// Services file (YAML): load balancers, listeners, pools, backends.
        #[arg(long)]
        services: PathBuf,
        /// Input capture (pcap, Ethernet).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output capture: every packet the pipeline forwarded, rewritten.
        #[arg(long = "out")]
        output: PathBuf,
        /// Node settings (dataplane.toml); only [forwarding] and [timeouts] are used here.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the counters as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    if let Err(e) = fiberlb_shared::logging::init() {
        eprintln!("fiberlb-dataplane: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fiberlb-dataplane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Run { config, services } => run_cmd::run(&config, services.as_deref()),
        Cmd::Stats { config, shm, json } => run_cmd::stats(&shm_path(shm, config)?, json),
        Cmd::Apply {
            services,
            config,
            shm,
        } => run_cmd::apply(&shm_path(shm, config)?, &services),
        Cmd::Doctor { config } => {
            let cfg = DataplaneConfig::load(&config)?;
            println!("fiberlb-dataplane doctor: {}", config.display());
            let report =
                fiberlb_dataplane::doctor::diagnose(&cfg, &fiberlb_dataplane::doctor::Host::live());
            print!("{}", report.render());
            if !report.can_run() {
                anyhow::bail!(
                    "{} problem(s) stop fiberlb from running here (see the fixes above)",
                    report.count(fiberlb_dataplane::doctor::Level::Error)
                );
            }
            Ok(())
        }
        Cmd::Replay {
            services,
            input,
            output,
            config,
            json,
        } => {
            let cfg = match config {
                Some(p) => DataplaneConfig::load(&p)?,
                None => DataplaneConfig::default(),
            };
            let set = fiberlb_shared::services::load_services(&services)?;
            let pcfg = cfg.pipeline();
            let snap = SnapshotBuilder::new(pcfg.max_listeners, pcfg.max_backends)
                .build(&set, 1)
                .with_context(|| format!("{}: configuration refused", services.display()))?;
            let mut pipeline = Pipeline::new(pcfg)?;
            let stats = replay_files(&mut pipeline, &snap, &input, &output)?;
            fiberlb_dataplane::stats::print_replay(&pipeline, &snap, &stats, json);
            Ok(())
        }
    }
}

/// The region path: given, from a dataplane.toml, or the default.
fn shm_path(shm: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    Ok(match (shm, config) {
        (Some(p), _) => p,
        (None, Some(c)) => DataplaneConfig::load(&c)?.shm.resolved_path(),
        (None, None) => DataplaneConfig::default().shm.resolved_path(),
    })
}

/// `run` and `stats`.
mod run_cmd {
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use anyhow::{bail, Context};
    use fiberlb_dataplane::config::DataplaneConfig;
    use fiberlb_dataplane::cpus::pin_to_core;
    use fiberlb_dataplane::flow_table::ENTRY_BYTES;
    use fiberlb_dataplane::nic::afxdp::{
        HugePages, LocalAddrRefresh, Umem, UmemConfig, XdpProgram, XskConfig, XskPort,
        XskStatsReader,
    };
    use fiberlb_dataplane::pipeline::{Pipeline, PipelineConfig};
    use fiberlb_dataplane::port_stats;
    use fiberlb_dataplane::worker::afxdp::{sync_xdp_maps, xdp_keys, Worker};
    use fiberlb_shared::shm::region::Region;

    use crate::runtime;

    /// `MemAvailable`, `HugePages_Free` (pages) and `Hugepagesize` (bytes) from /proc/meminfo.
    fn meminfo() -> (Option<u64>, u64, u64) {
        let text = fiberlb_dataplane::meminfo::read();
        let field = |name: &str| fiberlb_dataplane::meminfo::field(&text, name);
        (
            field("MemAvailable").map(|k| k * 1024),
            field("HugePages_Free").unwrap_or(0),
            field("Hugepagesize").map(|k| k * 1024).unwrap_or(2 << 20),
        )
    }

    fn mib(b: u64) -> String {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    }

    /// Every check that needs no packet: privileges, interfaces and their queues, cores, memory.
    fn preflight(cfg: &DataplaneConfig, pcfg: &PipelineConfig) -> anyhow::Result<()> {
        // Capabilities, not uid 0: the systemd unit runs the data plane as its own user with
        // exactly these (AmbientCapabilities=).
        let missing = fiberlb_dataplane::doctor::missing_run_capabilities();
        if !missing.is_empty() {
            bail!(
                "`run` attaches XDP programs and opens AF_XDP sockets, and this process lacks {}: \
                 run it as root, or with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON (and \
                 CAP_IPC_LOCK or a large RLIMIT_MEMLOCK for the UMEMs)",
                missing.join(", ")
            );
        }
        if cfg.ports.is_empty() {
            bail!("the configuration has no [[ports]]: name the interfaces to forward on");
        }
        let workers = cfg.workers.cores.len();
        // The same probes as `doctor` (which explains more); here they stop the start.
        let host = fiberlb_dataplane::doctor::Host::live();
        for p in &cfg.ports {
            if !host.interface_exists(&p.interface) {
                bail!(
                    "port {:?}: network interface {:?} does not exist in this network namespace \
                     (check `ip link`; run fiberlb-dataplane in the interface's namespace)",
                    p.display_name(),
                    p.interface
                );
            }
            let rx_queues = host.rx_queues(&p.interface);
            let want = fiberlb_dataplane::doctor::queues_wanted(cfg, p);
            if rx_queues > 0 && rx_queues < want {
                bail!(
                    "port {:?}: interface {} has {rx_queues} receive queue(s), the configuration \
                     needs {want} (one per worker); add queues (`ethtool -L {} combined {want}`) \
                     or use fewer workers",
                    p.display_name(),
                    p.interface,
                    p.interface
                );
            }
        }
        runtime::check_cores(cfg)?;
        // Memory: flow tables in ordinary pages, UMEMs in hugepages when there are enough free.
        let w = workers as u64;
        let flow_bytes = (pcfg.flow_capacity.max(1).next_power_of_two() * ENTRY_BYTES) as u64 * w;
        let umem_bytes = cfg.umem.bytes() * w;
        let (avail, huge_free, huge_size) = meminfo();
        let huge_needed = fiberlb_dataplane::doctor::umem_hugepages_needed(cfg, huge_size);
        let hp = HugePages::from(cfg.umem.hugepages);
        let umem_in_huge = match hp {
            HugePages::Never => false,
            HugePages::Require => {
                if huge_free < huge_needed {
                    bail!(
                        "umem.hugepages = \"on\" needs {huge_needed} free hugepages of {} for {} \
                         worker UMEM(s) of {}, the system has {huge_free} free; reserve more \
                         (`echo N > /proc/sys/vm/nr_hugepages`) or use hugepages = \"auto\"",
                        mib(huge_size),
                        workers,
                        mib(cfg.umem.bytes())
                    );
                }
                true
            }
            HugePages::Auto => huge_free >= huge_needed,
        };
        let ordinary = flow_bytes + if umem_in_huge { 0 } else { umem_bytes };
        if let Some(avail) = avail {
            // Keep a margin for everything else the process and the system need.
            if ordinary + (64 << 20) > avail {
                bail!(
                    "not enough memory: {workers} worker(s) need {} for flow tables \
                     ({} entries each) and {} for UMEMs{}, {} is available (MemAvailable); lower \
                     forwarding.flow_capacity or umem.frames",
                    mib(flow_bytes),
                    pcfg.flow_capacity.max(1).next_power_of_two(),
                    mib(umem_bytes),
                    if umem_in_huge { " (in hugepages)" } else { "" },
                    mib(avail)
                );
            }
        }
        Ok(())
    }

    pub fn run(config: &Path, services: Option<&Path>) -> anyhow::Result<()> {
        let cfg = DataplaneConfig::load(config)?;
        if cfg.driver() == fiberlb_dataplane::config::PortDriver::Dpdk {
            return crate::run_dpdk::run(cfg, services);
        }
        preflight(&cfg, &cfg.pipeline())?;
        let pcfg = cfg.pipeline_with_ports()?;
        let (client_port, backend_port) = cfg
            .port_roles()
            .context("no port faces clients or backends")?;
        // The services file is checked completely before anything is set up.
        let initial = runtime::load_services(services, &pcfg)?;
        // A second instance on the same path stops here (the region's lock).
        let (region, shm_path) = runtime::create_region(&cfg, &pcfg)?;
        let workers = cfg.workers.cores.len();
        let mut ctl = runtime::control_thread(region, &cfg.workers.cores, &pcfg, initial)?;

        // XDP programs, then each worker's UMEM and sockets, registered with the programs.
        let mut programs = Vec::with_capacity(cfg.ports.len());
        for p in &cfg.ports {
            let prog = XdpProgram::load_and_attach(&p.interface, p.xdp_mode.into())
                .with_context(|| format!("port {:?}", p.display_name()))?;
            programs.push(prog);
        }
        let settings = runtime::worker_settings(&cfg);
        let mut built = Vec::with_capacity(workers);
        // Per port, a statistics reader of each worker's socket on it.
        let mut xsk_readers: Vec<Vec<XskStatsReader>> = cfg
            .ports
            .iter()
            .map(|_| Vec::with_capacity(workers))
            .collect();
        for (i, core) in cfg.workers.cores.iter().enumerate() {
            let mut umem = Umem::new(&UmemConfig {
                frame_count: cfg.umem.frames,
                chunk_size: cfg.umem.chunk_size,
                fill_size: cfg.umem.fill_ring,
                hugepages: cfg.umem.hugepages.into(),
                ..UmemConfig::default()
            })
            .with_context(|| format!("worker {i} (core {core}): UMEM"))?;
            let mut socks = Vec::with_capacity(cfg.ports.len());
            for (pi, p) in cfg.ports.iter().enumerate() {
                let s = XskPort::open(
                    &mut umem,
                    &XskConfig {
                        ifname: p.interface.clone(),
                        queue: i as u32,
                        bind: p.bind.into(),
                        ..XskConfig::default()
                    },
                )
                .with_context(|| format!("worker {i}: port {:?}", p.display_name()))?;
                programs[pi]
                    .register_socket(i as u32, s.fd())
                    .with_context(|| format!("worker {i}: port {:?}", p.display_name()))?;
                // The main thread reads the socket's statistics through its own descriptor;
                // the socket itself goes to the worker.
                xsk_readers[pi].push(
                    s.stats_reader()
                        .with_context(|| format!("worker {i}: port {:?}", p.display_name()))?,
                );
                socks.push(s);
            }
            let pipeline =
                Pipeline::new(pcfg.clone()).with_context(|| format!("worker {i}: flow table"))?;
            let (reader, sink) = ctl.worker_handles(i)?;
            let w = Worker::new(
                i,
                umem,
                socks,
                client_port,
                backend_port,
                pipeline,
                reader,
                sink,
                settings,
            )?;
            built.push((*core, w));
        }
        sync_xdp_maps(&mut programs, ctl.snapshot())?;
        // After every applied transaction (before `Applied` goes back) the control thread brings
        // the XDP maps in step: new VIPs and nat backends start being redirected, removed ones
        // go back to the kernel. The lock is the control thread's and main's, never a worker's.
        let programs = Arc::new(Mutex::new(programs));
        {
            let programs = programs.clone();
            ctl.set_apply_hook(Box::new(move |snap| {
                let mut progs = match programs.lock() {
                    Ok(p) => p,
                    Err(poisoned) => poisoned.into_inner(),
                };
                match sync_xdp_maps(&mut progs, snap) {
                    Ok(()) => {
                        let (v, n) = xdp_keys(snap);
                        eprintln!(
                            "fiberlb-dataplane: generation {}: XDP maps hold {} VIP key(s), {} nat \
                             return(s)",
                            snap.generation,
                            v.len(),
                            n.len()
                        );
                    }
                    Err(e) => eprintln!(
                        "fiberlb-dataplane: error: generation {}: cannot update the XDP maps: {e}",
                        snap.generation
                    ),
                }
            }));
        }

        let stop = runtime::stop_on_signals()?;
        let modes: Vec<_> = match programs.lock() {
            Ok(p) => p.iter().map(|p| p.attached_mode()).collect(),
            Err(_) => Vec::new(),
        };
        let port_desc: Vec<String> = cfg
            .ports
            .iter()
            .zip(&modes)
            .map(|(p, prog)| {
                format!(
                    "{} ({}, {:?}, {:?})",
                    p.display_name(),
                    p.interface,
                    p.role,
                    prog
                )
            })
            .collect();
        runtime::announce(&port_desc, "", &cfg, &shm_path, &pcfg);

        let mut port_stats = runtime::port_stats_publisher(&ctl);
        let control = ctl.spawn(stop.clone())?;
        // While the workers run, keep the programs' list of the host's own addresses current
        // (added by operators or DHCP after the start): their traffic must reach the kernel,
        // not the workers. And publish the ports' counters once a second.
        let mut local_addrs = LocalAddrRefresh::new();
        let result = runtime::run_workers(
            built,
            &stop,
            |core, w: &mut Worker<_, _>| {
                pin_to_core(core)?;
                w.run(&stop);
                Ok(())
            },
            || {
                if local_addrs.is_due() {
                    let mut progs = match programs.lock() {
                        Ok(p) => p,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    local_addrs.refresh(&mut progs);
                }
                if port_stats.is_due() {
                    let progs = match programs.lock() {
                        Ok(p) => p,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    let ports = cfg
                        .ports
                        .iter()
                        .zip(&xsk_readers)
                        .enumerate()
                        .map(|(i, (p, socks))| {
                            port_stats::afxdp_port(
                                p.display_name(),
                                &p.interface,
                                socks,
                                progs.get(i),
                            )
                        })
                        .collect();
                    drop(progs);
                    port_stats.publish(ports);
                }
            },
            |w| {
                let c = w.pipeline().counters();
                eprintln!(
                    "fiberlb-dataplane: worker {}: {} received, {} forwarded, {} dropped; {:?}",
                    w.index,
                    c.rx_packets,
                    c.forwarded,
                    c.dropped(),
                    w.stats()
                );
                for p in w.ports() {
                    if let Ok(s) = p.stats() {
                        eprintln!(
                            "fiberlb-dataplane: worker {} {} queue {}: {:?}",
                            w.index,
                            p.ifname(),
                            p.queue(),
                            s
                        );
                    }
                }
            },
        );
        // The control thread ends with the same flag.
        runtime::join_control(control);
        // The ports' numbers would only go stale now; then the last descriptors of the sockets
        // (the workers closed theirs) and the programs (detached).
        port_stats.remove();
        drop(xsk_readers);
        drop(programs);
        eprintln!("fiberlb-dataplane: stopped");
        result
    }

    /// Sends `services` as one full-replay transaction (generation = applied + 1) and waits
    /// for the data plane's answer.
    pub fn apply(shm: &Path, services: &Path) -> anyhow::Result<()> {
        use fiberlb_shared::shm::channel::SendError;
        use fiberlb_shared::shm::message::Message;
        use fiberlb_shared::shm::ring::RingError;
        use std::time::Instant;

        let set = fiberlb_shared::services::load_services(services)?;
        let mut region = Region::attach(shm)
            .with_context(|| format!("attaching to the data plane's region {}", shm.display()))?;
        let (mut tx, mut rx) = region.endpoints()?;
        region.beat();
        let generation = region.header().applied_generation() + 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        for m in fiberlb_shared::shm::transaction::full_replay(&set) {
            loop {
                match tx.send(generation, m.clone()) {
                    Ok(_) => break,
                    Err(SendError::Ring(RingError::Full { .. })) if Instant::now() < deadline => {
                        region.beat();
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e).context("sending the configuration"),
                }
            }
        }
        while Instant::now() < deadline {
            region.beat();
            match rx.try_recv() {
                Ok(Some(f)) if f.generation == generation => match f.message {
                    Message::Applied => {
                        println!("applied generation {generation}");
                        return Ok(());
                    }
                    Message::Rejected { code, reason } => {
                        bail!("generation {generation} rejected ({code:?}): {reason}")
                    }
                    _ => {}
                },
                Ok(Some(_)) => {}
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => bail!("reading the data plane's reply: {e}"),
            }
        }
        bail!(
            "no reply from the data plane within 10 s (is it running on {}?)",
            shm.display()
        )
    }

    pub fn stats(shm: &Path, json: bool) -> anyhow::Result<()> {
        fiberlb_dataplane::stats::print_stats(shm, json)?;
        Ok(())
    }
}
