//! A port over DPDK rings ([`RingPort`]), for counting tests.

use super::*;

/// A port over DPDK rings (`rte_eth_from_rings`): what the test sends into `rx_in` the port
/// receives, what the port sends lands in `tx_out`. One ring pair per queue. For counting
/// tests: unlike `net_ring` vdevs (which loop TX back to RX), nothing is seen twice.
#[derive(Debug)]
pub struct RingPort {
    pub port: Port,
    pub(super) rx_in: Vec<NonNull<sys::rte_ring>>,
    pub(super) tx_out: Vec<NonNull<sys::rte_ring>>,
}

// SAFETY: rings are created multi-producer/multi-consumer (flags 0), so any thread may use them.
unsafe impl Send for RingPort {}
// SAFETY: as above.
unsafe impl Sync for RingPort {}

impl RingPort {
    /// Creates the rings (`size` entries each, a power of two) and the port named `name`
    /// with `queues` queue pairs, then starts it with `start_queues` (to test refusals).
    ///
    /// # Errors
    /// Ring or port creation failing, or [`Port::start_id`]'s errors.
    pub fn new(
        _eal: &Eal,
        pools: &Pools,
        name: &str,
        queues: u16,
        start_queues: u16,
        size: u32,
    ) -> Result<RingPort, DpdkError> {
        let mk = |tag: &str, q: u16| -> Result<NonNull<sys::rte_ring>, DpdkError> {
            let n = CString::new(format!("{name}_{tag}{q}"))
                .map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
            // SAFETY: EAL is up; name is NUL-terminated and copied.
            let r = unsafe { sys::rte_ring_create(n.as_ptr(), size, 0, 0) };
            NonNull::new(r).ok_or_else(|| DpdkError::Port {
                port: name.to_string(),
                op: "rte_ring_create",
                errno: rte_errno(),
                msg: strerror(rte_errno()),
            })
        };
        let rx_in = (0..queues)
            .map(|q| mk("i", q))
            .collect::<Result<Vec<_>, _>>()?;
        let tx_out = (0..queues)
            .map(|q| mk("o", q))
            .collect::<Result<Vec<_>, _>>()?;
        let cname = CString::new(name).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let mut rxr: Vec<*mut sys::rte_ring> = rx_in.iter().map(|r| r.as_ptr()).collect();
        let mut txr: Vec<*mut sys::rte_ring> = tx_out.iter().map(|r| r.as_ptr()).collect();
        // SAFETY: arrays of `queues` valid rings; the port keeps the ring pointers, and the
        // rings live as long as the RingPort (which owns the Port).
        let id = unsafe {
            sys::rte_eth_from_rings(
                cname.as_ptr(),
                rxr.as_mut_ptr(),
                u32::from(queues),
                txr.as_mut_ptr(),
                u32::from(queues),
                0,
            )
        };
        let id = u16::try_from(id).map_err(|_| DpdkError::Port {
            port: name.to_string(),
            op: "rte_eth_from_rings",
            errno: rte_errno(),
            msg: strerror(rte_errno()),
        })?;
        let mut cfg = PortConfig::new(name, start_queues);
        cfg.promiscuous = false;
        let port = Port::start_id(pools, id, &cfg)?;
        Ok(RingPort {
            port,
            rx_in,
            tx_out,
        })
    }

    /// Puts mbufs on queue `q`'s receive side; returns how many fit (the rest stay).
    pub fn inject(&self, q: usize, pkts: &mut MbufArray) -> usize {
        let Some(r) = self.rx_in.get(q) else { return 0 };
        // SAFETY: the ring is valid; enqueued mbufs become the ring's and are forgotten.
        let n = unsafe {
            sys::fiberlb_ring_enqueue_burst(r.as_ptr(), pkts.ptrs.as_mut_ptr(), pkts.len as u32)
        } as usize;
        pkts.forget_front(n);
        n
    }

    /// Takes up to a burst of what queue `q` transmitted.
    pub fn drain(&self, q: usize, out: &mut MbufArray) -> usize {
        out.clear();
        let Some(r) = self.tx_out.get(q) else {
            return 0;
        };
        // SAFETY: the ring is valid; dequeued mbufs become owned by `out`.
        let n = unsafe {
            sys::fiberlb_ring_dequeue_burst(r.as_ptr(), out.ptrs.as_mut_ptr(), BURST as u32)
        } as usize;
        out.len = n;
        n
    }

    /// Packets waiting on queue `q`'s receive side.
    pub fn pending_rx(&self, q: usize) -> usize {
        self.rx_in
            .get(q)
            // SAFETY: valid ring.
            .map(|r| unsafe { sys::fiberlb_ring_count(r.as_ptr()) } as usize)
            .unwrap_or(0)
    }
}
