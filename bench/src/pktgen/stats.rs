//! The sink's accounting: per-backend counts, per-flow consistency, loss and reordering from
//! sequence numbers, latency histogram. All storage is sized at start; `record` never
//! allocates.

use serde::Serialize;

use super::packet::Seen;

/// Sub-buckets per power of two: latencies are kept within 1/32 (3%).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (2 * SUB + (32 - SUB_BITS as u64 - 1) * SUB) as usize;

/// Log-linear latency histogram in nanoseconds (HdrHistogram's idea, fixed size).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    min: u32,
    max: u32,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            min: u32::MAX,
            max: 0,
        }
    }
}

#[inline]
fn bucket(v: u32) -> usize {
    let v = u64::from(v);
    if v < 2 * SUB {
        return v as usize;
    }
    let e = 63 - u64::from(v.leading_zeros());
    let m = v >> (e - u64::from(SUB_BITS));
    (2 * SUB + (e - u64::from(SUB_BITS) - 1) * SUB + (m - SUB)) as usize
}

fn bucket_low(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let k = i - 2 * SUB;
    let e = k / SUB + u64::from(SUB_BITS) + 1;
    let m = k % SUB + SUB;
    m << (e - u64::from(SUB_BITS))
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, ns: u32) {
        if let Some(c) = self.counts.get_mut(bucket(ns)) {
            *c += 1;
        }
        self.total += 1;
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0..=1), as the lower bound of its bucket; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut acc = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return bucket_low(i).clamp(u64::from(self.min), u64::from(self.max));
            }
        }
        u64::from(self.max)
    }

    pub fn summary(&self) -> Latency {
        let us = |v: u64| v as f64 / 1000.0;
        Latency {
            samples: self.total,
            min_us: if self.total == 0 {
                0.0
            } else {
                us(u64::from(self.min))
            },
            p50_us: us(self.quantile(0.5)),
            p99_us: us(self.quantile(0.99)),
            p999_us: us(self.quantile(0.999)),
            max_us: us(u64::from(self.max)),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub samples: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Streams (generator queues) the sink tracks; more are counted as foreign.
pub const MAX_STREAMS: usize = 64;
/// Distinct backends the sink tells apart; more are counted under `other_backend`.
pub const MAX_BACKENDS: usize = 256;

#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// Highest sequence number seen plus one (unwrapped to 64 bits); 0 = nothing yet.
    next: u64,
    received: u64,
    reordered: u64,
}

/// A backend as the sink sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendKey {
    pub mac: [u8; 6],
    pub addr: [u8; 16],
    pub port: u16,
}

/// Everything the sink counts.
#[derive(Clone, Debug)]
pub struct SinkStats {
    pub rx: u64,
    pub rx_bytes: u64,
    /// Frames without our marker, or from a flow id beyond the configured count.
    pub foreign: u64,
    backends: Vec<(BackendKey, u64)>,
    pub other_backend: u64,
    /// Per flow: 1 + index into `backends` of the first backend it reached; 0 = none yet.
    flow_backend: Vec<u16>,
    /// Packets that reached a different backend than their flow's first packet.
    pub inconsistent_packets: u64,
    /// Flows that did so at least once.
    pub inconsistent_flows: u64,
    flow_flagged: Vec<bool>,
    streams: [Stream; MAX_STREAMS],
    pub latency: Histogram,
}

impl SinkStats {
    /// Room for `flows` flow ids (0..flows).
    pub fn new(flows: u32) -> Self {
        SinkStats {
            rx: 0,
            rx_bytes: 0,
            foreign: 0,
            backends: Vec::with_capacity(MAX_BACKENDS),
            other_backend: 0,
            flow_backend: vec![0; flows as usize],
            inconsistent_packets: 0,
            inconsistent_flows: 0,
            flow_flagged: vec![false; flows as usize],
            streams: [Stream::default(); MAX_STREAMS],
            latency: Histogram::default(),
        }
    }

    /// Clears the counters, keeping the storage (between search trials).
    pub fn reset(&mut self) {
        self.rx = 0;
        self.rx_bytes = 0;
        self.foreign = 0;
        self.backends.clear();
        self.other_backend = 0;
        self.flow_backend.fill(0);
        self.inconsistent_packets = 0;
        self.inconsistent_flows = 0;
        self.flow_flagged.fill(false);
        self.streams = [Stream::default(); MAX_STREAMS];
        self.latency = Histogram::default();
    }

    /// Accounts one received frame (`seen` = `None`: not one of ours). `now` is the low 32 bits
    /// of `CLOCK_MONOTONIC` in ns.
    #[inline]
    pub fn record(&mut self, seen: Option<Seen>, len: usize, now: u32) {
        let Some(s) = seen else {
            self.foreign += 1;
            return;
        };
        let flow = s.flow as usize;
        if flow >= self.flow_backend.len() || usize::from(s.stream) >= MAX_STREAMS {
            self.foreign += 1;
            return;
        }
        self.rx += 1;
        self.rx_bytes += len as u64;
        self.latency.record(now.wrapping_sub(s.ts));

        let st = &mut self.streams[usize::from(s.stream)];
        st.received += 1;
        // Unwrap the 32-bit sequence number next to the highest one seen.
        let base = st.next.saturating_sub(1);
        let cand = (base & !0xffff_ffff) | u64::from(s.seq);
        let seq = if cand + (1 << 31) < base {
            cand + (1 << 32)
        } else if cand > base + (1 << 31) && cand >= 1 << 32 {
            cand - (1 << 32)
        } else {
            cand
        };
        if st.next != 0 && seq < st.next {
            st.reordered += 1;
        } else {
            st.next = seq + 1;
        }

        let key = BackendKey {
            mac: s.dst_mac,
            addr: s.dst,
            port: s.dport,
        };
        let idx = match self.backends.iter().position(|(k, _)| *k == key) {
            Some(i) => Some(i),
            None if self.backends.len() < MAX_BACKENDS => {
                // Within the capacity reserved in `new`: no reallocation.
                self.backends.push((key, 0));
                Some(self.backends.len() - 1)
            }
            None => None,
        };
        let Some(i) = idx else {
            self.other_backend += 1;
            return;
        };
        self.backends[i].1 += 1;
        let tag = i as u16 + 1;
        let first = &mut self.flow_backend[flow];
        if *first == 0 {
            *first = tag;
        } else if *first != tag {
            self.inconsistent_packets += 1;
            if !self.flow_flagged[flow] {
                self.flow_flagged[flow] = true;
                self.inconsistent_flows += 1;
            }
        }
    }

