//! keel-nbd in process, driven by a raw socket: a well-behaved client (every command, FUA,
//! out-of-range errors), bad input (truncated or malformed handshakes, unknown options,
//! oversized requests, a client gone mid-request, random bytes), several connections at
//! once, the Unix socket, and a graceful stop. After every bad client the server still
//! serves a second one and acknowledged data reads back.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use keel_drivers::any::AnyDevice;
use keel_drivers::sim::{SimConfig, SimDevice};
use keel_engine::volume::{VolumeOptions, Volumes};
use keel_engine::{
    Cores, Engine, Idle, JournalMode, MkfsOptions, ReactorConfig, ShardConfig, Store,
};
use keel_nbd::proto::{self, cmd, cmd_flags, errno, opt, rep};
use keel_nbd::{Bind, Server, StopHandle};

const VOL_BYTES: u64 = 8 << 20;

struct Running {
    addr: Option<SocketAddr>,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(bind: Bind) -> Running {
    let mut c = SimConfig::new(512, 64 << 11); // 32 MiB
    c.max_transfer_bytes = 1 << 20;
    let dev = AnyDevice::Sim(SimDevice::new(c).unwrap());
    let mut o = MkfsOptions::new(JournalMode::MetadataOnly);
    o.shards = 2;
    o.journal_bytes = 4 << 20;
    o.checkpoint_bytes = 1 << 20;
    Store::mkfs(&dev, &o).unwrap();
    let rcfg = ReactorConfig {
        cores: Cores::Unpinned,
        idle: Idle::SHARED,
        ..ReactorConfig::default()
    };
    let e = Arc::new(Engine::open(dev, ShardConfig::default(), rcfg).unwrap());
    let vols = Volumes::new(e).unwrap();
    let mut vo = VolumeOptions::new(VOL_BYTES);
    vo.object_bytes = 64 << 10;
    vols.create("vol", &vo).unwrap();
    vols.create("other", &VolumeOptions::new(1 << 20)).unwrap();
    let vols = Arc::new(vols);
    let server = Server::bind(&bind, Arc::clone(&vols)).unwrap();
    let addr = server.local_addr();
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || {
        server.run().unwrap();
        let e = Arc::try_unwrap(vols).ok().unwrap().into_engine();
        Arc::try_unwrap(e).unwrap().close().unwrap();
    });
    Running {
        addr,
        stop,
        thread: Some(thread),
    }
}

fn tcp() -> Running {
    start(Bind::Tcp("127.0.0.1:0".into()))
}

struct Client<S: Read + Write> {
    s: S,
}

