//! The XDP program that steers fiberlb's traffic to the AF_XDP sockets, and its maps.

use std::collections::{BTreeSet, HashMap as StdHashMap, HashSet};
use std::net::IpAddr;
use std::os::fd::RawFd;

use aya::maps::{HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, Pod};

use super::local_addrs::{read_local_addrs, LocalAddrChanges};
use super::{error_chain, sys, AfXdpError};

/// The object `build.rs` compiled from `bpf/fiberlb_xdp.c`.
static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fiberlb_xdp.o"));

const PROGRAM: &str = "fiberlb_xdp";

/// Counter indices of the program's per-CPU `counters` array (see the C source).
const CNT_REDIRECTED: u32 = 0;
const CNT_PASSED: u32 = 1;
const CNT_PARSE_ERROR: u32 = 2;
const CNT_NO_SOCKET: u32 = 3;

/// How to attach the program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode; generic (skb) mode with a warning when the driver has no XDP.
    #[default]
    Auto,
    /// Native mode or an error.
    Native,
    /// Generic (skb) mode: works on any interface, slower, no zero-copy.
    Generic,
}

/// The mode the program actually runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

/// Sums over all CPUs of the program's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// Packets handed to an AF_XDP socket.
    pub redirected: u64,
    /// Packets given to the kernel (includes `no_socket` and `parse_errors`).
    pub passed: u64,
    /// Malformed or truncated headers (passed to the kernel).
    pub parse_errors: u64,
    /// fiberlb's packets that arrived on a queue with no registered socket (passed).
    pub no_socket: u64,
}

/// Key of the `vips` and `nat_return` maps: must match `struct flow_key` in the C source.
/// IPv4 addresses are stored v4-mapped (`::ffff:a.b.c.d`) with `family` 4.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    addr: [u8; 16],
    /// Network byte order in memory.
    port_be: u16,
    proto: u8,
    family: u8,
}

// SAFETY: repr(C), 20 bytes with no padding (16 + 2 + 1 + 1, alignment 2), all fields plain
// integers: every bit pattern is valid and there are no uninitialised bytes.
unsafe impl Pod for FlowKey {}

/// Key of the `vip_addrs` and `local_addrs` maps (`struct addr_key`), v4-mapped like
/// [`FlowKey`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AddrKey {
    addr: [u8; 16],
}

// SAFETY: repr(C) byte array, no padding.
unsafe impl Pod for AddrKey {}

const _: () = assert!(std::mem::size_of::<FlowKey>() == 20);

fn addr16(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 4),
        IpAddr::V6(v6) => (v6.octets(), 6),
    }
}

fn flow_key(ip: IpAddr, port: u16, proto: u8) -> FlowKey {
    let (addr, family) = addr16(ip);
    FlowKey {
        addr,
        port_be: port.to_be(),
        proto,
        family,
    }
}

/// The loaded, attached XDP program and its maps. Detached on drop.
pub struct XdpProgram {
    ifname: String,
    ifindex: u32,
    mode: AttachedMode,
    /// Dropping the link detaches the program; with a bpf_link this also happens when the
    /// process dies.
    link: Option<XdpLink>,
    xsks: XskMap<MapData>,
    vips: HashMap<MapData, FlowKey, u32>,
    nat_return: HashMap<MapData, FlowKey, u32>,
    vip_addrs: HashMap<MapData, AddrKey, u32>,
    /// The host's own addresses: packets to them go to the kernel (see `local_addrs.rs`).
    local_addrs: HashMap<MapData, AddrKey, u32>,
    counters: PerCpuArray<MapData, u64>,
    cur_vips: HashSet<FlowKey>,
    cur_nat: HashSet<FlowKey>,
    cur_addrs: HashSet<AddrKey>,
    cur_local: BTreeSet<IpAddr>,
    sockets: StdHashMap<u32, RawFd>,
    // Keeps the program (and the maps' owner) alive; declared last so it drops last.
    _ebpf: Ebpf,
}

