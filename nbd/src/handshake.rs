//! The newstyle fixed handshake: greeting, client flags, then options until the client
//! chooses an export (NBD_OPT_GO or NBD_OPT_EXPORT_NAME) or leaves.
//!
//! Options answered: NBD_OPT_GO and NBD_OPT_INFO (NBD_INFO_EXPORT always, NBD_INFO_NAME
//! and NBD_INFO_BLOCK_SIZE when asked), NBD_OPT_LIST, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME;
//! any other option gets NBD_REP_ERR_UNSUP (structured replies, TLS, meta contexts).
//! Malformed option data gets NBD_REP_ERR_INVALID. A wrong magic, unknown client flags,
//! option data over [`MAX_OPTION_BYTES`](proto::MAX_OPTION_BYTES) or more than [`MAX_OPTIONS`] options close the
//! connection.

use std::io::{Read, Write};

use keel_drivers::any::AnyDevice;
use keel_engine::volume::{Volume, VolumeError, Volumes};

use crate::error::{NbdError, Result};
use crate::proto::{self, client_flags, handshake_flags, info, opt, rep, tflags};

/// Options one client may send before choosing an export.
pub const MAX_OPTIONS: usize = 256;

/// Transmission flags of every export: flush, FUA, trim and write-zeroes are supported,
/// and several connections may share an export (every reply follows a durable commit in
/// the one store they share).
pub const TRANSMISSION_FLAGS: u16 = tflags::HAS_FLAGS
    | tflags::SEND_FLUSH
    | tflags::SEND_FUA
    | tflags::SEND_TRIM
    | tflags::SEND_WRITE_ZEROES
    | tflags::CAN_MULTI_CONN;

/// Block sizes advertised in NBD_INFO_BLOCK_SIZE: any byte range works, 4 KiB avoids a
/// read-modify-write of an engine page, and payloads stop at 32 MiB.
pub const BLOCK_SIZE_MIN: u32 = 1;
/// Preferred block size.
pub const BLOCK_SIZE_PREFERRED: u32 = 4096;

/// How a handshake ended.
pub enum Outcome {
    /// The client chose this volume; transmission follows.
    Transmit(Volume<AnyDevice>),
    /// The client left (NBD_OPT_ABORT, or closed after options).
    Closed,
}

fn read_exact(s: &mut impl Read, buf: &mut [u8], op: &'static str) -> Result<()> {
    s.read_exact(buf).map_err(NbdError::io(op))
}

fn reply(s: &mut impl Write, option: u32, kind: u32, data: &[u8]) -> Result<()> {
    let h = proto::OptionReply {
        option,
        reply: kind,
        len: data.len() as u32,
    };
    let mut b = Vec::with_capacity(proto::OPTION_REPLY_HEADER_BYTES + data.len());
    b.extend_from_slice(&h.encode());
    b.extend_from_slice(data);
    s.write_all(&b).map_err(NbdError::io("write option reply"))
}

