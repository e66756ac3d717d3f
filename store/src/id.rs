//! Object ids: BLAKE3-256 digests, shown as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Length of an object id in bytes.
pub const ID_LEN: usize = 32;

/// The BLAKE3-256 digest naming an object.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; ID_LEN]);

impl ObjectId {
    /// The id from its raw bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        ObjectId(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id of exactly these bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ObjectId(*blake3::hash(bytes).as_bytes())
    }

    /// The full lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl From<blake3::Hash> for ObjectId {
    fn from(h: blake3::Hash) -> Self {
        ObjectId(*h.as_bytes())
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl FromStr for ObjectId {
    type Err = Error;

    /// Accepts exactly 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != ID_LEN * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(Error::invalid(
                format!("object id '{}'", s.escape_debug()),
                "expected 64 lowercase hex digits",
            ));
        }
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| Error::invalid(format!("object id '{s}'"), e.to_string()))?;
        Ok(ObjectId(out))
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(pub ObjectId);

        impl $name {
            /// The untyped id.
            pub const fn id(&self) -> &ObjectId {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                s.parse().map($name)
            }
        }
    };
}

typed_id!(
    /// Id of a commit object.
    CommitId
);
typed_id!(
    /// Id of a dirtree object.
    DirTreeId
);
typed_id!(
    /// Id of a dirmeta object.
    DirMetaId
);
typed_id!(
    /// Id of a file object (header and content).
    FileId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = ObjectId::of(b"abc");
        assert_eq!(id.to_hex().parse::<ObjectId>().unwrap(), id);
        assert!("ABC".parse::<ObjectId>().is_err());
        assert!(id.to_hex().to_uppercase().parse::<ObjectId>().is_err());
        assert!(format!("{}0", id).parse::<ObjectId>().is_err());
    }
}
