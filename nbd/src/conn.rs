//! The transmission phase of one connection.
//!
//! ```text
//!  socket ──reader (this thread)──► parse request ─┬─ READ: to READ_WORKERS threads:
//!                                                  │    Volume::read, reply queued
//!                                                  ├─ WRITE / TRIM / WRITE_ZEROES:
//!                                                  │    Volume::*_async; the callback (on a
//!                                                  │    reactor, once durable) queues the reply
//!                                                  └─ FLUSH: reply queued at once
//!  reply queue (bounded: MAX_INFLIGHT) ──writer thread──► socket (any order, by handle)
//! ```
//!
//! The reader takes a credit per request (at most [`MAX_INFLIGHT`] requests and
//! [`MAX_INFLIGHT_BYTES`] of payload in flight) and the writer gives it back once the reply
//! is on the socket, so the reply queue never fills and a reactor callback never blocks.
//! Replies leave in completion order, matched by handle, as NBD allows.
//!
//! FLUSH and FUA: Keel acknowledges a write only once its journal commit is durable, so a
//! reply already means "on stable storage"; FLUSH has nothing to wait for and FUA changes
//! nothing.

use std::io::{BufWriter, IoSlice, Read, Write};
use std::net::Shutdown;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

use keel_drivers::any::AnyDevice;
use keel_engine::volume::{Volume, VolumeError};
use keel_engine::StoreError;

use crate::error::{NbdError, Result};
use crate::proto::{self, cmd, cmd_flags, errno};
use crate::stream::Stream;

/// Threads per connection that serve reads (`Engine::read` waits for the reactor's
/// answer, so a connection's reads run this many at a time).
pub const READ_WORKERS: usize = 4;
/// Requests one connection may have in flight.
pub const MAX_INFLIGHT: usize = 256;
/// Payload bytes (read and write data) one connection may have in flight; a single
/// request larger than this still runs, alone.
pub const MAX_INFLIGHT_BYTES: u64 = 64 << 20;

/// One reply to write.
struct Reply {
    handle: u64,
    error: u32,
    data: Vec<u8>,
    credit_bytes: u64,
}

/// Requests and payload bytes in flight.
struct Credits {
    used: Mutex<(usize, u64)>,
    freed: Condvar,
}

impl Credits {
    fn take(&self, bytes: u64) {
        let mut u = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while u.0 >= MAX_INFLIGHT || (u.0 > 0 && u.1 + bytes > MAX_INFLIGHT_BYTES) {
            u = self.freed.wait(u).unwrap_or_else(|p| p.into_inner());
        }
        u.0 += 1;
        u.1 += bytes;
    }

    fn give(&self, bytes: u64) {
        let mut u = self.used.lock().unwrap_or_else(|p| p.into_inner());
        u.0 -= 1;
        u.1 -= bytes;
        self.freed.notify_all();
    }
}

/// The NBD error for a failed volume operation.
pub fn nbd_errno(e: &VolumeError, write: bool) -> u32 {
    match e {
        VolumeError::OutOfRange { .. } if write => errno::ENOSPC,
        VolumeError::OutOfRange { .. } => errno::EINVAL,
        VolumeError::Store(StoreError::NoSpace(_)) => errno::ENOSPC,
        VolumeError::Store(StoreError::Closed) => errno::ESHUTDOWN,
        VolumeError::Store(StoreError::InvalidTxn(_)) => errno::EINVAL,
        _ => errno::EIO,
    }
}

fn writer(mut out: BufWriter<Stream>, rx: Receiver<Reply>, credits: Arc<Credits>) {
    let mut failed = false;
    let mut next = rx.recv().ok();
    while let Some(r) = next {
        if !failed {
            let h = proto::SimpleReply {
                error: r.error,
                handle: r.handle,
            }
            .encode();
            let res = if r.data.is_empty() {
                out.write_all(&h)
            } else {
                write_all_vectored(&mut out, &h, &r.data)
            };
            if let Err(e) = res {
                log::debug!("write reply: {e}");
                failed = true;
            }
        }
        credits.give(r.credit_bytes);
        next = match rx.try_recv() {
            Ok(r) => Some(r),
            Err(_) => {
                if !failed && out.flush().is_err() {
                    failed = true;
                }
                rx.recv().ok()
            }
        };
    }
    let _ = out.flush();
}

