//! fiberlbctl: the command line of fiberlb's control plane. Every API operation, human tables by
//! default and `-o json`, `apply -f services.yaml`, `status`, `stats`, a live `top` and `lookup`
//! (`trace`).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fiberlb_controlplane::api::apply;
use fiberlb_controlplane::api::client::{connect, Clients};
use fiberlb_controlplane::config::DEFAULT_SOCKET;
use fiberlb_controlplane::pb;
use serde::Serialize;

/// `println!` that ends the program quietly when stdout is closed (`fiberlbctl ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[path = "fiberlbctl/node.rs"]
mod node;
#[path = "fiberlbctl/register.rs"]
mod register;

#[derive(Debug, Parser)]
#[command(
    name = "fiberlbctl",
    version,
    about = "Command line of fiberlb's control plane"
)]
struct Cli {
    /// fiberlbd to talk to: a Unix socket path, or https://host:port.
    #[arg(long, global = true, env = "FIBERLB_SERVER", default_value = DEFAULT_SOCKET)]
    server: String,
    /// Bearer token (acts in the token's org/project).
    #[arg(long, global = true, env = "FIBERLB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) to verify an https server with.
    #[arg(long, global = true, env = "FIBERLB_CA")]
    ca: Option<PathBuf>,
    /// Organisation (needed without a token).
    #[arg(long, global = true, env = "FIBERLB_ORG", default_value = "")]
    org: String,
    /// Project (needed without a token).
    #[arg(long, global = true, env = "FIBERLB_PROJECT", default_value = "")]
    project: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
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
struct Id {
    id: u32,
}

#[derive(Debug, Subcommand)]
enum LbCmd {
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
enum ListenerCmd {
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
enum PoolCmd {
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
enum BackendCmd {
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
struct HcFields {
    #[arg(long)]
    name: String,
    /// tcp | http | https | udp
    #[arg(long)]
    kind: String,
    #[arg(long, default_value_t = 0)]
    interval_ms: u32,
    #[arg(long, default_value_t = 0)]
    timeout_ms: u32,
    #[arg(long, default_value_t = 0)]
    rise: u32,
    #[arg(long, default_value_t = 0)]
    fall: u32,
    #[arg(long, default_value = "")]
    http_path: String,
    /// Accepted HTTP statuses, e.g. 200-399.
    #[arg(long, default_value = "")]
    expect_status: String,
    /// UDP payload to send (text).
    #[arg(long, default_value = "")]
    udp_payload: String,
    /// UDP reply expected (text; empty: any reply).
    #[arg(long, default_value = "")]
    udp_expect: String,
}

#[derive(Debug, Subcommand)]
enum HcCmd {
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

/// A failure with what to do about it.
#[derive(Debug)]
struct Failure(String);

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let hint = match s.code() {
            Code::Unauthenticated => " (pass a valid --token or set FIBERLB_TOKEN)",
            Code::PermissionDenied => " (the token acts in its own org/project only)",
            // fiberlbd answered, but its store (etcd) did not: the message says so.
            Code::Unavailable if s.message().contains("not saved") => "",
            Code::Unavailable => " (is fiberlbd running? check --server)",
            _ => "",
        };
        Failure(format!("{:?}: {}{hint}", s.code(), s.message()))
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure(format!("{e:#}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let is_diff = matches!(cli.command, Command::Diff { .. });
    match rt.block_on(run(cli)) {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(Failure(m)) => {
            eprintln!("error: {m}");
            // diff: 1 means "differences", so an error is 2 (as kubectl diff).
            if is_diff {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `fiberlbctl completions SHELL` / `fiberlbctl man`: no server needed.
fn generated(command: &Command) -> Option<Result<(), Failure>> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "fiberlbctl", &mut std::io::stdout());
            Some(Ok(()))
        }
        Command::Man => Some(
            clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| Failure(format!("cannot write the manual page: {e}"))),
        ),
        _ => None,
    }
}

/// `fiberlbctl diff`: `Ok(true)` when the file differs from the running configuration.
async fn diff_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    file: &std::path::Path,
    prune: bool,
) -> Result<bool, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let (desired, _) =
        apply::desired_from_yaml(&text).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    let current = apply::current(c, &scope).await?;
    let changes = apply::plan(&desired, &current, prune).map_err(|e| Failure(e.to_string()))?;
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    if out == Output::Json {
        print_json(&DiffReport {
            differences: !lines.is_empty(),
            changes: lines.clone(),
        })?;
    } else {
        for l in &lines {
            out!("{l}");
        }
    }
    Ok(!lines.is_empty())
}

#[derive(Serialize)]
struct DiffReport {
    differences: bool,
    changes: Vec<String>,
}

/// Runs `cli`; `Ok(true)` means "differences found" (`diff`'s exit code 1).
async fn run(cli: Cli) -> Result<bool, Failure> {
    if let Some(r) = generated(&cli.command) {
        return r.map(|()| false);
    }
    // Local parse errors before connecting.
    if let Command::Apply { file, .. } | Command::Diff { file, .. } = &cli.command {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
        apply::desired_from_yaml(&text).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    }
    let mut c = connect(&cli.server, cli.token.as_deref(), cli.ca.as_deref())
        .await
        .map_err(|e| Failure(e.to_string()))?;
    let scope = if cli.org.is_empty() && cli.project.is_empty() {
        None
    } else {
        Some(pb::Scope {
            org_id: cli.org.clone(),
            project_id: cli.project.clone(),
        })
    };
    let out = cli.output;
    if let Command::Diff { file, no_prune } = &cli.command {
        return diff_cmd(&mut c, scope, out, file, !no_prune).await;
    }
    run_command(&mut c, scope, out, cli.command)
        .await
        .map(|()| false)
}

async fn run_command(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Diff { .. } | Command::Completions { .. } | Command::Man => Err(Failure(
            "internal: this command is handled before connecting".into(),
        )),
        Command::LoadBalancer(cmd) => lb_cmd(c, scope, out, cmd).await,
        Command::Listener(cmd) => listener_cmd(c, scope, out, cmd).await,
        Command::Pool(cmd) => pool_cmd(c, scope, out, cmd).await,
        Command::Backend(cmd) => backend_cmd(c, scope, out, cmd).await,
        Command::HealthCheck(cmd) => hc_cmd(c, scope, out, cmd).await,
        Command::Node(cmd) => node::node_cmd(c, out, cmd).await,
        Command::Export => {
            let current = apply::current(c, &scope).await?;
            let origin = scope
                .as_ref()
                .map_or_else(String::new, |s| format!("{}/{}", s.org_id, s.project_id));
            let text = fiberlb_controlplane::api::export::to_services_yaml(
                &current,
                if origin.is_empty() {
                    "this token's scope"
                } else {
                    &origin
                },
            );
            out!("{}", text.trim_end());
            Ok(())
        }
        Command::Apply {
            file,
            dry_run,
            no_prune,
        } => apply_cmd(c, scope, out, &file, dry_run, !no_prune).await,
        Command::Status => {
            let s = c.dataplane.status(pb::StatusRequest {}).await?.into_inner();
            if out == Output::Json {
                return print_json(&s);
            }
            out!("store generation:   {}", s.store_generation);
            if s.attached {
                out!("data plane:         attached (instance {})", s.instance_id);
                match s.synced_store_generation {
                    Some(g) => out!(
                        "data plane holds:   store generation {g} (data plane transaction {})",
                        s.applied_generation
                    ),
                    None => out!(
                        "data plane holds:   not synced yet (data plane transaction {})",
                        s.applied_generation
                    ),
                }
                out!("heartbeat age:      {} ms", s.heartbeat_age_ms);
                if !s.unresolved_backends.is_empty() {
                    out!(
                        "unresolved next hops: {} (no MAC in the neighbour table: no new flows \
                         unless the data plane has a backend gateway MAC)",
                        s.unresolved_backends.join(", ")
                    );
                }
                if s.synced_store_generation != Some(s.store_generation) {
                    out!(
                        "note: the data plane does not hold the latest store generation yet; \
                         `fiberlbctl status` again in a moment, or see fiberlbd's log"
                    );
                }
            } else {
                out!("data plane:         not attached (fiberlbd runs without a data plane)");
            }
            Ok(())
        }
        Command::Stats => {
            let s = c
                .dataplane
                .counters(pb::CountersRequest { scope })
                .await?
                .into_inner();
            if out == Output::Json {
                return print_json(&s);
            }
            if !s.attached {
                out!("no data plane attached: no counters");
                return Ok(());
            }
            out!(
                "rx {} packets ({} bytes), tx {} packets ({} bytes), {} to host, {} dropped",
                s.rx_packets,
                s.rx_bytes,
                s.tx_packets,
                s.tx_bytes,
                s.to_host,
                s.drops
            );
            let rows = |v: &[pb::ObjectCounters]| -> Vec<Vec<String>> {
                v.iter()
                    .map(|o| {
                        vec![
                            o.id.to_string(),
                            o.name.clone(),
                            o.packets.to_string(),
                            o.bytes.to_string(),
                            o.new_flows.to_string(),
                            o.active_flows.to_string(),
                        ]
                    })
                    .collect()
            };
            let h = [
                "ID",
                "NAME",
                "PACKETS",
                "BYTES",
                "NEW FLOWS",
                "ACTIVE FLOWS",
            ];
            out!("\nlisteners");
            table(&h, rows(&s.listeners));
            out!("\nbackends");
            table(&h, rows(&s.backends));
            if !s.workers.is_empty() {
                out!("\nworkers");
                table(
                    &[
                        "WORKER",
                        "RX PACKETS",
                        "RX BYTES",
                        "TX PACKETS",
                        "TX BYTES",
                        "TO HOST",
                        "DROPPED",
                    ],
                    worker_rows(&s.workers),
                );
            }
            match (s.ports_age_ms, s.ports_stale) {
                (None, _) => out!("\nports: none published by the data plane (yet)"),
                (Some(age), true) => out!(
                    "\nports: stale — last published {:.1} s ago, the data plane is not \
                     publishing; old numbers not shown",
                    age as f64 / 1e3
                ),
                (Some(age), false) => {
                    out!("\nports (published {age} ms ago)");
                    table(
                        &[
                            "PORT",
                            "DRIVER",
                            "DEVICE",
                            "LINK",
                            "RX PACKETS",
                            "RX BYTES",
                            "TX PACKETS",
                            "TX BYTES",
                            "RX MISSED",
                            "RX ERRORS",
                            "TX ERRORS",
                            "RX NOMBUF",
                        ],
                        port_rows(&s.ports),
                    );
                    for p in s.ports.iter().filter(|p| !p.error.is_empty()) {
                        out!("  {}: not all counters could be read: {}", p.name, p.error);
                    }
                }
            }
            let (header, rows) = drop_matrix(&s);
            if !rows.is_empty() {
                out!("\ndrops");
                let header: Vec<&str> = header.iter().map(String::as_str).collect();
                table(&header, rows);
            }
            Ok(())
        }
        Command::Top {
            interval,
            once,
            count,
        } => {
            if !(interval.is_finite() && (0.05..=3600.0).contains(&interval)) {
                return Err(Failure(format!(
                    "--interval {interval}: give seconds between 0.05 and 3600"
                )));
            }
            let frames = if once { Some(1) } else { count };
            top(c, scope, out, interval, frames).await
        }
        Command::Lookup { src, dst } => {
            let (src_address, src_port) = parse_endpoint(&src, "SRC")?;
            let (dst_part, protocol) = dst.rsplit_once('/').ok_or_else(|| {
                Failure(format!(
                    "DST {dst:?}: write it as ADDRESS:PORT/PROTO, e.g. 10.10.0.100:80/tcp"
                ))
            })?;
            let (dst_address, dst_port) = parse_endpoint(dst_part, "DST")?;
            let r = c
                .dataplane
                .lookup(pb::LookupRequest {
                    scope,
                    src_address: src_address.to_string(),
                    src_port,
                    dst_address: dst_address.to_string(),
                    dst_port,
                    protocol: protocol.to_string(),
                })
                .await?
                .into_inner();
            if out == Output::Json {
                return print_json(&r);
            }
            let l = r.listener.unwrap_or_default();
            let p = r.pool.unwrap_or_default();
            out!(
                "listener: {} ({} {}/{} -> pool {})",
                l.id,
                l.mode,
                l.port,
                l.protocol,
                l.pool_id
            );
            out!(
                "pool:     {} {:?} ({}, table {})",
                p.id,
                p.name,
                p.algorithm,
                p.table_size
            );
            out!("hash:     {:#018x} -> slot {}", r.flow_hash, r.table_slot);
            match r.backend {
                Some(b) => out!(
                    "backend:  {} {}:{} (weight {}, {})",
                    b.id,
                    b.address,
                    b.port,
                    b.weight,
                    b.admin_state
                ),
                None => {
                    out!("backend:  none: the pool has no usable backend (packets are dropped)")
                }
            }
            out!("(the Maglev choice for a new flow at generation {}; an established flow keeps its backend)", r.generation);
            Ok(())
        }
    }
}

fn parse_endpoint(s: &str, what: &str) -> Result<(IpAddr, u32), Failure> {
    let bad = || {
        Failure(format!(
            "{what} {s:?}: write it as ADDRESS:PORT, e.g. 198.51.100.7:40000 or [2001:db8::7]:40000"
        ))
    };
    let sa: std::net::SocketAddr = s.parse().map_err(|_| bad())?;
    Ok((sa.ip(), u32::from(sa.port())))
}

fn print_json<T: Serialize>(v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Failure(e.to_string()))?;
    out!("{s}");
    Ok(())
}

fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.len());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w.get(i).copied().unwrap_or(0)))
            .collect();
        out!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn show<T: Serialize>(
    out: Output,
    v: &T,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<(), Failure> {
    match out {
        Output::Json => print_json(v),
        Output::Table => {
            table(header, rows);
            Ok(())
        }
    }
}

const LB_H: &[&str] = &["ID", "NAME", "VIP", "ALLOCATED", "DESCRIPTION"];
fn lb_row(l: &pb::LoadBalancer) -> Vec<String> {
    vec![
        l.id.to_string(),
        l.name.clone(),
        l.vip.clone(),
        l.vip_allocated.to_string(),
        l.description.clone(),
    ]
}
const LISTENER_H: &[&str] = &["ID", "LB", "PORT", "PROTOCOL", "MODE", "ENCAP", "POOL"];
fn listener_row(l: &pb::Listener) -> Vec<String> {
    vec![
        l.id.to_string(),
        l.load_balancer_id.to_string(),
        l.port.to_string(),
        l.protocol.clone(),
        l.mode.clone(),
        if l.mode == "tunnel" {
            l.encap.clone()
        } else {
            "-".into()
        },
        l.pool_id.to_string(),
    ]
}
const POOL_H: &[&str] = &["ID", "NAME", "ALGORITHM", "TABLE", "HEALTH CHECK"];
fn pool_row(p: &pb::Pool) -> Vec<String> {
    vec![
        p.id.to_string(),
        p.name.clone(),
        p.algorithm.clone(),
        p.table_size.to_string(),
        if p.health_check_id == 0 {
            "-".into()
        } else {
            p.health_check_id.to_string()
        },
    ]
}
const BACKEND_H: &[&str] = &[
    "ID", "POOL", "ADDRESS", "PORT", "WEIGHT", "MAC", "STATE", "HEALTHY", "NEXT-HOP",
];
fn backend_row(b: &pb::Backend) -> Vec<String> {
    vec![
        b.id.to_string(),
        b.pool_id.to_string(),
        b.address.clone(),
        b.port.to_string(),
        b.weight.to_string(),
        if b.mac.is_empty() {
            "-".into()
        } else {
            b.mac.clone()
        },
        b.admin_state.clone(),
        b.healthy.to_string(),
        if b.next_hop.is_empty() {
            "-".into()
        } else {
            b.next_hop.clone()
        },
    ]
}
const HC_H: &[&str] = &[
    "ID", "NAME", "KIND", "INTERVAL", "TIMEOUT", "RISE", "FALL", "DETAIL",
];
fn hc_row(h: &pb::HealthCheck) -> Vec<String> {
    let detail = match h.kind.as_str() {
        "http" | "https" => format!(
            "GET {} expect {}-{}",
            h.http_path, h.expected_status_min, h.expected_status_max
        ),
        "udp" => format!("{} byte payload", h.udp_payload.len()),
        _ => "connect".into(),
    };
    vec![
        h.id.to_string(),
        h.name.clone(),
        h.kind.clone(),
        format!("{}ms", h.interval_ms),
        format!("{}ms", h.timeout_ms),
        h.rise.to_string(),
        h.fall.to_string(),
        detail,
    ]
}

fn deleted(out: Output, kind: &str, id: u32, r: pb::DeleteResponse) -> Result<(), Failure> {
    match out {
        Output::Json => print_json(&r),
        Output::Table => {
            out!("deleted {kind} {id} (generation {})", r.generation);
            Ok(())
        }
    }
}

async fn lb_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: LbCmd,
) -> Result<(), Failure> {
    let one = |r: pb::LoadBalancerReply| {
        let l = r.load_balancer.clone().unwrap_or_default();
        show(out, &r, LB_H, vec![lb_row(&l)])
    };
    match cmd {
        LbCmd::List => {
            let r = c
                .load_balancers
                .list(pb::ListRequest {
                    scope,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(out, &r, LB_H, r.load_balancers.iter().map(lb_row).collect())
        }
        LbCmd::Get(Id { id }) => one(c
            .load_balancers
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        LbCmd::Create {
            name,
            vip,
            family,
            description,
        } => one(c
            .load_balancers
            .create(pb::CreateLoadBalancerRequest {
                scope,
                name,
                vip: vip.unwrap_or_default(),
                vip_family: family,
                description,
            })
            .await?
            .into_inner()),
        LbCmd::Update {
            id,
            name,
            description,
        } => one(c
            .load_balancers
            .update(pb::UpdateLoadBalancerRequest {
                scope,
                id,
                name,
                description,
            })
            .await?
            .into_inner()),
        LbCmd::Delete(Id { id }) => {
            let r = c
                .load_balancers
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "load balancer", id, r)
        }
    }
}

async fn listener_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: ListenerCmd,
) -> Result<(), Failure> {
    let one = |r: pb::ListenerReply| {
        let l = r.listener.clone().unwrap_or_default();
        show(out, &r, LISTENER_H, vec![listener_row(&l)])
    };
    match cmd {
        ListenerCmd::List { lb } => {
            let r = c
                .listeners
                .list(pb::ListRequest {
                    scope,
                    load_balancer_id: lb,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(
                out,
                &r,
                LISTENER_H,
                r.listeners.iter().map(listener_row).collect(),
            )
        }
        ListenerCmd::Get(Id { id }) => one(c
            .listeners
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        ListenerCmd::Create {
            lb,
            port,
            protocol,
            mode,
            encap,
            pool,
        } => one(c
            .listeners
            .create(pb::CreateListenerRequest {
                scope,
                load_balancer_id: lb,
                port,
                protocol,
                mode,
                encap,
                pool_id: pool,
            })
            .await?
            .into_inner()),
        ListenerCmd::Update {
            id,
            mode,
            encap,
            pool,
        } => one(c
            .listeners
            .update(pb::UpdateListenerRequest {
                scope,
                id,
                mode,
                encap,
                pool_id: pool,
            })
            .await?
            .into_inner()),
        ListenerCmd::Delete(Id { id }) => {
            let r = c
                .listeners
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "listener", id, r)
        }
    }
}

async fn pool_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: PoolCmd,
) -> Result<(), Failure> {
    let one = |r: pb::PoolReply| {
        let p = r.pool.clone().unwrap_or_default();
        show(out, &r, POOL_H, vec![pool_row(&p)])
    };
    match cmd {
        PoolCmd::List => {
            let r = c
                .pools
                .list(pb::ListRequest {
                    scope,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(out, &r, POOL_H, r.pools.iter().map(pool_row).collect())
        }
        PoolCmd::Get(Id { id }) => one(c
            .pools
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        PoolCmd::Create {
            name,
            algorithm,
            table_size,
            health_check,
        } => one(c
            .pools
            .create(pb::CreatePoolRequest {
                scope,
                name,
                algorithm,
                table_size,
                health_check_id: health_check,
            })
            .await?
            .into_inner()),
        PoolCmd::Update {
            id,
            name,
            algorithm,
            table_size,
            health_check,
        } => one(c
            .pools
            .update(pb::UpdatePoolRequest {
                scope,
                id,
                name,
                algorithm,
                table_size,
                health_check_id: health_check,
            })
            .await?
            .into_inner()),
        PoolCmd::Delete(Id { id }) => {
            let r = c
                .pools
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "pool", id, r)
        }
    }
}

async fn backend_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: BackendCmd,
) -> Result<(), Failure> {
    let one = |r: pb::BackendReply| {
        let b = r.backend.clone().unwrap_or_default();
        show(out, &r, BACKEND_H, vec![backend_row(&b)])
    };
    match cmd {
        BackendCmd::List { pool } => {
            let r = c
                .backends
                .list(pb::ListRequest {
                    scope,
                    pool_id: pool,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(
                out,
                &r,
                BACKEND_H,
                r.backends.iter().map(backend_row).collect(),
            )
        }
        BackendCmd::Get(Id { id }) => one(c
            .backends
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        BackendCmd::Create {
            pool,
            address,
            port,
            weight,
            mac,
            state,
        } => one(c
            .backends
            .create(pb::CreateBackendRequest {
                scope,
                pool_id: pool,
                address,
                port,
                weight,
                mac,
                admin_state: state,
            })
            .await?
            .into_inner()),
        BackendCmd::Update {
            id,
            weight,
            mac,
            state,
        } => one(c
            .backends
            .update(pb::UpdateBackendRequest {
                scope,
                id,
                weight,
                mac,
                admin_state: state,
            })
            .await?
            .into_inner()),
        BackendCmd::Register {
            pool,
            address,
            port,
            weight,
            mac,
            ttl,
            keep_alive,
        } => {
            register::register(
                c,
                scope,
                out,
                register::Register {
                    pool,
                    address,
                    port,
                    weight,
                    mac,
                    ttl_ms: ttl,
                    keep_alive,
                },
            )
            .await
        }
        BackendCmd::KeepAlive { lease } => register::keep_alive(c, scope, out, lease).await,
        BackendCmd::Delete(Id { id }) => {
            let r = c
                .backends
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "backend", id, r)
        }
    }
}

fn hc_message(id: u32, f: HcFields) -> Result<pb::HealthCheck, Failure> {
    let (min, max) = match f.expect_status.as_str() {
        "" => (0, 0),
        s => {
            let bad = || Failure(format!("--expect-status {s:?}: write it as 200-399 or 200"));
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            )
        }
    };
    Ok(pb::HealthCheck {
        id,
        name: f.name,
        kind: f.kind,
        interval_ms: f.interval_ms,
        timeout_ms: f.timeout_ms,
        rise: f.rise,
        fall: f.fall,
        http_path: f.http_path,
        expected_status_min: min,
        expected_status_max: max,
        udp_payload: f.udp_payload.into_bytes(),
        udp_expected_reply: f.udp_expect.into_bytes(),
        ..Default::default()
    })
}

async fn hc_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: HcCmd,
) -> Result<(), Failure> {
    let one = |r: pb::HealthCheckReply| {
        let h = r.health_check.clone().unwrap_or_default();
        show(out, &r, HC_H, vec![hc_row(&h)])
    };
    match cmd {
        HcCmd::List => {
            let r = c
                .health_checks
                .list(pb::ListRequest {
                    scope,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(out, &r, HC_H, r.health_checks.iter().map(hc_row).collect())
        }
        HcCmd::Get(Id { id }) => one(c
            .health_checks
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        HcCmd::Create(f) => one(c
            .health_checks
            .create(pb::CreateHealthCheckRequest {
                scope,
                health_check: Some(hc_message(0, f)?),
            })
            .await?
            .into_inner()),
        HcCmd::Update { id, fields } => one(c
            .health_checks
            .update(pb::UpdateHealthCheckRequest {
                scope,
                health_check: Some(hc_message(id, fields)?),
            })
            .await?
            .into_inner()),
        HcCmd::Delete(Id { id }) => {
            let r = c
                .health_checks
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "health check", id, r)
        }
    }
}

#[derive(Serialize)]
struct ApplyReport {
    dry_run: bool,
    changes: Vec<String>,
}

async fn apply_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    file: &std::path::Path,
    dry_run: bool,
    prune: bool,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let (desired, set) =
        apply::desired_from_yaml(&text).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    if set.tunnel != Default::default() && out == Output::Table {
        eprintln!(
            "note: the file's tunnel section is node-wide and is not applied; set [tunnel] in the \
             fiberlbd config instead"
        );
    }
    let current = apply::current(c, &scope).await?;
    let changes = apply::plan(&desired, &current, prune).map_err(|e| Failure(e.to_string()))?;
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    if dry_run {
        if out == Output::Json {
            return print_json(&ApplyReport {
                dry_run,
                changes: lines,
            });
        }
        if lines.is_empty() {
            out!("no changes");
        }
        for l in &lines {
            out!("{l} (dry run)");
        }
        return Ok(());
    }
    let table_out = out == Output::Table;
    apply::execute(c, &scope, &current, &changes, |ch| {
        if table_out {
            out!("{ch}");
        }
    })
    .await
    .map_err(|e| Failure(format!("{e}; the changes listed above were made")))?;
    if out == Output::Json {
        return print_json(&ApplyReport {
            dry_run,
            changes: lines,
        });
    }
    if lines.is_empty() {
        out!("no changes");
    }
    Ok(())
}

/// `fiberlbctl stats` per-worker rows.
fn worker_rows(workers: &[pb::WorkerCounters]) -> Vec<Vec<String>> {
    workers
        .iter()
        .map(|w| {
            vec![
                w.worker.to_string(),
                w.rx_packets.to_string(),
                w.rx_bytes.to_string(),
                w.tx_packets.to_string(),
                w.tx_bytes.to_string(),
                w.to_host.to_string(),
                w.drops.to_string(),
            ]
        })
        .collect()
}

/// `fiberlbctl stats` ports table rows: link as "up 10G" / "up 100M" / "up" / "down", "-"
/// where a driver has no such counter.
fn port_rows(ports: &[pb::PortCounters]) -> Vec<Vec<String>> {
    ports
        .iter()
        .map(|p| {
            let link = match (p.link_up, p.speed_mbps) {
                (false, _) => "down".to_string(),
                (true, Some(s)) if s >= 1000 && s % 1000 == 0 => format!("up {}G", s / 1000),
                (true, Some(s)) => format!("up {s}M"),
                (true, None) => "up".to_string(),
            };
            vec![
                p.name.clone(),
                p.driver.clone(),
                p.device.clone(),
                link,
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                p.rx_missed.to_string(),
                p.rx_errors.to_string(),
                p.tx_errors.to_string(),
                p.rx_nombuf.map_or("-".to_string(), |v| v.to_string()),
            ]
        })
        .collect()
}

/// `fiberlbctl stats` drops table: a row per reason that dropped anything, its total, then a
/// column per worker.
fn drop_matrix(s: &pb::CountersResponse) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["REASON".to_string(), "TOTAL".to_string()];
    header.extend(s.workers.iter().map(|w| format!("W{}", w.worker)));
    let rows = s
        .drops_by_reason
        .iter()
        .map(|d| {
            let mut r = vec![d.reason.clone(), d.packets.to_string()];
            r.extend(s.workers.iter().map(|w| {
                w.drops_by_reason
                    .iter()
                    .find(|x| x.reason == d.reason)
                    .map_or(0, |x| x.packets)
                    .to_string()
            }));
            r
        })
        .collect();
    (header, rows)
}

/// One sample of what `top` shows.
struct TopSample {
    at: std::time::Instant,
    status: pb::StatusResponse,
    counters: pb::CountersResponse,
    backends: Vec<pb::Backend>,
}

async fn top_sample(c: &mut Clients, scope: &Option<pb::Scope>) -> Result<TopSample, Failure> {
    let status = c.dataplane.status(pb::StatusRequest {}).await?.into_inner();
    let counters = c
        .dataplane
        .counters(pb::CountersRequest {
            scope: scope.clone(),
        })
        .await?
        .into_inner();
    let backends = c
        .backends
        .list(pb::ListRequest {
            scope: scope.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .backends;
    Ok(TopSample {
        at: std::time::Instant::now(),
        status,
        counters,
        backends,
    })
}

/// A rate from two counter readings; a counter that went back (the data plane restarted)
/// restarts from zero.
fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.checked_sub(before).unwrap_or(now) as f64 / secs
}

/// 1234567 -> "1.23M" (SI, for pps and bps columns).
fn si(v: f64) -> String {
    let (d, unit) = match v.abs() {
        x if x >= 1e9 => (1e9, "G"),
        x if x >= 1e6 => (1e6, "M"),
        x if x >= 1e3 => (1e3, "k"),
        _ => return format!("{v:.0}"),
    };
    format!("{:.2}{unit}", v / d)
}

#[derive(Serialize)]
struct TopObject {
    id: u32,
    name: String,
    pps: f64,
    bps: f64,
    new_flows_per_s: f64,
    packets: u64,
    /// Live flows now (a gauge, not a rate).
    active_flows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthy: Option<bool>,
}

#[derive(Serialize)]
struct TopFrame {
    attached: bool,
    instance_id: String,
    store_generation: u64,
    applied_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    synced_store_generation: Option<u64>,
    interval_s: f64,
    rx_pps: f64,
    tx_pps: f64,
    drops_per_s: f64,
    listeners: Vec<TopObject>,
    backends: Vec<TopObject>,
    drops: Vec<TopDrop>,
}

#[derive(Debug, PartialEq, Serialize)]
struct TopDrop {
    reason: String,
    total: u64,
    per_second: f64,
}

fn top_frame(before: &TopSample, now: &TopSample) -> TopFrame {
    let secs = now.at.duration_since(before.at).as_secs_f64();
    let (b, n) = (&before.counters, &now.counters);
    let objects = |now: &[pb::ObjectCounters], before: &[pb::ObjectCounters]| -> Vec<TopObject> {
        let mut v: Vec<TopObject> = now
            .iter()
            .map(|o| {
                let p = before
                    .iter()
                    .find(|p| p.id == o.id)
                    .cloned()
                    .unwrap_or_default();
                TopObject {
                    id: o.id,
                    name: o.name.clone(),
                    pps: rate(o.packets, p.packets, secs),
                    bps: rate(o.bytes, p.bytes, secs) * 8.0,
                    new_flows_per_s: rate(o.new_flows, p.new_flows, secs),
                    packets: o.packets,
                    active_flows: o.active_flows,
                    admin_state: None,
                    healthy: None,
                }
            })
            .collect();
        v.sort_by_key(|o| o.id);
        v
    };
    let mut backends = objects(&n.backends, &b.backends);
    for o in &mut backends {
        if let Some(b) = now.backends.iter().find(|b| b.id == o.id) {
            o.admin_state = Some(b.admin_state.clone());
            o.healthy = Some(b.healthy);
        }
    }
    let drops = n
        .drops_by_reason
        .iter()
        .map(|d| {
            let p = b
                .drops_by_reason
                .iter()
                .find(|p| p.reason == d.reason)
                .map_or(0, |p| p.packets);
            TopDrop {
                reason: d.reason.clone(),
                total: d.packets,
                per_second: rate(d.packets, p, secs),
            }
        })
        .collect();
    TopFrame {
        attached: n.attached,
        instance_id: now.status.instance_id.clone(),
        store_generation: now.status.store_generation,
        applied_generation: now.status.applied_generation,
        synced_store_generation: now.status.synced_store_generation,
        interval_s: secs,
        rx_pps: rate(n.rx_packets, b.rx_packets, secs),
        tx_pps: rate(n.tx_packets, b.tx_packets, secs),
        drops_per_s: rate(n.drops, b.drops, secs),
        listeners: objects(&n.listeners, &b.listeners),
        backends,
        drops,
    }
}

fn print_top(f: &TopFrame) {
    if !f.attached {
        out!(
            "fiberlb top  store generation {}  data plane: not attached (no counters)",
            f.store_generation
        );
        return;
    }
    let short = f.instance_id.get(..8).unwrap_or(&f.instance_id);
    let synced = match f.synced_store_generation {
        Some(g) if g == f.store_generation => format!("store generation {g}, in sync"),
        Some(g) => format!("holds store generation {g} of {}", f.store_generation),
        None => format!("not synced yet (store generation {})", f.store_generation),
    };
    out!(
        "fiberlb top  data plane {short}  {synced}  rx {} pps  tx {} pps  drops {}/s  (over {:.1}s)",
        si(f.rx_pps),
        si(f.tx_pps),
        si(f.drops_per_s),
        f.interval_s
    );
    let rows = |v: &[TopObject], backend: bool| -> Vec<Vec<String>> {
        v.iter()
            .map(|o| {
                let mut r = vec![o.id.to_string(), o.name.clone()];
                if backend {
                    r.push(o.admin_state.clone().unwrap_or_else(|| "-".into()));
                    r.push(match o.healthy {
                        Some(true) => "up".into(),
                        Some(false) => "DOWN".into(),
                        None => "-".into(),
                    });
                }
                r.extend([
                    si(o.pps),
                    si(o.bps),
                    si(o.new_flows_per_s),
                    si(o.active_flows as f64),
                    o.packets.to_string(),
                ]);
                r
            })
            .collect()
    };
    out!("");
    table(
        &[
            "LISTENER", "NAME", "PPS", "BPS", "NEW/S", "ACTIVE", "PACKETS",
        ],
        rows(&f.listeners, false),
    );
    out!("");
    table(
        &[
            "BACKEND", "ADDRESS", "STATE", "HEALTH", "PPS", "BPS", "NEW/S", "ACTIVE", "PACKETS",
        ],
        rows(&f.backends, true),
    );
    out!("");
    if f.drops.is_empty() {
        out!("drops: none");
    } else {
        table(
            &["DROP REASON", "TOTAL", "PER SECOND"],
            f.drops
                .iter()
                .map(|d| vec![d.reason.clone(), d.total.to_string(), si(d.per_second)])
                .collect(),
        );
    }
}

/// `fiberlbctl top`: a baseline sample, then a frame per interval (rates over that interval).
async fn top(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    interval: f64,
    frames: Option<u64>,
) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    let tty = out == Output::Table && std::io::stdout().is_terminal();
    let period = std::time::Duration::from_secs_f64(interval);
    let mut before = top_sample(c, &scope).await?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    while frames.is_none_or(|n| shown < n) {
        ticker.tick().await;
        let now = top_sample(c, &scope).await?;
        let frame = top_frame(&before, &now);
        match out {
            Output::Json => {
                let s = serde_json::to_string(&frame).map_err(|e| Failure(e.to_string()))?;
                out!("{s}");
            }
            Output::Table => {
                if tty {
                    // Home and clear, so the view updates in place.
                    print!("\x1b[H\x1b[2J");
                } else if shown > 0 {
                    out!("");
                }
                print_top(&frame);
            }
        }
        shown += 1;
        before = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: std::time::Instant, packets: u64, bytes: u64, drops: u64) -> TopSample {
        let o = |id| pb::ObjectCounters {
            id,
            name: format!("o{id}"),
            packets,
            bytes,
            new_flows: packets / 10,
            active_flows: packets / 100 + u64::from(id),
        };
        TopSample {
            at,
            status: pb::StatusResponse {
                attached: true,
                instance_id: "0123456789abcdef".into(),
                ..Default::default()
            },
            counters: pb::CountersResponse {
                attached: true,
                rx_packets: packets * 2,
                tx_packets: packets * 2,
                drops,
                listeners: vec![o(1)],
                backends: vec![o(3), o(2)],
                drops_by_reason: vec![pb::DropCount {
                    reason: "no_backend".into(),
                    packets: drops,
                }],
                ..Default::default()
            },
            backends: vec![pb::Backend {
                id: 2,
                admin_state: "drained".into(),
                healthy: false,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn frame_rates_are_deltas_over_the_interval() {
        let t0 = std::time::Instant::now();
        let before = sample(t0, 100, 10_000, 5);
        let now = sample(t0 + std::time::Duration::from_secs(2), 300, 30_000, 9);
        let f = top_frame(&before, &now);
        assert_eq!(f.rx_pps, 200.0);
        assert_eq!(f.drops_per_s, 2.0);
        assert_eq!(f.listeners[0].pps, 100.0);
        assert_eq!(f.listeners[0].bps, 80_000.0);
        assert_eq!(f.listeners[0].new_flows_per_s, 10.0);
        // Active flows are the latest gauge, not a rate.
        assert_eq!(f.listeners[0].active_flows, 4);
        // Sorted by id, health and admin state folded in from the backend list.
        assert_eq!(f.backends.iter().map(|b| b.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(f.backends[0].healthy, Some(false));
        assert_eq!(f.backends[0].admin_state.as_deref(), Some("drained"));
        assert_eq!(f.backends[1].healthy, None);
        assert_eq!(
            f.drops,
            vec![TopDrop {
                reason: "no_backend".into(),
                total: 9,
                per_second: 2.0
            }]
        );
    }

    #[test]
    fn stats_worker_and_drop_tables() {
        let w = |worker: u32, tx_full: u64| pb::WorkerCounters {
            worker,
            rx_packets: 10 + u64::from(worker),
            rx_bytes: 640,
            tx_packets: 9,
            tx_bytes: 576,
            to_host: 1,
            drops: tx_full + 1,
            drops_by_reason: [("no_listener", 1), ("tx_ring_full", tx_full)]
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(r, v)| pb::DropCount {
                    reason: r.into(),
                    packets: v,
                })
                .collect(),
        };
        let s = pb::CountersResponse {
            attached: true,
            drops_by_reason: vec![
                pb::DropCount {
                    reason: "no_listener".into(),
                    packets: 2,
                },
                pb::DropCount {
                    reason: "tx_ring_full".into(),
                    packets: 3,
                },
            ],
            workers: vec![w(0, 0), w(1, 3)],
            ..Default::default()
        };
        assert_eq!(
            worker_rows(&s.workers)[1],
            ["1", "11", "640", "9", "576", "1", "4"]
        );
        let (header, rows) = drop_matrix(&s);
        assert_eq!(header, ["REASON", "TOTAL", "W0", "W1"]);
        assert_eq!(
            rows,
            vec![
                vec!["no_listener", "2", "1", "1"],
                vec!["tx_ring_full", "3", "0", "3"]
            ]
        );
    }

    #[test]
    fn stats_port_rows() {
        let ports = [
            pb::PortCounters {
                name: "client".into(),
                driver: "dpdk".into(),
                device: "0000:01:00.0".into(),
                link_up: true,
                speed_mbps: Some(25_000),
                rx_packets: 5,
                rx_missed: 2,
                rx_nombuf: Some(1),
                ..Default::default()
            },
            pb::PortCounters {
                name: "backend".into(),
                driver: "afxdp".into(),
                device: "eth1".into(),
                link_up: false,
                ..Default::default()
            },
        ];
        let rows = port_rows(&ports);
        assert_eq!(
            rows[0],
            [
                "client",
                "dpdk",
                "0000:01:00.0",
                "up 25G",
                "5",
                "0",
                "0",
                "0",
                "2",
                "0",
                "0",
                "1"
            ]
        );
        assert_eq!(rows[1][3], "down");
        assert_eq!(rows[1][11], "-");
    }

    #[test]
    fn counters_that_went_back_restart_from_zero() {
        // A restarted data plane starts its counters again: the rate is over the new count.
        assert_eq!(rate(50, 1_000, 1.0), 50.0);
        assert_eq!(rate(1_500, 1_000, 0.5), 1_000.0);
        assert_eq!(rate(10, 0, 0.0), 0.0);
    }

    #[test]
    fn si_units() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1_500.0), "1.50k");
        assert_eq!(si(2_345_678.0), "2.35M");
        assert_eq!(si(3e9), "3.00G");
    }
}
