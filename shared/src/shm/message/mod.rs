//! Commands and replies exchanged over the rings, as fixed-size, checksummed frames.
//!
//! Frame layout (one ring slot, [`SLOT_SIZE`] bytes, integers little-endian):
//!
//! | bytes   | field                                                              |
//! |---------|--------------------------------------------------------------------|
//! | 0..2    | magic `0x4C46` ("FL")                                              |
//! | 2       | format version ([`FORMAT_VERSION`])                                |
//! | 3       | kind (see `kind`)                                                  |
//! | 4..6    | payload length, at most [`MAX_PAYLOAD`]                            |
//! | 6..8    | reserved, zero                                                     |
//! | 8..16   | sequence number: the message's ring position + 1                   |
//! | 16..24  | configuration generation the message belongs to                    |
//! | 24..28  | CRC-32 (IEEE) over bytes 0..24 and the payload                     |
//! | 28..32  | reserved, zero                                                     |
//! | 32..    | payload, then zero padding to the end of the slot                  |
//!
//! [`decode`] trusts nothing: it never panics, whatever the bytes, and rejects a wrong length,
//! magic, version or kind, a bad checksum, non-zero padding, an out-of-range enum value, a bad
//! address family, a name that is too long or not UTF-8, and a payload shorter or longer than
//! its kind needs. The checksum guards against torn or stray writes, not against an attacker
//! who can write the region (the region is owner-only for that).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::{
    AdminState, Algorithm, Backend, BackendId, Encap, Listener, ListenerId, Mode, Pool, PoolId,
    Protocol, TunnelSettings,
};

pub use super::ring::{SlotBytes, SLOT_SIZE};

/// First two bytes of every frame.
pub const FRAME_MAGIC: u16 = 0x4C46;
/// Version of this encoding; bump on any change.
pub const FORMAT_VERSION: u8 = 1;
/// Size of the frame header.
pub const HEADER_LEN: usize = 32;
/// Largest payload.
pub const MAX_PAYLOAD: usize = SLOT_SIZE - HEADER_LEN;
/// Longest listener or pool name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest rejection reason, in bytes; [`Message::rejected`] truncates to it.
pub const MAX_REASON_LEN: usize = 200;

/// Kind byte of each message.
pub mod kind {
    pub const BEGIN: u8 = 1;
    pub const RESET: u8 = 2;
    pub const UPSERT_LISTENER: u8 = 3;
    pub const DELETE_LISTENER: u8 = 4;
    pub const UPSERT_POOL: u8 = 5;
    pub const DELETE_POOL: u8 = 6;
    pub const UPSERT_BACKEND: u8 = 7;
    pub const DELETE_BACKEND: u8 = 8;
    pub const SET_TUNNEL: u8 = 9;
    pub const COMMIT: u8 = 10;
    pub const ABORT: u8 = 11;
    pub const APPLIED: u8 = 0x81;
    pub const REJECTED: u8 = 0x82;
}

/// Why the data plane rejected a message or a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum RejectCode {
    /// The frame failed to decode (checksum, length, enum value...).
    Malformed = 1,
    /// The sequence number was not the expected one (replayed, lost or reordered).
    OutOfOrder = 2,
    /// `Begin` for a generation not above the applied one.
    StaleGeneration = 3,
    /// A transaction message arrived with no transaction open.
    NoTransaction = 4,
    /// `Begin` arrived while another transaction was open; both are discarded, start again.
    TransactionOpen = 5,
    /// `Commit` counted a different number of messages than arrived.
    CountMismatch = 6,
    /// A message carried a generation other than the open transaction's.
    GenerationMismatch = 7,
    /// A delete named an object that does not exist.
    UnknownObject = 8,
    /// The resulting configuration failed validation.
    Invalid = 9,
    /// A reply kind was sent to the data plane, or a command to the control plane.
    WrongDirection = 10,
    /// The control plane aborted the transaction.
    Aborted = 11,
    /// More objects than the data plane has room for.
    TooManyObjects = 12,
}

