//! The server: an accept loop, a thread per connection, and a graceful stop.
//!
//! ```text
//!  Server::run ──accept (non-blocking, polls the stop flag)──► thread per connection:
//!      handshake::negotiate ──► conn::transmit (reader + writer threads)
//!  stop (StopHandle::stop, SIGINT/SIGTERM in keel-nbd): no new connections; every
//!  connection's socket is shut for reading, its requests in flight finish and are
//!  answered, its threads are joined; then `run` returns and the caller closes the
//!  engine (a final checkpoint).
//! ```
//!
//! A connection that fails (protocol violation, a client gone mid-request) is logged and
//! closed; it takes nothing else down.

use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use keel_drivers::any::AnyDevice;
use keel_engine::volume::Volumes;

use crate::conn;
use crate::error::{NbdError, Result};
use crate::handshake::{self, Outcome};
use crate::stream::{Listener, Stream};

/// How long a client may take over the handshake before it is dropped.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 30_000;
/// How often the accept loop looks at the stop flag.
const ACCEPT_POLL_MS: u64 = 20;

/// Where to listen.
#[derive(Clone, Debug)]
pub enum Bind {
    /// A TCP address ("127.0.0.1:10809").
    Tcp(String),
    /// A Unix-domain socket path (a stale socket file there is replaced).
    Unix(PathBuf),
}

/// Stops a running server from another thread.
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the server to stop; `Server::run` returns once connections are done.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Conn {
    socket: Stream,
    thread: JoinHandle<()>,
}

/// An NBD server of the volumes of one store.
pub struct Server {
    listener: Listener,
    vols: Arc<Volumes<AnyDevice>>,
    stop: StopHandle,
}

impl Server {
    /// Binds the listening socket.
    pub fn bind(bind: &Bind, vols: Arc<Volumes<AnyDevice>>) -> Result<Server> {
        let listener = match bind {
            Bind::Tcp(addr) => {
                Listener::Tcp(TcpListener::bind(addr).map_err(NbdError::io("bind tcp"))?)
            }
            Bind::Unix(path) => {
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                {
                    let _ = std::fs::remove_file(path);
                }
                Listener::Unix(
                    UnixListener::bind(path).map_err(NbdError::io("bind unix socket"))?,
                    path.clone(),
                )
            }
        };
        listener
            .set_nonblocking()
            .map_err(NbdError::io("set listener non-blocking"))?;
        Ok(Server {
            listener,
            vols,
            stop: StopHandle::default(),
        })
    }

    /// The bound TCP address (for a server bound to port 0).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Where it listens, in words.
    pub fn describe(&self) -> String {
        self.listener.describe()
    }

    /// A handle that stops the server.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Accepts and serves clients until stopped; then waits for every connection.
    pub fn run(self) -> Result<()> {
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let mut id = 0u64;
        while !self.stop.is_stopped() {
            let s = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
                    reap(&conns);
                    continue;
                }
                Err(e) => {
                    log::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS));
                    continue;
                }
            };
            id += 1;
            let socket = s.try_clone().map_err(NbdError::io("clone socket"))?;
            let vols = Arc::clone(&self.vols);
            let thread = std::thread::Builder::new()
                .name(format!("keel-nbd-{id}"))
                .spawn(move || serve(id, s, &vols))
                .map_err(NbdError::io("spawn connection thread"))?;
            conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Conn { socket, thread });
        }
        let all = std::mem::take(&mut *conns.lock().unwrap_or_else(|p| p.into_inner()));
        for c in &all {
            let _ = c.socket.shutdown(Shutdown::Read);
        }
        for c in all {
            let _ = c.thread.join();
        }
        Ok(())
    }
}

/// Joins connections that have ended.
fn reap(conns: &Mutex<Vec<Conn>>) {
    let mut v = conns.lock().unwrap_or_else(|p| p.into_inner());
    let mut i = 0;
    while i < v.len() {
        if v[i].thread.is_finished() {
            let c = v.swap_remove(i);
            let _ = c.thread.join();
        } else {
            i += 1;
        }
    }
}

fn serve(id: u64, mut s: Stream, vols: &Volumes<AnyDevice>) {
    let r = (|| {
        s.set_read_timeout(Some(Duration::from_millis(HANDSHAKE_TIMEOUT_MS)))
            .map_err(NbdError::io("set timeout"))?;
        let vol = match handshake::negotiate(&mut s, vols)? {
            Outcome::Transmit(v) => v,
            Outcome::Closed => return Ok(()),
        };
        s.set_read_timeout(None)
            .map_err(NbdError::io("set timeout"))?;
        log::info!("connection {id}: serving {:?}", vol.info().name);
        conn::transmit(s.try_clone().map_err(NbdError::io("clone"))?, vol)
    })();
    let _ = s.shutdown(Shutdown::Both);
    match r {
        Ok(()) => log::info!("connection {id}: closed"),
        Err(e) => log::warn!("connection {id}: {e}"),
    }
}