impl std::fmt::Debug for XdpProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpProgram")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .field("vips", &self.cur_vips.len())
            .field("nat_returns", &self.cur_nat.len())
            .field("local_addrs", &self.cur_local.len())
            .field("sockets", &self.sockets)
            .finish()
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> AfXdpError {
    move |e| AfXdpError::Map {
        map,
        cause: error_chain(&e),
    }
}

fn is_perm(e: &aya::programs::ProgramError) -> bool {
    let s = error_chain(e);
    s.contains("Operation not permitted") || s.contains("Permission denied")
}

impl XdpProgram {
    /// Loads the program and attaches it to `ifname` (in the calling thread's network
    /// namespace). With [`XdpMode::Auto`] a driver without native XDP gets generic mode and a
    /// `log::warn!`. The maps start empty: nothing is redirected until [`Self::set_vips`] /
    /// [`Self::set_nat_returns`] and [`Self::register_socket`] — except `local_addrs`, filled
    /// here with the host's addresses (kept up to date by
    /// [`super::LocalAddrRefresh`]).
    pub fn load_and_attach(ifname: &str, mode: XdpMode) -> Result<XdpProgram, AfXdpError> {
        let ifindex = sys::ifindex(ifname)?;
        sys::raise_memlock();

        let mut ebpf = Ebpf::load(XDP_OBJECT).map_err(|e| {
            let s = error_chain(&e);
            if s.contains("Operation not permitted") {
                AfXdpError::PermissionDenied {
                    action: "creating BPF maps",
                }
            } else {
                AfXdpError::Load(s)
            }
        })?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| AfXdpError::Load(format!("program {PROGRAM} missing from the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| AfXdpError::Load(error_chain(&e)))?;
        prog.load().map_err(|e| {
            if is_perm(&e) {
                AfXdpError::PermissionDenied {
                    action: "loading the XDP program",
                }
            } else {
                AfXdpError::Load(error_chain(&e))
            }
        })?;

        let attach = |prog: &mut Xdp, m: AyaXdpMode| prog.attach_to_if_index(ifindex, m);
        let attach_err = |tried, e: aya::programs::ProgramError| {
            if is_perm(&e) {
                AfXdpError::PermissionDenied {
                    action: "attaching the XDP program",
                }
            } else {
                AfXdpError::Attach {
                    ifname: ifname.to_string(),
                    tried,
                    cause: error_chain(&e),
                }
            }
        };
        let (link_id, attached) = match mode {
            XdpMode::Native => (
                attach(prog, AyaXdpMode::Driver).map_err(|e| attach_err("native (driver)", e))?,
                AttachedMode::Native,
            ),
            XdpMode::Generic => (
                attach(prog, AyaXdpMode::Skb).map_err(|e| attach_err("generic (skb)", e))?,
                AttachedMode::Generic,
            ),
            XdpMode::Auto => match attach(prog, AyaXdpMode::Driver) {
                Ok(id) => (id, AttachedMode::Native),
                Err(e) if is_perm(&e) => return Err(attach_err("native (driver)", e)),
                Err(native) => {
                    let native = error_chain(&native);
                    let id = attach(prog, AyaXdpMode::Skb)
                        .map_err(|e| attach_err("native (driver), then generic (skb)", e))?;
                    log::warn!(
                        "XDP on {ifname}: native mode refused ({native}); running in generic \
                         (skb) mode, which is slower and has no zero-copy"
                    );
                    (id, AttachedMode::Generic)
                }
            },
        };
        let link = prog
            .take_link(link_id)
            .map_err(|e| AfXdpError::Load(error_chain(&e)))?;

        let take = |ebpf: &mut Ebpf, name: &'static str| {
            ebpf.take_map(name)
                .ok_or_else(|| AfXdpError::Load(format!("map {name} missing from the object")))
        };
        let xsks = XskMap::try_from(take(&mut ebpf, "xsks_map")?).map_err(map_err("xsks_map"))?;
        let vips = HashMap::try_from(take(&mut ebpf, "vips")?).map_err(map_err("vips"))?;
        let nat_return =
            HashMap::try_from(take(&mut ebpf, "nat_return")?).map_err(map_err("nat_return"))?;
        let vip_addrs =
            HashMap::try_from(take(&mut ebpf, "vip_addrs")?).map_err(map_err("vip_addrs"))?;
        let local_addrs =
            HashMap::try_from(take(&mut ebpf, "local_addrs")?).map_err(map_err("local_addrs"))?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, "counters")?).map_err(map_err("counters"))?;

