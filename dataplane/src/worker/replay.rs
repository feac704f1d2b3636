//! Offline replay: a pcap capture run through the pipeline on the calling thread (the main
//! thread of the `replay` subcommand), writing what comes out to another capture.
//!
//! Reads classic pcap files (microsecond or nanosecond, either byte order) with Ethernet
//! link type, feeds them through a [`MemoryPort`] in bursts exactly as a NIC queue would,
//! and writes every transmitted packet to an output capture with the input's timestamp.
//! Packets sent towards backends and towards clients go to the same output (one port).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;

use crate::nic::memory::{MemoryPort, DEFAULT_CHUNK, DEFAULT_HEADROOM};
use crate::packet::{Burst, Desc};
use crate::pipeline::{DropReason, Pipeline, Verdict, BURST};
use crate::snapshot::Snapshot;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("{path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap file ({source}); pcapng is not supported: convert with `editcap -F pcap in.pcapng out.pcap`")]
    Format {
        path: String,
        source: pcap_file::PcapError,
    },
    #[error("{path}: link type {linktype:?} is not Ethernet")]
    LinkType { path: String, linktype: DataLink },
    #[error("{path}: packet {index}: {source}")]
    Read {
        path: String,
        index: u64,
        source: pcap_file::PcapError,
    },
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: pcap_file::PcapError,
    },
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayStats {
    /// Packets read from the capture.
    pub read: u64,
    /// Packets longer than a frame (skipped, counted here, never fed to the pipeline).
    pub oversized: u64,
    /// Packets written to the output.
    pub written: u64,
}

/// Replays `input` through `pipeline` with `snap`, writing output packets to `output`.
/// The clock the flow table sees is the capture's own timestamps.
///
/// # Errors
/// When a file cannot be opened, read or written, or is not an Ethernet pcap.
pub fn replay_files(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    input: &Path,
    output: &Path,
) -> Result<ReplayStats, PcapError> {
    let ipath = input.display().to_string();
    let opath = output.display().to_string();
    let f = File::open(input).map_err(|source| PcapError::Open {
        path: ipath.clone(),
        source,
    })?;
    let o = File::create(output).map_err(|source| PcapError::Open {
        path: opath.clone(),
        source,
    })?;
    replay(
        pipeline,
        snap,
        BufReader::new(f),
        BufWriter::new(o),
        &ipath,
        &opath,
    )
}

/// [`replay_files`] over any reader and writer.
///
/// # Errors
/// As [`replay_files`].
pub fn replay<R: Read, W: Write>(
    pipeline: &mut Pipeline,
    snap: &Snapshot,
    input: R,
    output: W,
    ipath: &str,
    opath: &str,
) -> Result<ReplayStats, PcapError> {
    let mut reader = PcapReader::new(input).map_err(|source| PcapError::Format {
        path: ipath.to_string(),
        source,
    })?;
    let header = reader.header();
    if header.datalink != DataLink::ETHERNET {
        return Err(PcapError::LinkType {
            path: ipath.to_string(),
            linktype: header.datalink,
        });
    }
    let out_header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: header.ts_resolution,
        ..PcapHeader::default()
    };
    let mut writer =
        PcapWriter::with_header(output, out_header).map_err(|source| PcapError::Write {
            path: opath.to_string(),
            source,
        })?;
    let mut port = MemoryPort::new(BURST, DEFAULT_CHUNK, DEFAULT_HEADROOM);
    let mut stats = ReplayStats::default();
    let mut stamps = [Duration::ZERO; BURST];
    let mut first: Option<Duration> = None;
    let mut index = 0u64;
    loop {
        // Fill one burst.
        let mut n = 0;
        while n < BURST {
            let Some(pkt) = reader.next_packet() else {
                break;
            };
            index += 1;
            let pkt = pkt.map_err(|source| PcapError::Read {
                path: ipath.to_string(),
                index,
                source,
            })?;
            stats.read += 1;
            if port.inject(&pkt.data).is_err() {
                stats.oversized += 1;
                continue;
            }
            if let Some(s) = stamps.get_mut(n) {
                *s = pkt.timestamp;
            }
            first.get_or_insert(pkt.timestamp);
            n += 1;
        }
        if n == 0 {
            break;
        }
        let mut descs = [Desc::default(); BURST];
        let got = port.rx_burst(&mut descs).min(BURST);
        let now = stamps[0]
            .saturating_sub(first.unwrap_or_default())
            .as_millis() as u32;
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); BURST];
        // `got <= BURST`: both are in bounds.
        let (Some(descs), Some(verdicts)) = (descs.get_mut(..got), verdicts.get_mut(..got)) else {
            break;
        };
        {
            let mut burst = port.burst(descs);
            let done = pipeline.process_burst(snap, &mut burst, verdicts, now);
            debug_assert_eq!(done, got);
            let _ = burst.len();
        }
        for (d, v) in descs.iter().zip(verdicts.iter()) {
            match v {
                Verdict::ToBackend | Verdict::ToClient => port.transmit(*d),
                Verdict::ToHost | Verdict::Drop(_) => port.free(*d),
            }
        }
        let mut k = 0;
        let mut werr = None;
        let tx_stamps: Vec<Duration> = verdicts
            .iter()
            .zip(stamps)
            .filter(|(v, _)| matches!(v, Verdict::ToBackend | Verdict::ToClient))
            .map(|(_, s)| s)
            .collect();
        port.drain_tx(|bytes| {
            if werr.is_some() {
                return;
            }
            let ts = tx_stamps.get(k).copied().unwrap_or_default();
            k += 1;
            let p = PcapPacket::new(ts, bytes.len() as u32, bytes);
            if let Err(e) = writer.write_packet(&p) {
                werr = Some(e);
            }
        });
        if let Some(source) = werr {
            return Err(PcapError::Write {
                path: opath.to_string(),
                source,
            });
        }
        stats.written += k as u64;
    }
    writer.into_writer().flush().map_err(|e| PcapError::Write {
        path: opath.to_string(),
        source: pcap_file::PcapError::IoError(e),
    })?;
    Ok(stats)
}
