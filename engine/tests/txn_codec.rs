//! The transaction type's encoding and static checks, from outside the crate: round trips
//! of arbitrary transactions, the pinned bytes of format version 1, refusal of every kind of
//! damaged input without a panic, and each limit of `Transaction::validate` at and just
//! past its boundary.

use keel_engine::txn::{OpKind, Transaction, TxnOp};
use keel_engine::types::{
    MAX_KEY_BYTES, MAX_NAME_BYTES, MAX_OBJECT_BYTES, MAX_TXN_DATA_BYTES, MAX_TXN_OPS,
    MAX_VALUE_BYTES,
};
use keel_engine::StoreError;
use proptest::collection::vec;
use proptest::prelude::*;

// ---- helpers ----------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Recomputes the trailing crc32c after a deliberate edit, so that the decoder reaches the
/// check the test is aiming at.
fn reseal(b: &mut [u8]) {
    let n = b.len() - 4;
    let crc = crc32c::crc32c(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
}

/// The decode error's message, or a failure if it decoded or failed otherwise.
fn decode_msg(b: &[u8]) -> String {
    match Transaction::decode(b) {
        Err(StoreError::Decode(m)) => m,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

fn invalid_msg(t: &Transaction) -> String {
    match t.validate() {
        Err(StoreError::InvalidTxn(m)) => m,
        other => panic!("expected InvalidTxn, got {other:?}"),
    }
}

fn one(f: impl FnOnce(&mut Transaction) -> &mut Transaction) -> Transaction {
    let mut t = Transaction::new();
    f(&mut t);
    t
}

// ---- the pinned encoding ----------------------------------------------------------------

/// One of every op, with the override set.
fn golden_txn() -> Transaction {
    let mut t = Transaction::new();
    t.mkcoll(7)
        .rmcoll(8)
        .touch(7, "a")
        .write(7, "a", 0x1000, vec![0xaa, 0xbb])
        .zero(7, "a", 16, 32)
        .truncate(7, "a", 100)
        .setattr(7, "a", "k", "v")
        .rmattr(7, "a", "k")
        .omap_set(7, "a", vec![(b"x".to_vec(), b"1".to_vec())])
        .omap_rm(7, "a", vec![b"x".to_vec()])
        .clone_object(7, "a", "b")
        .clone_range(7, "a", "c", 1, 2, 3)
        .acknowledge(7, "a", 16, 32)
        .remove(7, "a")
        .set_full_journal(true);
    t
}

/// Format version 1, field by field. Changing this is changing the format: bump the
/// version instead (docs in engine/src/txn/codec.rs).
const GOLDEN: &[&str] = &[
    "4b54584e", // magic "KTXN"
    "0100",     // version 1
    "0100",     // flags: full journal
    "0e000000", // 14 ops
    // tag coll              name            other fields
    "01 0700000000000000", // mkcoll 7
    "02 0800000000000000", // rmcoll 8
    "03 0700000000000000 01000000 61", // touch "a"
    "04 0700000000000000 01000000 61 0010000000000000 02000000 aabb", // write @4096 [aa bb]
    "05 0700000000000000 01000000 61 1000000000000000 2000000000000000", // zero @16 len 32
    "06 0700000000000000 01000000 61 6400000000000000", // truncate 100
    "08 0700000000000000 01000000 61 01000000 6b 01000000 76", // setattr k=v
    "09 0700000000000000 01000000 61 01000000 6b", // rmattr k
    "0a 0700000000000000 01000000 61 01000000 01000000 78 01000000 31", // omap_set x=1
    "0b 0700000000000000 01000000 61 01000000 01000000 78", // omap_rm x
    "0c 0700000000000000 01000000 61 01000000 62", // clone a -> b
    "0d 0700000000000000 01000000 61 01000000 63 0100000000000000 0200000000000000 0300000000000000", // clone_range a@1 len 2 -> c@3
    "0e 0700000000000000 01000000 61 1000000000000000 2000000000000000", // acknowledge @16 len 32
    "07 0700000000000000 01000000 61", // remove "a"
    "38082e49", // crc32c of all the above (0x492e0838)
];

#[test]
fn golden_bytes_of_version_1() {
    let want: String = GOLDEN.concat().split_whitespace().collect();
    let t = golden_txn();
    let got = t.encode();
    assert_eq!(hex(&got), want);
    assert_eq!(Transaction::decode(&got).unwrap(), t);
}

#[test]
fn golden_covers_every_kind() {
    let kinds: Vec<OpKind> = golden_txn().ops().iter().map(TxnOp::kind).collect();
    for k in OpKind::ALL {
        assert!(
            kinds.contains(&k),
            "{k} missing from the golden transaction"
        );
    }
}

// ---- damaged input ----------------------------------------------------------------------

#[test]
fn every_truncation_is_refused() {
    let enc = golden_txn().encode();
    for k in 0..enc.len() {
        assert!(
            Transaction::decode(&enc[..k]).is_err(),
            "a prefix of {k} of {} bytes decoded",
            enc.len()
        );
    }
}

#[test]
fn every_single_byte_change_is_refused() {
    let enc = golden_txn().encode();
    for i in 0..enc.len() {
        for mask in [1u8, 2, 4, 8, 16, 32, 64, 128, 0xff, 0x5a] {
            let mut b = enc.clone();
            b[i] ^= mask;
            assert!(
                Transaction::decode(&b).is_err(),
                "byte {i} ^ {mask:#04x} decoded"
            );
        }
    }
}

#[test]
fn a_flip_is_reported_as_a_crc_mismatch() {
    let mut b = golden_txn().encode();
    b[20] ^= 1; // inside the first op
    assert!(decode_msg(&b).contains("crc32c mismatch"));
}

#[test]
fn wrong_magic_is_refused() {
    let mut b = golden_txn().encode();
    b[0] = b'X';
    reseal(&mut b);
    assert!(decode_msg(&b).contains("magic"));
}

#[test]
fn unknown_version_is_refused_before_the_crc() {
    let mut b = golden_txn().encode();
    b[4] = 2;
    assert!(decode_msg(&b).contains("unknown version 2"));
    reseal(&mut b);
    assert!(decode_msg(&b).contains("unknown version 2"));
    b[4] = 0;
    reseal(&mut b);
    assert!(decode_msg(&b).contains("unknown version 0"));
}

#[test]
fn unknown_flags_are_refused() {
    for bit in 1..16 {
        let mut b = golden_txn().encode();
        b[6..8].copy_from_slice(&(1u16 << bit | 1).to_le_bytes());
        reseal(&mut b);
        assert!(decode_msg(&b).contains("unknown flags"), "bit {bit}");
    }
    // Bit 0 alone is the override, cleared or set.
    let mut b = golden_txn().encode();
    b[6] = 0;
    reseal(&mut b);
    let t = Transaction::decode(&b).unwrap();
    assert!(!t.full_journal());
    assert_eq!(t.ops(), golden_txn().ops());
}

#[test]
fn unknown_tags_are_refused() {
    // Offset 12 is the first op's tag; 0 is reserved, 15 the first unassigned.
    for tag in [0u8, 15, 0x80, 0xff] {
        let mut b = golden_txn().encode();
        b[12] = tag;
        reseal(&mut b);
        let m = decode_msg(&b);
        assert!(m.contains(&format!("op 0: unknown tag {tag}")), "{m}");
    }
}

#[test]
fn trailing_bytes_are_refused() {
    // After the crc: the crc no longer covers the end.
    let mut b = golden_txn().encode();
    b.push(0);
    assert!(Transaction::decode(&b).is_err());
    // Before the crc, and resealed: left over after the last op.
    let mut b = golden_txn().encode();
    let at = b.len() - 4;
    b.splice(at..at, [0u8; 3]);
    reseal(&mut b);
    assert!(decode_msg(&b).contains("3 bytes left over"));
}

#[test]
fn counts_larger_than_the_input_are_refused() {
    let mut b = golden_txn().encode();
    b[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut b);
    assert!(decode_msg(&b).contains("op count"));
    // The omap_set's pair count (first op at 12; see GOLDEN for the offsets).
    let enc = golden_txn().encode();
    let at = hex(&enc).find("0a070000000000000001000000610100").unwrap();
    assert_eq!(at % 2, 0);
    let omap = at / 2;
    let mut b = enc.clone();
    b[omap + 14..omap + 18].copy_from_slice(&1_000_000u32.to_le_bytes());
    reseal(&mut b);
    assert!(decode_msg(&b).contains("omap pair count"));
}

#[test]
fn op_count_over_the_limit_is_refused() {
    let mut t = Transaction::new();
    for c in 0..MAX_TXN_OPS as u64 {
        t.mkcoll(c);
    }
    assert_eq!(Transaction::decode(&t.encode()).unwrap(), t);
    t.mkcoll(0);
    assert!(decode_msg(&t.encode()).contains("op count 4097"));
}

#[test]
fn byte_strings_over_their_limits_are_refused_by_the_decoder() {
    let t = one(|t| t.touch(1, vec![b'n'; MAX_NAME_BYTES + 1]));
    let m = decode_msg(&t.encode());
    assert!(
        m.contains("op 0 (touch)") && m.contains("object name"),
        "{m}"
    );
    let t = one(|t| t.setattr(1, "a", vec![0; MAX_KEY_BYTES + 1], "v"));
    assert!(decode_msg(&t.encode()).contains("attribute key"));
    let t = one(|t| t.omap_set(1, "a", vec![(b"k".to_vec(), vec![0; MAX_VALUE_BYTES + 1])]));
    assert!(decode_msg(&t.encode()).contains("omap value"));
    let t = one(|t| t.write(1, "a", 0, vec![0; MAX_TXN_DATA_BYTES as usize + 1]));
    assert!(decode_msg(&t.encode()).contains("write data"));
}

#[test]
fn decoded_transactions_are_validated() {
    assert!(matches!(
        Transaction::decode(&Transaction::new().encode()),
        Err(StoreError::InvalidTxn(_))
    ));
    let t = one(|t| t.clone_object(1, "a", "a"));
    assert!(matches!(
        Transaction::decode(&t.encode()),
        Err(StoreError::InvalidTxn(_))
    ));
    let t = one(|t| t.write(1, "a", MAX_OBJECT_BYTES, vec![1]));
    assert!(matches!(
        Transaction::decode(&t.encode()),
        Err(StoreError::OutOfRange { what: "write", .. })
    ));
}

// ---- validate(): each limit at and just past its boundary --------------------------------

#[test]
fn empty_transaction_is_invalid() {
    assert!(invalid_msg(&Transaction::new()).contains("empty"));
}

#[test]
fn op_count_limit() {
    let mut t = Transaction::new();
    for _ in 0..MAX_TXN_OPS {
        t.touch(1, "a");
    }
    t.validate().unwrap();
    t.touch(1, "a");
    assert!(invalid_msg(&t).contains("4097 operations"));
}

#[test]
fn object_name_limits() {
    one(|t| t.touch(1, vec![b'n'; MAX_NAME_BYTES]))
        .validate()
        .unwrap();
    assert!(matches!(
        one(|t| t.touch(1, vec![b'n'; MAX_NAME_BYTES + 1])).validate(),
        Err(StoreError::TooLong {
            what: "object name",
            len: 256,
            max: 255
        })
    ));
    // Both names of a clone are checked.
    assert!(matches!(
        one(|t| t.clone_object(1, "a", vec![b'n'; 256])).validate(),
        Err(StoreError::TooLong {
            what: "object name",
            ..
        })
    ));
    let m = invalid_msg(&one(|t| t.mkcoll(1).write(1, "", 0, vec![1])));
    assert!(
        m.contains("op 1 (write)") && m.contains("empty object name"),
        "{m}"
    );
    let m = invalid_msg(&one(|t| t.clone_range(1, "a", "", 0, 1, 0)));
    assert!(m.contains("op 0 (clone_range)"), "{m}");
}

#[test]
fn key_and_value_limits() {
    let key = |n| vec![b'k'; n];
    let val = |n| vec![b'v'; n];
    one(|t| t.setattr(1, "a", key(MAX_KEY_BYTES), val(MAX_VALUE_BYTES)))
        .validate()
        .unwrap();
    let too_long = |t: Transaction, w: &str| match t.validate() {
        Err(StoreError::TooLong { what, .. }) => assert_eq!(what, w),
        other => panic!("expected TooLong {w}, got {other:?}"),
    };
    too_long(
        one(|t| t.setattr(1, "a", key(MAX_KEY_BYTES + 1), val(1))),
        "attribute key",
    );
    too_long(
        one(|t| t.setattr(1, "a", key(1), val(MAX_VALUE_BYTES + 1))),
        "attribute value",
    );
    too_long(
        one(|t| t.rmattr(1, "a", key(MAX_KEY_BYTES + 1))),
        "attribute key",
    );
    one(|t| t.omap_set(1, "a", vec![(key(MAX_KEY_BYTES), val(MAX_VALUE_BYTES))]))
        .validate()
        .unwrap();
    too_long(
        one(|t| {
            t.omap_set(
                1,
                "a",
                vec![(key(1), val(1)), (key(MAX_KEY_BYTES + 1), val(1))],
            )
        }),
        "omap key",
    );
    too_long(
        one(|t| t.omap_set(1, "a", vec![(key(1), val(MAX_VALUE_BYTES + 1))])),
        "omap value",
    );
    one(|t| t.omap_rm(1, "a", vec![key(MAX_KEY_BYTES)]))
        .validate()
        .unwrap();
    too_long(
        one(|t| t.omap_rm(1, "a", vec![key(MAX_KEY_BYTES + 1)])),
        "omap key",
    );
}

fn out_of_range(t: Transaction, w: &str) {
    match t.validate() {
        Err(StoreError::OutOfRange { what, max, .. }) => {
            assert_eq!(what, w);
            assert_eq!(max, MAX_OBJECT_BYTES);
        }
        other => panic!("expected OutOfRange {w}, got {other:?}"),
    }
}

#[test]
fn range_limits() {
    const M: u64 = MAX_OBJECT_BYTES;
    // write: the end may reach the limit, not pass it.
    one(|t| t.write(1, "a", M - 2, vec![1, 2]))
        .validate()
        .unwrap();
    out_of_range(one(|t| t.write(1, "a", M - 1, vec![1, 2])), "write");
    out_of_range(one(|t| t.write(1, "a", u64::MAX, vec![1])), "write");
    // zero
    one(|t| t.zero(1, "a", M - 10, 10)).validate().unwrap();
    one(|t| t.zero(1, "a", 0, M)).validate().unwrap();
    out_of_range(one(|t| t.zero(1, "a", M - 10, 11)), "zero");
    out_of_range(one(|t| t.zero(1, "a", 1, u64::MAX)), "zero");
    out_of_range(one(|t| t.zero(1, "a", u64::MAX, u64::MAX)), "zero");
    // truncate
    one(|t| t.truncate(1, "a", M)).validate().unwrap();
    out_of_range(one(|t| t.truncate(1, "a", M + 1)), "truncate");
    out_of_range(one(|t| t.truncate(1, "a", u64::MAX)), "truncate");
    // clone_range: both ends.
    one(|t| t.clone_range(1, "a", "b", M - 8, 8, M - 8))
        .validate()
        .unwrap();
    out_of_range(
        one(|t| t.clone_range(1, "a", "b", M - 7, 8, 0)),
        "clone_range source",
    );
    out_of_range(
        one(|t| t.clone_range(1, "a", "b", 0, 8, M - 7)),
        "clone_range destination",
    );
    out_of_range(
        one(|t| t.clone_range(1, "a", "b", u64::MAX, 2, 0)),
        "clone_range source",
    );
    out_of_range(
        one(|t| t.clone_range(1, "a", "b", 0, 2, u64::MAX)),
        "clone_range destination",
    );
}

#[test]
fn data_limit() {
    const D: u64 = MAX_TXN_DATA_BYTES;
    // clone_range lengths count; whole-object clones do not.
    let mut t = Transaction::new();
    t.clone_range(1, "a", "b", 0, D - 1, 0)
        .clone_object(1, "a", "c")
        .write(1, "d", 0, vec![1]);
    assert_eq!(t.data_bytes(), D);
    t.validate().unwrap();
    t.write(1, "e", 0, vec![1]);
    let m = invalid_msg(&t);
    assert!(
        m.contains("op 3 (write)") && m.contains("MAX_TXN_DATA_BYTES"),
        "{m}"
    );
    // A single write just past it.
    let t = one(|t| t.write(1, "a", 0, vec![0; D as usize + 1]));
    assert!(invalid_msg(&t).contains("op 0 (write)"));
}

#[test]
fn clone_onto_itself_is_invalid() {
    let m = invalid_msg(&one(|t| t.touch(1, "a").clone_object(1, "a", "a")));
    assert!(
        m.contains("op 1 (clone)") && m.contains("same object"),
        "{m}"
    );
    // Same names in different ops are fine; so is a clone_range within one object.
    one(|t| t.clone_object(1, "a", "b").clone_object(1, "b", "a"))
        .validate()
        .unwrap();
    one(|t| t.clone_range(1, "a", "a", 0, 10, 5))
        .validate()
        .unwrap();
}

#[test]
fn zero_length_write_is_valid() {
    let t = one(|t| t.write(1, "a", 0, Vec::new()));
    t.validate().unwrap();
    assert_eq!(Transaction::decode(&t.encode()).unwrap(), t);
    one(|t| t.write(1, "a", MAX_OBJECT_BYTES, Vec::new()))
        .validate()
        .unwrap();
}

// ---- properties -------------------------------------------------------------------------

fn coll() -> impl Strategy<Value = u64> {
    prop_oneof![0..4u64, any::<u64>()]
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..6)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

/// Offsets and lengths that keep every range inside the object limit.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![0..(1u64 << 16), 0..(1u64 << 39)]
}

fn len() -> impl Strategy<Value = u64> {
    0..(1u64 << 20)
}

fn two_names() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (name(), name()).prop_filter("a clone needs two objects", |(a, b)| a != b)
}

/// Every kind of op, valid and small.
fn op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        coll().prop_map(|coll| TxnOp::MkColl { coll }),
        coll().prop_map(|coll| TxnOp::RmColl { coll }),
        (coll(), name()).prop_map(|(coll, name)| TxnOp::Touch { coll, name }),
        (coll(), name(), offset(), bytes(64)).prop_map(|(coll, name, offset, data)| {
            TxnOp::Write {
                coll,
                name,
                offset,
                data,
            }
        }),
        (coll(), name(), offset(), len()).prop_map(|(coll, name, offset, len)| TxnOp::Zero {
            coll,
            name,
            offset,
            len
        }),
        (coll(), name(), offset()).prop_map(|(coll, name, size)| TxnOp::Truncate {
            coll,
            name,
            size
        }),
        (coll(), name()).prop_map(|(coll, name)| TxnOp::Remove { coll, name }),
        (coll(), name(), bytes(8), bytes(16)).prop_map(|(coll, name, key, value)| {
            TxnOp::SetAttr {
                coll,
                name,
                key,
                value,
            }
        }),
        (coll(), name(), bytes(8)).prop_map(|(coll, name, key)| TxnOp::RmAttr { coll, name, key }),
        (coll(), name(), vec((bytes(8), bytes(16)), 0..4))
            .prop_map(|(coll, name, pairs)| TxnOp::OmapSet { coll, name, pairs }),
        (coll(), name(), vec(bytes(8), 0..4)).prop_map(|(coll, name, keys)| TxnOp::OmapRm {
            coll,
            name,
            keys
        }),
        (coll(), two_names()).prop_map(|(coll, (src, dst))| TxnOp::Clone { coll, src, dst }),
        (coll(), two_names(), offset(), len(), offset()).prop_map(
            |(coll, (src, dst), src_offset, len, dst_offset)| TxnOp::CloneRange {
                coll,
                src,
                dst,
                src_offset,
                len,
                dst_offset,
            }
        ),
    ]
}

