//! What `run` does the same way on both NIC backends (AF_XDP in `main.rs`, DPDK in
//! `run_dpdk.rs`): checking the workers' cores and the services file, creating the
//! shared-memory region and the control thread, the stop flag set by SIGTERM/SIGINT, the
//! "forwarding on ..." line, running the pinned worker threads until stop and joining them and
//! the control thread. What only one backend has (XDP programs and their maps, the EAL, ports,
//! host ports) stays in its file and comes in here as closures — among them what the tick
//! publishes: the ports' counters (`<region>.ports.json`, [`port_stats_publisher`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use fiberlb_dataplane::config::{format_mac, DataplaneConfig};
use fiberlb_dataplane::control::{ControlOptions, ControlThread};
use fiberlb_dataplane::cpus::available_cores;
use fiberlb_dataplane::pipeline::PipelineConfig;
use fiberlb_dataplane::port_stats::PortStatsPublisher;
use fiberlb_dataplane::snapshot::SnapshotBuilder;
use fiberlb_dataplane::worker::WorkerSettings;
use fiberlb_shared::model::ServiceSet;
use fiberlb_shared::shm::counters::CountersLayout;
use fiberlb_shared::shm::region::{Region, RegionConfig};

/// Checks that every configured worker core exists and may be used; returns the cores this
/// process may run on.
///
/// # Errors
/// Naming the first core that cannot be used.
pub fn check_cores(cfg: &DataplaneConfig) -> anyhow::Result<Vec<usize>> {
    let cores = available_cores();
    for c in &cfg.workers.cores {
        if !cores.contains(c) {
            bail!(
                "workers.cores: core {c} does not exist or is not allowed for this process \
                 (available: {cores:?})"
            );
        }
    }
    Ok(cores)
}

/// The services file, if any, checked completely (parsed and built into a snapshot) before
/// anything is set up.
///
/// # Errors
/// When the file cannot be read or parsed, or its configuration is refused.
pub fn load_services(
    services: Option<&Path>,
    pcfg: &PipelineConfig,
) -> anyhow::Result<Option<ServiceSet>> {
    let Some(p) = services else {
        return Ok(None);
    };
    let set = fiberlb_shared::services::load_services(p)?;
    SnapshotBuilder::new(pcfg.max_listeners, pcfg.max_backends)
        .with_gateway_fallback(pcfg.backend_gateway_mac.is_some())
        .build(&set, 1)
        .with_context(|| format!("{}: configuration refused", p.display()))?;
    Ok(Some(set))
}

/// Creates the shared-memory region with room for every worker's counters; a second
/// instance on the same path stops here (the region's lock). Returns it with its path.
///
/// # Errors
/// When the region cannot be created (or another process owns it).
pub fn create_region(
    cfg: &DataplaneConfig,
    pcfg: &PipelineConfig,
) -> anyhow::Result<(Region, PathBuf)> {
    let shm_path = cfg.shm.resolved_path();
    let layout = CountersLayout {
        workers: cfg.workers.cores.len() as u32,
        listeners: pcfg.max_listeners.clamp(1, 4096) as u32,
        backends: pcfg.max_backends.clamp(1, 65536) as u32,
    };
    let region = Region::create(
        &shm_path,
        &RegionConfig {
            counters: layout,
            ..RegionConfig::default()
        },
    )
    .with_context(|| format!("shared-memory region {}", shm_path.display()))?;
    Ok((region, shm_path))
}

/// The control thread over `region` (not started yet), with the services file applied as its
/// first generation.
///
/// # Errors
/// When the control thread cannot be set up or refuses the services.
pub fn control_thread(
    region: Region,
    worker_cores: &[usize],
    pcfg: &PipelineConfig,
    initial: Option<ServiceSet>,
) -> anyhow::Result<ControlThread> {
    let workers = worker_cores.len();
    let mut ctl = ControlThread::new(
        region,
        ControlOptions {
            workers,
            max_listeners: pcfg.max_listeners,
            max_backends: pcfg.max_backends,
            gateway_fallback: pcfg.backend_gateway_mac.is_some(),
            cpus: fiberlb_dataplane::cpus::housekeeping_cpus(worker_cores),
            ..ControlOptions::default()
        },
    )?;
    if let Some(set) = initial {
        let g = ctl.apply_initial(set)?;
        eprintln!("fiberlb-dataplane: services file applied as generation {g}");
    }
    Ok(ctl)
}

/// The writer of `<region>.ports.json` for the region `ctl` owns (its data plane instance):
/// the tick of [`run_workers`] publishes the ports' link state and counters with it once a
/// second, from the main thread.
pub fn port_stats_publisher(ctl: &ControlThread) -> PortStatsPublisher {
    let region = ctl.region();
    PortStatsPublisher::new(region.path(), region.header().instance_id())
}

/// The workers' loop settings from `[workers]`.
pub fn worker_settings(cfg: &DataplaneConfig) -> WorkerSettings {
    WorkerSettings {
        burst: cfg.workers.burst,
        idle_backoff: cfg.workers.idle_backoff,
    }
}

/// A flag set by SIGTERM and SIGINT.
///
/// # Errors
/// When the handlers cannot be installed.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    Ok(stop)
}

