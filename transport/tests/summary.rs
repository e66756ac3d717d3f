//! The signed summary (`docs/transport.md`): encoding, golden vector, verification in
//! TUF's order, and the THREATS cases that apply at this level (A4-A6, A10, B1-B5, B9, E1).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // tests: a panic is the failure report; paths into temp dirs are fine

use ed25519_dalek::Signer;
use proptest::prelude::*;
use store::id::{CommitId, ObjectId};
use store::object::{Encoder, SignatureEntry, Signatures};
use store::sign::{
    commit_message, verify_signatures, PublicKey, SigningKey, TrustedKeys, SUMMARY_SIGNATURE_DOMAIN,
};
use store::RefName;
use transport::summary::{
    load_trust_state, parse_signed, save_trust_state, sign_summary, summary_message,
    verify_summary, verify_summary_with, DeltaEntry, PackEntry, RefEntry, Summary, TrustState,
    VerifyOptions, MAX_SUMMARY_SIZE,
};
use transport::Error;

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;
/// "Now" for a run: shortly after [`T0`], well before expiry.
const NOW: u64 = T0 + 100;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn trusted(keys: &[&SigningKey]) -> TrustedKeys {
    let mut t = TrustedKeys::new();
    for (i, k) in keys.iter().enumerate() {
        t.insert(format!("key{i}"), PublicKey::from(*k));
    }
    t
}

fn cid(b: u8) -> CommitId {
    CommitId(ObjectId::from_bytes([b; 32]))
}

fn sample(serial: u64) -> Summary {
    Summary {
        serial,
        timestamp: T0,
        expires: T0 + DAY,
        channel: Some("stable".into()),
        reset_clock: false,
        refs: vec![
            RefEntry {
                name: RefName::new("os/x86_64/stable").unwrap(),
                commit: cid(0x22),
                version: Some("2.1.0".into()),
                timestamp: T0 - 3600,
                download_size: 123_456_789,
                chunk_index_id: ObjectId::from_bytes([0x55; 32]),
                chunk_index_size: 1000,
                signatures_id: ObjectId::from_bytes([0x66; 32]),
                signatures_size: 200,
            },
            RefEntry {
                name: RefName::new("os/x86_64/testing").unwrap(),
                commit: cid(0x33),
                version: None,
                timestamp: T0 - 60,
                download_size: 42,
                chunk_index_id: ObjectId::from_bytes([0x77; 32]),
                chunk_index_size: 77,
                signatures_id: ObjectId::from_bytes([0x66; 32]),
                signatures_size: 200,
            },
        ],
        packs: vec![PackEntry {
            id: ObjectId::from_bytes([0x88; 32]),
            size: 1 << 20,
            index_id: ObjectId::from_bytes([0x99; 32]),
            index_size: 4949,
        }],
        deltas: vec![DeltaEntry {
            from: cid(0x11),
            to: cid(0x22),
            size: 4096,
            id: ObjectId::from_bytes([0x44; 32]),
        }],
        metadata: vec![("title".into(), "Example OS".into())],
    }
}

/// A signed summary file built by hand, so tests can assemble what `sign_summary` never
/// would (spliced, duplicated, unsorted or foreign signatures).
fn envelope(body: &[u8], sigs: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.raw(b"USSF");
    e.u8(1);
    e.bytes(body);
    e.count(sigs.len());
    for (k, s) in sigs {
        e.raw(k);
        e.raw(s);
    }
    e.finish()
}

fn summary_sig(k: &SigningKey, body: &[u8]) -> ([u8; 32], [u8; 64]) {
    (
        k.verifying_key().to_bytes(),
        k.sign(&summary_message(body)).to_bytes(),
    )
}

fn accept(file: &[u8], t: &TrustedKeys, state: &TrustState, now: u64) -> TrustState {
    verify_summary(file, t, state, now).unwrap().new_state
}

#[test]
fn round_trip() {
    let (a, b) = (key(1), key(2));
    let s = sample(7);
    let file = sign_summary(&s, &[&b, &a]).unwrap();
    let p = parse_signed(&file).unwrap();
    assert_eq!(p.summary, s);
    assert_eq!(p.body, s.encode().as_slice());
    assert_eq!(Summary::decode(p.body).unwrap(), s);
    assert_eq!(p.signatures.len(), 2);
    assert!(p.signatures[0].public_key < p.signatures[1].public_key);
    let v = verify_summary(&file, &trusted(&[&a, &b]), &TrustState::default(), NOW).unwrap();
    assert_eq!(v.summary, s);
    assert_eq!(v.signed_by.len(), 2);
    assert!(!v.unchanged);
    assert_eq!(v.clock_behind, None);
    assert_eq!(
        v.new_state,
        TrustState {
            last_serial: Some(7),
            last_body_hash: Some(*blake3::hash(p.body).as_bytes()),
            latest_known_time: NOW,
            channel: Some("stable".into()),
        }
    );
    assert_eq!(
        s.find_ref(&RefName::new("os/x86_64/testing").unwrap())
            .unwrap()
            .commit,
        cid(0x33)
    );
    assert!(s
        .find_ref(&RefName::new("os/arm64/stable").unwrap())
        .is_none());
    assert_eq!(s.find_delta(&cid(0x11), &cid(0x22)).unwrap().size, 4096);
    assert!(s.find_delta(&cid(0x22), &cid(0x11)).is_none());
}