impl RejectCode {
    fn from_u16(v: u16) -> Option<Self> {
        use RejectCode::*;
        Some(match v {
            1 => Malformed,
            2 => OutOfOrder,
            3 => StaleGeneration,
            4 => NoTransaction,
            5 => TransactionOpen,
            6 => CountMismatch,
            7 => GenerationMismatch,
            8 => UnknownObject,
            9 => Invalid,
            10 => WrongDirection,
            11 => Aborted,
            12 => TooManyObjects,
            _ => return None,
        })
    }
}

/// A command (control plane → data plane) or a reply (data plane → control plane). The
/// generation and sequence number travel in the [`Frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Opens a transaction for the frame's generation.
    Begin,
    /// Empties the transaction's working copy (for a full resync).
    Reset,
    UpsertListener(Listener),
    DeleteListener(ListenerId),
    UpsertPool(Pool),
    DeletePool(PoolId),
    UpsertBackend(Backend),
    DeleteBackend(BackendId),
    SetTunnel(TunnelSettings),
    /// Closes the transaction; `count` is the number of messages between `Begin` and `Commit`.
    Commit {
        count: u32,
    },
    /// Discards the open transaction.
    Abort,
    /// Reply: the generation is live.
    Applied,
    /// Reply: the generation (or a message of it) was refused.
    Rejected {
        code: RejectCode,
        reason: String,
    },
}

impl Message {
    /// A `Rejected` reply, its reason truncated (at a character boundary) to
    /// [`MAX_REASON_LEN`] bytes so it always encodes.
    pub fn rejected(code: RejectCode, reason: &str) -> Message {
        let mut end = reason.len().min(MAX_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Message::Rejected {
            code,
            reason: reason[..end].to_string(),
        }
    }

    /// True for the kinds the data plane sends.
    pub fn is_reply(&self) -> bool {
        matches!(self, Message::Applied | Message::Rejected { .. })
    }
}

/// A message with its sequence number and generation: what one slot carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub generation: u64,
    pub message: Message,
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("name is {len} bytes long; names sent to the data plane are limited to {max} bytes — shorten it", max = MAX_NAME_LEN)]
    NameTooLong { len: usize },
    #[error("rejection reason is {len} bytes long, limit {max}; build it with Message::rejected", max = MAX_REASON_LEN)]
    ReasonTooLong { len: usize },
}

/// Why bytes are not a valid frame. `Copy` and allocation-free.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is {0} bytes, expected exactly {SLOT_SIZE}")]
    BadLength(usize),
    #[error("bad frame magic {0:#06x}: not a fiberlb message (stray write or wrong region?)")]
    BadMagic(u16),
    #[error("frame format version {0}, this build speaks {FORMAT_VERSION}: run matching data and control planes")]
    BadVersion(u8),
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("payload length {0} exceeds the {MAX_PAYLOAD}-byte maximum")]
    PayloadTooLong(u16),
    #[error("reserved header bytes are not zero")]
    NonZeroReserved,
    #[error("checksum mismatch: frame says {stored:#010x}, content gives {computed:#010x} (torn or corrupted write)")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("bytes after the payload are not zero")]
    NonZeroPadding,
    #[error("payload too short for a {0} message")]
    Truncated(&'static str),
    #[error("payload has {0} bytes more than its kind uses")]
    TrailingBytes(usize),
    #[error("field {field}: value {value} is not one of the allowed values")]
    BadEnum { field: &'static str, value: u16 },
    #[error("address family {0}: expected 4 or 6")]
    BadFamily(u8),
    #[error("IPv4 address with non-zero bytes after the first four")]
    BadAddressPadding,
    #[error("name of {0} bytes exceeds the limit of {MAX_NAME_LEN}")]
    NameTooLong(usize),
    #[error("text field is not valid UTF-8")]
    NotUtf8,
}

// ---- CRC-32 (IEEE 802.3, reflected 0xEDB88320), computed by crc32fast. ----

/// CRC-32 (IEEE) of `header[..24]` followed by `payload`: what bytes 24..28 hold.
fn frame_crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header.get(..24).unwrap_or(&[]));
    h.update(payload);
    h.finalize()
}

/// CRC-32 (IEEE) of `data`, exposed for tests against the standard check value.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

// ---- encoding ----

