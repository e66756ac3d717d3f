//! `floor DIR`: the least work any content store must do to commit DIR
//! into an archive repo: read every regular file (inode) once, BLAKE3-hash it and
//! zstd-compress it (level 3). Nothing is written; compressed bytes are only
//! counted. `update commit` is compared with this number, so the gap between
//! the two is the store's own overhead (metadata, object writes, fsync, ...).
//!
//! Two threads, matching the 2-core bench machines; files are dealt out
//! round-robin so both threads get a similar mix of large and small files.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::io::{self, Read};
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};
use std::path::{Path, PathBuf};
use std::time::Instant;

const THREADS: usize = 2;

/// Regular files under `dir`, without following symlinks (as a commit would
/// store a symlink as a link, not read its target). A file with several
/// hardlinks is listed once: its content is one object, and a committer can
/// tell so from (dev, ino) without reading it again. Real trees have many
/// (git-core alone links one binary ~100 times), so this matters.
fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&entry.path(), seen, out)?;
        } else if ft.is_file() {
            let md = entry.metadata()?;
            if md.nlink() == 1 || seen.insert((md.dev(), md.ino())) {
                out.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Returns (input bytes, compressed bytes) for this thread's share.
fn work(files: &[PathBuf], level: i32) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; 1 << 20];
    let mut out: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::CCtx::out_size());
    let (mut input, mut compressed) = (0u64, 0u64);
    // One compression context per thread, reset between files, as a real
    // committer would do: allocating a context per file would bias the floor.
    let mut enc = Encoder::new(level)?;
    for path in files {
        let mut f = File::open(path)?;
        let mut hasher = blake3::Hasher::new();
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            input += n as u64;
            hasher.update(&buf[..n]);
            let mut inb = InBuffer::around(&buf[..n]);
            while inb.pos() < n {
                out.clear();
                let mut outb = OutBuffer::around(&mut out);
                enc.run(&mut inb, &mut outb)?;
                compressed += outb.pos() as u64;
            }
        }
        // Flush the frame epilogue; it may need several output buffers.
        loop {
            out.clear();
            let mut outb = OutBuffer::around(&mut out);
            let remaining = enc.finish(&mut outb, true)?;
            compressed += outb.pos() as u64;
            if remaining == 0 {
                break;
            }
        }
        enc.reinit()?;
        std::hint::black_box(hasher.finalize());
    }
    Ok((input, compressed))
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => {
            eprintln!("usage: floor DIR [ZSTD_LEVEL]");
            std::process::exit(2);
        }
    };
    // Level 3 is what the store uses; other levels are for size experiments.
    let level: i32 = match args.next().map(|l| l.to_string_lossy().parse()) {
        None => 3,
        Some(Ok(l)) => l,
        Some(Err(_)) => {
            eprintln!("floor: ZSTD_LEVEL must be an integer");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let mut files = Vec::new();
    if let Err(e) = walk(&dir, &mut HashSet::new(), &mut files) {
        eprintln!("floor: walking {}: {e}", dir.display());
        std::process::exit(1);
    }
    let shares: Vec<Vec<PathBuf>> = (0..THREADS)
        .map(|t| files.iter().skip(t).step_by(THREADS).cloned().collect())
        .collect();
    let results: Vec<io::Result<(u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = shares.iter().map(|sh| s.spawn(|| work(sh, level))).collect();
        handles.into_iter().map(|h| h.join().expect("worker panicked")).collect()
    });
    let (mut input, mut compressed) = (0u64, 0u64);
    for r in results {
        match r {
            Ok((i, c)) => {
                input += i;
                compressed += c;
            }
            Err(e) => {
                eprintln!("floor: {e}");
                std::process::exit(1);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"seconds\": {secs:.3}, \"files\": {}, \"input_bytes\": {input}, \"compressed_bytes\": {compressed}, \"threads\": {THREADS}, \"zstd_level\": {level}}}",
        files.len()
    );
}
