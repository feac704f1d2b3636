//! The memory port: packets in an in-process buffer area, for tests, benchmarks and replay.
//!
//! It models a NIC queue pair the way AF_XDP does: a fixed area of chunks allocated once, a
//! free list, an RX queue of descriptors (filled by [`MemoryPort::inject`]) and a TX queue
//! (read back with [`MemoryPort::drain_tx`]). Nothing is allocated after [`MemoryPort::new`].

use std::collections::VecDeque;

use crate::packet::{AreaBurst, Desc};

/// Default chunk size, as an AF_XDP UMEM frame.
pub const DEFAULT_CHUNK: usize = 2048;
/// Default headroom in front of a received packet, room for the largest encapsulation
/// (Ethernet + IPv6 + UDP/GUE) several times over.
pub const DEFAULT_HEADROOM: usize = 256;

/// Why a packet could not be injected.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryPortError {
    #[error("no free buffer: the port's {0} frames are all in use")]
    NoBuffer(usize),
    #[error("packet of {len} bytes does not fit a {room}-byte frame after headroom")]
    TooLong { len: usize, room: usize },
}

impl MemoryPortError {
    /// The error with the port's frame count filled in.
    fn with_frames(self, frames: usize) -> Self {
        match self {
            MemoryPortError::NoBuffer(_) => MemoryPortError::NoBuffer(frames),
            e => e,
        }
    }
}

/// [`MemoryPort::inject_burst`]'s loop, over the port's parts as separate (non-aliasing)
/// borrows so that copying a frame into `area` does not make the compiler reload the rest.
/// `space` is how many more descriptors the ring takes. Returns how many packets were queued
/// and the error of the first that was not, if any.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill<'p>(
    area: &mut [u8],
    free: &mut Vec<u64>,
    rx: &mut [Desc],
    mut tail: usize,
    room: usize,
    headroom: usize,
    space: usize,
    pkts: impl IntoIterator<Item = &'p [u8]>,
) -> (usize, Option<MemoryPortError>) {
    let mut queued = 0;
    for pkt in pkts {
        if pkt.len() > room {
            let e = MemoryPortError::TooLong {
                len: pkt.len(),
                room,
            };
            return (queued, Some(e));
        }
        // As in `inject`: a full ring with a free chunk means chunks were freed twice.
        if queued == space {
            return (queued, Some(MemoryPortError::NoBuffer(0)));
        }
        let Some(base) = free.pop() else {
            return (queued, Some(MemoryPortError::NoBuffer(0)));
        };
        let start = base as usize + headroom;
        let (Some(dst), Some(slot)) = (area.get_mut(start..start + pkt.len()), rx.get_mut(tail))
        else {
            free.push(base);
            return (queued, Some(MemoryPortError::NoBuffer(0)));
        };
        dst.copy_from_slice(pkt);
        *slot = Desc {
            addr: start as u64,
            len: pkt.len() as u32,
        };
        queued += 1;
        tail += 1;
        if tail == rx.len() {
            tail = 0;
        }
    }
    (queued, None)
}

/// An in-memory port.
#[derive(Debug)]
pub struct MemoryPort {
    area: Box<[u8]>,
    chunk: usize,
    /// `chunk - 1` when `chunk` is a power of two: a chunk's base by mask, not division.
    pow2_mask: Option<u64>,
    headroom: usize,
    free: Vec<u64>,
    /// The receive queue: a ring of `frames` descriptors (as an AF_XDP RX ring), `rx_len`
    /// of them from `rx_head` on.
    rx: Box<[Desc]>,
    rx_head: usize,
    rx_len: usize,
    tx: VecDeque<Desc>,
}