/// The signed file of `sample(7)` signed by the keys with seeds 1 and 2, format version 2.
/// ed25519 is deterministic, so this pins the body encoding, the envelope and the signing
/// message. If it fails the format changed: update `docs/transport.md` (and, once
/// deployed, bump the version).
const GOLDEN: &str = concat!(
    "55535346023c0200005553554d02070000000000000000f153650000000080425565000000000106000000",
    "737461626c650002000000100000006f732f7838365f36342f737461626c6522222222222222222222222222",
    "222222222222222222222222222222222222220105000000322e312e30f0e253650000000015cd5b07000000",
    "005555555555555555555555555555555555555555555555555555555555555555e803000000000000666666",
    "6666666666666666666666666666666666666666666666666666666666c800000000000000110000006f732f",
    "7838365f36342f74657374696e67333333333333333333333333333333333333333333333333333333333333",
    "333300c4f05365000000002a0000000000000077777777777777777777777777777777777777777777777777",
    "777777777777774d000000000000006666666666666666666666666666666666666666666666666666666666",
    "666666c800000000000000010000008888888888888888888888888888888888888888888888888888888888",
    "8888880000100000000000999999999999999999999999999999999999999999999999999999999999999955",
    "1300000000000001000000111111111111111111111111111111111111111111111111111111111111111122",
    "2222222222222222222222222222222222222222222222222222222222222200100000000000004444444444",
    "44444444444444444444444444444444444444444444444444444401000000050000007469746c650a000000",
    "4578616d706c65204f53020000008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9",
    "b39457f3a8faf08befe5eb416ff7596e716a266ac887a636496ebd3901845f7995410e115b974226f4075265",
    "80c082083aae38518ecf93e396d8e267eadc8a0dd7068a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94",
    "121bf3748801b40f6f5c6683c678b93a54d083382bc212a2aa9a81f8ee4c97606c29113a70086a8ec3ce3b07",
    "e4a4029146e9d6d3eb11306ef3c79b16933c057abab54d58f64fad60a800",
);

/// The signed file of `sample(7)` without a channel, as version 1 wrote it, signed by the keys with seeds 1 and 2. ed25519 is
/// deterministic, so this pins the body encoding, the envelope and the signing message.
/// If it fails the format changed: update `docs/transport.md` (and, once deployed, bump
/// the version).
const GOLDEN_V1: &str = concat!(
    "5553534601300200005553554d01070000000000000000f15365000000008042556500000000020000001000",
    "00006f732f7838365f36342f737461626c652222222222222222222222222222222222222222222222222222",
    "2222222222220105000000322e312e30f0e253650000000015cd5b0700000000555555555555555555555555",
    "5555555555555555555555555555555555555555e80300000000000066666666666666666666666666666666",
    "66666666666666666666666666666666c800000000000000110000006f732f7838365f36342f74657374696e",
    "67333333333333333333333333333333333333333333333333333333333333333300c4f05365000000002a00",
    "00000000000077777777777777777777777777777777777777777777777777777777777777774d0000000000",
    "00006666666666666666666666666666666666666666666666666666666666666666c8000000000000000100",
    "0000888888888888888888888888888888888888888888888888888888888888888800001000000000009999",
    "9999999999999999999999999999999999999999999999999999999999995513000000000000010000001111",
    "1111111111111111111111111111111111111111111111111111111111112222222222222222222222222222",
    "2222222222222222222222222222222222220010000000000000444444444444444444444444444444444444",
    "444444444444444444444444444401000000050000007469746c650a0000004578616d706c65204f53020000",
    "008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394ceaa360fa2d69638b7d007",
    "179aed674870c2f3341c4147bed66735bf2c48c335757cb86b1b6f7288f903e6fdab8e6e81c7c047a103171a",
    "a7bb5920cc840dce0c8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5cfd10bf",
    "cf3330e7400a0e219467761f2a10f9765ec44502109ea4e09c5b93c6abfe4b08a982a7657df96edb6ad91232",
    "230d74c04d182f1d990b03b573ffd7fd07",
);

/// The same signed by a version 1 publisher (no channel, no reset flag): still read, as a
/// summary naming no channel.
#[test]
fn version_1_summary_still_reads() {
    let file = hex::decode(GOLDEN_V1).unwrap();
    let p = parse_signed(&file).unwrap();
    let mut s = sample(7);
    s.channel = None;
    assert_eq!(p.summary, s);
    let v = verify_summary(&file, &trusted(&[&key(1)]), &TrustState::default(), NOW).unwrap();
    assert_eq!(v.new_state.channel, None);
    // A device that pinned a channel refuses it.
    let pinned = TrustState {
        channel: Some("stable".into()),
        ..TrustState::default()
    };
    let e = verify_summary(&file, &trusted(&[&key(1)]), &pinned, NOW).unwrap_err();
    assert!(e.to_string().contains("summary is for no channel"), "{e}");
}

