//! One transaction's entry in a journal batch.
//!
//! ```text
//! u32 entry_bytes (after this field) | u64 txn_seq | u8 flags | u32 delta_count | deltas ...
//!   | u32 run_count | runs: (u64 first device page, u32 byte length, bytes) ...
//!   | u32 overwrite_count | overwrites: (u64 first device page, u32 pages) ...
//! ```
//!
//! Runs carry data only for transactions that went through the full journal; replay writes
//! them to their home pages (the same bytes every time, so replay stays idempotent).
//! Overwrites name the committed pages a metadata-only transaction rewrote in place: replay
//! must not later put an older journaled copy of those pages back.
//!
//! Flag bit 0, *verify*: the entry may have reached the media before its data (parallel
//! commit or intent first, docs/integrity.md); until a later batch confirms it, replay
//! reads the pages its `Csum` deltas name and drops the entry if they do not hold the data
//! it describes. Other flag bits are refused.

use crate::codec::{DecodeError, Put, Reader};
use crate::meta::Delta;
use crate::types::{MAX_TXN_DATA_BYTES, PAGE};

/// Data pages journaled with a full-journal transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRun {
    /// First device page.
    pub phys: u64,
    /// Whole pages of data.
    pub bytes: Vec<u8>,
}

/// A transaction as the journal records it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Entry {
    /// The shard's transaction sequence number.
    pub txn_seq: u64,
    /// Metadata changes, in order.
    pub deltas: Vec<Delta>,
    /// Data for the full journal (empty in metadata-only entries).
    pub runs: Vec<DataRun>,
    /// Pages rewritten in place by a metadata-only transaction: (first page, pages).
    pub overwrites: Vec<(u64, u32)>,
    /// May be durable before its data (parallel commit, intent first): replay checks the
    /// data until a later batch confirms the entry.
    pub verify: bool,
}

/// Flag bit: verify.
const FLAG_VERIFY: u8 = 1;

impl Entry {
    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let runs: Vec<(u64, &[u8])> = self.runs.iter().map(|r| (r.phys, &r.bytes[..])).collect();
        encode_parts(
            out,
            self.txn_seq,
            self.verify,
            &self.deltas,
            &runs,
            &self.overwrites,
        );
    }

    /// Decodes one entry.
    pub fn decode(r: &mut Reader<'_>) -> Result<Entry, DecodeError> {
        let len = r.u32("entry length")? as usize;
        let mut body = Reader::new(r.take(len, "entry")?);
        let txn_seq = body.u64("txn seq")?;
        let flags = body.u8("entry flags")?;
        if flags & !FLAG_VERIFY != 0 {
            return Err(DecodeError::Bad {
                what: "entry flags",
                value: flags.into(),
            });
        }
        let n = body.count("delta count", 2)?;
        let mut deltas = Vec::with_capacity(n);
        for _ in 0..n {
            deltas.push(Delta::decode(&mut body)?);
        }
        let n = body.count("run count", 12)?;
        let mut runs = Vec::with_capacity(n);
        for _ in 0..n {
            let phys = body.u64("run page")?;
            let bytes = body.bytes_vec("run data", MAX_TXN_DATA_BYTES as usize)?;
            if bytes.is_empty() || bytes.len() as u64 % PAGE != 0 {
                return Err(DecodeError::Bad {
                    what: "run length",
                    value: bytes.len() as u64,
                });
            }
            runs.push(DataRun { phys, bytes });
        }
        let n = body.count("overwrite count", 12)?;
        let mut overwrites = Vec::with_capacity(n);
        for _ in 0..n {
            overwrites.push((body.u64("overwrite page")?, body.u32("overwrite pages")?));
        }
        if !body.is_empty() {
            return Err(DecodeError::Bad {
                what: "trailing entry bytes",
                value: body.remaining() as u64,
            });
        }
        Ok(Entry {
            txn_seq,
            deltas,
            runs,
            overwrites,
            verify: flags & FLAG_VERIFY != 0,
        })
    }
}

/// Appends the encoding of an entry made of these parts to `out` (what [`Entry::encode`]
/// writes, without building an [`Entry`]: the shard encodes its plans in place).
pub fn encode_parts(
    out: &mut Vec<u8>,
    txn_seq: u64,
    verify: bool,
    deltas: &[Delta],
    runs: &[(u64, &[u8])],
    overwrites: &[(u64, u32)],
) {
    let start = out.len();
    out.put_u32(0); // patched below
    out.put_u64(txn_seq);
    out.put_u8(if verify { FLAG_VERIFY } else { 0 });
    out.put_u32(deltas.len() as u32);
    for d in deltas {
        d.encode(out);
    }
    out.put_u32(runs.len() as u32);
    for (phys, bytes) in runs {
        out.put_u64(*phys);
        out.put_bytes(bytes);
    }
    out.put_u32(overwrites.len() as u32);
    for (phys, pages) in overwrites {
        out.put_u64(*phys);
        out.put_u32(*pages);
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}