impl MemoryPort {
    /// A port with `frames` chunks of `chunk` bytes, packets placed `headroom` bytes in.
    pub fn new(frames: usize, chunk: usize, headroom: usize) -> Self {
        let area = vec![0u8; frames * chunk].into_boxed_slice();
        let free = (0..frames as u64).rev().map(|i| i * chunk as u64).collect();
        MemoryPort {
            area,
            chunk,
            pow2_mask: chunk.is_power_of_two().then(|| chunk as u64 - 1),
            headroom: headroom.min(chunk),
            free,
            rx: vec![Desc::default(); frames].into_boxed_slice(),
            rx_head: 0,
            rx_len: 0,
            tx: VecDeque::with_capacity(frames),
        }
    }

    /// Puts a packet on the receive queue, as if it arrived from the wire.
    ///
    /// # Errors
    /// When no chunk is free or the packet is too long.
    #[inline]
    pub fn inject(&mut self, pkt: &[u8]) -> Result<(), MemoryPortError> {
        let room = self.chunk - self.headroom;
        if pkt.len() > room {
            return Err(MemoryPortError::TooLong {
                len: pkt.len(),
                room,
            });
        }
        let Some(base) = self.free.pop() else {
            return Err(MemoryPortError::NoBuffer(self.frames()));
        };
        // Every queued descriptor holds a chunk taken from the free list, so the ring has
        // room unless chunks were freed twice; then refuse rather than overwrite.
        let mut tail = self.rx_head + self.rx_len;
        if tail >= self.rx.len() {
            tail -= self.rx.len();
        }
        let Some(slot) = self.rx.get_mut(tail) else {
            self.free.push(base);
            return Err(MemoryPortError::NoBuffer(self.frames()));
        };
        let start = base as usize + self.headroom;
        self.area[start..start + pkt.len()].copy_from_slice(pkt);
        *slot = Desc {
            addr: start as u64,
            len: pkt.len() as u32,
        };
        self.rx_len += 1;
        Ok(())
    }

