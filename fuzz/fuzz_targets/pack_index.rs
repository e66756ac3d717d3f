//! The pack index (`UPIX`): whatever decodes is the one canonical encoding of an index
//! whose entries are in range and tile the pack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transport::pack::PackIndex;

fuzz_target!(|data: &[u8]| {
    let Ok(idx) = PackIndex::decode(data) else {
        return;
    };
    assert_eq!(idx.encode(), data, "accepted pack index is not canonical");
    let again = PackIndex::new(*idx.pack_id(), idx.pack_size(), idx.entries().to_vec())
        .expect("PackIndex::new accepts what decode accepts");
    assert_eq!(again, idx);
    let mut total = 0u64;
    for e in idx.entries() {
        assert!(e.range().end <= idx.pack_size());
        assert!(e.stored_len >= 1 && e.raw_len >= 1);
        total += u64::from(e.stored_len);
        assert_eq!(idx.find(e.kind, &e.id), Some(e));
    }
    assert_eq!(total, idx.pack_size(), "blobs do not tile the pack");
});