        log::info!("XDP program attached to {ifname} (ifindex {ifindex}) in {attached:?} mode");
        let mut prog = XdpProgram {
            ifname: ifname.to_string(),
            ifindex,
            mode: attached,
            link: Some(link),
            xsks,
            vips,
            nat_return,
            vip_addrs,
            local_addrs,
            counters,
            cur_vips: HashSet::new(),
            cur_nat: HashSet::new(),
            cur_addrs: HashSet::new(),
            cur_local: BTreeSet::new(),
            sockets: StdHashMap::new(),
            _ebpf: ebpf,
        };
        // Before any VIP or nat backend is set, so the host's own traffic is never redirected.
        let local = read_local_addrs(None).map_err(|e| AfXdpError::Map {
            map: "local_addrs",
            cause: format!("cannot read the host's addresses (getifaddrs): {e}"),
        })?;
        prog.set_local_addrs(&local)?;
        log::info!(
            "XDP on {ifname}: {} local address(es) go to the kernel: {}",
            local.len(),
            join(&local)
        );
        Ok(prog)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The mode the program runs in (after any fallback).
    pub fn attached_mode(&self) -> AttachedMode {
        self.mode
    }

    /// Makes the set of VIP listeners `(address, port in host order, IP protocol)` exactly
    /// `vips`: inserts new entries, deletes stale ones. Port 0 matches every port of the
    /// address. Non-first fragments are redirected for every address in the set.
    pub fn set_vips(&mut self, vips: &[(IpAddr, u16, u8)]) -> Result<(), AfXdpError> {
        let want: HashSet<FlowKey> = vips.iter().map(|&(a, p, pr)| flow_key(a, p, pr)).collect();
        let want_addrs: HashSet<AddrKey> = vips
            .iter()
            .map(|&(a, _, _)| AddrKey { addr: addr16(a).0 })
            .collect();
        // Addresses first on insert (fragments may arrive before the listener is complete),
        // last on delete.
        for k in want_addrs.difference(&self.cur_addrs) {
            self.vip_addrs
                .insert(k, 1, 0)
                .map_err(map_err("vip_addrs"))?;
        }
        for k in want.difference(&self.cur_vips) {
            self.vips.insert(k, 1, 0).map_err(map_err("vips"))?;
        }
        for k in self.cur_vips.difference(&want) {
            remove_ok_if_absent(&mut self.vips, k).map_err(map_err("vips"))?;
        }
        for k in self.cur_addrs.difference(&want_addrs) {
            remove_ok_if_absent(&mut self.vip_addrs, k).map_err(map_err("vip_addrs"))?;
        }
        self.cur_vips = want;
        self.cur_addrs = want_addrs;
        Ok(())
    }

    /// Makes the set of NAT backends `(backend address, backend port, IP protocol)` whose
    /// replies are redirected (matched on the packet's source) exactly `backends`.
    pub fn set_nat_returns(&mut self, backends: &[(IpAddr, u16, u8)]) -> Result<(), AfXdpError> {
        let want: HashSet<FlowKey> = backends
            .iter()
            .map(|&(a, p, pr)| flow_key(a, p, pr))
            .collect();
        for k in want.difference(&self.cur_nat) {
            self.nat_return
                .insert(k, 1, 0)
                .map_err(map_err("nat_return"))?;
        }
        for k in self.cur_nat.difference(&want) {
            remove_ok_if_absent(&mut self.nat_return, k).map_err(map_err("nat_return"))?;
        }
        self.cur_nat = want;
        Ok(())
    }

