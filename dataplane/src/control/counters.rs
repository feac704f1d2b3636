//! The worker threads' side of the counters: each worker's [`CounterPublisher`] copies its
//! pipeline's counters into its own block of the region's counters area (plain stores, about
//! every 100 ms, from the worker thread). The control thread hands them out
//! ([`super::ControlThread`]) and raises [`HighWater`] as snapshots use more slots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use fiberlb_shared::shm::counters::{ObjectCounters as ShmObject, Totals};
use fiberlb_shared::shm::region::Region;

use crate::pipeline::{ObjectCounters, WorkerCounters};

/// Highest listener / backend slot count any snapshot has used: the counters a worker copies.
#[derive(Debug, Default)]
pub(crate) struct HighWater {
    pub(crate) listeners: AtomicUsize,
    pub(crate) backends: AtomicUsize,
}

/// A worker's way to its counters block in the region. Cheap: it copies only the listener and
/// backend slots any snapshot has used so far, with plain stores.
#[derive(Debug)]
pub struct CounterPublisher {
    pub(crate) region: Arc<Region>,
    pub(crate) worker: u32,
    pub(crate) high_water: Arc<HighWater>,
}

fn shm_object(c: &ObjectCounters, active_flows: u64) -> ShmObject {
    ShmObject {
        packets: c.packets,
        bytes: c.bytes,
        new_flows: c.new_flows,
        active_flows,
    }
}

impl CounterPublisher {
    /// The worker this publisher writes for.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// Copies the worker's running totals into its block. `tx_packets` is what the pipeline
    /// forwarded; `tx_bytes` the bytes sent to backends (nat replies are not in it). Active
    /// flows are the flow sweep's counts of its last complete pass (zero before the first).
    pub fn publish(&self, c: &WorkerCounters) {
        let Some(block) = self.region.worker_counters(self.worker) else {
            return;
        };
        for (reason, v) in c.drops.iter().enumerate() {
            block.set_drops(reason, *v);
        }
        let nl = self.high_water.listeners.load(Ordering::Relaxed);
        let sweep = &c.flow_sweep;
        for (slot, l) in c.listeners.iter().take(nl).enumerate() {
            block.set_listener(slot as u32, shm_object(l, sweep.listener_active(slot)));
        }
        let nb = self.high_water.backends.load(Ordering::Relaxed);
        let mut tx_bytes = 0u64;
        for (slot, b) in c.backends.iter().take(nb).enumerate() {
            tx_bytes = tx_bytes.wrapping_add(b.bytes);
            block.set_backend(slot as u32, shm_object(b, sweep.backend_active(slot)));
        }
        block.set_totals(Totals {
            rx_packets: c.rx_packets,
            rx_bytes: c.rx_bytes,
            tx_packets: c.forwarded,
            tx_bytes,
            to_host: c.to_host,
        });
    }
}

/// The workers' counter sink: their copy into the shared-memory counters area.
impl crate::worker::CounterSink for CounterPublisher {
    fn publish(&mut self, counters: &WorkerCounters) {
        CounterPublisher::publish(self, counters)
    }
}
