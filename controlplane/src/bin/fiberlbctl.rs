//! fiberlbctl: the command line of fiberlb's control plane. Every API operation, human tables by
//! default and `-o json`, `apply -f services.yaml`, `status`, `stats`, a live `top` and `lookup`
//! (`trace`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use fiberlb_controlplane::api::apply;
use fiberlb_controlplane::api::client::{connect, Clients};
use fiberlb_controlplane::pb;

/// `println!` that ends the program quietly when stdout is closed (`fiberlbctl ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[path = "fiberlbctl/apply_cmd.rs"]
mod apply_cmd;
#[path = "fiberlbctl/cli.rs"]
mod cli;
#[path = "fiberlbctl/node.rs"]
mod node;
#[path = "fiberlbctl/objects.rs"]
mod objects;
#[path = "fiberlbctl/output.rs"]
mod output;
#[path = "fiberlbctl/register.rs"]
mod register;
#[path = "fiberlbctl/top.rs"]
mod top;

use apply_cmd::*;
use cli::*;
use objects::*;
use output::*;
use top::*;

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
            )
            .map_err(|e| Failure(format!("cannot export: {e}")))?;
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