#[test]
fn golden_signed_summary() {
    let file = sign_summary(&sample(7), &[&key(1), &key(2)]).unwrap();
    let hex = hex::encode(&file);
    assert_eq!(
        hex, GOLDEN,
        "signed summary encoding changed; new bytes:\n{hex}"
    );
    // The message is the domain tag, then BLAKE3 of the body.
    let p = parse_signed(&file).unwrap();
    let m = summary_message(p.body);
    assert_eq!(
        &m[..SUMMARY_SIGNATURE_DOMAIN.len()],
        SUMMARY_SIGNATURE_DOMAIN
    );
    assert_eq!(
        &m[SUMMARY_SIGNATURE_DOMAIN.len()..],
        blake3::hash(p.body).as_bytes()
    );
    assert_eq!(m.len(), SUMMARY_SIGNATURE_DOMAIN.len() + 32);
}

#[test]
fn ref_and_its_directory_conflict() {
    let a = key(1);
    let mut s = sample(1);
    // `os/x86_64` sorts before `os/x86_64-lts`, which sorts before `os/x86_64/stable`.
    for (i, name) in ["os/x86_64", "os/x86_64-lts"].into_iter().enumerate() {
        let mut r = s.refs[0].clone();
        r.name = RefName::new(name).unwrap();
        s.refs.insert(i, r);
    }
    let e = sign_summary(&s, &[&a]).unwrap_err().to_string();
    assert!(
        e.contains("'os/x86_64' and ref 'os/x86_64/stable' conflict"),
        "{e}"
    );
    assert!(decode_err(&s.encode()).contains("conflict"));
    s.refs.remove(0);
    sign_summary(&s, &[&a]).unwrap();
}

fn opts(now: u64, skew: u64, channel: Option<&str>) -> VerifyOptions<'_> {
    VerifyOptions {
        now,
        max_clock_skew: skew,
        channel,
    }
}

#[test]
fn a_summary_teaches_time_only_up_to_the_clock_plus_skew() {
    let a = key(1);
    let t = trusted(&[&a]);
    let mut future = sample(1);
    future.timestamp = T0 + 20 * 365 * DAY;
    future.expires = future.timestamp + DAY;
    let file = sign_summary(&future, &[&a]).unwrap();
    let v = verify_summary_with(&file, &t, &TrustState::default(), &opts(NOW, 600, None)).unwrap();
    assert_eq!(v.new_state.latest_known_time, NOW + 600);
    assert_eq!(v.timestamp_ahead, Some(future.timestamp));
    // The next real summary is still fresh.
    let file2 = sign_summary(&sample(2), &[&a]).unwrap();
    verify_summary_with(&file2, &t, &v.new_state, &opts(NOW, 600, None)).unwrap();
    // Within the skew, the timestamp counts in full.
    let mut near = sample(1);
    near.timestamp = NOW + 60;
    near.expires = NOW + DAY;
    let file = sign_summary(&near, &[&a]).unwrap();
    let v = verify_summary_with(&file, &t, &TrustState::default(), &opts(NOW, DAY, None)).unwrap();
    assert_eq!(v.new_state.latest_known_time, NOW + 60);
    assert_eq!(v.timestamp_ahead, None);
}

#[test]
fn reset_clock_lowers_the_latest_known_time_once() {
    let a = key(1);
    let t = trusted(&[&a]);
    let frozen = TrustState {
        last_serial: Some(1),
        last_body_hash: Some([1; 32]),
        latest_known_time: T0 + 20 * 365 * DAY,
        channel: None,
    };
    let mut plain = sample(2);
    plain.channel = None;
    let e = verify_summary(&sign_summary(&plain, &[&a]).unwrap(), &t, &frozen, NOW).unwrap_err();
    assert!(matches!(e, Error::SummaryExpired { .. }), "{e}");
    let mut reset = plain.clone();
    reset.reset_clock = true;
    let file = sign_summary(&reset, &[&a]).unwrap();
    let v = verify_summary(&file, &t, &frozen, NOW).unwrap();
    assert!(v.clock_reset);
    assert_eq!(v.new_state.latest_known_time, NOW);
    assert_eq!(v.new_state.last_serial, Some(2));
    // Seen again (a replay), it resets nothing.
    let again = verify_summary(&file, &t, &v.new_state, NOW + 10).unwrap();
    assert!(again.unchanged && !again.clock_reset);
}

