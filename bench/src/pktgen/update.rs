//! Update latency: the time from the `Commit` of a configuration transaction to the data
//! plane's `Applied` reply. The data plane's control thread sends `Applied` only after every
//! worker has passed a quiescent point on the new snapshot, so this is commit → every worker
//! using it. Alternating service files swaps the Maglev tables under whatever load runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fiberlb_shared::shm::channel::SendError;
use fiberlb_shared::shm::message::Message;
use fiberlb_shared::shm::region::Region;
use fiberlb_shared::shm::ring::RingError;
use fiberlb_shared::shm::transaction::full_replay;
use serde::{Deserialize, Serialize};

/// Latencies of a series of updates.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UpdateResult {
    pub updates: usize,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Every update's commit → Applied, in order (microseconds).
    pub latencies_us: Vec<f64>,
}

/// Applies `files` in turn, `count` times in total, `interval` apart.
pub fn run(
    shm: &Path,
    files: &[PathBuf],
    count: usize,
    interval: Duration,
) -> anyhow::Result<UpdateResult> {
    anyhow::ensure!(!files.is_empty(), "give at least one --services file");
    let sets = files
        .iter()
        .map(|f| fiberlb_shared::services::load_services(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut region = Region::attach(shm).map_err(|e| {
        anyhow::anyhow!(
            "attaching to the data plane's region {}: {e}",
            shm.display()
        )
    })?;
    let (mut tx, mut rx) = region.endpoints()?;
    region.beat();
    let mut lat = Vec::with_capacity(count);
    let mut generation = region.header().applied_generation();
    for i in 0..count {
        let next_at = Instant::now() + interval;
        generation += 1;
        let msgs = full_replay(&sets[i % sets.len()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut committed = Instant::now();
        for m in msgs {
            let is_commit = matches!(m, Message::Commit { .. });
            loop {
                match tx.send(generation, m.clone()) {
                    Ok(_) => break,
                    Err(SendError::Ring(RingError::Full { .. })) if Instant::now() < deadline => {
                        region.beat();
                        region.ring_command_doorbell();
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    Err(e) => anyhow::bail!("sending generation {generation}: {e}"),
                }
            }
            if is_commit {
                committed = Instant::now();
            }
        }
        // As fiberlbd does: wake the data plane's control thread (else it sees the
        // transaction at its next timed look, within 1 ms).
        region.ring_command_doorbell();
        loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no reply to generation {generation} within 10 s (is the data plane running on {}?)",
                shm.display()
            );
            match rx.try_recv() {
                Ok(Some(f)) if f.generation == generation => match f.message {
                    Message::Applied => break,
                    Message::Rejected { code, reason } => {
                        anyhow::bail!("generation {generation} rejected ({code:?}): {reason}")
                    }
                    _ => {}
                },
                Ok(Some(_)) => {}
                // Poll tightly: the figure is in the hundreds of microseconds.
                Ok(None) => std::thread::sleep(Duration::from_micros(20)),
                Err(e) => anyhow::bail!("reading the data plane's reply: {e}"),
            }
        }
        lat.push(committed.elapsed().as_secs_f64() * 1e6);
        region.beat();
        if let Some(wait) = next_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let mut sorted = lat.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| {
        sorted
            .get(((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(UpdateResult {
        updates: lat.len(),
        min_us: sorted.first().copied().unwrap_or(0.0),
        p50_us: q(0.5),
        p99_us: q(0.99),
        max_us: sorted.last().copied().unwrap_or(0.0),
        latencies_us: lat,
    })
}