fn connect(r: &Running) -> Client<TcpStream> {
    let s = TcpStream::connect(r.addr.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Client { s }
}

impl<S: Read + Write> Client<S> {
    fn greeting(&mut self) -> u16 {
        let mut g = [0u8; proto::GREETING_BYTES];
        self.s.read_exact(&mut g).unwrap();
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        u16::from_be_bytes([g[16], g[17]])
    }

    fn start(&mut self) {
        let f = self.greeting();
        assert_eq!(f & 3, 3, "fixed newstyle and no zeroes");
        self.s.write_all(&3u32.to_be_bytes()).unwrap();
    }

    fn option(&mut self, option: u32, data: &[u8]) {
        let h = proto::OptionHeader {
            magic: proto::IHAVEOPT,
            option,
            len: data.len() as u32,
        };
        self.s.write_all(&h.encode()).unwrap();
        self.s.write_all(data).unwrap();
    }

    fn option_reply(&mut self) -> (proto::OptionReply, Vec<u8>) {
        let mut h = [0u8; proto::OPTION_REPLY_HEADER_BYTES];
        self.s.read_exact(&mut h).unwrap();
        let r = proto::OptionReply::decode(&h).expect("reply magic");
        let mut d = vec![0u8; r.len as usize];
        self.s.read_exact(&mut d).unwrap();
        (r, d)
    }

    /// NBD_OPT_GO; the export's size and flags, or the error reply type.
    fn go(&mut self, name: &str) -> Result<(u64, u16), u32> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&0u16.to_be_bytes());
        self.option(opt::GO, &d);
        let mut export = None;
        loop {
            let (r, d) = self.option_reply();
            assert_eq!(r.option, opt::GO);
            match r.reply {
                rep::INFO if d[..2] == [0, 0] => {
                    export = Some((
                        u64::from_be_bytes(d[2..10].try_into().unwrap()),
                        u16::from_be_bytes([d[10], d[11]]),
                    ))
                }
                rep::INFO => {}
                rep::ACK => return Ok(export.expect("NBD_INFO_EXPORT before ACK")),
                e => return Err(e),
            }
        }
    }

    fn request(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, len: u32, data: &[u8]) {
        let r = proto::Request {
            magic: proto::REQUEST_MAGIC,
            flags,
            kind,
            handle,
            offset,
            len,
        };
        let mut b = r.encode().to_vec();
        b.extend_from_slice(data);
        self.s.write_all(&b).unwrap();
    }

    fn reply(&mut self) -> proto::SimpleReply {
        let mut h = [0u8; proto::SIMPLE_REPLY_BYTES];
        self.s.read_exact(&mut h).unwrap();
        proto::SimpleReply::decode(&h).expect("reply magic")
    }

    fn write(&mut self, offset: u64, data: &[u8], flags: u16) -> u32 {
        self.request(cmd::WRITE, flags, 1, offset, data.len() as u32, data);
        let r = self.reply();
        assert_eq!(r.handle, 1);
        r.error
    }

    fn read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, u32> {
        self.request(cmd::READ, 0, 2, offset, len, &[]);
        let r = self.reply();
        assert_eq!(r.handle, 2);
        if r.error != 0 {
            return Err(r.error);
        }
        let mut d = vec![0u8; len as usize];
        self.s.read_exact(&mut d).unwrap();
        Ok(d)
    }

    fn simple(&mut self, kind: u16, flags: u16, offset: u64, len: u32) -> u32 {
        self.request(kind, flags, 3, offset, len, &[]);
        let r = self.reply();
        assert_eq!(r.handle, 3);
        r.error
    }

    /// True once the server has closed the connection (EOF or reset).
    fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 256];
        loop {
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    }
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| r.u8(..)).collect()
}

/// A fresh client writes and reads back: the server is up and data is intact.
fn still_serves(r: &Running, acked: &[(u64, Vec<u8>)]) {
    let mut c = connect(r);
    c.start();
    assert_eq!(
        c.go("vol"),
        Ok((VOL_BYTES, keel_nbd::handshake::TRANSMISSION_FLAGS))
    );
    for (off, d) in acked {
        assert_eq!(
            &c.read(*off, d.len() as u32).unwrap(),
            d,
            "acknowledged data at {off}"
        );
    }
    c.request(cmd::DISC, 0, 9, 0, 0, &[]);
    assert!(c.is_closed());
}

fn seed_data(r: &Running) -> Vec<(u64, Vec<u8>)> {
    let mut c = connect(r);
    c.start();
    c.go("vol").unwrap();
    let d = pattern(1, 100_000);
    assert_eq!(c.write(60_000, &d, cmd_flags::FUA), 0);
    vec![(60_000, d)]
}

