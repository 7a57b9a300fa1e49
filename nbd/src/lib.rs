//! # keel-nbd: Keel volumes over the Network Block Device protocol
//!
//! `keel-nbd` exports the volumes of a Keel store ([`keel_engine::volume`]) to NBD clients
//! (QEMU, qemu-img, qemu-io, nbdinfo, fio's nbd engine, the kernel's nbd-client). The
//! export name is the volume name.
//!
//! ```text
//!  client ──TCP / unix socket──► Server (accept loop)            server.rs
//!     one thread per connection: handshake (newstyle fixed)       handshake.rs
//!     then transmission: reader thread parses requests            conn.rs
//!        reads: Volume::read ; writes / trims / zeroes: Volume::*_async
//!        ──► Engine (per-core reactors) ──durable──► callback ──► reply queue
//!     writer thread sends replies (any order, matched by handle)
//!  wire structs, big-endian encode / decode                      proto.rs
//! ```
//!
//! - **The store is never blocked by a client**: connections talk to the reactors through
//!   their bounded rings; a reactor's completion callback only pushes a reply into a queue
//!   that cannot be full (each connection holds a credit per request in flight).
//! - **Durability**: a reply to a write, trim or write-zeroes means the data is on stable
//!   storage (Keel acknowledges after the journal commit), so FLUSH and FUA cost nothing;
//!   what a torn write can look like after a power cut depends on the volume's mode
//!   (docs/volumes.md).
//! - **Bad input** closes that connection (or gets an NBD error); the server stays up.

pub mod conn;
pub mod error;
pub mod handshake;
pub mod proto;
pub mod server;
pub mod stream;

pub use error::{NbdError, Result};
pub use server::{Bind, Server, StopHandle};