    /// Puts packets on the receive queue, as [`Self::inject`] does for each in turn, with the
    /// port's state read once for all of them rather than once per packet (benchmarks inject a
    /// burst at a time). Returns how many were queued; at the first packet that cannot be,
    /// stops and returns its error (those before it stay queued).
    ///
    /// # Errors
    /// As [`Self::inject`], for the first packet that could not be queued.
    #[inline]
    pub fn inject_burst<'p>(
        &mut self,
        pkts: impl IntoIterator<Item = &'p [u8]>,
    ) -> Result<usize, MemoryPortError> {
        let frames = self.frames();
        let cap = self.rx.len();
        let mut tail = self.rx_head + self.rx_len;
        if tail >= cap {
            tail -= cap;
        }
        let (queued, r) = fill(
            &mut self.area,
            &mut self.free,
            &mut self.rx,
            tail,
            self.chunk - self.headroom,
            self.headroom,
            cap - self.rx_len,
            pkts,
        );
        self.rx_len += queued;
        match r {
            Some(e) => Err(e.with_frames(frames)),
            None => Ok(queued),
        }
    }

    /// Number of chunks.
    pub fn frames(&self) -> usize {
        self.area.len() / self.chunk
    }

    /// Packets waiting on the receive queue.
    pub fn rx_pending(&self) -> usize {
        self.rx_len
    }

    /// Takes up to `out.len()` received packets.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut [Desc]) -> usize {
        let n = out.len().min(self.rx_len);
        // At most two contiguous runs of the ring, each copied at once.
        let cap = self.rx.len();
        let first = n.min(cap - self.rx_head);
        let (a, b) = out.split_at_mut(first);
        if let (Some(src), Some(dst)) = (
            self.rx.get(self.rx_head..self.rx_head + first),
            a.get_mut(..),
        ) {
            dst.copy_from_slice(src);
        }
        if let (Some(src), Some(dst)) = (self.rx.get(..n - first), b.get_mut(..n - first)) {
            dst.copy_from_slice(src);
        }
        self.rx_head += n;
        if self.rx_head >= cap {
            self.rx_head -= cap;
        }
        self.rx_len -= n;
        n
    }

    /// A burst view over received descriptors, for the pipeline.
    #[inline]
    pub fn burst<'a>(&'a mut self, descs: &'a mut [Desc]) -> AreaBurst<'a> {
        AreaBurst::new(&mut self.area, self.chunk, descs)
    }

    /// Queues a packet for transmission.
    pub fn transmit(&mut self, d: Desc) {
        self.tx.push_back(d);
    }

    /// Returns a packet's chunk to the free list.
    #[inline]
    pub fn free(&mut self, d: Desc) {
        let base = match self.pow2_mask {
            Some(m) => d.addr & !m,
            None => d.addr - d.addr % self.chunk as u64,
        };
        if (base as usize) < self.area.len() {
            self.free.push(base);
        }
    }

    /// Hands every transmitted packet to `f`, then frees it.
    pub fn drain_tx(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(d) = self.tx.pop_front() {
            let start = d.addr as usize;
            if let Some(bytes) = self.area.get(start..start + d.len as usize) {
                f(bytes);
            }
            self.free(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Burst;

    #[test]
    fn inject_receive_grow_transmit() {
        let mut port = MemoryPort::new(4, 256, 64);
        port.inject(&[1, 2, 3]).unwrap();
        let mut descs = [Desc::default(); 8];
        let n = port.rx_burst(&mut descs);
        assert_eq!(n, 1);
        {
            let mut burst = port.burst(&mut descs[..n]);
            assert_eq!(burst.data(0), &[1, 2, 3]);
            burst.with_buf(0, |p| {
                let d = p.push_front(2).unwrap();
                d[0] = 9;
                d[1] = 8;
            });
            assert_eq!(burst.data(0), &[9, 8, 1, 2, 3]);
        }
        port.transmit(descs[0]);
        let mut out = Vec::new();
        port.drain_tx(|b| out.push(b.to_vec()));
        assert_eq!(out, vec![vec![9, 8, 1, 2, 3]]);
        // All four chunks are free again.
        for _ in 0..4 {
            port.inject(&[0]).unwrap();
        }
        assert_eq!(port.inject(&[0]), Err(MemoryPortError::NoBuffer(4)));
    }

    #[test]
    fn inject_burst_queues_like_inject() {
        let mut port = MemoryPort::new(3, 256, 64);
        let frames: [&[u8]; 2] = [&[1, 2], &[3]];
        assert_eq!(port.inject_burst(frames), Ok(2));
        assert_eq!(
            port.inject_burst([&[0u8; 193][..]]),
            Err(MemoryPortError::TooLong {
                len: 193,
                room: 192
            })
        );
        // One chunk left: the second packet finds none, the first stays queued.
        let more: [&[u8]; 2] = [&[4], &[5]];
        assert_eq!(port.inject_burst(more), Err(MemoryPortError::NoBuffer(3)));
        assert_eq!(port.rx_pending(), 3);
        let mut descs = [Desc::default(); 4];
        let n = port.rx_burst(&mut descs);
        let burst = port.burst(&mut descs[..n]);
        let got: Vec<&[u8]> = (0..n).map(|i| burst.data(i)).collect();
        assert_eq!(got, [&[1u8, 2][..], &[3], &[4]]);
    }

    #[test]
    fn rejects_oversized_and_bogus_descriptors() {
        let mut port = MemoryPort::new(2, 128, 64);
        assert!(matches!(
            port.inject(&[0; 65]),
            Err(MemoryPortError::TooLong { .. })
        ));
        let mut descs = [
            Desc {
                addr: 10_000,
                len: 10,
            },
            Desc {
                addr: 100,
                len: 100,
            },
        ];
        let mut burst = port.burst(&mut descs);
        assert!(burst.data(0).is_empty());
        assert!(burst.data(1).is_empty(), "crosses a chunk boundary");
        burst.with_buf(0, |p| assert!(p.is_empty()));
    }
}