#[test]
fn a_client_uses_every_command() {
    let r = tcp();
    let mut c = connect(&r);
    c.start();
    let (size, flags) = c.go("vol").unwrap();
    assert_eq!(size, VOL_BYTES);
    use proto::tflags::*;
    for f in [
        HAS_FLAGS,
        SEND_FLUSH,
        SEND_FUA,
        SEND_TRIM,
        SEND_WRITE_ZEROES,
        CAN_MULTI_CONN,
    ] {
        assert_ne!(flags & f, 0);
    }
    // Across object boundaries (64 KiB objects), with and without FUA.
    let d = pattern(2, 200_000);
    assert_eq!(c.write(65_000, &d, 0), 0);
    assert_eq!(c.read(65_000, d.len() as u32).unwrap(), d);
    assert_eq!(c.write(1 << 20, &d[..4096], cmd_flags::FUA), 0);
    assert_eq!(c.simple(cmd::FLUSH, 0, 0, 0), 0);
    // Sparse, write-zeroes, trim.
    assert_eq!(c.read(4 << 20, 8192).unwrap(), vec![0; 8192]);
    assert_eq!(
        c.simple(cmd::WRITE_ZEROES, cmd_flags::NO_HOLE, 70_000, 10_000),
        0
    );
    assert_eq!(c.simple(cmd::TRIM, 0, 131_072, 65_536), 0);
    let mut want = d.clone();
    want[5_000..15_000].fill(0);
    want[(131_072 - 65_000)..(196_608 - 65_000)].fill(0);
    assert_eq!(c.read(65_000, d.len() as u32).unwrap(), want);
    // Past the end: writes ENOSPC, others EINVAL; nothing changed.
    assert_eq!(c.write(VOL_BYTES - 10, &[1; 20], 0), errno::ENOSPC);
    assert_eq!(c.simple(cmd::WRITE_ZEROES, 0, VOL_BYTES, 1), errno::ENOSPC);
    assert_eq!(c.read(VOL_BYTES - 10, 20), Err(errno::EINVAL));
    assert_eq!(c.simple(cmd::TRIM, 0, u64::MAX, 2), errno::EINVAL);
    assert_eq!(c.read(VOL_BYTES - 10, 10).unwrap(), vec![0; 10]);
    // Unknown command and unknown flags: EINVAL, the connection goes on.
    assert_eq!(c.simple(99, 0, 0, 0), errno::EINVAL);
    assert_eq!(c.simple(cmd::FLUSH, 1 << 7, 0, 0), errno::EINVAL);
    // Zero-length read.
    assert_eq!(c.read(0, 0).unwrap(), Vec::<u8>::new());
    c.request(cmd::DISC, 0, 4, 0, 0, &[]);
    assert!(c.is_closed());
    still_serves(&r, &[(65_000, want)]);
}

#[test]
fn options_list_info_unknown_and_abort() {
    let r = tcp();
    let mut c = connect(&r);
    c.start();
    // Unknown and unsupported options: ERR_UNSUP, the handshake goes on.
    c.option(12345, b"whatever");
    assert_eq!(c.option_reply().0.reply, rep::ERR_UNSUP);
    c.option(opt::STRUCTURED_REPLY, &[]);
    assert_eq!(c.option_reply().0.reply, rep::ERR_UNSUP);
    // LIST: both volumes, then ACK; with data: ERR_INVALID.
    c.option(opt::LIST, &[]);
    let mut names = Vec::new();
    loop {
        let (h, d) = c.option_reply();
        if h.reply == rep::ACK {
            break;
        }
        assert_eq!(h.reply, rep::SERVER);
        names.push(String::from_utf8(d[4..].to_vec()).unwrap());
    }
    assert_eq!(names, ["other", "vol"]);
    c.option(opt::LIST, b"x");
    assert_eq!(c.option_reply().0.reply, rep::ERR_INVALID);
    // INFO: export, name and block size when asked.
    let mut d = 5u32.to_be_bytes().to_vec();
    d.extend_from_slice(b"other");
    d.extend_from_slice(&2u16.to_be_bytes());
    d.extend_from_slice(&1u16.to_be_bytes());
    d.extend_from_slice(&3u16.to_be_bytes());
    c.option(opt::INFO, &d);
    let mut kinds = Vec::new();
    loop {
        let (h, d) = c.option_reply();
        if h.reply == rep::ACK {
            break;
        }
        assert_eq!(h.reply, rep::INFO);
        kinds.push(u16::from_be_bytes([d[0], d[1]]));
        if kinds.last() == Some(&1) {
            assert_eq!(&d[2..], b"other");
        }
    }
    assert_eq!(kinds, [0, 1, 3]);
    // Unknown export; malformed GO; an empty name with two volumes is unknown.
    assert_eq!(c.go("nope"), Err(rep::ERR_UNKNOWN));
    assert_eq!(c.go(""), Err(rep::ERR_UNKNOWN));
    c.option(opt::GO, &[0, 0, 0, 9, b'v']);
    assert_eq!(c.option_reply().0.reply, rep::ERR_INVALID);
    // Still negotiating: GO works.
    assert_eq!(c.go("other").unwrap().0, 1 << 20);
    assert_eq!(c.simple(cmd::FLUSH, 0, 0, 0), 0);
    // ABORT on a second connection.
    let mut c2 = connect(&r);
    c2.start();
    c2.option(opt::ABORT, &[]);
    assert_eq!(c2.option_reply().0.reply, rep::ACK);
    assert!(c2.is_closed());
    // EXPORT_NAME (old-style choice): size, flags, no zeroes.
    let mut c3 = connect(&r);
    c3.start();
    c3.option(opt::EXPORT_NAME, b"vol");
    let mut b = [0u8; 10];
    c3.s.read_exact(&mut b).unwrap();
    assert_eq!(u64::from_be_bytes(b[..8].try_into().unwrap()), VOL_BYTES);
    assert_eq!(c3.simple(cmd::FLUSH, 0, 0, 0), 0);
    // EXPORT_NAME of an unknown export closes.
    let mut c4 = connect(&r);
    c4.start();
    c4.option(opt::EXPORT_NAME, b"nope");
    assert!(c4.is_closed());
}