fn write_all_vectored(out: &mut BufWriter<Stream>, h: &[u8], data: &[u8]) -> std::io::Result<()> {
    if h.len() + data.len() <= out.capacity() - out.buffer().len() {
        out.write_all(h)?;
        return out.write_all(data);
    }
    out.flush()?;
    let s = out.get_mut();
    let mut bufs = [IoSlice::new(h), IoSlice::new(data)];
    let mut bufs: &mut [IoSlice<'_>] = &mut bufs;
    while !bufs.is_empty() {
        let n = s.write_vectored(bufs)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Serves requests on `stream` for `vol` until the client disconnects (NBD_CMD_DISC or
/// closing), breaks the protocol, or the server stops reading. Every request that was
/// read gets its reply before this returns (if the socket still takes it).
pub fn transmit(stream: Stream, vol: Volume<AnyDevice>) -> Result<()> {
    let vol = Arc::new(vol);
    let credits = Arc::new(Credits {
        used: Mutex::new((0, 0)),
        freed: Condvar::new(),
    });
    let (tx, rx) = mpsc::sync_channel::<Reply>(MAX_INFLIGHT);
    let out = stream.try_clone().map_err(NbdError::io("clone socket"))?;
    let closer = stream.try_clone().map_err(NbdError::io("clone socket"))?;
    let w = {
        let credits = Arc::clone(&credits);
        std::thread::Builder::new()
            .name("keel-nbd-tx".into())
            .spawn(move || writer(BufWriter::with_capacity(256 << 10, out), rx, credits))
            .map_err(NbdError::io("spawn writer"))?
    };
    let (read_tx, read_rx) = mpsc::sync_channel::<(u64, u64, u32)>(MAX_INFLIGHT);
    let read_rx = Arc::new(Mutex::new(read_rx));
    let mut readers = Vec::with_capacity(READ_WORKERS);
    for _ in 0..READ_WORKERS {
        let (vol, rx, tx) = (Arc::clone(&vol), Arc::clone(&read_rx), tx.clone());
        let h = std::thread::Builder::new()
            .name("keel-nbd-rd".into())
            .spawn(move || read_worker(&vol, &rx, &tx))
            .map_err(NbdError::io("spawn read worker"))?;
        readers.push(h);
    }
    let r = read_loop(stream, &vol, &tx, &read_tx, &credits);
    drop(read_tx); // the read workers end once the queue is empty
    for h in readers {
        let _ = h.join();
    }
    drop(tx); // the writer ends once every callback has queued its reply
    let _ = w.join();
    let _ = closer.shutdown(Shutdown::Both);
    r
}

fn send(tx: &SyncSender<Reply>, r: Reply) {
    // Credits bound the queue to its capacity, so this never blocks; it fails only if
    // the writer is gone, when nobody can take the reply anyway.
    let _ = tx.try_send(r);
}

/// Serves reads `(handle, offset, len)` until the queue closes.
fn read_worker(
    vol: &Volume<AnyDevice>,
    rx: &Mutex<Receiver<(u64, u64, u32)>>,
    tx: &SyncSender<Reply>,
) {
    loop {
        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((handle, offset, len)) = job else {
            return;
        };
        let mut rep = reply(handle, 0, u64::from(len));
        match vol.read(offset, len as usize) {
            Ok(d) => rep.data = d,
            Err(e) => rep.error = nbd_errno(&e, false),
        }
        send(tx, rep);
    }
}

fn read_loop(
    mut s: Stream,
    vol: &Arc<Volume<AnyDevice>>,
    tx: &SyncSender<Reply>,
    reads: &SyncSender<(u64, u64, u32)>,
    credits: &Arc<Credits>,
) -> Result<()> {
    loop {
        let mut hb = [0u8; proto::REQUEST_BYTES];
        match s.read_exact(&mut hb) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(NbdError::io("read request")(e)),
        }
        let req = proto::Request::decode(&hb);
        if req.magic != proto::REQUEST_MAGIC {
            return Err(NbdError::Protocol(format!(
                "request magic {:#x}",
                req.magic
            )));
        }
        let payload = match req.kind {
            cmd::READ | cmd::WRITE => u64::from(req.len),
            _ => 0,
        };
        let known_flags = match req.kind {
            cmd::WRITE | cmd::TRIM => cmd_flags::FUA,
            cmd::WRITE_ZEROES => cmd_flags::FUA | cmd_flags::NO_HOLE,
            _ => 0,
        };
        if req.kind == cmd::WRITE && req.len > proto::MAX_PAYLOAD_BYTES {
            // The payload cannot be skipped safely: refuse, then close.
            credits.take(0);
            send(tx, reply(req.handle, errno::EINVAL, 0));
            return Err(NbdError::Protocol(format!(
                "write of {} bytes (at most {})",
                req.len,
                proto::MAX_PAYLOAD_BYTES
            )));
        }
        if req.kind == cmd::DISC {
            return Ok(());
        }
        credits.take(payload);
        let data = if req.kind == cmd::WRITE {
            let mut d = vec![0u8; req.len as usize];
            if let Err(e) = s.read_exact(&mut d) {
                credits.give(payload);
                return Err(NbdError::io("read write payload")(e));
            }
            d
        } else {
            Vec::new()
        };
        if req.flags & !known_flags != 0 {
            send(tx, reply(req.handle, errno::EINVAL, payload));
            continue;
        }
        let done = |write: bool| {
            let tx = tx.clone();
            let handle = req.handle;
            Box::new(move |r: Result<(), VolumeError>| {
                let error = r.as_ref().map_or_else(|e| nbd_errno(e, write), |_| 0);
                if let Err(e) = r {
                    log::debug!("request {handle:#x}: {e}");
                }
                send(&tx, reply(handle, error, payload));
            })
        };
        match req.kind {
            cmd::READ if req.len > proto::MAX_PAYLOAD_BYTES => {
                send(tx, reply(req.handle, errno::EINVAL, payload));
            }
            cmd::READ => {
                // Credits bound the queue to its capacity: this does not block.
                if reads.send((req.handle, req.offset, req.len)).is_err() {
                    return Err(NbdError::Protocol("read workers gone".into()));
                }
            }
            cmd::WRITE => vol.write_async(req.offset, data, done(true)),
            cmd::WRITE_ZEROES => vol.write_zeroes_async(req.offset, u64::from(req.len), done(true)),
            cmd::TRIM => vol.trim_async(req.offset, u64::from(req.len), done(false)),
            cmd::FLUSH => {
                let error = vol.flush().map_or_else(|e| nbd_errno(&e, false), |_| 0);
                send(tx, reply(req.handle, error, payload));
            }
            _ => send(tx, reply(req.handle, errno::EINVAL, payload)),
        }
    }
}

fn reply(handle: u64, error: u32, credit_bytes: u64) -> Reply {
    Reply {
        handle,
        error,
        data: Vec::new(),
        credit_bytes,
    }
}
