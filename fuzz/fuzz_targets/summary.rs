//! The signed summary file (`USSF`) and the summary body (`USUM`): whatever parses is the
//! one canonical encoding of a valid summary, and a body that decodes, once signed by a
//! trusted key, is accepted by `verify_summary` exactly as decoded.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use store::object::Encoder;
use store::sign::{PublicKey, SigningKey, TrustedKeys};
use transport::summary::{parse_signed, sign_summary, verify_summary, Summary, TrustState};

fn key() -> &'static (SigningKey, TrustedKeys) {
    static KEY: OnceLock<(SigningKey, TrustedKeys)> = OnceLock::new();
    KEY.get_or_init(|| {
        // The key the seed corpus is signed with (transport/tests/transport_fuzz.rs).
        let k = SigningKey::from_bytes(&[0x01; 32]);
        let mut t = TrustedKeys::new();
        t.insert("release", PublicKey::from(&k));
        (k, t)
    })
}

fuzz_target!(|data: &[u8]| {
    let (k, trusted) = key();

    // As a body.
    if let Ok(s) = Summary::decode(data) {
        assert_eq!(s.encode(), data, "accepted body is not canonical");
        s.validate().expect("an accepted summary is valid");
        let file = sign_summary(&s, &[k]).expect("a valid summary signs");
        let v = verify_summary(&file, trusted, &TrustState::default(), s.timestamp)
            .expect("a valid summary signed by a trusted key verifies");
        assert_eq!(v.summary, s);
    }

    // As a signed file.
    if let Ok(p) = parse_signed(data) {
        let mut e = Encoder::default();
        e.raw(b"USSF");
        e.u8(1);
        e.bytes(p.body);
        e.count(p.signatures.len());
        for s in &p.signatures {
            e.raw(&s.public_key);
            e.raw(&s.signature);
        }
        assert_eq!(e.finish(), data, "accepted signed summary is not canonical");
        assert_eq!(p.summary.encode(), p.body, "accepted body is not canonical");
        p.summary.validate().expect("an accepted summary is valid");
    }

    // Verification: whatever is accepted parses (canonically, checked above) and carries a
    // valid signature by the trusted key.
    if let Ok(v) = verify_summary(data, trusted, &TrustState::default(), 0) {
        let p = parse_signed(data).expect("a verified file parses");
        assert_eq!(v.summary, p.summary);
        assert_eq!(v.signed_by, ["release"]);
    }
});