struct Writer {
    buf: [u8; MAX_PAYLOAD],
    len: usize,
}

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        // Every payload is far below MAX_PAYLOAD (names and reasons are checked first), so
        // this never truncates; `get_mut` keeps it panic-free regardless.
        if let Some(dst) = self.buf.get_mut(self.len..self.len + b.len()) {
            dst.copy_from_slice(b);
            self.len += b.len();
        }
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn addr(&mut self, a: IpAddr) {
        let mut b = [0u8; 16];
        match a {
            IpAddr::V4(v4) => {
                self.u8(4);
                b[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.u8(6);
                b = v6.octets();
            }
        }
        self.bytes(&b);
    }
    fn text(&mut self, s: &str, max: usize, too_long: EncodeError) -> Result<(), EncodeError> {
        if s.len() > max {
            return Err(too_long);
        }
        self.u8(s.len() as u8);
        self.bytes(s.as_bytes());
        Ok(())
    }
    fn name(&mut self, s: &str) -> Result<(), EncodeError> {
        self.text(s, MAX_NAME_LEN, EncodeError::NameTooLong { len: s.len() })
    }
}

fn protocol_code(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Dsr => 0,
        Mode::Tunnel => 1,
        Mode::Nat => 2,
    }
}

fn encap_code(e: Encap) -> u8 {
    match e {
        Encap::Ipip => 0,
        Encap::Gue => 1,
    }
}

fn algorithm_code(a: Algorithm) -> u8 {
    match a {
        Algorithm::Maglev => 0,
        Algorithm::MaglevSourceIp => 1,
    }
}

fn admin_code(a: AdminState) -> u8 {
    match a {
        AdminState::Enabled => 0,
        AdminState::Drained => 1,
        AdminState::Disabled => 2,
    }
}

/// Encodes a frame into one slot.
///
/// # Errors
/// A name longer than [`MAX_NAME_LEN`] or a reason longer than [`MAX_REASON_LEN`] bytes.
pub fn encode(frame: &Frame) -> Result<SlotBytes, EncodeError> {
    let mut w = Writer {
        buf: [0; MAX_PAYLOAD],
        len: 0,
    };
    let kind = match &frame.message {
        Message::Begin => kind::BEGIN,
        Message::Reset => kind::RESET,
        Message::UpsertListener(l) => {
            w.u32(l.id.0);
            w.addr(l.vip);
            w.u16(l.port);
            w.u8(protocol_code(l.protocol));
            w.u8(mode_code(l.mode));
            w.u8(encap_code(l.encap));
            w.u32(l.pool.0);
            w.name(&l.name)?;
            kind::UPSERT_LISTENER
        }
        Message::DeleteListener(id) => {
            w.u32(id.0);
            kind::DELETE_LISTENER
        }
        Message::UpsertPool(p) => {
            w.u32(p.id.0);
            w.u8(algorithm_code(p.algorithm));
            w.u32(p.table_size);
            w.name(&p.name)?;
            kind::UPSERT_POOL
        }
        Message::DeletePool(id) => {
            w.u32(id.0);
            kind::DELETE_POOL
        }
        Message::UpsertBackend(b) => {
            w.u32(b.id.0);
            w.u32(b.pool.0);
            w.addr(b.address);
            w.u16(b.port);
            w.u32(b.weight);
            match b.mac {
                Some(mac) => {
                    w.u8(1);
                    w.bytes(&mac);
                }
                None => {
                    w.u8(0);
                    w.bytes(&[0; 6]);
                }
            }
            w.u8(admin_code(b.admin));
            w.u8(u8::from(b.healthy));
            kind::UPSERT_BACKEND
        }
        Message::DeleteBackend(id) => {
            w.u32(id.0);
            kind::DELETE_BACKEND
        }
        Message::SetTunnel(t) => {
            w.u8(u8::from(t.source_v4.is_some()));
            w.bytes(&t.source_v4.map_or([0; 4], |a| a.octets()));
            w.u8(u8::from(t.source_v6.is_some()));
            w.bytes(&t.source_v6.map_or([0; 16], |a| a.octets()));
            w.u16(t.gue_port);
            kind::SET_TUNNEL
        }
        Message::Commit { count } => {
            w.u32(*count);
            kind::COMMIT
        }
        Message::Abort => kind::ABORT,
        Message::Applied => kind::APPLIED,
        Message::Rejected { code, reason } => {
            w.u16(*code as u16);
            w.text(
                reason,
                MAX_REASON_LEN,
                EncodeError::ReasonTooLong { len: reason.len() },
            )?;
            kind::REJECTED
        }
    };
    let mut out = [0u8; SLOT_SIZE];
    out[0..2].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    out[2] = FORMAT_VERSION;
    out[3] = kind;
    out[4..6].copy_from_slice(&(w.len as u16).to_le_bytes());
    out[8..16].copy_from_slice(&frame.seq.to_le_bytes());
    out[16..24].copy_from_slice(&frame.generation.to_le_bytes());
    let payload = &w.buf[..w.len];
    out[HEADER_LEN..HEADER_LEN + w.len].copy_from_slice(payload);
    let crc = frame_crc(&out, payload);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

// ---- decoding ----

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let out = self
            .buf
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or(DecodeError::Truncated(self.what))?;
        self.pos += n;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadEnum {
                field,
                value: v.into(),
            }),
        }
    }
    fn addr(&mut self) -> Result<IpAddr, DecodeError> {
        let family = self.u8()?;
        let b: [u8; 16] = self.array()?;
        match family {
            4 => {
                if b[4..].iter().any(|&x| x != 0) {
                    return Err(DecodeError::BadAddressPadding);
                }
                Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
            }
            6 => Ok(IpAddr::V6(Ipv6Addr::from(b))),
            f => Err(DecodeError::BadFamily(f)),
        }
    }
    fn text(&mut self, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u8()?);
        if len > max {
            return Err(DecodeError::NameTooLong(len));
        }
        let b = self.bytes(len)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| DecodeError::NotUtf8)
    }
    fn enum_u8<T>(
        &mut self,
        field: &'static str,
        f: fn(u8) -> Option<T>,
    ) -> Result<T, DecodeError> {
        let v = self.u8()?;
        f(v).ok_or(DecodeError::BadEnum {
            field,
            value: v.into(),
        })
    }
}