fn txn() -> impl Strategy<Value = Transaction> {
    (vec(op(), 1..12), any::<bool>()).prop_map(|(ops, full)| {
        let mut t = Transaction::new();
        for op in ops {
            t.push(op);
        }
        t.set_full_journal(full);
        t
    })
}

proptest! {
    #[test]
    fn round_trip(t in txn()) {
        t.validate().unwrap();
        let enc = t.encode();
        prop_assert_eq!(enc.len(), t.encoded_len());
        let back = Transaction::decode(&enc).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(back.encode(), enc);
    }

    #[test]
    fn any_byte_change_is_refused(t in txn(), at in any::<prop::sample::Index>(), mask in 1u8..) {
        let mut b = t.encode();
        let i = at.index(b.len());
        b[i] ^= mask;
        prop_assert!(Transaction::decode(&b).is_err(), "byte {} ^ {:#04x}", i, mask);
    }

    #[test]
    fn any_truncation_is_refused(t in txn(), at in any::<prop::sample::Index>()) {
        let b = t.encode();
        let k = at.index(b.len());
        prop_assert!(Transaction::decode(&b[..k]).is_err());
    }

    /// Arbitrary bytes: an error or a transaction, never a panic.
    #[test]
    fn decode_never_panics_on_noise(b in vec(any::<u8>(), 0..256)) {
        let _ = Transaction::decode(&b);
    }

    /// Past the magic, version and crc, into the op parser: a valid header, noise, a valid
    /// crc. Whatever decodes must be the canonical encoding of what it decodes to.
    #[test]
    fn decode_never_panics_past_the_crc(flags in 0u16..4, count in 0u32..8, body in vec(any::<u8>(), 0..256)) {
        let mut b = b"KTXN\x01\x00".to_vec();
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&[0; 4]);
        reseal(&mut b);
        if let Ok(t) = Transaction::decode(&b) {
            prop_assert_eq!(t.encode(), b);
        }
    }

    /// Valid encodings with a few bytes changed and the crc fixed up: the parser sees
    /// plausible but wrong lengths, counts and tags.
    #[test]
    fn decode_never_panics_on_resealed_mutations(
        t in txn(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut b = t.encode();
        let body = b.len() - 4;
        for (at, v) in edits {
            b[at.index(body)] = v;
        }
        reseal(&mut b);
        if let Ok(back) = Transaction::decode(&b) {
            prop_assert_eq!(back.encode(), b);
        }
    }
}