/// Prints the "forwarding on ..." line (tests wait for it): the ports as `port_desc` describes
/// them, `backend` after them (e.g. `" (DPDK)"`), the workers, the region and the MACs.
pub fn announce(
    port_desc: &[String],
    backend: &str,
    cfg: &DataplaneConfig,
    shm_path: &Path,
    pcfg: &PipelineConfig,
) {
    eprintln!(
        "fiberlb-dataplane: forwarding on {}{backend} with {} worker(s) on cores {:?}; region {}; \
         client side MAC {} -> {}, backend side MAC {} -> {}",
        port_desc.join(", "),
        cfg.workers.cores.len(),
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
}

/// Runs `built` (core, worker), worker `i` on thread `fiberlb-w<i>`, each through `body`
/// (pin, run until `stop`), until `stop` is set or a worker ends early (an error in `body`).
/// Meanwhile calls `tick` every 50 ms on this (the main) thread — the place for slow-path
/// work that must not run on a worker: publishing port counters, refreshing XDP maps. Then sets `stop`, joins every worker and gives each
/// one that ended well to `report` (its exit statistics).
///
/// # Errors
/// The error of a worker whose `body` failed (the last one).
pub fn run_workers<W, B, T, R>(
    built: Vec<(usize, W)>,
    stop: &AtomicBool,
    body: B,
    mut tick: T,
    report: R,
) -> anyhow::Result<()>
where
    W: Send,
    B: Fn(usize, &mut W) -> Result<(), String> + Sync,
    T: FnMut(),
    R: Fn(&W),
{
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for (i, (core, mut w)) in built.into_iter().enumerate() {
            let body = &body;
            let h = std::thread::Builder::new()
                .name(format!("fiberlb-w{i}"))
                .spawn_scoped(scope, move || -> Result<_, String> {
                    body(core, &mut w)?;
                    Ok(w)
                })
                .context("spawning a worker thread")?;
            handles.push(h);
        }
        // Wait for a signal (or a worker that ended early: a pinning or registration error).
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if handles.iter().any(|h| h.is_finished()) {
                break;
            }
            tick();
        }
        stop.store(true, Ordering::Relaxed);
        let mut worker_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(w)) => report(&w),
                Ok(Err(e)) => worker_err = Some(e),
                Err(_) => eprintln!("fiberlb-dataplane: error: a worker panicked"),
            }
        }
        match worker_err {
            Some(e) => Err(anyhow::anyhow!("worker: {e}")),
            None => Ok(()),
        }
    })
}

/// Joins the control thread (it ends with the stop flag), prints its statistics and drops it:
/// that drops its apply hook and the last handle on the region (releasing its lock).
pub fn join_control(control: JoinHandle<ControlThread>) {
    match control.join() {
        Ok(ctl) => {
            let c = ctl.stats().counts();
            eprintln!("fiberlb-dataplane: control thread: {c:?}");
            drop(ctl);
        }
        Err(_) => eprintln!("fiberlb-dataplane: error: the control thread panicked"),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::thread::JoinHandleExt;

    use super::*;

    /// The CPUs `thread` may run on, from the kernel.
    fn allowed_cpus(thread: &JoinHandle<ControlThread>) -> Vec<usize> {
        // SAFETY: cpu_set_t is a plain bit array; all zeros is a valid (empty) set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pthread_t is that of a thread not joined yet (we hold its handle), and
        // `set` is a writable cpu_set_t of the size passed.
        let rc = unsafe {
            libc::pthread_getaffinity_np(
                thread.as_pthread_t(),
                std::mem::size_of::<libc::cpu_set_t>(),
                &mut set,
            )
        };
        assert_eq!(rc, 0, "pthread_getaffinity_np failed: {rc}");
        // SAFETY: `set` was filled by the kernel; CPU_ISSET only reads it.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }

    /// Issue 12's table-swap loss: the control thread (which builds the Maglev tables of every
    /// commit, tens of ms of CPU for large pools) inherited the process's affinity and so shared
    /// the workers' cores; a build could stall a worker's polling long enough for its RX ring to
    /// overflow (1368 packets lost in one run of 30 swaps at 150 kpps). It must run only on the
    /// CPUs no worker is pinned to. Deterministic where the load test is not: on the old code
    /// the control thread is allowed on the worker's core and this fails.
    #[test]
    fn control_thread_stays_off_the_worker_cores() {
        let cores = available_cores();
        if cores.len() < 2 {
            eprintln!(
                "skipping: one CPU available ({cores:?}), nowhere else to put the control thread"
            );
            return;
        }
        let worker_core = *cores.last().expect("two cores");
        let dir = std::env::temp_dir().join(format!("fiberlb-hk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let region = Region::create(
            &dir.join("region"),
            &RegionConfig {
                ring_capacity: 16,
                counters: CountersLayout {
                    workers: 1,
                    listeners: 16,
                    backends: 64,
                },
            },
        )
        .expect("region");
        let pcfg = PipelineConfig {
            max_listeners: 16,
            max_backends: 64,
            ..PipelineConfig::default()
        };
        let ctl = control_thread(region, &[worker_core], &pcfg, None).expect("control thread");
        let stop = Arc::new(AtomicBool::new(false));
        let handle = ctl.spawn(stop.clone()).expect("spawn");
        // The thread restricts itself as its first step; give it a moment on a busy machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut allowed = allowed_cpus(&handle);
        while allowed.contains(&worker_core) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            allowed = allowed_cpus(&handle);
        }
        stop.store(true, Ordering::Relaxed);
        let _ = handle.join();
        let _ = std::fs::remove_dir_all(&dir);
        let expected: Vec<usize> = cores
            .iter()
            .copied()
            .filter(|&c| c != worker_core)
            .collect();
        assert_eq!(
            allowed, expected,
            "the control thread must run on the CPUs no worker uses (worker on {worker_core}, \
             process allowed {cores:?})"
        );
    }
}
