//! The generator and sink threads on AF_XDP sockets, and a [`Session`] that runs trials with
//! them: one sink thread lives for the whole session (so its XDP program is attached once);
//! generator threads are started per trial.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fiberlb_dataplane::nic::afxdp::{
    AfXdpError, HugePages, Umem, UmemConfig, XdpMode, XdpProgram, XskConfig, XskPort,
};
use fiberlb_dataplane::packet::Desc;

use super::packet::{addr16, parse, Fields, Template, L4};
use super::stats::{BackendCount, Latency, SinkStats};
use super::sys::{current_cpu, enter_netns, now_ns, pin};

const BURST: usize = 32;
const CHUNK: u32 = 2048;

/// What to send.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub netns: Option<String>,
    pub iface: String,
    /// Queues (one AF_XDP socket each), spread over the threads of `cores`.
    pub queues: u32,
    /// One generator thread per entry, pinned there.
    pub cores: Vec<usize>,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub v6: bool,
    pub l4: L4,
    /// Wire size, FCS included.
    pub size: usize,
    pub flows: u32,
    pub src_base: IpAddr,
    pub src_count: u32,
    pub sport_base: u16,
    pub sport_count: u32,
    pub vips: Vec<IpAddr>,
    pub dports: Vec<u16>,
}

impl GenConfig {
    /// Checks that the flows are distinct 5-tuples and the template can be built.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.flows >= 1, "--flows must be at least 1");
        anyhow::ensure!(!self.vips.is_empty(), "give at least one --vip");
        anyhow::ensure!(!self.dports.is_empty(), "give at least one --dport");
        anyhow::ensure!(!self.cores.is_empty(), "give at least one generator core");
        anyhow::ensure!(
            self.queues as usize >= self.cores.len() && self.queues <= 64,
            "--queues ({}) must be at least the number of generator cores ({}) and at most 64",
            self.queues,
            self.cores.len()
        );
        for a in self.vips.iter().chain([&self.src_base]) {
            anyhow::ensure!(
                a.is_ipv6() == self.v6,
                "address {a} does not match the chosen IP version (use --ipv6 with IPv6 addresses)"
            );
        }
        anyhow::ensure!(
            self.src_count >= 1 && self.sport_count >= 1,
            "--src-count and --sport-count must be at least 1"
        );
        anyhow::ensure!(
            u32::from(self.sport_base) + self.sport_count - 1 <= 65535,
            "source ports {}+{} go beyond 65535",
            self.sport_base,
            self.sport_count
        );
        let tuples = u64::from(self.src_count)
            * u64::from(self.sport_count)
            * self.vips.len() as u64
            * self.dports.len() as u64;
        anyhow::ensure!(
            u64::from(self.flows) <= tuples,
            "{} flows need that many distinct tuples but sources x ports x vips x dports = {tuples}: raise --src-count or --sport-count",
            self.flows
        );
        Template::new(self.v6, self.l4, self.size, self.src_mac, self.dst_mac)?;
        Ok(())
    }
}

/// Where to receive, and which destinations to capture.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    pub netns: Option<String>,
    pub iface: String,
    pub queues: u32,
    pub core: Option<usize>,
    /// (destination address, IP protocol) redirected to the sink's sockets; all ports.
    pub capture: Vec<(IpAddr, u8)>,
    /// Sleep this long after an empty poll of every queue (0 = busy-poll).
    pub idle_us: u64,
    pub flows: u32,
}

/// One trial's request.
#[derive(Clone, Copy, Debug)]
pub struct Trial {
    /// Total packets per second over all queues; `None` = as fast as possible.
    pub rate: Option<u64>,
    pub duration: Duration,
    /// Stop after this many packets in total (spread over the queues).
    pub count: Option<u64>,
    /// Print a live line every second.
    pub live: bool,
}

/// The sink's view at the end of a trial.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct SinkReport {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub foreign: u64,
    pub seq_gaps: u64,
    pub reordered: u64,
    pub flows_seen: u64,
    pub inconsistent_flows: u64,
    pub inconsistent_packets: u64,
    pub backends: Vec<BackendCount>,
    pub other_backend: u64,
    pub latency: Latency,
    /// Kernel counters of the sink's sockets: packets it dropped because the sink was slow
    /// (not the device under test's loss).
    pub sink_rx_dropped: u64,
    pub sink_rx_ring_full: u64,
    pub sink_fill_ring_empty: u64,
}

