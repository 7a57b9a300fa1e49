//! The handshake against arbitrary bytes: a property-based fuzz of the first thing an
//! untrusted client reaches. Whatever the input (random bytes, or a valid exchange with
//! bytes flipped, cut short or spliced), `negotiate` returns Ok or a typed error: it never
//! panics, never reads past what it was given, and answers with a bounded amount of output.
//! (A coverage-guided cargo-fuzz target needs a nightly toolchain, which the project's
//! machines do not have; this runs in every `cargo test`.)

use std::io::{self, Cursor, Read, Write};
use std::sync::{Arc, OnceLock};

use keel_drivers::any::AnyDevice;
use keel_drivers::sim::{SimConfig, SimDevice};
use keel_engine::volume::{VolumeOptions, Volumes};
use keel_engine::{
    Cores, Engine, Idle, JournalMode, MkfsOptions, ReactorConfig, ShardConfig, Store,
};
use keel_nbd::handshake::{negotiate, Outcome, MAX_OPTIONS};
use keel_nbd::proto::{self, opt};
use proptest::prelude::*;

/// A client that sends `input` and collects what the server says.
struct Duplex {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn volumes() -> &'static Volumes<AnyDevice> {
    static VOLS: OnceLock<Volumes<AnyDevice>> = OnceLock::new();
    VOLS.get_or_init(|| {
        let dev = AnyDevice::Sim(SimDevice::new(SimConfig::new(512, 32 << 11)).unwrap());
        let mut o = MkfsOptions::new(JournalMode::MetadataOnly);
        o.journal_bytes = 4 << 20;
        o.checkpoint_bytes = 1 << 20;
        Store::mkfs(&dev, &o).unwrap();
        let rcfg = ReactorConfig {
            cores: Cores::Unpinned,
            idle: Idle::SHARED,
            ..ReactorConfig::default()
        };
        let e = Arc::new(Engine::open(dev, ShardConfig::default(), rcfg).unwrap());
        let v = Volumes::new(e).unwrap();
        v.create("vol", &VolumeOptions::new(1 << 20)).unwrap();
        v
    })
}

fn option(option: u32, data: &[u8]) -> Vec<u8> {
    let mut b = proto::OptionHeader {
        magic: proto::IHAVEOPT,
        option,
        len: data.len() as u32,
    }
    .encode()
    .to_vec();
    b.extend_from_slice(data);
    b
}

fn go(name: &[u8]) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name);
    d.extend_from_slice(&1u16.to_be_bytes());
    d.extend_from_slice(&proto::info::BLOCK_SIZE.to_be_bytes());
    option(opt::GO, &d)
}

/// A well-formed exchange: flags, a LIST, an INFO, then GO.
fn valid() -> Vec<u8> {
    let mut b = 3u32.to_be_bytes().to_vec();
    b.extend(option(opt::LIST, &[]));
    b.extend(option(opt::INFO, &go(b"vol")[proto::OPTION_HEADER_BYTES..]));
    b.extend(go(b"vol"));
    b
}

fn run(input: Vec<u8>) -> (bool, usize) {
    let len = input.len();
    let mut d = Duplex {
        input: Cursor::new(input),
        output: Vec::new(),
    };
    let transmit = match negotiate(&mut d, volumes()) {
        Ok(Outcome::Transmit(_)) => true,
        Ok(Outcome::Closed) | Err(_) => false,
    };
    assert!(d.input.position() as usize <= len);
    assert!(
        d.output.starts_with(b"NBDMAGIC"),
        "the greeting comes first"
    );
    // Each option gets a few replies at most; the listing is one volume.
    let bound =
        proto::GREETING_BYTES + (MAX_OPTIONS + 1) * 4 * (proto::OPTION_REPLY_HEADER_BYTES + 64);
    assert!(
        d.output.len() <= bound,
        "{} bytes of output",
        d.output.len()
    );
    (transmit, d.output.len())
}

#[test]
fn the_valid_exchange_reaches_transmission() {
    assert!(run(valid()).0);
    // And every strict prefix of it does not.
    let v = valid();
    for cut in 0..v.len() {
        assert!(
            !run(v[..cut].to_vec()).0,
            "transmission after {cut} of {} bytes",
            v.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        run(input);
    }

    #[test]
    fn a_mutated_valid_exchange_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut v = valid();
        for (at, x) in flips {
            let i = at.index(v.len());
            v[i] ^= x;
        }
        let keep = cut.index(v.len() + 1);
        v.truncate(keep);
        v.extend(tail);
        run(v);
    }

    #[test]
    fn options_with_any_number_and_any_data_never_panic(
        opts in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20),
    ) {
        let mut v = 3u32.to_be_bytes().to_vec();
        for (o, d) in opts {
            v.extend(option(o, &d));
        }
        run(v);
    }
}
