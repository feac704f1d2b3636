//! A test writer for the shared-memory protocol: attaches to a data plane's region as its
//! control plane and runs the steps given on the command line, in order, printing one line per
//! reply on stdout.
//!
//! ```text
//! shm_writer REGION RING_CAPACITY STEP...
//!   set:1,2,3     commit the test service set with backends 1,2,3 (generation = applied + 1)
//!   replay        re-publish the previous command slot's bytes (a replayed frame)
//!   garbage       publish a slot of garbage bytes
//!   torn          publish a frame whose payload was half overwritten (bad checksum)
//!   hang-open     send Begin and one upsert of the next generation, print "hanging", sleep
//!   hang          print "hanging" and sleep forever
//! ```
//!
//! Output lines: `applied GEN`, `rejected GEN CODE`, `hanging`. Exit status 2 when a reply does
//! not come within 10 s. The raw steps write the command ring directly (through their own
//! mapping, as a buggy or hostile writer would); the ring's layout is the region's: command
//! ring at offset 4096, control block (producer index, consumer index) then the slots.

use std::fs::OpenOptions;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fiberlb_shared::model::*;
use fiberlb_shared::shm::message::{encode, Frame, Message, SLOT_SIZE};
use fiberlb_shared::shm::region::{Region, RegionReceiver, RegionSender};
use fiberlb_shared::shm::ring::RingControl;
use fiberlb_shared::shm::transaction::full_replay;

/// Offset of the command ring in the region (the region's first area after the header page).
const CMD_RING: usize = 4096;

/// The test service set: one UDP nat listener over one pool of `backends`. The test process
/// builds the same addresses (`10.10.1.<id>`).
fn services(backends: &[u32]) -> ServiceSet {
    ServiceSet {
        listeners: vec![Listener {
            id: ListenerId(1),
            name: "dns/53/udp".into(),
            vip: IpAddr::from([10, 10, 0, 100]),
            port: 53,
            protocol: Protocol::Udp,
            mode: Mode::Nat,
            encap: Encap::Ipip,
            pool: PoolId(1),
        }],
        pools: vec![Pool {
            id: PoolId(1),
            name: "dns".into(),
            algorithm: Algorithm::Maglev,
            table_size: 251,
        }],
        backends: backends
            .iter()
            .map(|&id| Backend {
                id: BackendId(id),
                pool: PoolId(1),
                address: IpAddr::from([10, 10, 1, id as u8]),
                port: 5353,
                weight: 1,
                mac: Some([2, 0, 0, 0, 2, id as u8]),
                admin: AdminState::Enabled,
                healthy: true,
            })
            .collect(),
        tunnel: TunnelSettings::default(),
    }
}

struct Attached {
    region: Region,
    tx: RegionSender,
    rx: RegionReceiver,
}

fn attach(path: &Path) -> Attached {
    let mut region = Region::attach(path).unwrap_or_else(|e| fail(&format!("attach: {e}")));
    let (tx, rx) = region
        .endpoints()
        .unwrap_or_else(|e| fail(&format!("endpoints: {e}")));
    region.beat();
    let mut a = Attached { region, tx, rx };
    // Replies still in the ring were meant for a predecessor (possibly for the same
    // generation number, e.g. the discard of its half-sent transaction): not ours.
    while let Ok(Some(_)) = a.rx.try_recv() {}
    a
}

fn fail(msg: &str) -> ! {
    eprintln!("shm_writer: {msg}");
    std::process::exit(1)
}

/// Waits for a reply matching `want`, skipping replies meant for a predecessor.
fn wait_reply(a: &mut Attached, want: impl Fn(u64, &Message) -> bool) -> (u64, Message) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        a.region.beat();
        match a.rx.try_recv() {
            Ok(Some(f)) if want(f.generation, &f.message) => return (f.generation, f.message),
            Ok(Some(_)) => {}
            Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => fail(&format!("reply ring: {e}")),
        }
    }
    eprintln!("shm_writer: no reply within 10 s");
    std::process::exit(2)
}

fn print_reply(generation: u64, m: &Message) {
    match m {
        Message::Applied => println!("applied {generation}"),
        Message::Rejected { code, reason } => {
            println!("rejected {generation} {code:?}");
            eprintln!("shm_writer: rejected {generation}: {reason}");
        }
        other => println!("unexpected {generation} {other:?}"),
    }
}

/// The command ring mapped by hand, for the raw steps.
struct RawRing {
    base: *mut u8,
    len: usize,
    capacity: u64,
}