#[test]
fn summary_for_another_channel_is_refused() {
    let a = key(1);
    let t = trusted(&[&a]);
    let mut beta = sample(9);
    beta.channel = Some("beta".into());
    let file = sign_summary(&beta, &[&a]).unwrap();
    let pinned = TrustState {
        last_serial: Some(3),
        last_body_hash: Some([3; 32]),
        latest_known_time: T0,
        channel: Some("stable".into()),
    };
    for (state, configured) in [
        (&pinned, None),
        (&TrustState::default(), Some("stable")),
        (
            &TrustState {
                channel: Some("x".into()),
                ..pinned.clone()
            },
            Some("stable"),
        ),
    ] {
        let e = verify_summary_with(&file, &t, state, &opts(NOW, DAY, configured)).unwrap_err();
        assert!(
            matches!(&e, Error::SummaryWrongChannel { expected, found: Some(f) }
                if expected == "stable" && f == "beta"),
            "{e}"
        );
        assert!(e.to_string().contains("channel 'beta'"), "{e}");
    }
    // The first summary naming a channel pins it.
    let v = verify_summary(&file, &t, &TrustState::default(), NOW).unwrap();
    assert_eq!(v.new_state.channel.as_deref(), Some("beta"));
}

fn decode_err(bytes: &[u8]) -> String {
    match Summary::decode(bytes) {
        Err(e @ Error::Store(store::Error::Decode { .. })) => e.to_string(),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn decode_is_strict() {
    let good = sample(1).encode();

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(decode_err(&trailing).contains("trailing"));
    for n in 0..good.len() {
        Summary::decode(&good[..n]).unwrap_err();
    }

    let mut unsorted = sample(1);
    unsorted.refs.swap(0, 1);
    assert!(decode_err(&unsorted.encode()).contains("sorted"));
    let mut dup = sample(1);
    dup.refs[1].name = dup.refs[0].name.clone();
    assert!(decode_err(&dup.encode()).contains("sorted or not unique"));
    let mut dup_delta = sample(1);
    dup_delta.deltas.push(dup_delta.deltas[0].clone());
    decode_err(&dup_delta.encode());
    let mut self_delta = sample(1);
    self_delta.deltas[0].to = self_delta.deltas[0].from;
    assert!(decode_err(&self_delta.encode()).contains("to itself"));
    let mut meta = sample(1);
    meta.metadata = vec![("b".into(), String::new()), ("a".into(), String::new())];
    decode_err(&meta.encode());
    meta.metadata = vec![("a".into(), "1".into()), ("a".into(), "2".into())];
    decode_err(&meta.encode());
    meta.metadata = vec![(String::new(), "x".into())];
    decode_err(&meta.encode());
    let mut empty_version = sample(1);
    empty_version.refs[0].version = Some(String::new());
    decode_err(&empty_version.encode());
    let mut expired_at_birth = sample(1);
    expired_at_birth.expires = expired_at_birth.timestamp;
    assert!(decode_err(&expired_at_birth.encode()).contains("expires"));

    // A bad ref name smuggled into otherwise canonical bytes.
    for bad in ["..", ".x", "a//b", "a\0b"] {
        let mut s = sample(1);
        s.refs.truncate(1);
        s.refs[0].name = RefName::new("q".repeat(bad.len())).unwrap();
        let mut b = s.encode();
        let at = b
            .windows(bad.len())
            .position(|w| w == "q".repeat(bad.len()).as_bytes())
            .unwrap();
        b[at..at + bad.len()].copy_from_slice(bad.as_bytes());
        assert!(decode_err(&b).contains("ref name"), "{bad:?}");
    }

    // Counts are bounded by their limits and by the bytes that remain.
    let mut huge = Encoder::default();
    huge.raw(b"USUM");
    huge.u8(1);
    huge.u64(1);
    huge.u64(T0);
    huge.u64(T0 + DAY);
    huge.u32(u32::MAX);
    assert!(decode_err(&huge.finish()).contains("exceeds the limit"));
    let mut many = Encoder::default();
    many.raw(b"USUM");
    many.u8(1);
    many.u64(1);
    many.u64(T0);
    many.u64(T0 + DAY);
    many.u32(60_000);
    assert!(decode_err(&many.finish()).contains("remaining bytes"));

    // Version flag must be 0 or 1.
    let mut s = sample(1);
    s.channel = None;
    s.refs.truncate(1);
    s.refs[0].version = None;
    let mut b = s.encode();
    let flag_at = 5 + 24 + 2 + 4 + 4 + "os/x86_64/stable".len() + 32;
    assert_eq!(b[flag_at], 0);
    b[flag_at] = 2;
    assert!(decode_err(&b).contains("neither 0 nor 1"));

    // Wrong tag, newer version, version 0.
    let mut b = good.clone();
    b[..4].copy_from_slice(b"UCMT");
    assert!(decode_err(&b).contains("not a summary"));
    let mut b = good.clone();
    b[4] = 3;
    assert!(matches!(
        Summary::decode(&b),
        Err(Error::Store(store::Error::NewerFormat { found: 3, .. }))
    ));
    b[4] = 0;
    decode_err(&b);
}

#[test]
fn sign_summary_validates_and_dedupes() {
    let a = key(1);
    let mut bad = sample(1);
    bad.refs.swap(0, 1);
    assert!(matches!(
        sign_summary(&bad, &[&a]),
        Err(Error::Store(store::Error::Invalid { .. }))
    ));
    // The same key given twice signs once.
    let file = sign_summary(&sample(1), &[&a, &a]).unwrap();
    assert_eq!(parse_signed(&file).unwrap().signatures.len(), 1);
    let keys: Vec<SigningKey> = (1..=17).map(key).collect();
    let refs: Vec<&SigningKey> = keys.iter().collect();
    assert!(sign_summary(&sample(1), &refs[..16]).is_ok());
    assert!(matches!(
        sign_summary(&sample(1), &refs),
        Err(Error::TooManySummaryKeys {
            given: 17,
            limit: 16
        })
    ));
}

#[test]
fn unsigned_and_untrusted_are_distinct() {
    let (a, c) = (key(1), key(3));
    let t = trusted(&[&a]);
    let unsigned = sign_summary(&sample(1), &[]).unwrap();
    let e = verify_summary(&unsigned, &t, &TrustState::default(), NOW).unwrap_err();
    assert!(matches!(e, Error::SummaryUnsigned), "{e}");
    assert!(e.to_string().contains("unsigned"));
    let other = sign_summary(&sample(1), &[&c]).unwrap();
    let e = verify_summary(&other, &t, &TrustState::default(), NOW).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SummaryUntrusted {
                untrusted: 1,
                invalid: 0
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("no trusted signature"));
    // An untrusted signature beside a trusted one does no harm.
    let both = sign_summary(&sample(1), &[&a, &c]).unwrap();
    let v = verify_summary(&both, &t, &TrustState::default(), NOW).unwrap();
    assert_eq!(v.signed_by, vec!["key0".to_owned()]);
}

#[test]
fn b1_rollback_refused() {
    let a = key(1);
    let t = trusted(&[&a]);
    let s5 = accept(
        &sign_summary(&sample(5), &[&a]).unwrap(),
        &t,
        &TrustState::default(),
        NOW,
    );
    let old = sign_summary(&sample(4), &[&a]).unwrap();
    let e = verify_summary(&old, &t, &s5, NOW).unwrap_err();
    assert!(
        matches!(e, Error::SummaryRollback { found: 4, last: 5 }),
        "{e}"
    );
    assert!(e.to_string().contains("rollback"));
    // The next good summary is still accepted from the kept state.
    let s6 = accept(&sign_summary(&sample(6), &[&a]).unwrap(), &t, &s5, NOW);
    assert_eq!(s6.last_serial, Some(6));
}

#[test]
fn b2_equivocation_refused_identical_is_a_no_op() {
    let a = key(1);
    let t = trusted(&[&a]);
    let file = sign_summary(&sample(5), &[&a]).unwrap();
    let st = accept(&file, &t, &TrustState::default(), NOW);
    let same = verify_summary(&file, &t, &st, NOW + 10).unwrap();
    assert!(same.unchanged);
    assert_eq!(same.new_state.last_serial, st.last_serial);
    assert_eq!(same.new_state.last_body_hash, st.last_body_hash);

    let mut other = sample(5);
    other.refs[0].commit = cid(0x99);
    let e = verify_summary(&sign_summary(&other, &[&a]).unwrap(), &t, &st, NOW).unwrap_err();
    assert!(matches!(e, Error::SummaryEquivocation { serial: 5 }), "{e}");
    assert!(e.to_string().contains("equivocation"));
}

#[test]
fn b3_expired_refused_fresh_accepted() {
    let a = key(1);
    let t = trusted(&[&a]);
    let file = sign_summary(&sample(1), &[&a]).unwrap();
    for now in [T0 + DAY, T0 + DAY + 1, u64::MAX] {
        let e = verify_summary(&file, &t, &TrustState::default(), now).unwrap_err();
        assert!(
            matches!(e, Error::SummaryExpired { expires, .. } if expires == T0 + DAY),
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.contains("expired (freeze attack or stale mirror)"),
            "{text}"
        );
        assert!(!text.contains("no update"));
    }
    verify_summary(&file, &t, &TrustState::default(), T0 + DAY - 1).unwrap();
    // An identical, already accepted summary is still refused once it has expired.
    let st = accept(&file, &t, &TrustState::default(), NOW);
    assert!(matches!(
        verify_summary(&file, &t, &st, T0 + DAY),
        Err(Error::SummaryExpired { .. })
    ));
}

#[test]
fn b4_max_serial_does_not_overflow() {
    let a = key(1);
    let t = trusted(&[&a]);
    let st = accept(
        &sign_summary(&sample(5), &[&a]).unwrap(),
        &t,
        &TrustState::default(),
        NOW,
    );
    let max = sign_summary(&sample(u64::MAX), &[&a]).unwrap();
    let st = accept(&max, &t, &st, NOW);
    assert_eq!(st.last_serial, Some(u64::MAX));
    assert!(verify_summary(&max, &t, &st, NOW).unwrap().unchanged);
    let mut other = sample(u64::MAX);
    other.metadata.clear();
    assert!(matches!(
        verify_summary(&sign_summary(&other, &[&a]).unwrap(), &t, &st, NOW),
        Err(Error::SummaryEquivocation { serial: u64::MAX })
    ));
    assert!(matches!(
        verify_summary(
            &sign_summary(&sample(u64::MAX - 1), &[&a]).unwrap(),
            &t,
            &st,
            NOW
        ),
        Err(Error::SummaryRollback { .. })
    ));
    // Recovery after a key rotation starts from a reset state (chosen by the caller).
    accept(
        &sign_summary(&sample(1), &[&a]).unwrap(),
        &t,
        &TrustState::default(),
        NOW,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    save_trust_state(&path, &st).unwrap();
    assert_eq!(load_trust_state(&path).unwrap(), Some(st));
}

#[test]
fn b5_signature_of_another_body_spliced_in() {
    let (a, b) = (key(1), key(2));
    let t = trusted(&[&a, &b]);
    let old = parse_signed(&sign_summary(&sample(1), &[&a, &b]).unwrap())
        .unwrap()
        .signatures;
    let new_body = sample(2).encode();
    let sigs: Vec<_> = old.iter().map(|e| (e.public_key, e.signature)).collect();
    let spliced = envelope(&new_body, &sigs);
    // It parses: the structure is fine, only the signatures do not cover this body.
    assert_eq!(parse_signed(&spliced).unwrap().summary, sample(2));
    let e = verify_summary(&spliced, &t, &TrustState::default(), NOW).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SummaryUntrusted {
                untrusted: 0,
                invalid: 2
            }
        ),
        "{e}"
    );
    // The good pair afterwards is accepted.
    let good = envelope(&new_body, &[summary_sig(&a, &new_body)]);
    verify_summary(&good, &t, &TrustState::default(), NOW).unwrap();
}

#[test]
fn b9_clock_at_zero_uses_latest_known_time() {
    let a = key(1);
    let t = trusted(&[&a]);
    let file = sign_summary(&sample(1), &[&a]).unwrap();
    // The device has seen time T0 + 2 days; its clock now reads 0.
    let st = TrustState {
        latest_known_time: T0 + 2 * DAY,
        ..TrustState::default()
    };
    let e = verify_summary(&file, &t, &st, 0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::SummaryExpired {
                expires,
                now,
                device_clock: 0
            } if expires == T0 + DAY && now == T0 + 2 * DAY
        ),
        "{e}"
    );
    // A fresh summary is accepted, the clock problem is reported, and the floor never
    // falls; it rises to the summary's timestamp only as far as the device clock plus the
    // skew allows (a clock at 0 learns nothing from a summary of T0).
    let st = TrustState {
        latest_known_time: T0 - 10,
        ..TrustState::default()
    };
    let v = verify_summary(&file, &t, &st, 0).unwrap();
    assert_eq!(v.clock_behind, Some(T0 - 10));
    assert_eq!(v.new_state.latest_known_time, T0 - 10);
    assert_eq!(v.timestamp_ahead, Some(T0));
    let v = verify_summary(&file, &t, &st, T0 - DAY / 2).unwrap();
    assert_eq!(v.new_state.latest_known_time, T0);
    let v = verify_summary(&file, &t, &TrustState::default(), NOW).unwrap();
    assert_eq!(v.new_state.latest_known_time, NOW);
}

