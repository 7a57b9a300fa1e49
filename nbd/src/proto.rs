//! NBD wire format: constants and fixed-size structs, encoded and decoded explicitly in
//! big-endian (network byte order), as the NBD protocol document (doc/proto.md of the NBD
//! project) defines them. Section names below are that document's.
//!
//! ```text
//!  handshake, server first ("Newstyle negotiation"):
//!    u64 NBDMAGIC | u64 IHAVEOPT | u16 handshake flags          server -> client (18 B)
//!    u32 client flags                                           client -> server
//!  option request:  u64 IHAVEOPT | u32 option | u32 length | data
//!  option reply:    u64 REPLY_MAGIC | u32 option | u32 reply type | u32 length | data
//!  transmission ("Simple replies"):
//!    request: u32 REQUEST_MAGIC | u16 flags | u16 type | u64 handle | u64 offset | u32 length
//!    reply:   u32 SIMPLE_REPLY_MAGIC | u32 error | u64 handle   (+ data for a read)
//! ```

/// "NBDMAGIC": first word of the server's greeting.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT": second word of the greeting, and the start of each option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Start of each option reply.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Start of each transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Start of each simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flags (server).
pub mod handshake_flags {
    /// The server speaks fixed newstyle.
    pub const FIXED_NEWSTYLE: u16 = 1 << 0;
    /// The server omits the 124 zero bytes after NBD_OPT_EXPORT_NAME when asked.
    pub const NO_ZEROES: u16 = 1 << 1;
}

/// Client flags (the client's answer to the greeting).
pub mod client_flags {
    /// The client speaks fixed newstyle.
    pub const FIXED_NEWSTYLE: u32 = 1 << 0;
    /// The client wants no 124 zero bytes after NBD_OPT_EXPORT_NAME.
    pub const NO_ZEROES: u32 = 1 << 1;
    /// Every flag this server knows.
    pub const KNOWN: u32 = FIXED_NEWSTYLE | NO_ZEROES;
}

/// Option codes ("Option types").
pub mod opt {
    /// Choose an export, old style (no reply on error: the server closes).
    pub const EXPORT_NAME: u32 = 1;
    /// The client gives up.
    pub const ABORT: u32 = 2;
    /// List exports.
    pub const LIST: u32 = 3;
    /// Describe an export.
    pub const INFO: u32 = 6;
    /// Describe and choose an export.
    pub const GO: u32 = 7;
    /// Structured replies (not supported here: answered ERR_UNSUP).
    pub const STRUCTURED_REPLY: u32 = 8;
}

/// Option reply types ("Option reply types").
pub mod rep {
    /// Done.
    pub const ACK: u32 = 1;
    /// One export, for NBD_OPT_LIST.
    pub const SERVER: u32 = 2;
    /// One piece of information, for NBD_OPT_INFO / NBD_OPT_GO.
    pub const INFO: u32 = 3;
    /// The option is not supported.
    pub const ERR_UNSUP: u32 = (1 << 31) + 1;
    /// The option's data is malformed.
    pub const ERR_INVALID: u32 = (1 << 31) + 3;
    /// No such export.
    pub const ERR_UNKNOWN: u32 = (1 << 31) + 6;
    /// The option's data is too large.
    pub const ERR_TOO_BIG: u32 = (1 << 31) + 9;
}

/// Information types, in NBD_REP_INFO replies.
pub mod info {
    /// u64 size, u16 transmission flags.
    pub const EXPORT: u16 = 0;
    /// The export's name.
    pub const NAME: u16 = 1;
    /// u32 minimum, preferred, maximum block size.
    pub const BLOCK_SIZE: u16 = 3;
}

/// Transmission flags ("Transmission flags").
pub mod tflags {
    /// Always set.
    pub const HAS_FLAGS: u16 = 1 << 0;
    /// NBD_CMD_FLUSH is supported.
    pub const SEND_FLUSH: u16 = 1 << 2;
    /// NBD_CMD_FLAG_FUA is supported.
    pub const SEND_FUA: u16 = 1 << 3;
    /// NBD_CMD_TRIM is supported.
    pub const SEND_TRIM: u16 = 1 << 5;
    /// NBD_CMD_WRITE_ZEROES is supported.
    pub const SEND_WRITE_ZEROES: u16 = 1 << 6;
    /// Several connections to one export see one consistent device, and a flush on one
    /// covers writes acknowledged on all.
    pub const CAN_MULTI_CONN: u16 = 1 << 8;
}

/// Command types ("Request types").
pub mod cmd {
    /// Read.
    pub const READ: u16 = 0;
    /// Write (payload follows the request).
    pub const WRITE: u16 = 1;
    /// Disconnect.
    pub const DISC: u16 = 2;
    /// Flush.
    pub const FLUSH: u16 = 3;
    /// Trim (discard).
    pub const TRIM: u16 = 4;
    /// Write zeroes.
    pub const WRITE_ZEROES: u16 = 6;
}

