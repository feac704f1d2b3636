//! fiberlbctl's command line: the clap definitions of every command and flag.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use super::node;
use super::register;
use fiberlb_controlplane::config::DEFAULT_SOCKET;

#[derive(Debug, Parser)]
#[command(
    name = "fiberlbctl",
    version,
    about = "Command line of fiberlb's control plane"
)]
pub(crate) struct Cli {
    /// fiberlbd to talk to: a Unix socket path, or https://host:port.
    #[arg(long, global = true, env = "FIBERLB_SERVER", default_value = DEFAULT_SOCKET)]
    pub(crate) server: String,
    /// Bearer token (acts in the token's org/project).
    #[arg(long, global = true, env = "FIBERLB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) to verify an https server with.
    #[arg(long, global = true, env = "FIBERLB_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Organisation (needed without a token).
    #[arg(long, global = true, env = "FIBERLB_ORG", default_value = "")]
    pub(crate) org: String,
    /// Project (needed without a token).
    #[arg(long, global = true, env = "FIBERLB_PROJECT", default_value = "")]
    pub(crate) project: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Load balancers (VIPs).
    #[command(subcommand, alias = "lb", alias = "loadbalancer")]
    LoadBalancer(LbCmd),
    /// Listeners (VIP port + protocol + mode -> pool).
    #[command(subcommand)]
    Listener(ListenerCmd),
    /// Pools.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Backends.
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Health checks.
    #[command(subcommand, alias = "hc")]
    HealthCheck(HcCmd),
    /// Make this org/project match a services file (creates, updates and deletes).
    Apply {
        /// The services YAML file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep objects the file does not mention.
        #[arg(long)]
        no_prune: bool,
    },
    /// What `apply -f FILE` would change, kubectl-style: exit 0 when nothing, 1 when there are
    /// differences, 2 on an error (for CI pipelines).
    Diff {
        /// The services YAML file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Do not count objects the file does not mention as differences.
        #[arg(long)]
        no_prune: bool,
    },
    /// The running configuration of this org/project as a services file (what `apply -f`
    /// takes back with "no changes"), on stdout.
    #[command(alias = "get")]
    Export,
    /// Shell completion script for SHELL (bash, zsh, fish, elvish, powershell) on stdout.
    Completions { shell: clap_complete::Shell },
    /// The manual page (roff) on stdout: `fiberlbctl man | man -l -`.
    Man,
    /// The attached data plane and the configuration generation.
    Status,
    /// Data plane counters of this org/project.
    #[command(alias = "counters")]
    Stats,
    /// A live view of this org/project: per listener and backend packet/bit rates (from
    /// counter deltas), health and admin state, drops by reason. Refreshed each interval until
    /// interrupted; plain frames, one after another, when stdout is not a terminal.
    Top {
        /// Seconds between frames.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Print one frame (rates over one interval) and exit.
        #[arg(long)]
        once: bool,
        /// Print N frames and exit.
        #[arg(long, short = 'n')]
        count: Option<u64>,
    },
    /// This node: BGP announcement of its VIPs (through BIRD) and drain.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Which backend a new flow SRC:PORT -> DST:PORT/PROTO gets (Maglev answer).
    #[command(alias = "trace")]
    Lookup {
        /// Client address and port, e.g. 198.51.100.7:40000 or [2001:db8::7]:40000.
        src: String,
        /// VIP, port and protocol, e.g. 10.10.0.100:80/tcp.
        dst: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Id {
    pub(crate) id: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LbCmd {
    List,
    Get(Id),
    Create {
        #[arg(long)]
        name: String,
        /// Explicit VIP; allocated from the configured ranges when omitted.
        #[arg(long)]
        vip: Option<String>,
        /// Family to allocate from: ipv4 or ipv6.
        #[arg(long, default_value = "")]
        family: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    Update {
        id: u32,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    Delete(Id),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ListenerCmd {
    List {
        /// Only this load balancer's listeners.
        #[arg(long = "lb", default_value_t = 0)]
        lb: u32,
    },
    Get(Id),
    Create {
        #[arg(long = "lb")]
        lb: u32,
        #[arg(long)]
        port: u32,
        /// tcp | udp
        #[arg(long, default_value = "tcp")]
        protocol: String,
        /// dsr | tunnel | nat
        #[arg(long)]
        mode: String,
        /// ipip | gue (tunnel only)
        #[arg(long, default_value = "")]
        encap: String,
        #[arg(long)]
        pool: u32,
    },
    Update {
        id: u32,
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        encap: Option<String>,
        #[arg(long)]
        pool: Option<u32>,
    },
    Delete(Id),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PoolCmd {
    List,
    Get(Id),
    Create {
        #[arg(long)]
        name: String,
        /// maglev | maglev-source-ip
        #[arg(long, default_value = "")]
        algorithm: String,
        /// Prime Maglev table size (default 65537).
        #[arg(long, default_value_t = 0)]
        table_size: u32,
        #[arg(long, default_value_t = 0)]
        health_check: u32,
    },
    Update {
        id: u32,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        algorithm: Option<String>,
        #[arg(long)]
        table_size: Option<u32>,
        /// 0 detaches the health check.
        #[arg(long)]
        health_check: Option<u32>,
    },
    Delete(Id),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackendCmd {
    List {
        /// Only this pool's backends.
        #[arg(long, default_value_t = 0)]
        pool: u32,
    },
    Get(Id),
    Create {
        #[arg(long)]
        pool: u32,
        #[arg(long)]
        address: String,
        #[arg(long)]
        port: u32,
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long, default_value = "")]
        mac: String,
        /// enabled | drained | disabled
        #[arg(long, default_value = "")]
        state: String,
    },
    Update {
        id: u32,
        #[arg(long)]
        weight: Option<u32>,
        /// Empty string clears it.
        #[arg(long)]
        mac: Option<String>,
        #[arg(long)]
        state: Option<String>,
    },
    Delete(Id),
    /// Register a dynamic backend with a lease: it is deleted when the lease is not renewed
    /// within --ttl (an agent on a VM or container runs this with --keep-alive).
    Register {
        #[arg(long)]
        pool: u32,
        #[arg(long)]
        address: String,
        #[arg(long)]
        port: u32,
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long, default_value = "")]
        mac: String,
        /// Time to live after the last renewal: 10s, 1500ms, 2m (1 s to 1 h).
        #[arg(long, value_parser = register::parse_ttl, default_value = "10s")]
        ttl: u64,
        /// Keep renewing (every ttl/3) until SIGINT/SIGTERM, then delete the backend.
        #[arg(long)]
        keep_alive: bool,
    },
    /// Renew a registered backend's lease once.
    KeepAlive {
        /// The lease id `register` printed.
        #[arg(long)]
        lease: i64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct HcFields {
    #[arg(long)]
    pub(crate) name: String,
    /// tcp | http | https | udp
    #[arg(long)]
    pub(crate) kind: String,
    #[arg(long, default_value_t = 0)]
    pub(crate) interval_ms: u32,
    #[arg(long, default_value_t = 0)]
    pub(crate) timeout_ms: u32,
    #[arg(long, default_value_t = 0)]
    pub(crate) rise: u32,
    #[arg(long, default_value_t = 0)]
    pub(crate) fall: u32,
    #[arg(long, default_value = "")]
    pub(crate) http_path: String,
    /// Accepted HTTP statuses, e.g. 200-399.
    #[arg(long, default_value = "")]
    pub(crate) expect_status: String,
    /// UDP payload to send (text).
    #[arg(long, default_value = "")]
    pub(crate) udp_payload: String,
    /// UDP reply expected (text; empty: any reply).
    #[arg(long, default_value = "")]
    pub(crate) udp_expect: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum HcCmd {
    List,
    Get(Id),
    Create(HcFields),
    /// Replaces every field.
    Update {
        id: u32,
        #[command(flatten)]
        fields: HcFields,
    },
    Delete(Id),
}