fn protocol_of(v: u8) -> Option<Protocol> {
    Protocol::from_ip_proto(v)
}

fn mode_of(v: u8) -> Option<Mode> {
    [Mode::Dsr, Mode::Tunnel, Mode::Nat]
        .get(usize::from(v))
        .copied()
}

fn encap_of(v: u8) -> Option<Encap> {
    [Encap::Ipip, Encap::Gue].get(usize::from(v)).copied()
}

fn algorithm_of(v: u8) -> Option<Algorithm> {
    [Algorithm::Maglev, Algorithm::MaglevSourceIp]
        .get(usize::from(v))
        .copied()
}

fn admin_of(v: u8) -> Option<AdminState> {
    [
        AdminState::Enabled,
        AdminState::Drained,
        AdminState::Disabled,
    ]
    .get(usize::from(v))
    .copied()
}

fn kind_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        kind::BEGIN => "Begin",
        kind::RESET => "Reset",
        kind::UPSERT_LISTENER => "UpsertListener",
        kind::DELETE_LISTENER => "DeleteListener",
        kind::UPSERT_POOL => "UpsertPool",
        kind::DELETE_POOL => "DeletePool",
        kind::UPSERT_BACKEND => "UpsertBackend",
        kind::DELETE_BACKEND => "DeleteBackend",
        kind::SET_TUNNEL => "SetTunnel",
        kind::COMMIT => "Commit",
        kind::ABORT => "Abort",
        kind::APPLIED => "Applied",
        kind::REJECTED => "Rejected",
        _ => return None,
    })
}