/// Command flags ("Command flags").
pub mod cmd_flags {
    /// Force unit access: durable before the reply.
    pub const FUA: u16 = 1 << 0;
    /// Write-zeroes: do not punch a hole (Keel frees whole pages either way; both read
    /// back as zeroes).
    pub const NO_HOLE: u16 = 1 << 1;
}

/// Error values in replies ("Error values"); not the host's errno.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: u32 = 1;
    /// I/O error.
    pub const EIO: u32 = 5;
    /// Out of memory.
    pub const ENOMEM: u32 = 12;
    /// Invalid argument.
    pub const EINVAL: u32 = 22;
    /// No space left.
    pub const ENOSPC: u32 = 28;
    /// Value too large.
    pub const EOVERFLOW: u32 = 75;
    /// Not supported.
    pub const ENOTSUP: u32 = 95;
    /// Server shutting down.
    pub const ESHUTDOWN: u32 = 108;
}

/// Largest read or write payload this server accepts (32 MiB, the protocol's
/// recommended limit).
pub const MAX_PAYLOAD_BYTES: u32 = 32 << 20;
/// Largest option data this server reads (an export name is at most 4 KiB).
pub const MAX_OPTION_BYTES: u32 = 64 << 10;

/// The server's greeting.
pub const GREETING_BYTES: usize = 18;
/// An option request header.
pub const OPTION_HEADER_BYTES: usize = 16;
/// An option reply header.
pub const OPTION_REPLY_HEADER_BYTES: usize = 20;
/// A transmission request.
pub const REQUEST_BYTES: usize = 28;
/// A simple reply header.
pub const SIMPLE_REPLY_BYTES: usize = 16;

/// The server's greeting with `flags` (handshake flags).
pub fn greeting(flags: u16) -> [u8; GREETING_BYTES] {
    let mut b = [0u8; GREETING_BYTES];
    b[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&flags.to_be_bytes());
    b
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// An option request's header (its data follows, `len` bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    /// Must be [`IHAVEOPT`].
    pub magic: u64,
    /// Option code ([`opt`]).
    pub option: u32,
    /// Bytes of data that follow.
    pub len: u32,
}

impl OptionHeader {
    /// Encodes.
    pub fn encode(&self) -> [u8; OPTION_HEADER_BYTES] {
        let mut b = [0u8; OPTION_HEADER_BYTES];
        b[0..8].copy_from_slice(&self.magic.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Decodes.
    pub fn decode(b: &[u8; OPTION_HEADER_BYTES]) -> Self {
        OptionHeader {
            magic: be64(b, 0),
            option: be32(b, 8),
            len: be32(b, 12),
        }
    }
}

/// An option reply's header (its data follows, `len` bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionReply {
    /// The option answered.
    pub option: u32,
    /// Reply type ([`rep`]).
    pub reply: u32,
    /// Bytes of data that follow.
    pub len: u32,
}

impl OptionReply {
    /// Encodes (with [`REPLY_MAGIC`]).
    pub fn encode(&self) -> [u8; OPTION_REPLY_HEADER_BYTES] {
        let mut b = [0u8; OPTION_REPLY_HEADER_BYTES];
        b[0..8].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
        b[8..12].copy_from_slice(&self.option.to_be_bytes());
        b[12..16].copy_from_slice(&self.reply.to_be_bytes());
        b[16..20].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Decodes; None if the magic is wrong.
    pub fn decode(b: &[u8; OPTION_REPLY_HEADER_BYTES]) -> Option<Self> {
        (be64(b, 0) == REPLY_MAGIC).then(|| OptionReply {
            option: be32(b, 8),
            reply: be32(b, 12),
            len: be32(b, 16),
        })
    }
}

/// A transmission request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Must be [`REQUEST_MAGIC`].
    pub magic: u32,
    /// Command flags ([`cmd_flags`]).
    pub flags: u16,
    /// Command type ([`cmd`]).
    pub kind: u16,
    /// The client's handle, echoed in the reply.
    pub handle: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub len: u32,
}

impl Request {
    /// Encodes.
    pub fn encode(&self) -> [u8; REQUEST_BYTES] {
        let mut b = [0u8; REQUEST_BYTES];
        b[0..4].copy_from_slice(&self.magic.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Decodes (the magic is checked by the caller).
    pub fn decode(b: &[u8; REQUEST_BYTES]) -> Self {
        Request {
            magic: be32(b, 0),
            flags: be16(b, 4),
            kind: be16(b, 6),
            handle: be64(b, 8),
            offset: be64(b, 16),
            len: be32(b, 24),
        }
    }
}

/// A simple reply's header (a read's data follows it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimpleReply {
    /// NBD error ([`errno`]), 0 for success.
    pub error: u32,
    /// The request's handle.
    pub handle: u64,
}

impl SimpleReply {
    /// Encodes (with [`SIMPLE_REPLY_MAGIC`]).
    pub fn encode(&self) -> [u8; SIMPLE_REPLY_BYTES] {
        let mut b = [0u8; SIMPLE_REPLY_BYTES];
        b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&self.error.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle.to_be_bytes());
        b
    }