/// One trial's result.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct TrialResult {
    pub offered_rate_pps: Option<u64>,
    pub seconds: f64,
    pub tx_packets: u64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    /// tx − rx (exact: both ends are in this process).
    pub lost_packets: u64,
    pub loss_ratio: f64,
    pub sink: SinkReport,
    /// CPUs the generator threads and the sink thread ran on.
    pub generator_cpus: Vec<i32>,
    pub sink_cpu: i32,
}

struct Shared {
    stop_sink: AtomicBool,
    reset_epoch: AtomicU64,
    reset_ack: AtomicU64,
    report_epoch: AtomicU64,
    report: Mutex<Option<SinkReport>>,
    rx: AtomicU64,
    p99_ns: AtomicU64,
    sink_cpu: AtomicU64,
}

/// A sink thread and the generator settings; runs trials.
#[derive(Debug)]
pub struct Session {
    gen: GenConfig,
    template: Template,
    vips16: Vec<[u8; 16]>,
    shared: Arc<Shared>,
    sink: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the sink (attaching its XDP program) and returns once it receives.
    pub fn start(gen: GenConfig, sink: SinkConfig) -> anyhow::Result<Session> {
        gen.validate()?;
        let template = Template::new(gen.v6, gen.l4, gen.size, gen.src_mac, gen.dst_mac)?;
        let shared = Arc::new(Shared {
            stop_sink: AtomicBool::new(false),
            reset_epoch: AtomicU64::new(0),
            reset_ack: AtomicU64::new(u64::MAX),
            report_epoch: AtomicU64::new(0),
            report: Mutex::new(None),
            rx: AtomicU64::new(0),
            p99_ns: AtomicU64::new(0),
            sink_cpu: AtomicU64::new(u64::MAX),
        });
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("pktgen-sink".into())
            .spawn(move || sink_thread(sink, sh))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.reset_ack.load(Ordering::Acquire) != 0 {
            if handle.is_finished() {
                return match handle.join() {
                    Ok(Err(e)) => Err(e.context("starting the sink")),
                    _ => Err(anyhow::anyhow!("the sink thread ended while starting")),
                };
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the sink did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let vips16 = gen.vips.iter().map(|&a| addr16(a)).collect();
        Ok(Session {
            gen,
            template,
            vips16,
            shared,
            sink: Some(handle),
        })
    }

    fn sink_alive(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.sink.as_ref().is_some_and(|h| !h.is_finished()),
            "the sink thread stopped"
        );
        Ok(())
    }

    /// Runs one trial: resets the sink, sends, waits for the sink to drain, collects.
    pub fn trial(&mut self, t: &Trial) -> anyhow::Result<TrialResult> {
        self.sink_alive()?;
        let epoch = self.shared.reset_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        while self.shared.reset_ack.load(Ordering::Acquire) != epoch {
            self.sink_alive()?;
            std::thread::sleep(Duration::from_micros(200));
        }
        let streams = self.gen.queues as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Vec<AtomicU64>> = Arc::new((0..streams).map(|_| AtomicU64::new(0)).collect());
        let start_ns = now_ns();
        let mut threads = Vec::new();
        for (ti, &core) in self.gen.cores.iter().enumerate() {
            let queues: Vec<u32> = (0..self.gen.queues)
                .filter(|q| *q as usize % self.gen.cores.len() == ti)
                .collect();
            let job = GenJob {
                cfg: self.gen.clone(),
                template: self.template.clone(),
                vips16: self.vips16.clone(),
                queues,
                core,
                trial: *t,
                stop: stop.clone(),
                sent: sent.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("pktgen-tx{ti}"))
                    .spawn(move || gen_thread(job))?,
            );
        }
        let total_sent = |s: &[AtomicU64]| s.iter().map(|a| a.load(Ordering::Relaxed)).sum::<u64>();
        let (mut last_tx, mut last_rx, mut last_t) = (0u64, 0u64, Instant::now());
        let rx0 = 0u64;
        while threads.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            if t.live && last_t.elapsed() >= Duration::from_secs(1) {
                let tx = total_sent(&sent);
                let rx = self.shared.rx.load(Ordering::Relaxed) - rx0;
                let dt = last_t.elapsed().as_secs_f64();
                eprintln!(
                    "tx {:>9.0} pps  rx {:>9.0} pps  lost so far {:>9}  p99 {:>8.1} us",
                    (tx - last_tx) as f64 / dt,
                    (rx - last_rx) as f64 / dt,
                    tx.saturating_sub(rx),
                    self.shared.p99_ns.load(Ordering::Relaxed) as f64 / 1000.0
                );
                (last_tx, last_rx, last_t) = (tx, rx, Instant::now());
            }
        }
        let mut cpus = Vec::new();
        for h in threads {
            match h.join() {
                Ok(Ok(cpu)) => cpus.push(cpu),
                Ok(Err(e)) => return Err(e.context("generator thread")),
                Err(_) => anyhow::bail!("a generator thread panicked"),
            }
        }
        let seconds = (now_ns() - start_ns) as f64 / 1e9;
        let tx = total_sent(&sent);
        // Drain: wait until the sink has everything, or nothing arrives for 200 ms.
        let (mut prev, mut still) = (u64::MAX, Instant::now());
        loop {
            let rx = self.shared.rx.load(Ordering::Relaxed);
            if rx >= tx || still.elapsed() > Duration::from_millis(200) {
                break;
            }
            if rx != prev {
                (prev, still) = (rx, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let rep_epoch = self.shared.report_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let report = loop {
            self.sink_alive()?;
            if let Some(r) = self.shared.report.lock().ok().and_then(|mut g| g.take()) {
                break r;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let _ = rep_epoch;
        let rx = report.rx_packets;
        let lost = tx.saturating_sub(rx);
        Ok(TrialResult {
            offered_rate_pps: t.rate,
            seconds,
            tx_packets: tx,
            tx_pps: tx as f64 / seconds,
            rx_pps: rx as f64 / seconds,
            lost_packets: lost,
            loss_ratio: if tx == 0 {
                0.0
            } else {
                lost as f64 / tx as f64
            },
            sink: report,
            generator_cpus: cpus,
            sink_cpu: self.shared.sink_cpu.load(Ordering::Relaxed) as i32,
        })
    }

    /// Stops the sink thread and detaches its XDP program.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.shared.stop_sink.store(true, Ordering::Release);
        if let Some(h) = self.sink.take() {
            match h.join() {
                Ok(r) => r?,
                Err(_) => anyhow::bail!("the sink thread panicked"),
            }
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.stop_sink.store(true, Ordering::Release);
        if let Some(h) = self.sink.take() {
            let _ = h.join();
        }
    }
}

struct GenJob {
    cfg: GenConfig,
    template: Template,
    vips16: Vec<[u8; 16]>,
    queues: Vec<u32>,
    core: usize,
    trial: Trial,
    stop: Arc<AtomicBool>,
    sent: Arc<Vec<AtomicU64>>,
}

/// Per-queue generator state.
struct Stream {
    queue: u32,
    umem: Umem,
    xsk: XskPort,
    seq: u32,
    flow: u32,
    sent: u64,
    limit: u64,
}

fn umem_for(frames: u32, fill: u32) -> anyhow::Result<Umem> {
    Ok(Umem::new(&UmemConfig {
        frame_count: frames,
        chunk_size: CHUNK,
        fill_size: fill,
        completion_size: 2048,
        hugepages: HugePages::Never,
        ..UmemConfig::default()
    })?)
}

fn gen_thread(job: GenJob) -> anyhow::Result<i32> {
    if let Some(ns) = &job.cfg.netns {
        enter_netns(ns)?;
    }
    pin(job.core)?;
    let cfg = &job.cfg;
    let t = &job.template;
    let nstreams = u64::from(cfg.queues);
    let mut streams = Vec::new();
    for &q in &job.queues {
        let xcfg = XskConfig {
            ifname: cfg.iface.clone(),
            queue: q,
            rx_size: 64,
            tx_size: 2048,
            ..Default::default()
        };
        // The previous trial's socket on this queue is released by the kernel asynchronously:
        // retry for a while instead of failing the next trial of a search.
        let deadline = Instant::now() + Duration::from_secs(5);
        // A failed open leaves the UMEM's rings set up: each attempt gets a fresh UMEM.
        let (mut umem, xsk) = loop {
            let mut umem = umem_for(4096, 64)?;
            match XskPort::open(&mut umem, &xcfg) {
                Ok(x) => break (umem, x),
                Err(AfXdpError::QueueBusy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => anyhow::bail!("generator socket on {} queue {q}: {e}", cfg.iface),
            }
        };
        // Initialise every free frame from the template once; per packet only the varying
        // fields are written (frames come back from the completion ring unchanged).
        let mut all = Vec::new();
        while let Some(d) = umem.alloc() {
            if let Some(mut b) = umem.packet_buf(&d) {
                if b.set_len(t.len()).is_some() {
                    b.data_mut().copy_from_slice(&t.bytes);
                }
            }
            all.push(d);
        }
        for d in &all {
            umem.free(d);
        }
        let per = job.trial.count.map_or(u64::MAX, |c| {
            c / nstreams + u64::from(u64::from(q) < c % nstreams)
        });
        streams.push(Stream {
            queue: q,
            umem,
            xsk,
            seq: 0,
            flow: ((u64::from(q) * u64::from(cfg.flows)) / nstreams) as u32,
            sent: 0,
            limit: per,
        });
    }
    let len = t.len() as u32;
    let rate_per_stream = job.trial.rate.map(|r| r as f64 / nstreams as f64);
    let nv = cfg.vips.len() as u32;
    let nd = cfg.dports.len() as u32;
    let src_base = addr16(cfg.src_base);
    let src_low = u32::from_be_bytes([src_base[12], src_base[13], src_base[14], src_base[15]]);
    let start = now_ns();
    let end = start + job.trial.duration.as_nanos() as u64;
    let mut descs = [Desc::default(); BURST];
    let mut f = Fields {
        src: src_base,
        ..Fields::default()
    };
    loop {
        let now = now_ns();
        if now >= end || job.stop.load(Ordering::Relaxed) {
            break;
        }
        let mut all_done = true;
        for s in streams.iter_mut() {
            s.xsk.complete(&mut s.umem);
            if s.sent >= s.limit {
                continue;
            }
            all_done = false;
            let mut want = (s.limit - s.sent).min(BURST as u64) as usize;
            if let Some(r) = rate_per_stream {
                let due = ((now - start) as f64 * r / 1e9) as u64;
                want = want.min(due.saturating_sub(s.sent) as usize);
            }
            let mut n = 0;
            let ts = now as u32;
            let (seq0, flow0) = (s.seq, s.flow);
            while n < want {
                let Some(mut d) = s.umem.alloc() else { break };
                d.len = len;
                let flow = s.flow;
                // Mixed-radix split of the flow id into (source, source port, vip, port).
                let a = flow % cfg.src_count;
                let r = flow / cfg.src_count;
                let sp = r % cfg.sport_count;
                let r = r / cfg.sport_count;
                let vi = r % nv;
                let di = (r / nv) % nd;
                f.src[12..].copy_from_slice(&src_low.wrapping_add(a).to_be_bytes());
                f.dst = job.vips16[vi as usize];
                f.sport = cfg.sport_base + sp as u16;
                f.dport = cfg.dports[di as usize];
                f.stream = s.queue as u8;
                f.flow = flow;
                f.seq = s.seq;
                f.ts = ts;
                if let Some(mut b) = s.umem.packet_buf(&d) {
                    t.stamp(b.data_mut(), &f);
                }
                descs[n] = d;
                n += 1;
                s.seq = s.seq.wrapping_add(1);
                s.flow = if s.flow + 1 >= cfg.flows {
                    0
                } else {
                    s.flow + 1
                };
            }
            if n == 0 {
                continue;
            }
            let done = s.xsk.tx_burst(&mut s.umem, &descs[..n]);
            for d in &descs[done..n] {
                s.umem.free(d);
            }
            if done < n {
                // Not sent: their sequence numbers and flows go out with the next burst, so
                // the sink sees no false gap.
                s.seq = seq0.wrapping_add(done as u32);
                s.flow = ((u64::from(flow0) + done as u64) % u64::from(cfg.flows)) as u32;
            }
            s.sent += done as u64;
            if let Some(a) = job.sent.get(s.queue as usize) {
                a.store(s.sent, Ordering::Relaxed);
            }
        }
        if all_done {
            break;
        }
    }
    // Let the last transmissions complete before the UMEM goes away.
    let deadline = Instant::now() + Duration::from_millis(100);
    while Instant::now() < deadline {
        let mut pending = false;
        for s in streams.iter_mut() {
            s.xsk.complete(&mut s.umem);
            pending |= s.umem.free_frames() + 64 < s.umem.frame_count() as usize;
        }
        if !pending {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(current_cpu())
}

fn sink_thread(cfg: SinkConfig, sh: Arc<Shared>) -> anyhow::Result<()> {
    if let Some(ns) = &cfg.netns {
        enter_netns(ns)?;
    }
    if let Some(c) = cfg.core {
        pin(c)?;
    }
    if cfg.idle_us > 0 {
        super::sys::fine_timer_slack();
    }
    let mut prog = XdpProgram::load_and_attach(&cfg.iface, XdpMode::Auto)
        .map_err(|e| anyhow::anyhow!("sink XDP program on {}: {e}", cfg.iface))?;
    let mut ports = Vec::new();
    for q in 0..cfg.queues {
        let mut umem = umem_for(4096, 2048)?;
        let xsk = XskPort::open(
            &mut umem,
            &XskConfig {
                ifname: cfg.iface.clone(),
                queue: q,
                rx_size: 2048,
                tx_size: 64,
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("sink socket on {} queue {q}: {e}", cfg.iface))?;
        prog.register_socket(q, xsk.fd())?;
        ports.push((umem, xsk));
    }
    let keys: Vec<(IpAddr, u16, u8)> = cfg.capture.iter().map(|&(a, p)| (a, 0, p)).collect();
    prog.set_vips(&keys)?;
    let mut stats = SinkStats::new(cfg.flows);
    let mut descs = [Desc::default(); BURST];
    let (mut reset_seen, mut report_seen) = (0u64, 0u64);
    sh.reset_ack.store(0, Ordering::Release);
    sh.sink_cpu.store(current_cpu() as u64, Ordering::Relaxed);
    let mut tick = now_ns();
    let mut polls = 0u32;
    while !sh.stop_sink.load(Ordering::Relaxed) {
        let r = sh.reset_epoch.load(Ordering::Acquire);
        if r != reset_seen {
            stats.reset();
            sh.rx.store(0, Ordering::Relaxed);
            reset_seen = r;
            sh.reset_ack.store(r, Ordering::Release);
        }
        let p = sh.report_epoch.load(Ordering::Acquire);
        if p != report_seen {
            report_seen = p;
            let mut rep = SinkReport {
                rx_packets: stats.rx,
                rx_bytes: stats.rx_bytes,
                foreign: stats.foreign,
                seq_gaps: stats.seq_gaps(),
                reordered: stats.reordered(),
                flows_seen: stats.flows_seen(),
                inconsistent_flows: stats.inconsistent_flows,
                inconsistent_packets: stats.inconsistent_packets,
                backends: stats.backends(),
                other_backend: stats.other_backend,
                latency: stats.latency.summary(),
                ..SinkReport::default()
            };
            for (_, x) in &ports {
                if let Ok(st) = x.stats() {
                    rep.sink_rx_dropped += st.rx_dropped;
                    rep.sink_rx_ring_full += st.rx_ring_full;
                    rep.sink_fill_ring_empty += st.rx_fill_ring_empty;
                }
            }
            if let Ok(mut g) = sh.report.lock() {
                *g = Some(rep);
            }
        }
        let mut got = 0;
        for (umem, xsk) in ports.iter_mut() {
            let n = xsk.rx_burst(umem, &mut descs);
            if n == 0 {
                continue;
            }
            got += n;
            let now = now_ns() as u32;
            for d in &descs[..n] {
                let seen = umem.data(d).and_then(parse);
                stats.record(seen, d.len as usize, now);
                umem.free(d);
            }
        }
        if got > 0 {
            sh.rx.store(stats.rx, Ordering::Relaxed);
        } else if cfg.idle_us > 0 {
            std::thread::sleep(Duration::from_micros(cfg.idle_us));
        }
        polls = polls.wrapping_add(1);
        if polls % 4096 == 0 || got == 0 {
            let now = now_ns();
            if now - tick >= 1_000_000_000 {
                tick = now;
                sh.p99_ns
                    .store(stats.latency.quantile(0.99), Ordering::Relaxed);
            }
        }
    }
    drop(ports);
    prog.detach();
    Ok(())
}