#[test]
fn a4_commit_domain_signatures_never_cross_over() {
    let a = key(1);
    let t = trusted(&[&a]);
    let body = sample(1).encode();
    let as_commit = CommitId(ObjectId::of(&body));
    // A trusted key's commit signature over an "id" equal to the body hash.
    let commit_sig = a.sign(&commit_message(&as_commit)).to_bytes();
    let file = envelope(&body, &[(a.verifying_key().to_bytes(), commit_sig)]);
    assert!(matches!(
        verify_summary(&file, &t, &TrustState::default(), NOW),
        Err(Error::SummaryUntrusted {
            untrusted: 0,
            invalid: 1
        })
    ));
    // And a summary signature presented as a commit signature.
    let (pk, sig) = summary_sig(&a, &body);
    let sigs = Signatures(vec![SignatureEntry {
        public_key: pk,
        signature: sig,
    }]);
    assert!(matches!(
        verify_signatures(&as_commit, &sigs, &t),
        Err(store::Error::NoTrustedSignature { invalid: 1, .. })
    ));
}

/// ℓ, the order of the ed25519 base point, little-endian.
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn a5_bad_signature_blobs_refused() {
    let a = key(1);
    let t = trusted(&[&a]);
    let file = sign_summary(&sample(1), &[&a]).unwrap();
    // 63 and 65 bytes of signature.
    let short = &file[..file.len() - 1];
    assert!(matches!(
        verify_summary(short, &t, &TrustState::default(), NOW),
        Err(Error::Store(store::Error::Decode { .. }))
    ));
    let mut long = file.clone();
    long.push(0);
    let e = verify_summary(&long, &t, &TrustState::default(), NOW).unwrap_err();
    assert!(e.to_string().contains("trailing"), "{e}");

    // Non-canonical S: S + ℓ is the same scalar, refused by strict verification.
    let body = sample(1).encode();
    let (pk, mut sig) = summary_sig(&a, &body);
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(ELL[i]) + carry;
        sig[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    assert!(matches!(
        verify_summary(
            &envelope(&body, &[(pk, sig)]),
            &t,
            &TrustState::default(),
            NOW
        ),
        Err(Error::SummaryUntrusted { invalid: 1, .. })
    ));

    // A small-order public key (the identity) with R = identity, S = 0 "verifies" any
    // message under lax rules; here it is invalid.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut weak_sig = [0u8; 64];
    weak_sig[0] = 1;
    assert!(matches!(
        verify_summary(
            &envelope(&body, &[(weak, weak_sig)]),
            &t,
            &TrustState::default(),
            NOW
        ),
        Err(Error::SummaryUntrusted { invalid: 1, .. })
    ));
}

#[test]
fn a6_same_key_counts_once() {
    let a = key(1);
    let body = sample(1).encode();
    let s = summary_sig(&a, &body);
    let e = parse_signed(&envelope(&body, &[s, s])).unwrap_err();
    assert!(e.to_string().contains("signs twice"), "{e}");
    // Unsorted signatures are refused too.
    let b = key(2);
    let mut two = [summary_sig(&a, &body), summary_sig(&b, &body)];
    two.sort();
    two.reverse();
    assert!(parse_signed(&envelope(&body, &two)).is_err());
    // One key trusted under two names yields one signer.
    let mut t = TrustedKeys::new();
    t.insert("first", PublicKey::from(&a));
    t.insert("second", PublicKey::from(&a));
    let v = verify_summary(&envelope(&body, &[s]), &t, &TrustState::default(), NOW).unwrap();
    assert_eq!(v.signed_by, vec!["first".to_owned()]);
}

#[test]
fn a10_e1_huge_inputs_bounded() {
    let a = key(1);
    let t = trusted(&[&a]);
    let body = sample(1).encode();
    // A count of 10^6 signatures with few bytes behind it.
    let mut e = Encoder::default();
    e.raw(b"USSF");
    e.u8(1);
    e.bytes(&body);
    e.u32(1_000_000);
    let err = verify_summary(&e.finish(), &t, &TrustState::default(), NOW).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit of 16"), "{err}");
    // 17 real signatures.
    let keys: Vec<SigningKey> = (1..=17).map(key).collect();
    let mut sigs: Vec<_> = keys.iter().map(|k| summary_sig(k, &body)).collect();
    sigs.sort();
    assert!(matches!(
        verify_summary(&envelope(&body, &sigs), &t, &TrustState::default(), NOW),
        Err(Error::Store(store::Error::Decode { .. }))
    ));
    // A file over the cap (10^6 signatures would be 96 MB) is refused before parsing.
    let huge = vec![0u8; MAX_SUMMARY_SIZE as usize + 1];
    assert!(matches!(
        verify_summary(&huge, &t, &TrustState::default(), NOW),
        Err(Error::SummaryTooLarge { limit, .. }) if limit == MAX_SUMMARY_SIZE
    ));
    assert!(matches!(
        parse_signed(&huge),
        Err(Error::SummaryTooLarge { .. })
    ));
    // A body length far beyond the file.
    let mut e = Encoder::default();
    e.raw(b"USSF");
    e.u8(1);
    e.u32(u32::MAX);
    assert!(parse_signed(&e.finish()).is_err());
}

#[test]
fn trust_state_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("remote.state");
    assert_eq!(load_trust_state(&path).unwrap(), None);
    let st = TrustState {
        last_serial: Some(9),
        last_body_hash: Some([7; 32]),
        latest_known_time: T0,
        channel: Some("stable".into()),
    };
    save_trust_state(&path, &st).unwrap();
    assert_eq!(load_trust_state(&path).unwrap(), Some(st.clone()));
    save_trust_state(&path, &TrustState::default()).unwrap();
    assert_eq!(
        load_trust_state(&path).unwrap(),
        Some(TrustState::default())
    );
    save_trust_state(&path, &st).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("remote.state")]);

    let bytes = std::fs::read(&path).unwrap();
    for bad in [
        &bytes[..bytes.len() - 1],
        &bytes[..0],
        b"serial = 9\n".as_slice(),
    ] {
        let p = dir.path().join("bad.state");
        std::fs::write(&p, bad).unwrap();
        let e = load_trust_state(&p).unwrap_err();
        assert!(matches!(e, Error::TrustStateCorrupt { .. }), "{e}");
        assert!(e.to_string().contains("bad.state"), "{e}");
    }
    let mut flipped = bytes.clone();
    flipped[10] ^= 0x80;
    let p = dir.path().join("flipped.state");
    std::fs::write(&p, &flipped).unwrap();
    assert!(load_trust_state(&p)
        .unwrap_err()
        .to_string()
        .contains("damaged"));
    assert!(matches!(
        save_trust_state(
            &dir.path().join("missing-dir/state"),
            &TrustState::default()
        ),
        Err(Error::Store(store::Error::Io { .. }))
    ));
}

