//! `fiberlb-pktgen`: packet generator and sink on AF_XDP, NDR/PDR search, the data plane's
//! update latency, the pipeline alone on in-memory batches, and the plot of a results table.
//!
//! Generator and sink run in one process (each thread in its own network namespace), so loss
//! is exact (sent − received) and latency is measured on one clock.

pub mod io;
pub mod packet;
pub mod pipeline;
pub mod plot;
pub mod stats;
pub mod sys;
pub mod update;

use serde::{Deserialize, Serialize};

use io::{Session, Trial, TrialResult};

/// Result of an NDR/PDR search.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SearchResult {
    /// Highest received rate of a trial with no loss.
    pub ndr_pps: f64,
    /// Highest received rate of a trial with loss at most `pdr_loss`.
    pub pdr_pps: f64,
    pub pdr_loss: f64,
    /// The first trial, at full speed.
    pub max: TrialResult,
    pub trials: Vec<TrialResult>,
}

/// RFC 2544-style binary search on the offered rate with short trials: first one trial as fast
/// as possible (the upper bound), then `steps` halvings for NDR (no loss) and for PDR (loss at
/// most `pdr_loss`).
pub fn search(
    session: &mut Session,
    trial: std::time::Duration,
    steps: u32,
    pdr_loss: f64,
    live: bool,
) -> anyhow::Result<SearchResult> {
    let run = |s: &mut Session, rate: Option<u64>| {
        s.trial(&Trial {
            rate,
            duration: trial,
            count: None,
            live,
        })
    };
    let max = run(session, None)?;
    let mut out = SearchResult {
        pdr_loss,
        max: max.clone(),
        ..SearchResult::default()
    };
    let top = max.tx_pps.max(1.0);
    for threshold in [0.0, pdr_loss] {
        let (mut lo, mut hi) = (0.0f64, top);
        let mut best = 0.0;
        if max.loss_ratio <= threshold {
            best = max.rx_pps;
            lo = hi;
        }
        for _ in 0..steps {
            if hi - lo < top / 200.0 {
                break;
            }
            let mid = (lo + hi) / 2.0;
            let r = run(session, Some(mid as u64))?;
            if live {
                eprintln!(
                    "search (loss <= {threshold}): offered {mid:.0} pps -> rx {:.0} pps, loss {:.5}",
                    r.rx_pps, r.loss_ratio
                );
            }
            if r.loss_ratio <= threshold {
                lo = mid;
                best = f64::max(best, r.rx_pps);
            } else {
                hi = mid;
            }
            out.trials.push(r);
        }
        if threshold == 0.0 {
            out.ndr_pps = best;
        } else {
            out.pdr_pps = best.max(out.ndr_pps);
        }
    }
    Ok(out)
}