#[test]
fn malformed_and_truncated_handshakes_close_only_their_connection() {
    let r = tcp();
    let acked = seed_data(&r);
    // Truncated client flags, then gone.
    let mut c = connect(&r);
    c.greeting();
    c.s.write_all(&[0, 0]).unwrap();
    drop(c);
    // Unknown client flags.
    let mut c = connect(&r);
    c.greeting();
    c.s.write_all(&0xffff_ffffu32.to_be_bytes()).unwrap();
    assert!(c.is_closed());
    // Not fixed newstyle.
    let mut c = connect(&r);
    c.greeting();
    c.s.write_all(&0u32.to_be_bytes()).unwrap();
    assert!(c.is_closed());
    // A wrong option magic.
    let mut c = connect(&r);
    c.start();
    c.s.write_all(&[0x55; 16]).unwrap();
    assert!(c.is_closed());
    // Option data over the limit.
    let mut c = connect(&r);
    c.start();
    let h = proto::OptionHeader {
        magic: proto::IHAVEOPT,
        option: opt::GO,
        len: u32::MAX,
    };
    c.s.write_all(&h.encode()).unwrap();
    assert!(c.is_closed());
    // A truncated option: header, half its data, gone.
    let mut c = connect(&r);
    c.start();
    let h = proto::OptionHeader {
        magic: proto::IHAVEOPT,
        option: opt::GO,
        len: 100,
    };
    c.s.write_all(&h.encode()).unwrap();
    c.s.write_all(&[0; 50]).unwrap();
    drop(c);
    // Connected and silent, then gone.
    drop(connect(&r));
    still_serves(&r, &acked);
}

#[test]
fn oversized_requests_and_bad_magic() {
    let r = tcp();
    let acked = seed_data(&r);
    let mut c = connect(&r);
    c.start();
    c.go("vol").unwrap();
    // An oversized read: EINVAL, the connection goes on.
    assert_eq!(c.read(0, 64 << 20), Err(errno::EINVAL));
    assert_eq!(c.read(60_000, 10).unwrap(), acked[0].1[..10]);
    // An oversized write: EINVAL, then the server closes (the payload cannot be skipped).
    c.request(cmd::WRITE, 0, 7, 0, 64 << 20, &[0; 4096]);
    let rep = c.reply();
    assert_eq!((rep.handle, rep.error), (7, errno::EINVAL));
    assert!(c.is_closed());
    // A request with a wrong magic closes.
    let mut c = connect(&r);
    c.start();
    c.go("vol").unwrap();
    c.s.write_all(&[0xab; proto::REQUEST_BYTES]).unwrap();
    assert!(c.is_closed());
    still_serves(&r, &acked);
}