impl RawRing {
    fn open(path: &Path, capacity: u64) -> RawRing {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| fail(&format!("open {}: {e}", path.display())));
        let len = file.metadata().map(|m| m.len()).unwrap_or(0) as usize;
        let need = CMD_RING + std::mem::size_of::<RingControl>() + capacity as usize * SLOT_SIZE;
        if len < need {
            fail("region smaller than its command ring");
        }
        // SAFETY: a shared read-write mapping of a file we opened read-write; the kernel picks
        // the address; the result is checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            fail("mmap failed");
        }
        RawRing {
            base: base.cast(),
            len,
            capacity,
        }
    }

    fn index(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the ring control block lies inside the mapping (checked in `open`), its two
        // indices are 128-byte aligned AtomicU64s shared with the data plane.
        unsafe { &*(self.base.add(CMD_RING + offset) as *const AtomicU64) }
    }

    fn slot_ptr(&self, position: u64) -> *mut u8 {
        let i = (position & (self.capacity - 1)) as usize;
        // SAFETY: slot `i < capacity` lies inside the mapping (checked in `open`).
        unsafe {
            self.base
                .add(CMD_RING + std::mem::size_of::<RingControl>() + i * SLOT_SIZE)
        }
    }

    /// Position the next message would take.
    fn position(&self) -> u64 {
        self.index(0).load(Ordering::Acquire)
    }

    /// Copies of the bytes of the slot at `position`.
    fn read(&self, position: u64) -> [u8; SLOT_SIZE] {
        let mut out = [0u8; SLOT_SIZE];
        // SAFETY: the slot is inside the mapping; it was consumed already, so the data plane
        // does not write it (only producers write slots, and we are the only producer).
        unsafe {
            std::ptr::copy_nonoverlapping(self.slot_ptr(position), out.as_mut_ptr(), SLOT_SIZE)
        };
        out
    }

    /// Publishes `bytes` as the next message, as the ring's producer does.
    fn push(&self, bytes: &[u8; SLOT_SIZE]) {
        let tail = self.position();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tail - self.index(128).load(Ordering::Acquire) >= self.capacity {
            if Instant::now() > deadline {
                fail("command ring stays full");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: position `tail` is unpublished and free (checked above), so the consumer does
        // not read it until the Release store below.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.slot_ptr(tail), SLOT_SIZE) };
        self.index(0).store(tail + 1, Ordering::Release);
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `open`; no reference into it outlives `self`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        fail("usage: shm_writer REGION RING_CAPACITY STEP...");
    }
    let path = PathBuf::from(&args[0]);
    let capacity: u64 = args[1]
        .parse()
        .unwrap_or_else(|_| fail("RING_CAPACITY must be a number"));
    let mut attached: Option<Attached> = None;
    for step in &args[2..] {
        match step.as_str() {
            s if s.starts_with("set:") => {
                let ids: Vec<u32> = s[4..]
                    .split(',')
                    .map(|x| x.parse().unwrap_or_else(|_| fail("bad backend id")))
                    .collect();
                let a = attached.get_or_insert_with(|| attach(&path));
                let generation = a.region.header().applied_generation() + 1;
                for m in full_replay(&services(&ids)) {
                    a.tx.send(generation, m)
                        .unwrap_or_else(|e| fail(&format!("send: {e}")));
                }
                let (g, m) = wait_reply(a, |g, _| g == generation);
                print_reply(g, &m);
            }
            "replay" | "garbage" | "torn" => {
                // The raw steps move the producer index behind the Sender's back: attach afresh
                // (dropping stale replies before our frame goes out), write the frame, take its
                // reply, and let go of this Sender, whose position is now behind.
                drop(attached.take());
                let mut a = attach(&path);
                let ring = RawRing::open(&path, capacity);
                let pos = ring.position();
                let bytes = match step.as_str() {
                    "replay" => {
                        if pos == 0 {
                            fail("nothing to replay yet");
                        }
                        ring.read(pos - 1)
                    }
                    "garbage" => [0xA5; SLOT_SIZE],
                    _ => {
                        let frame = Frame {
                            seq: pos + 1,
                            generation: 99,
                            message: Message::UpsertPool(services(&[]).pools[0].clone()),
                        };
                        let mut b = encode(&frame).unwrap_or_else(|e| fail(&format!("{e}")));
                        // The second half of the payload was never written.
                        for x in &mut b[36..40] {
                            *x ^= 0xFF;
                        }
                        b
                    }
                };
                ring.push(&bytes);
                drop(ring);
                let (g, m) = wait_reply(&mut a, |_, m| {
                    matches!(
                        m,
                        Message::Rejected {
                            code: fiberlb_shared::shm::message::RejectCode::Malformed
                                | fiberlb_shared::shm::message::RejectCode::OutOfOrder,
                            ..
                        }
                    )
                });
                print_reply(g, &m);
            }
            "hang-open" => {
                let a = attached.get_or_insert_with(|| attach(&path));
                let generation = a.region.header().applied_generation() + 1;
                let msgs = full_replay(&services(&[7, 8, 9]));
                for m in msgs.into_iter().take(3) {
                    a.tx.send(generation, m)
                        .unwrap_or_else(|e| fail(&format!("send: {e}")));
                }
                println!("hanging");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            "hang" => {
                println!("hanging");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            other => fail(&format!("unknown step {other:?}")),
        }
    }
}