/// The volume an export name names: the name itself, or the only volume for "".
fn find(vols: &Volumes<AnyDevice>, name: &[u8]) -> Result<Option<Volume<AnyDevice>>> {
    let Ok(name) = std::str::from_utf8(name) else {
        return Ok(None);
    };
    let name = if name.is_empty() {
        match vols.list()?.as_slice() {
            [only] => only.clone(),
            _ => return Ok(None),
        }
    } else {
        name.to_string()
    };
    match vols.open(&name) {
        Ok(v) => Ok(Some(v)),
        Err(VolumeError::NoSuchVolume(_)) | Err(VolumeError::BadName { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Runs the handshake on a fresh connection (a socket; any byte stream in tests).
pub fn negotiate<S: Read + Write>(s: &mut S, vols: &Volumes<AnyDevice>) -> Result<Outcome> {
    s.write_all(&proto::greeting(
        handshake_flags::FIXED_NEWSTYLE | handshake_flags::NO_ZEROES,
    ))
    .map_err(NbdError::io("write greeting"))?;
    let mut b4 = [0u8; 4];
    read_exact(s, &mut b4, "read client flags")?;
    let cflags = u32::from_be_bytes(b4);
    if cflags & !client_flags::KNOWN != 0 || cflags & client_flags::FIXED_NEWSTYLE == 0 {
        return Err(NbdError::Protocol(format!(
            "client flags {cflags:#x} (fixed newstyle required, unknown bits refused)"
        )));
    }
    let no_zeroes = cflags & client_flags::NO_ZEROES != 0;
    for _ in 0..MAX_OPTIONS {
        let mut hb = [0u8; proto::OPTION_HEADER_BYTES];
        read_exact(s, &mut hb, "read option header")?;
        let h = proto::OptionHeader::decode(&hb);
        if h.magic != proto::IHAVEOPT {
            return Err(NbdError::Protocol(format!("option magic {:#x}", h.magic)));
        }
        if h.len > proto::MAX_OPTION_BYTES {
            return Err(NbdError::Protocol(format!(
                "option {} with {} bytes of data (at most {})",
                h.option,
                h.len,
                proto::MAX_OPTION_BYTES
            )));
        }
        let mut data = vec![0u8; h.len as usize];
        read_exact(s, &mut data, "read option data")?;
        match h.option {
            opt::ABORT => {
                // Best effort: the client may already be gone.
                let _ = reply(s, h.option, rep::ACK, &[]);
                return Ok(Outcome::Closed);
            }
            opt::LIST if !data.is_empty() => reply(s, h.option, rep::ERR_INVALID, &[])?,
            opt::LIST => {
                for name in vols.list()? {
                    let mut d = Vec::with_capacity(4 + name.len());
                    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
                    d.extend_from_slice(name.as_bytes());
                    reply(s, h.option, rep::SERVER, &d)?;
                }
                reply(s, h.option, rep::ACK, &[])?;
            }
            opt::EXPORT_NAME => {
                // No error reply exists for this option: an unknown name closes.
                let Some(v) = find(vols, &data)? else {
                    return Err(NbdError::Protocol(format!(
                        "NBD_OPT_EXPORT_NAME of unknown export {:?}",
                        String::from_utf8_lossy(&data)
                    )));
                };
                let mut b = Vec::with_capacity(10 + 124);
                b.extend_from_slice(&v.size_bytes().to_be_bytes());
                b.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&b).map_err(NbdError::io("write export"))?;
                return Ok(Outcome::Transmit(v));
            }
            opt::INFO | opt::GO => {
                let Some((name, asked)) = proto::parse_info_request(&data) else {
                    reply(s, h.option, rep::ERR_INVALID, &[])?;
                    continue;
                };
                let Some(v) = find(vols, &name)? else {
                    reply(s, h.option, rep::ERR_UNKNOWN, &[])?;
                    continue;
                };
                reply(
                    s,
                    h.option,
                    rep::INFO,
                    &proto::info_export(v.size_bytes(), TRANSMISSION_FLAGS),
                )?;
                if asked.contains(&info::NAME) {
                    let mut d = info::NAME.to_be_bytes().to_vec();
                    d.extend_from_slice(v.info().name.as_bytes());
                    reply(s, h.option, rep::INFO, &d)?;
                }
                if asked.contains(&info::BLOCK_SIZE) {
                    let d = proto::info_block_size(
                        BLOCK_SIZE_MIN,
                        BLOCK_SIZE_PREFERRED,
                        proto::MAX_PAYLOAD_BYTES,
                    );
                    reply(s, h.option, rep::INFO, &d)?;
                }
                reply(s, h.option, rep::ACK, &[])?;
                if h.option == opt::GO {
                    return Ok(Outcome::Transmit(v));
                }
            }
            other => {
                log::debug!("option {other} not supported");
                reply(s, other, rep::ERR_UNSUP, &[])?;
            }
        }
    }
    Err(NbdError::Protocol(format!(
        "more than {MAX_OPTIONS} options without choosing an export"
    )))
}