#[test]
fn a_client_gone_mid_request_or_sending_noise_changes_nothing_acknowledged() {
    let r = tcp();
    let acked = seed_data(&r);
    // A write whose payload stops halfway.
    let mut c = connect(&r);
    c.start();
    c.go("vol").unwrap();
    c.request(cmd::WRITE, 0, 1, 60_000, 1 << 20, &[0xee; 1000]);
    drop(c);
    // Half a request header.
    let mut c = connect(&r);
    c.start();
    c.go("vol").unwrap();
    c.s.write_all(&[0x25, 0x60, 0x95]).unwrap();
    drop(c);
    // Writes in flight, then the client vanishes without reading the replies.
    let mut c = connect(&r);
    c.start();
    c.go("vol").unwrap();
    for i in 0..64u64 {
        c.request(
            cmd::WRITE,
            0,
            i,
            (4 << 20) + i * 4096,
            4096,
            &[i as u8; 4096],
        );
    }
    drop(c);
    // Random bytes, in the handshake and in transmission.
    for seed in 0..8u64 {
        let mut c = connect(&r);
        let noise = pattern(100 + seed, 4096);
        if seed % 2 == 0 {
            c.greeting();
        } else {
            c.start();
            c.go("vol").unwrap();
        }
        let _ = c.s.write_all(&noise);
        assert!(c.is_closed());
    }
    still_serves(&r, &acked);
}