    /// Makes the set of the host's own addresses exactly `addrs`: packets to them go to the
    /// kernel unless a VIP listener matches. Returns what changed.
    pub fn set_local_addrs(
        &mut self,
        addrs: &BTreeSet<IpAddr>,
    ) -> Result<LocalAddrChanges, AfXdpError> {
        let key = |a: &IpAddr| AddrKey { addr: addr16(*a).0 };
        let mut changes = LocalAddrChanges::default();
        let new: Vec<IpAddr> = addrs.difference(&self.cur_local).copied().collect();
        for a in new {
            self.local_addrs
                .insert(key(&a), 1, 0)
                .map_err(map_err("local_addrs"))?;
            self.cur_local.insert(a);
            changes.added.insert(a);
        }
        let stale: Vec<IpAddr> = self.cur_local.difference(addrs).copied().collect();
        for a in stale {
            remove_ok_if_absent(&mut self.local_addrs, &key(&a)).map_err(map_err("local_addrs"))?;
            self.cur_local.remove(&a);
            changes.removed.insert(a);
        }
        Ok(changes)
    }

    /// The addresses the `local_addrs` map holds.
    pub fn local_addrs(&self) -> &BTreeSet<IpAddr> {
        &self.cur_local
    }

    /// Sends packets received on `queue` to the AF_XDP socket `fd` (an [`super::XskPort`]
    /// bound to this interface and queue: see [`super::XskPort::fd`]).
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), AfXdpError> {
        self.xsks.set(queue, fd, 0).map_err(map_err("xsks_map"))?;
        self.sockets.insert(queue, fd);
        Ok(())
    }

    /// Stops redirecting `queue` (its packets then go to the kernel).
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), AfXdpError> {
        if self.sockets.remove(&queue).is_some() {
            self.xsks.unset(queue).map_err(map_err("xsks_map"))?;
        }
        Ok(())
    }

    /// The program's counters summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, AfXdpError> {
        let sum = |i: u32| -> Result<u64, AfXdpError> {
            let v = self.counters.get(&i, 0).map_err(map_err("counters"))?;
            Ok(v.iter().copied().fold(0u64, u64::wrapping_add))
        };
        Ok(XdpCounters {
            redirected: sum(CNT_REDIRECTED)?,
            passed: sum(CNT_PASSED)?,
            parse_errors: sum(CNT_PARSE_ERROR)?,
            no_socket: sum(CNT_NO_SOCKET)?,
        })
    }

    /// Detaches the program now (also done on drop).
    pub fn detach(&mut self) {
        if self.link.take().is_some() {
            log::info!("XDP program detached from {}", self.ifname);
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        self.detach();
    }
}

fn join(addrs: &BTreeSet<IpAddr>) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn remove_ok_if_absent<K: Pod>(
    map: &mut HashMap<MapData, K, u32>,
    k: &K,
) -> Result<(), aya::maps::MapError> {
    match map.remove(k) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_c_layout() {
        let k = flow_key("10.1.2.3".parse().unwrap(), 0x1234, 17);
        // SAFETY: FlowKey is Pod (repr(C), no padding), so viewing it as bytes is defined.
        let bytes: [u8; 20] = unsafe { std::mem::transmute(k) };
        assert_eq!(
            &bytes[..16],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]
        );
        assert_eq!(&bytes[16..], &[0x12, 0x34, 17, 4]);
        let k6 = flow_key("2001:db8::1".parse().unwrap(), 80, 6);
        assert_eq!(k6.family, 6);
        assert_eq!(k6.addr[0..2], [0x20, 0x01]);
    }

    #[test]
    fn object_is_embedded_and_has_the_program_and_maps() {
        assert_eq!(&XDP_OBJECT[..4], b"\x7fELF");
        let hay = XDP_OBJECT;
        for name in [
            "fiberlb_xdp",
            "xsks_map",
            "vips",
            "nat_return",
            "vip_addrs",
            "local_addrs",
            "counters",
        ] {
            assert!(
                hay.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name} missing"
            );
        }
    }
}
