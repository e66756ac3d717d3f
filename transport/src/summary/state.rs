//! Persisting a remote's [`TrustState`]: a small fixed-size file with its own checksum,
//! replaced atomically and durably. A damaged file is an error, never a silent reset of
//! trust (which would reopen rollback and freeze attacks).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::verify::TrustState;
use super::SUMMARY_VERSION;
use crate::error::{Error, Result};
use store::durable;
use store::IoResultExt;

/// Tag of a trust state file.
const STATE_TAG: &[u8; 4] = b"UTST";
/// tag, version, flags, serial, body hash, latest known time, checksum.
const STATE_LEN: usize = 4 + 1 + 1 + 8 + 32 + 8 + 32;

fn encode(state: &TrustState) -> Result<Vec<u8>> {
    let (flag, serial, hash) = match (state.last_serial, state.last_body_hash) {
        (None, None) => (0u8, 0u64, [0u8; 32]),
        (Some(s), Some(h)) => (1, s, h),
        _ => {
            return Err(Error::invalid(
                "summary trust state",
                "last_serial and last_body_hash must be both set or both unset",
            ))
        }
    };
    let mut v = Vec::with_capacity(STATE_LEN);
    v.extend_from_slice(STATE_TAG);
    v.push(SUMMARY_VERSION);
    v.push(flag);
    v.extend_from_slice(&serial.to_le_bytes());
    v.extend_from_slice(&hash);
    v.extend_from_slice(&state.latest_known_time.to_le_bytes());
    let sum = blake3::hash(&v);
    v.extend_from_slice(sum.as_bytes());
    Ok(v)
}

fn decode(b: &[u8]) -> std::result::Result<TrustState, String> {
    if b.len() != STATE_LEN {
        return Err(format!(
            "{} bytes, a trust state file is {STATE_LEN} (truncated or not a state file)",
            b.len()
        ));
    }
    if &b[..4] != STATE_TAG {
        return Err("not a trust state file (wrong tag)".into());
    }
    if b[4] != SUMMARY_VERSION {
        return Err(format!(
            "format version {} (this build reads {SUMMARY_VERSION})",
            b[4]
        ));
    }
    let (data, sum) = b.split_at(STATE_LEN - 32);
    if blake3::hash(data).as_bytes() != sum {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let serial = u64_at(6);
    let hash: [u8; 32] = b[14..46].try_into().expect("32 bytes");
    let latest_known_time = u64_at(46);
    let (last_serial, last_body_hash) = match b[5] {
        0 if serial == 0 && hash == [0; 32] => (None, None),
        1 => (Some(serial), Some(hash)),
        f => return Err(format!("invalid flags byte {f}")),
    };
    Ok(TrustState {
        last_serial,
        last_body_hash,
        latest_known_time,
    })
}

/// Load the trust state of a remote. `Ok(None)` when the file does not exist (no summary
/// was ever accepted from it); [`Error::TrustStateCorrupt`] when it exists but is
/// truncated, damaged or not a state file.
pub fn load_trust_state(path: &Path) -> Result<Option<TrustState>> {
    // The file itself is opened without following a symlink, like the one saved replaces it.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default();
    let f = match durable::open_dir(parent).and_then(|d| durable::open_read_at(d.as_fd(), name)) {
        Ok(f) => f,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e).at_path(path).map_err(Error::from),
    };
    let mut buf = Vec::with_capacity(STATE_LEN);
    f.take(STATE_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .at_path(path)?;
    decode(&buf)
        .map(Some)
        .map_err(|reason| Error::TrustStateCorrupt {
            path: path.to_path_buf(),
            reason,
        })
}

/// Replace the trust state file atomically and durably (temp file, fsync, rename, fsync
/// the directory): a crash leaves the old state or the new one.
pub fn save_trust_state(path: &Path, state: &TrustState) -> Result<()> {
    let data = encode(state)?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        Error::invalid(
            format!("trust state path {}", path.display()),
            "needs a UTF-8 file name",
        )
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at_path(parent)?;
    Ok(durable::write_atomic(
        dir.as_fd(),
        name,
        &data,
        0o644,
        path,
    )?)
}

#[cfg(test)]
mod tests {
    use super::{decode, encode, TrustState, STATE_LEN};

    #[test]
    fn round_trip_and_every_truncation_refused() {
        for s in [
            TrustState::default(),
            TrustState {
                last_serial: Some(u64::MAX),
                last_body_hash: Some([9; 32]),
                latest_known_time: 1_700_000_000,
            },
        ] {
            let b = encode(&s).unwrap();
            assert_eq!(b.len(), STATE_LEN);
            assert_eq!(decode(&b).unwrap(), s);
            for n in 0..b.len() {
                assert!(decode(&b[..n]).is_err());
            }
            for i in 0..b.len() {
                let mut c = b.clone();
                c[i] ^= 1;
                assert!(decode(&c).is_err(), "flip at {i}");
            }
        }
    }

    #[test]
    fn half_set_state_is_refused() {
        let s = TrustState {
            last_serial: Some(1),
            last_body_hash: None,
            latest_known_time: 0,
        };
        assert!(encode(&s).is_err());
    }
}