#[test]
fn several_connections_at_once() {
    let r = tcp();
    let addr = r.addr.unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut c = Client { s };
                c.start();
                c.go("vol").unwrap();
                // 32 writes in flight, replies in any order, matched by handle.
                let base = t * (2 << 20);
                for i in 0..32u64 {
                    let d = pattern(t * 100 + i, 8192);
                    c.request(cmd::WRITE, 0, 1000 + i, base + i * 8192, 8192, &d);
                }
                let mut seen = [false; 32];
                for _ in 0..32 {
                    let rep = c.reply();
                    assert_eq!(rep.error, 0);
                    let i = (rep.handle - 1000) as usize;
                    assert!(!seen[i], "a handle answered twice");
                    seen[i] = true;
                }
                assert_eq!(c.simple(cmd::FLUSH, 0, 0, 0), 0);
                // 32 reads in flight (served by several read workers), matched by handle.
                for i in 0..32u64 {
                    c.request(cmd::READ, 0, 2000 + i, base + i * 8192, 8192, &[]);
                }
                let mut seen = [false; 32];
                for _ in 0..32 {
                    let rep = c.reply();
                    assert_eq!(rep.error, 0);
                    let i = (rep.handle - 2000) as usize;
                    assert!(!seen[i], "a handle answered twice");
                    seen[i] = true;
                    let mut d = vec![0u8; 8192];
                    c.s.read_exact(&mut d).unwrap();
                    assert_eq!(d, pattern(t * 100 + i as u64, 8192));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_unix_socket_serves_and_a_stop_with_a_client_connected_is_graceful() {
    let dir = std::env::temp_dir().join(format!("keel-nbd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nbd.sock");
    let mut r = start(Bind::Unix(path.clone()));
    let s = std::os::unix::net::UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = Client { s };
    c.start();
    c.go("vol").unwrap();
    c.request(cmd::WRITE, cmd_flags::FUA, 1, 0, 4096, &[5; 4096]);
    assert_eq!(c.reply().error, 0);
    // Stop with the client still connected: run returns, the engine closes.
    r.stop.stop();
    r.thread.take().unwrap().join().unwrap();
    assert!(c.is_closed());
    assert!(!path.exists(), "the socket file is removed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A power cut under a pipelined NBD write load, on a sim device with a volatile cache:
/// after recovery every write the client saw acknowledged reads back exactly (a Keel
/// reply means durable, so no flush is needed for that), and a write in flight at the cut,
/// into space never written before, reads back whole or as zeroes, never a mix.
#[test]
fn a_power_cut_under_nbd_load_keeps_every_acknowledged_write() {
    const BLOCK: u64 = 4096;
    const IN_FLIGHT: usize = 16;
    let mut acked_total = 0;
    for seed in 0..3u64 {
        let mut c = SimConfig::new(512, 64 << 11); // 32 MiB
        c.max_transfer_bytes = 1 << 20;
        c.volatile_write_cache = true;
        c.latency_ns = 50_000;
        c.jitter_ns = 100_000;
        c.seed = seed;
        let sim = SimDevice::new(c.clone()).unwrap();
        let cut = sim.clone(); // clones share the media: this one pulls the plug
        let dev = AnyDevice::Sim(sim);
        let mut o = MkfsOptions::new(JournalMode::MetadataOnly);
        o.shards = 2;
        o.journal_bytes = 4 << 20;
        o.checkpoint_bytes = 1 << 20;
        Store::mkfs(&dev, &o).unwrap();
        let rcfg = || ReactorConfig {
            cores: Cores::Unpinned,
            idle: Idle::SHARED,
            ..ReactorConfig::default()
        };
        let e = Arc::new(Engine::open(dev, ShardConfig::default(), rcfg()).unwrap());
        let vols = Volumes::new(e).unwrap();
        let mut vo = VolumeOptions::new(VOL_BYTES);
        vo.object_bytes = 64 << 10;
        vols.create("vol", &vo).unwrap();
        let vols = Arc::new(vols);
        let server = Server::bind(&Bind::Tcp("127.0.0.1:0".into()), Arc::clone(&vols)).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        // After the cut the device is gone: the server's own shutdown may fail; it must
        // still return, and dropping the store must not hang.
        let thread = std::thread::spawn(move || {
            let _ = server.run();
            drop(vols);
        });

        let mut client = Client {
            s: TcpStream::connect(addr).unwrap(),
        };
        client
            .s
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.start();
        client.go("vol").unwrap();
        // Each block written once, in a seeded order, IN_FLIGHT at a time; the handle is
        // the block number.
        let mut order: Vec<u64> = (0..VOL_BYTES / BLOCK).collect();
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
        let data = |b: u64| pattern(seed << 32 | b, BLOCK as usize);
        let mut next = order.iter().copied();
        let mut in_flight = std::collections::BTreeSet::new();
        for b in next.by_ref().take(IN_FLIGHT) {
            client.request(cmd::WRITE, 0, b, b * BLOCK, BLOCK as u32, &data(b));
            in_flight.insert(b);
        }
        let cut_after = 150 + 211 * seed as usize;
        let mut acked = Vec::new();
        while acked.len() < cut_after {
            let r = client.reply();
            assert_eq!(
                r.error, 0,
                "seed {seed}: write of block {} failed",
                r.handle
            );
            assert!(
                in_flight.remove(&r.handle),
                "reply for a block not in flight"
            );
            acked.push(r.handle);
            let b = next.next().expect("more blocks than the cut point");
            client.request(cmd::WRITE, 0, b, b * BLOCK, BLOCK as u32, &data(b));
            in_flight.insert(b);
        }
        let (image, _) = cut.power_cut();
        drop(client);
        stop.stop();
        thread.join().unwrap();

        let dev = AnyDevice::Sim(SimDevice::from_image(c, image).unwrap());
        let e = Arc::new(Engine::open(dev, ShardConfig::default(), rcfg()).unwrap());
        let vols = Volumes::new(Arc::clone(&e)).unwrap();
        let vol = vols.open("vol").unwrap();
        for &b in &acked {
            let got = vol.read(b * BLOCK, BLOCK as usize).unwrap();
            assert!(got == data(b), "seed {seed}: acknowledged block {b} lost");
        }
        for &b in &in_flight {
            let got = vol.read(b * BLOCK, BLOCK as usize).unwrap();
            assert!(
                got == data(b) || got.iter().all(|&x| x == 0),
                "seed {seed}: block {b}, in flight at the cut, is neither whole nor absent"
            );
        }
        assert!(e.fsck().unwrap().is_clean(), "seed {seed}: fsck");
        acked_total += acked.len();
        drop(vol);
        drop(vols);
        Arc::try_unwrap(e).ok().unwrap().close().unwrap();
    }
    assert!(acked_total > 0);
}
