//! fiberlb-pktgen: packet generator and sink on AF_XDP (root), NDR/PDR search, update latency
//! of a running data plane, the pipeline alone on memory ports, and the plot of a results
//! table. See bench/README.md.
//!
//! ```text
//! fiberlb-pktgen run --tx-netns gen --tx-iface g0 --dst-mac .. --rx-netns be --rx-iface b0 \
//!     --vip 198.18.100.1 --dport 9 --flows 1000 --size 64 --duration 5 [--rate PPS] [--search]
//! fiberlb-pktgen pipeline --mode dsr --flows 1000 --workers 2 --cores 0,1 --secs 2
//! fiberlb-pktgen pipeline --mode nat --flows 1000 --packets 100000   # fixed work (callgrind)
//! fiberlb-pktgen update --shm /dev/shm/fiberlb --services a.yaml --services b.yaml --count 50
//! fiberlb-pktgen plot --input results/table.tsv --output results/plot.svg
//! ```
//! The JSON summary goes to stdout (and `--json FILE`), live lines to stderr.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use fiberlb_bench::pktgen::io::{GenConfig, Session, SinkConfig, Trial};
use fiberlb_bench::pktgen::packet::L4;
use fiberlb_bench::pktgen::{pipeline, plot, search, update};

#[derive(Parser, Debug)]
#[command(
    name = "fiberlb-pktgen",
    about = "fiberlb's packet generator, sink and benchmark tools"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Proto {
    Udp,
    TcpSyn,
    TcpAck,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Send from one interface, receive on another, report loss/latency/backends as JSON.
    Run(Box<RunArgs>),
    /// The forwarding pipeline alone on memory ports (no I/O), per worker thread.
    Pipeline {
        #[arg(long, default_value = "dsr")]
        mode: String,
        #[arg(long, default_value_t = 1000)]
        flows: usize,
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[arg(long, value_delimiter = ',', default_value = "0")]
        cores: Vec<usize>,
        /// Seconds each worker runs after its warm-up.
        #[arg(long, default_value_t = 2.0, conflicts_with = "packets")]
        secs: f64,
        /// Instead of --secs: exactly N packets per worker after the warm-up (rounded up to
        /// bursts of 32), no clock in the loop — the same work every run (bench/instructions.sh).
        #[arg(long)]
        packets: Option<u64>,
        /// Inject, receive and free every burst but do not process it: the memory port's own
        /// work, which bench/instructions.sh subtracts to count the pipeline alone.
        #[arg(long)]
        harness_only: bool,
    },
    /// Commit → Applied latency of a running data plane, alternating service files.
    Update {
        #[arg(long)]
        shm: PathBuf,
        #[arg(long = "services", required = true)]
        services: Vec<PathBuf>,
        #[arg(long, default_value_t = 20)]
        count: usize,
        #[arg(long, default_value_t = 100)]
        interval_ms: u64,
    },
    /// SVG bar chart of a `label<TAB>pps<TAB>group` table.
    Plot {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value = "fiberlb throughput")]
        title: String,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Network namespace of the sending interface (`ip netns` name or a path).
    #[arg(long)]
    tx_netns: Option<String>,
    #[arg(long)]
    tx_iface: String,
    /// TX queues (one AF_XDP socket each).
    #[arg(long, default_value_t = 1)]
    tx_queues: u32,
    /// One generator thread per core.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    tx_cores: Vec<usize>,
    #[arg(long)]
    src_mac: Option<String>,
    /// Next hop: the device under test's MAC.
    #[arg(long)]
    dst_mac: String,
    #[arg(long)]
    rx_netns: Option<String>,
    #[arg(long)]
    rx_iface: String,
    #[arg(long, default_value_t = 1)]
    rx_queues: u32,
    /// Pin the sink thread here.
    #[arg(long)]
    rx_core: Option<usize>,
    /// Sink: sleep this many microseconds after an empty poll (0 = busy-poll).
    #[arg(long, default_value_t = 10)]
    rx_idle_us: u64,
    /// Destination addresses the sink captures (default: the VIPs). Add backend addresses
    /// for nat (rewritten destinations) and tunnel (outer destinations).
    #[arg(long = "capture", value_delimiter = ',')]
    capture: Vec<IpAddr>,
    #[arg(long, value_enum, default_value = "udp")]
    proto: Proto,
    #[arg(long)]
    ipv6: bool,
    /// Wire size in bytes, FCS included (64..=1518).
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long, default_value_t = 1000)]
    flows: u32,
    #[arg(long, default_value = "198.18.1.1")]
    src: IpAddr,
    /// Distinct source addresses (default: enough for the flows, up to 65536).
    #[arg(long)]
    src_count: Option<u32>,
    #[arg(long, default_value_t = 1024)]
    sport: u16,
    /// Distinct source ports (default: flows / sources, rounded up).
    #[arg(long)]
    sport_count: Option<u32>,
    #[arg(long = "vip", value_delimiter = ',', required = true)]
    vips: Vec<IpAddr>,
    #[arg(long = "dport", value_delimiter = ',', default_value = "9")]
    dports: Vec<u16>,
    /// Packets per second in total; leave out for as fast as possible.
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many packets.
    #[arg(long)]
    count: Option<u64>,
    /// NDR/PDR search instead of one trial.
    #[arg(long)]
    search: bool,
    /// Seconds per search trial.
    #[arg(long, default_value_t = 1.0)]
    trial_secs: f64,
    /// Halvings per search.
    #[arg(long, default_value_t = 6)]
    steps: u32,
    /// PDR loss ratio.
    #[arg(long, default_value_t = 0.001)]
    pdr_loss: f64,
    /// No live lines.
    #[arg(long)]
    quiet: bool,
    /// Also write the JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn mac(s: &str) -> anyhow::Result<[u8; 6]> {
    fiberlb_dataplane::config::parse_mac(s)
        .ok_or_else(|| anyhow::anyhow!("{s:?} is not a MAC address (use aa:bb:cc:dd:ee:ff)"))
}