    /// Decodes; None if the magic is wrong.
    pub fn decode(b: &[u8; SIMPLE_REPLY_BYTES]) -> Option<Self> {
        (be32(b, 0) == SIMPLE_REPLY_MAGIC).then(|| SimpleReply {
            error: be32(b, 4),
            handle: be64(b, 8),
        })
    }
}

/// The data of an NBD_REP_INFO reply of type NBD_INFO_EXPORT: type, size, flags.
pub fn info_export(size_bytes: u64, flags: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..2].copy_from_slice(&info::EXPORT.to_be_bytes());
    b[2..10].copy_from_slice(&size_bytes.to_be_bytes());
    b[10..12].copy_from_slice(&flags.to_be_bytes());
    b
}

/// The data of an NBD_REP_INFO reply of type NBD_INFO_BLOCK_SIZE.
pub fn info_block_size(min: u32, preferred: u32, max: u32) -> [u8; 14] {
    let mut b = [0u8; 14];
    b[0..2].copy_from_slice(&info::BLOCK_SIZE.to_be_bytes());
    b[2..6].copy_from_slice(&min.to_be_bytes());
    b[6..10].copy_from_slice(&preferred.to_be_bytes());
    b[10..14].copy_from_slice(&max.to_be_bytes());
    b
}

/// The data of an NBD_OPT_INFO / NBD_OPT_GO request: export name and the information
/// types asked for. None if it is malformed (lengths that do not add up).
pub fn parse_info_request(data: &[u8]) -> Option<(Vec<u8>, Vec<u16>)> {
    if data.len() < 4 {
        return None;
    }
    let name_len = be32(data, 0) as usize;
    let rest = data.get(4..)?;
    let name = rest.get(..name_len)?.to_vec();
    let rest = &rest[name_len..];
    if rest.len() < 2 {
        return None;
    }
    let n = usize::from(be16(rest, 0));
    let reqs = &rest[2..];
    if reqs.len() != 2 * n {
        return None;
    }
    Some((name, (0..n).map(|i| be16(reqs, 2 * i)).collect()))
}

const _: () = assert!(GREETING_BYTES == 8 + 8 + 2);
const _: () = assert!(OPTION_HEADER_BYTES == 8 + 4 + 4);
const _: () = assert!(OPTION_REPLY_HEADER_BYTES == 8 + 4 + 4 + 4);
const _: () = assert!(REQUEST_BYTES == 4 + 2 + 2 + 8 + 8 + 4);
const _: () = assert!(SIMPLE_REPLY_BYTES == 4 + 4 + 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_in_network_order() {
        let r = Request {
            magic: REQUEST_MAGIC,
            flags: cmd_flags::FUA,
            kind: cmd::WRITE,
            handle: 0x0102_0304_0506_0708,
            offset: 0x1122_3344_5566_7788,
            len: 4096,
        };
        let b = r.encode();
        assert_eq!(&b[..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(&b[4..8], &[0, 1, 0, 1]);
        assert_eq!(&b[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[24..], &[0, 0, 0x10, 0]);
        assert_eq!(Request::decode(&b), r);
    }

    #[test]
    fn replies_and_options_round_trip() {
        let r = SimpleReply {
            error: errno::EINVAL,
            handle: 77,
        };
        let b = r.encode();
        assert_eq!(&b[..4], &[0x67, 0x44, 0x66, 0x98]);
        assert_eq!(SimpleReply::decode(&b), Some(r));
        let mut bad = b;
        bad[0] ^= 1;
        assert_eq!(SimpleReply::decode(&bad), None);
        let o = OptionHeader {
            magic: IHAVEOPT,
            option: opt::GO,
            len: 9,
        };
        assert_eq!(OptionHeader::decode(&o.encode()), o);
        assert_eq!(&o.encode()[..8], b"IHAVEOPT");
        let p = OptionReply {
            option: opt::LIST,
            reply: rep::ERR_UNSUP,
            len: 0,
        };
        assert_eq!(OptionReply::decode(&p.encode()), Some(p));
        assert_eq!(&greeting(3)[..8], b"NBDMAGIC");
        assert_eq!(&greeting(3)[16..], &[0, 3]);
    }

    #[test]
    fn info_requests_parse_only_when_lengths_add_up() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"vol");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&info::NAME.to_be_bytes());
        d.extend_from_slice(&info::BLOCK_SIZE.to_be_bytes());
        assert_eq!(
            parse_info_request(&d),
            Some((b"vol".to_vec(), vec![info::NAME, info::BLOCK_SIZE]))
        );
        assert_eq!(parse_info_request(&d[..d.len() - 1]), None);
        let mut long = d.clone();
        long.push(0);
        assert_eq!(parse_info_request(&long), None);
        let mut huge = d.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_info_request(&huge), None);
        assert_eq!(parse_info_request(&[]), None);
        let e = info_export(1 << 30, tflags::HAS_FLAGS);
        assert_eq!(&e[..2], &[0, 0]);
        assert_eq!(&e[2..10], &(1u64 << 30).to_be_bytes());
        assert_eq!(&info_block_size(1, 4096, 1 << 25)[..2], &[0, 3]);
    }
}
