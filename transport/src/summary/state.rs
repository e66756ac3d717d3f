//! Persisting a remote's [`TrustState`]: a small fixed-size file with its own checksum,
//! replaced atomically and durably. A damaged file is an error, never a silent reset of
//! trust (which would reopen rollback and freeze attacks).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use super::verify::TrustState;
use super::{validate_channel, MAX_CHANNEL};
use crate::error::{Error, Result};
use store::durable;
use store::IoResultExt;

/// Tag of a trust state file.
const STATE_TAG: &[u8; 4] = b"UTST";
/// Version written: 2 added the pinned channel. Version 1 is still read (no channel).
const STATE_VERSION: u8 = 2;
/// Version 1: tag, version, flags, serial, body hash, latest known time, checksum.
const STATE_LEN_V1: usize = 4 + 1 + 1 + 8 + 32 + 8 + 32;
/// Version 2: version 1's fields, then the channel's length (0: none) and its bytes padded
/// with zeros to [`MAX_CHANNEL`], then the checksum.
const STATE_LEN: usize = STATE_LEN_V1 + 1 + MAX_CHANNEL;

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
    v.push(STATE_VERSION);
    v.push(flag);
    v.extend_from_slice(&serial.to_le_bytes());
    v.extend_from_slice(&hash);
    v.extend_from_slice(&state.latest_known_time.to_le_bytes());
    let channel = state.channel.as_deref().unwrap_or_default();
    if !channel.is_empty() {
        validate_channel(channel)?;
    }
    v.push(channel.len() as u8);
    v.extend_from_slice(channel.as_bytes());
    v.resize(STATE_LEN - 32, 0);
    let sum = blake3::hash(&v);
    v.extend_from_slice(sum.as_bytes());
    Ok(v)
}

fn decode(b: &[u8]) -> std::result::Result<TrustState, String> {
    if b.len() < 5 || &b[..4] != STATE_TAG {
        return Err("not a trust state file (wrong tag)".into());
    }
    let len = match b[4] {
        1 => STATE_LEN_V1,
        STATE_VERSION => STATE_LEN,
        v => return Err(format!("format version {v} (this build reads 1 and 2)")),
    };
    if b.len() != len {
        return Err(format!(
            "{} bytes, a version {} trust state file is {len} (truncated or not a state file)",
            b.len(),
            b[4]
        ));
    }
    let (data, sum) = b.split_at(len - 32);
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
    let channel = if len == STATE_LEN {
        let n = usize::from(b[54]);
        let field = &b[55..55 + MAX_CHANNEL];
        if n > MAX_CHANNEL || field[n.min(MAX_CHANNEL)..].iter().any(|&x| x != 0) {
            return Err("invalid channel field".into());
        }
        match n {
            0 => None,
            _ => {
                let c = std::str::from_utf8(&field[..n])
                    .map_err(|_| "channel is not UTF-8".to_owned())?;
                validate_channel(c).map_err(|e| e.to_string())?;
                Some(c.to_owned())
            }
        }
    } else {
        None
    };
    Ok(TrustState {
        last_serial,
        last_body_hash,
        latest_known_time,
        channel,
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
                channel: None,
            },
            TrustState {
                last_serial: Some(3),
                last_body_hash: Some([7; 32]),
                latest_known_time: 1_700_000_000,
                channel: Some("c".repeat(64)),
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
            channel: None,
        };
        assert!(encode(&s).is_err());
    }

    #[test]
    fn version_1_file_reads_as_no_channel() {
        let s = TrustState {
            last_serial: Some(5),
            last_body_hash: Some([1; 32]),
            latest_known_time: 1_700_000_000,
            channel: Some("stable".into()),
        };
        // A version 1 file is the first 54 bytes of version 2's fields, then its checksum.
        let mut v1 = encode(&s).unwrap()[..54].to_vec();
        v1[4] = 1;
        let sum = blake3::hash(&v1);
        v1.extend_from_slice(sum.as_bytes());
        let got = decode(&v1).unwrap();
        assert_eq!(got, TrustState { channel: None, ..s });
    }
}