    /// Packets missing by sequence number (highest seen + 1 − received, per stream): counts
    /// losses before the last packet received, not at the tail.
    pub fn seq_gaps(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| s.next.saturating_sub(s.received))
            .sum()
    }

    pub fn reordered(&self) -> u64 {
        self.streams.iter().map(|s| s.reordered).sum()
    }

    /// Flows seen at least once.
    pub fn flows_seen(&self) -> u64 {
        self.flow_backend.iter().filter(|&&b| b != 0).count() as u64
    }

    /// Packets per backend, most first.
    pub fn backends(&self) -> Vec<BackendCount> {
        let mut v: Vec<BackendCount> = self
            .backends
            .iter()
            .map(|(k, n)| BackendCount {
                mac: fiberlb_dataplane::config::format_mac(&k.mac),
                addr: ip_string(&k.addr),
                port: k.port,
                packets: *n,
            })
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.packets));
        v
    }
}

fn ip_string(a: &[u8; 16]) -> String {
    let v6 = std::net::Ipv6Addr::from(*a);
    if a[..12].iter().all(|&b| b == 0) {
        std::net::Ipv4Addr::new(a[12], a[13], a[14], a[15]).to_string()
    } else {
        v6.to_string()
    }
}

/// One backend's share in the JSON summary.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct BackendCount {
    pub mac: String,
    pub addr: String,
    pub port: u16,
    pub packets: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(flow: u32, seq: u32, backend: u8) -> Option<Seen> {
        let mut dst = [0u8; 16];
        dst[12..].copy_from_slice(&[198, 18, 2, backend]);
        Some(Seen {
            dst_mac: [2, 0, 0, 0, 0, backend],
            dst,
            dport: 9,
            stream: 0,
            flow,
            seq,
            ts: 0,
        })
    }

    #[test]
    fn consistent_flows_are_not_flagged() {
        let mut s = SinkStats::new(4);
        for seq in 0..40u32 {
            let flow = seq % 4;
            s.record(seen(flow, seq, flow as u8 % 2), 60, 1000);
        }
        assert_eq!(s.rx, 40);
        assert_eq!(s.inconsistent_packets, 0);
        assert_eq!(s.flows_seen(), 4);
        let b = s.backends();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].packets + b[1].packets, 40);
        assert_eq!(s.seq_gaps(), 0);
        assert_eq!(s.reordered(), 0);
    }

    #[test]
    fn a_flow_that_changes_backend_is_detected() {
        let mut s = SinkStats::new(4);
        s.record(seen(1, 0, 1), 60, 0);
        s.record(seen(1, 1, 1), 60, 0);
        s.record(seen(1, 2, 2), 60, 0); // moved
        s.record(seen(1, 3, 2), 60, 0); // still on the wrong one
        s.record(seen(2, 4, 2), 60, 0);
        assert_eq!(s.inconsistent_packets, 2);
        assert_eq!(s.inconsistent_flows, 1);
        s.reset();
        assert_eq!((s.rx, s.inconsistent_flows, s.flows_seen()), (0, 0, 0));
    }

    #[test]
    fn loss_and_reordering_from_sequence_numbers() {
        let mut s = SinkStats::new(1);
        for seq in [0u32, 1, 2, 5, 4, 7] {
            s.record(seen(0, seq, 1), 60, 0);
        }
        // 8 sent up to seq 7, 6 received: 3 and 6 missing, 4 arrived after 5.
        assert_eq!(s.seq_gaps(), 2);
        assert_eq!(s.reordered(), 1);
        // Foreign: unknown flow id, or no marker.
        s.record(seen(9, 8, 1), 60, 0);
        s.record(None, 60, 0);
        assert_eq!(s.foreign, 2);
    }

    #[test]
    fn sequence_numbers_unwrap_across_32_bits() {
        let mut s = SinkStats::new(1);
        for seq in [u32::MAX - 1, u32::MAX, 0, 1] {
            s.record(seen(0, seq, 1), 60, 0);
        }
        assert_eq!(s.reordered(), 0);
        assert_eq!(s.seq_gaps(), u64::from(u32::MAX) - 1);
    }

    #[test]
    fn latency_percentiles_are_within_a_bucket() {
        let mut h = Histogram::default();
        for v in 1..=100_000u32 {
            h.record(v * 10);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.04, "{p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.04, "{p99}");
        assert_eq!(h.summary().min_us, 0.01);
        assert_eq!(h.summary().max_us, 1000.0);
        for v in [0, 1, 63, 64, 65, 1 << 20, u32::MAX] {
            assert!(bucket(v) < BUCKETS);
            assert!(bucket_low(bucket(v)) <= u64::from(v));
        }
    }
}
