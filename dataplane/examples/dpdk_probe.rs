//! Starts the EAL and one port as dataplane.toml would, and prints the port (driver, queues,
//! RSS, link, MAC, counters) or the error. Used by `tests/tests/dpdk_errors.rs` to check that
//! bad setups give clear errors, not crashes (each EAL needs its own process).
//!
//! ```text
//! dpdk_probe [--no-huge] [--memory-mb N] [--vdev SPEC]... [--pci ADDR]... --port NAME [--queues N]
//! ```
//! Prints `OK ...` and exits 0, or `ERROR <message>` and exits 2.

use fiberlb_dataplane::nic::dpdk::{DpdkError, Eal, EalConfig, Port, PortConfig};

fn run() -> Result<String, DpdkError> {
    let mut cfg = EalConfig {
        log_level: Some("notice".into()),
        ..EalConfig::default()
    };
    let mut port = String::new();
    let mut queues = 1u16;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| DpdkError::InvalidConfig(format!("{a} needs a value")))
        };
        match a.as_str() {
            "--no-huge" => cfg.no_huge = true,
            "--memory-mb" => {
                cfg.memory_mb = Some(
                    val()?
                        .parse()
                        .map_err(|_| DpdkError::InvalidConfig("bad --memory-mb".into()))?,
                )
            }
            "--vdev" => cfg.vdevs.push(val()?),
            "--pci" => cfg.pci_allow.push(val()?),
            "--port" => port = val()?,
            "--queues" => {
                queues = val()?
                    .parse()
                    .map_err(|_| DpdkError::InvalidConfig("bad --queues".into()))?
            }
            other => {
                return Err(DpdkError::InvalidConfig(format!(
                    "unknown argument {other}"
                )))
            }
        }
    }
    let eal = Eal::init(&cfg)?;
    let pools = eal.pools(4095)?;
    let p = Port::start(&eal, &pools, &PortConfig::new(&port, queues))?;
    let link = p.link();
    let stats = p.stats()?;
    let mac = p.mac();
    Ok(format!(
        "OK port={} id={} driver={} queues={} rss={} link_up={} speed={} mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} rx={} tx={}",
        p.name(),
        p.id(),
        p.driver(),
        p.queues(),
        p.rss(),
        link.up,
        link.speed_mbps,
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5],
        stats.rx_packets,
        stats.tx_packets
    ))
}

fn main() {
    match run() {
        Ok(s) => println!("{s}"),
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(2);
        }
    }
}
