//! Measure FastCDC chunk-size candidates on a tree and a modified version of it.
//!
//! ```text
//! cargo run --release -p update-store --example chunk_params -- [V1_DIR [V2_DIR]] [--level N]
//! ```
//!
//! `V1_DIR` defaults to `/var/tmp/update-bench/tree-full`. Without `V2_DIR`, v2 is made
//! in memory from v1 by deterministic edits that look like package upgrades: about one
//! regular file in eight (chosen by a hash of its path) gets a few bytes inserted, a
//! small range overwritten and a tail appended, at offsets derived from the same hash.
//!
//! For each (min, avg, max) candidate it prints: chunks in v2, their average size, the
//! chunks of v2 that v1 lacks (count = HTTP requests before coalescing), their raw bytes
//! and their bytes once compressed with zstd (what a device holding v1 downloads for v2),
//! and the size of a chunk index for v2 at 44 bytes per chunk (id + offset + length).
#![allow(clippy::disallowed_methods)] // a measuring tool: the directories the user names are meant

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use store::ObjectId;
use transport::chunk::{chunk_reader_with, ChunkParams};
use transport::compress::compress_chunk;

const KIB: u32 = 1024;
const INDEX_ENTRY: u64 = 32 + 8 + 4;

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The deterministic "upgrade" of a file's content, or `None` to leave it alone.
fn modify(rel: &Path, data: &[u8]) -> Option<Vec<u8>> {
    let h = blake3::hash(rel.as_os_str().as_encoded_bytes());
    let h = h.as_bytes();
    if !h[0].is_multiple_of(8) || data.is_empty() {
        return None;
    }
    let r = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let len = data.len() as u64;
    let ins_at = (r(1) % len) as usize;
    let ow_at = (r(9) % len) as usize;
    let mut v = data.to_vec();
    let ow_len = 64.min(v.len() - ow_at);
    for (i, b) in v[ow_at..ow_at + ow_len].iter_mut().enumerate() {
        *b ^= h[i % 32] | 1;
    }
    let insert: Vec<u8> = (0..(h[17] as usize + 16)).map(|i| h[i % 32]).collect();
    v.splice(ins_at..ins_at, insert);
    v.extend_from_slice(&h[..]);
    Some(v)
}

struct Tally {
    chunks: u64,
    bytes: u64,
    new_chunks: u64,
    new_raw: u64,
    new_zstd: u64,
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut level = 3;
    if let Some(i) = args.iter().position(|a| a == "--level") {
        level = args[i + 1].parse().expect("--level N");
        args.drain(i..i + 2);
    }
    let v1 = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| "/var/tmp/update-bench/tree-full".into()),
    );
    let v2 = args.get(1).map(PathBuf::from);
    let v1_files = files(&v1);
    let v2_files = v2.as_deref().map(files);
    println!(
        "v1 {} ({} files), v2 {}, zstd level {level}",
        v1.display(),
        v1_files.len(),
        v2.as_ref()
            .map_or("= v1 with deterministic edits".into(), |p| p
                .display()
                .to_string())
    );
    let candidates = [(8, 32, 128), (16, 64, 256), (32, 128, 512), (64, 256, 1024)];
    println!(
        "{:>14} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9} {:>6}",
        "min/avg/max K", "chunks", "avg B", "new", "new raw B", "new zstd B", "index B", "secs"
    );
    for (min, avg, max) in candidates {
        let params = ChunkParams {
            min: min * KIB,
            avg: avg * KIB,
            max: max * KIB,
        };
        let t = Instant::now();
        let mut have: HashSet<ObjectId> = HashSet::new();
        for f in &v1_files {
            let Ok(file) = std::fs::File::open(f) else {
                continue;
            };
            for c in chunk_reader_with(params, std::io::BufReader::new(file)) {
                have.insert(c.expect("read v1").0.id);
            }
        }
        let mut tally = Tally {
            chunks: 0,
            bytes: 0,
            new_chunks: 0,
            new_raw: 0,
            new_zstd: 0,
        };
        let mut fetched: HashSet<ObjectId> = HashSet::new();
        let mut count = |data: &mut dyn Read, tally: &mut Tally| {
            for c in chunk_reader_with(params, data) {
                let (chunk, bytes) = c.expect("read v2");
                tally.chunks += 1;
                tally.bytes += u64::from(chunk.len);
                if !have.contains(&chunk.id) && fetched.insert(chunk.id) {
                    tally.new_chunks += 1;
                    tally.new_raw += bytes.len() as u64;
                    tally.new_zstd += compress_chunk(&bytes, level).len() as u64;
                }
            }
        };
        match &v2_files {
            Some(list) => {
                for f in list {
                    if let Ok(mut file) = std::fs::File::open(f) {
                        count(&mut file, &mut tally);
                    }
                }
            }
            None => {
                for f in &v1_files {
                    let rel = f.strip_prefix(&v1).expect("under v1");
                    let Ok(data) = std::fs::read(f) else { continue };
                    let data = modify(rel, &data).unwrap_or(data);
                    count(&mut &data[..], &mut tally);
                }
            }
        }
        println!(
            "{:>14} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9} {:>6.1}",
            format!("{min}/{avg}/{max}"),
            tally.chunks,
            tally.bytes / tally.chunks.max(1),
            tally.new_chunks,
            tally.new_raw,
            tally.new_zstd,
            tally.chunks * INDEX_ENTRY,
            t.elapsed().as_secs_f64()
        );
    }
}