fn arb_summary() -> impl Strategy<Value = Summary> {
    let name = "[a-z0-9]{1,8}(/[a-z0-9._+@-]{1,8}){0,2}"
        .prop_filter("component may not start with '.'", |n| {
            n.split('/').all(|c| !c.starts_with('.'))
        });
    let refs = prop::collection::btree_map(
        name,
        (
            any::<[u8; 32]>(),
            prop::option::of("[ -~]{1,20}"),
            any::<u64>(),
            any::<u64>(),
        ),
        0..6,
    );
    let deltas = prop::collection::btree_map(
        (any::<[u8; 2]>(), any::<[u8; 2]>()),
        (any::<u64>(), any::<[u8; 32]>()),
        0..4,
    );
    let packs = prop::collection::btree_map(
        any::<[u8; 32]>(),
        (any::<u64>(), any::<[u8; 32]>(), any::<u64>()),
        0..4,
    );
    let meta = prop::collection::btree_map("[a-z.]{1,10}", ".{0,20}", 0..4);
    (
        any::<u64>(),
        0..u64::MAX,
        1..u64::MAX,
        refs,
        packs,
        deltas,
        meta,
    )
        .prop_map(
            |(serial, timestamp, span, refs, packs, deltas, meta)| Summary {
                serial,
                timestamp,
                expires: timestamp.saturating_add(span).max(timestamp + 1),
                channel: (serial % 3 != 0).then(|| format!("c{}", serial % 7)),
                reset_clock: serial % 2 == 0,
                refs: refs
                    .into_iter()
                    .map(|(n, (c, version, timestamp, download_size))| RefEntry {
                        name: RefName::new(n).unwrap(),
                        commit: CommitId(ObjectId::from_bytes(c)),
                        version,
                        timestamp,
                        download_size,
                        chunk_index_id: ObjectId::from_bytes(c),
                        chunk_index_size: download_size / 2,
                        signatures_id: ObjectId::from_bytes([0x66; 32]),
                        signatures_size: 8,
                    })
                    .collect(),
                packs: packs
                    .into_iter()
                    .map(|(id, (size, index_id, index_size))| PackEntry {
                        id: ObjectId::from_bytes(id),
                        size,
                        index_id: ObjectId::from_bytes(index_id),
                        index_size,
                    })
                    .collect(),
                deltas: deltas
                    .into_iter()
                    .filter(|((f, t), _)| f != t)
                    .map(|((f, t), (size, id))| {
                        let wide = |b: [u8; 2]| {
                            let mut x = [0u8; 32];
                            x[..2].copy_from_slice(&b);
                            CommitId(ObjectId::from_bytes(x))
                        };
                        DeltaEntry {
                            from: wide(f),
                            to: wide(t),
                            size,
                            id: ObjectId::from_bytes(id),
                        }
                    })
                    .collect(),
                metadata: meta.into_iter().collect(),
            },
        )
        // `a` and `a/b` cannot both be refs (refs are files); see `ref_and_its_directory_conflict`.
        .prop_filter("a ref is also a directory of refs", |s| {
            s.refs.iter().all(|a| {
                let dir = format!("{}/", a.name);
                !s.refs.iter().any(|b| b.name.as_str().starts_with(&dir))
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encode_decode_round_trip(s in arb_summary()) {
        prop_assert!(s.validate().is_ok());
        let b = s.encode();
        prop_assert_eq!(Summary::decode(&b).unwrap(), s.clone());
        let file = sign_summary(&s, &[&key(1)]).unwrap();
        prop_assert_eq!(parse_signed(&file).unwrap().summary, s);
    }

    /// Any single change to a file signed by one trusted key (a byte flipped, the file
    /// cut short, a byte inserted) is refused, and never panics.
    #[test]
    fn mutated_files_refused_without_panic(
        s in arb_summary(),
        at in any::<prop::sample::Index>(),
        xor in 1u8..,
        op in 0u8..3,
    ) {
        let a = key(1);
        let t = trusted(&[&a]);
        let mut file = sign_summary(&s, &[&a]).unwrap();
        let i = at.index(file.len());
        match op {
            0 => file[i] ^= xor,
            1 => file.truncate(i),
            _ => file.insert(i, xor),
        }
        let _ = parse_signed(&file);
        let _ = Summary::decode(&file);
        let st = TrustState::default();
        prop_assert!(verify_summary(&file, &t, &st, 0).is_err());
    }

    /// Arbitrary bytes, bare or behind a valid tag and version, never panic any parser.
    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let t = trusted(&[&key(1)]);
        for prefix in [&b""[..], b"USUM\x01", b"USSF\x01"] {
            let mut b = prefix.to_vec();
            b.extend_from_slice(&tail);
            let _ = Summary::decode(&b);
            let _ = parse_signed(&b);
            prop_assert!(verify_summary(&b, &t, &TrustState::default(), 0).is_err());
        }
    }
}