fn emit<T: serde::Serialize>(v: &T, file: Option<&PathBuf>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    println!("{text}");
    if let Some(f) = file {
        std::fs::write(f, &text)?;
    }
    Ok(())
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let src_count = a.src_count.unwrap_or(a.flows.clamp(1, 65536));
    let sport_count = a.sport_count.unwrap_or(a.flows.div_ceil(src_count).max(1));
    let src_mac = match &a.src_mac {
        Some(m) => mac(m)?,
        None => [2, 0, 0, 0, 0, 1],
    };
    let l4 = match a.proto {
        Proto::Udp => L4::Udp,
        Proto::TcpSyn => L4::TcpSyn,
        Proto::TcpAck => L4::TcpAck,
    };
    let ipproto = if l4 == L4::Udp { 17 } else { 6 };
    let gen = GenConfig {
        netns: a.tx_netns.clone(),
        iface: a.tx_iface.clone(),
        queues: a.tx_queues,
        cores: a.tx_cores.clone(),
        src_mac,
        dst_mac: mac(&a.dst_mac)?,
        v6: a.ipv6,
        l4,
        size: a.size,
        flows: a.flows,
        src_base: a.src,
        src_count,
        sport_base: a.sport,
        sport_count,
        vips: a.vips.clone(),
        dports: a.dports.clone(),
    };
    let capture_addrs = if a.capture.is_empty() {
        a.vips.clone()
    } else {
        a.capture.clone()
    };
    // Tunnelled frames arrive as IPIP / IP6IP6 / GUE (UDP) to the backend.
    let mut capture = Vec::new();
    for addr in capture_addrs {
        for p in [ipproto, 4, 41, 17] {
            if !capture.contains(&(addr, p)) {
                capture.push((addr, p));
            }
        }
    }
    let sink = SinkConfig {
        netns: a.rx_netns.clone(),
        iface: a.rx_iface.clone(),
        queues: a.rx_queues,
        core: a.rx_core,
        capture,
        idle_us: a.rx_idle_us,
        flows: a.flows,
    };
    let mut session = Session::start(gen, sink)?;
    let live = !a.quiet;
    if a.search {
        let r = search(
            &mut session,
            Duration::from_secs_f64(a.trial_secs),
            a.steps,
            a.pdr_loss,
            live,
        )?;
        session.finish()?;
        emit(&r, a.json.as_ref())
    } else {
        let r = session.trial(&Trial {
            rate: a.rate,
            duration: Duration::from_secs_f64(a.duration),
            count: a.count,
            live,
        })?;
        session.finish()?;
        emit(&r, a.json.as_ref())
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(a) => run(*a),
        Cmd::Pipeline {
            mode,
            flows,
            workers,
            cores,
            secs,
            packets,
            harness_only,
        } => {
            let len = match packets {
                Some(n) => pipeline::Length::Packets(n),
                None => pipeline::Length::Secs(secs),
            };
            emit(
                &pipeline::run(&mode, flows, workers, &cores, len, harness_only)?,
                None,
            )
        }
        Cmd::Update {
            shm,
            services,
            count,
            interval_ms,
        } => emit(
            &update::run(&shm, &services, count, Duration::from_millis(interval_ms))?,
            None,
        ),
        Cmd::Plot {
            input,
            output,
            title,
        } => {
            let bars = plot::parse_tsv(&std::fs::read_to_string(&input)?);
            plot::draw(&bars, &title, &output)
        }
    }
}