/// Decodes and validates one slot. Never panics.
///
/// # Errors
/// A [`DecodeError`] saying what is wrong with the bytes.
pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    if bytes.len() != SLOT_SIZE {
        return Err(DecodeError::BadLength(bytes.len()));
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let magic = u16_at(0);
    if magic != FRAME_MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    if bytes[2] != FORMAT_VERSION {
        return Err(DecodeError::BadVersion(bytes[2]));
    }
    let kind = bytes[3];
    let what = kind_name(kind).ok_or(DecodeError::UnknownKind(kind))?;
    let len = u16_at(4);
    if usize::from(len) > MAX_PAYLOAD {
        return Err(DecodeError::PayloadTooLong(len));
    }
    if u16_at(6) != 0 || bytes[28..32].iter().any(|&b| b != 0) {
        return Err(DecodeError::NonZeroReserved);
    }
    let end = HEADER_LEN + usize::from(len);
    let payload = &bytes[HEADER_LEN..end];
    let stored = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let computed = frame_crc(bytes, payload);
    if stored != computed {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    if bytes[end..].iter().any(|&b| b != 0) {
        return Err(DecodeError::NonZeroPadding);
    }
    let mut r = Reader {
        buf: payload,
        pos: 0,
        what,
    };
    let message = match kind {
        kind::BEGIN => Message::Begin,
        kind::RESET => Message::Reset,
        kind::UPSERT_LISTENER => {
            let id = ListenerId(r.u32()?);
            let vip = r.addr()?;
            let port = r.u16()?;
            let protocol = r.enum_u8("protocol", protocol_of)?;
            let mode = r.enum_u8("mode", mode_of)?;
            let encap = r.enum_u8("encap", encap_of)?;
            let pool = PoolId(r.u32()?);
            let name = r.text(MAX_NAME_LEN)?;
            Message::UpsertListener(Listener {
                id,
                name,
                vip,
                port,
                protocol,
                mode,
                encap,
                pool,
            })
        }
        kind::DELETE_LISTENER => Message::DeleteListener(ListenerId(r.u32()?)),
        kind::UPSERT_POOL => {
            let id = PoolId(r.u32()?);
            let algorithm = r.enum_u8("algorithm", algorithm_of)?;
            let table_size = r.u32()?;
            let name = r.text(MAX_NAME_LEN)?;
            Message::UpsertPool(Pool {
                id,
                name,
                algorithm,
                table_size,
            })
        }
        kind::DELETE_POOL => Message::DeletePool(PoolId(r.u32()?)),
        kind::UPSERT_BACKEND => {
            let id = BackendId(r.u32()?);
            let pool = PoolId(r.u32()?);
            let address = r.addr()?;
            let port = r.u16()?;
            let weight = r.u32()?;
            let has_mac = r.flag("mac present")?;
            let mac: [u8; 6] = r.array()?;
            if !has_mac && mac != [0; 6] {
                return Err(DecodeError::BadAddressPadding);
            }
            let admin = r.enum_u8("admin state", admin_of)?;
            let healthy = r.flag("healthy")?;
            Message::UpsertBackend(Backend {
                id,
                pool,
                address,
                port,
                weight,
                mac: has_mac.then_some(mac),
                admin,
                healthy,
            })
        }
        kind::DELETE_BACKEND => Message::DeleteBackend(BackendId(r.u32()?)),
        kind::SET_TUNNEL => {
            let has_v4 = r.flag("tunnel source_v4 present")?;
            let v4: [u8; 4] = r.array()?;
            let has_v6 = r.flag("tunnel source_v6 present")?;
            let v6: [u8; 16] = r.array()?;
            if (!has_v4 && v4 != [0; 4]) || (!has_v6 && v6 != [0; 16]) {
                return Err(DecodeError::BadAddressPadding);
            }
            let gue_port = r.u16()?;
            Message::SetTunnel(TunnelSettings {
                source_v4: has_v4.then(|| Ipv4Addr::from(v4)),
                source_v6: has_v6.then(|| Ipv6Addr::from(v6)),
                gue_port,
            })
        }
        kind::COMMIT => Message::Commit { count: r.u32()? },
        kind::ABORT => Message::Abort,
        kind::APPLIED => Message::Applied,
        kind::REJECTED => {
            let v = r.u16()?;
            let code = RejectCode::from_u16(v).ok_or(DecodeError::BadEnum {
                field: "reject code",
                value: v,
            })?;
            let reason = r.text(MAX_REASON_LEN)?;
            Message::Rejected { code, reason }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    if r.pos != payload.len() {
        return Err(DecodeError::TrailingBytes(payload.len() - r.pos));
    }
    Ok(Frame {
        seq: u64_at(8),
        generation: u64_at(16),
        message,
    })
}

#[cfg(all(test, not(loom)))]
mod tests;
