//! The chunk index (`UCIX`): whatever decodes is the one canonical encoding of a valid
//! index, each file's chunks adding up to its header's size.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transport::chunk::{CHUNK_MAX, CHUNK_MIN};
use transport::pack::ChunkIndex;

fuzz_target!(|data: &[u8]| {
    let Ok(ci) = ChunkIndex::decode(data) else {
        return;
    };
    assert_eq!(ci.encode(), data, "accepted chunk index is not canonical");
    ci.validate().expect("an accepted chunk index is valid");
    for f in &ci.files {
        let h = f.decode_header().expect("an accepted header decodes");
        assert_eq!(h.encode(), f.header, "accepted header is not canonical");
        let mut total = 0u64;
        for (i, c) in f.chunks.iter().enumerate() {
            assert!(c.len >= 1 && c.len <= CHUNK_MAX);
            assert!(i + 1 == f.chunks.len() || c.len >= CHUNK_MIN);
            total += u64::from(c.len);
        }
        assert_eq!(total, h.size);
    }
});
