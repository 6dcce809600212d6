//! Identifiers: content-addressed block ids and the validated names used in
//! URLs (archives, devices, sessions, backups, orgs, users).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Length of a block id in lowercase hex.
pub const BLOCK_ID_HEX_LEN: usize = 64;

/// Why a string is not a valid id or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error(
        "a block id is 64 lowercase hex characters (blake3 of the block), got {len} characters"
    )]
    BlockIdLength { len: usize },
    #[error("a block id is 64 lowercase hex characters (blake3 of the block); found {found:?}")]
    BlockIdChar { found: char },
    #[error("a name is 1 to {max} characters of a-z, A-Z, 0-9, '.', '_' or '-', got {len} characters", max = Name::MAX_LEN)]
    NameLength { len: usize },
    #[error("a name is made of a-z, A-Z, 0-9, '.', '_' or '-'; found {found:?}")]
    NameChar { found: char },
}

/// The id of a block: the blake3 hash of the exact bytes stored (DESIGN §3.2).
///
/// Its text form is 64 lowercase hex characters; uppercase is refused so that
/// one block has exactly one name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId([u8; 32]);

impl BlockId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn from_hash(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for BlockId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.len() != BLOCK_ID_HEX_LEN {
            return Err(IdError::BlockIdLength {
                len: s.chars().count(),
            });
        }
        if let Some(found) = s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(IdError::BlockIdChar { found });
        }
        let mut out = [0u8; 32];
        // Length and alphabet are checked above, so decoding cannot fail.
        hex::decode_to_slice(s, &mut out).map_err(|_| IdError::BlockIdLength { len: s.len() })?;
        Ok(Self(out))
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", &self.to_hex()[..12])
    }
}

impl Serialize for BlockId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlockId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A validated name: archive, device, session and backup ids, org and user
/// names. 1 to 64 characters of `[A-Za-z0-9._-]`, not starting with a dot, so
/// a name is always safe in a URL path segment and a storage key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 64;

    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        let len = s.chars().count();
        if len == 0 || len > Self::MAX_LEN {
            return Err(IdError::NameLength { len });
        }
        if s.starts_with('.') {
            return Err(IdError::NameChar { found: '.' });
        }
        if let Some(found) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(IdError::NameChar { found });
        }
        Ok(Self(s))
    }

    /// A fresh random name with a readable prefix, e.g. `ar_5f0c…`: 16 random
    /// bytes from the OS, so names cannot be guessed.
    pub fn random(prefix: &str, random: [u8; 16]) -> Self {
        Self(format!("{prefix}_{}", hex::encode(random)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::new(s)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Name::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
mod openapi {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    fn string(pattern: &str, description: &str) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
            .into()
    }

    impl utoipa::PartialSchema for super::BlockId {
        fn schema() -> RefOr<Schema> {
            string(
                "^[0-9a-f]{64}$",
                "A block id: the blake3 of the block's bytes, 64 lowercase hex characters.",
            )
        }
    }
    impl utoipa::ToSchema for super::BlockId {}

    impl utoipa::PartialSchema for super::Name {
        fn schema() -> RefOr<Schema> {
            string(
                "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$",
                "A name or id: 1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with a dot.",
            )
        }
    }
    impl utoipa::ToSchema for super::Name {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn block_id_round_trips_and_matches_blake3() {
        let id = BlockId::of(b"hello");
        assert_eq!(id.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(id.to_hex().parse::<BlockId>().unwrap(), id);
    }

    #[test]
    fn block_id_refuses_uppercase_short_and_non_hex() {
        let hex = BlockId::of(b"x").to_hex();
        assert!(matches!(
            hex.to_uppercase().parse::<BlockId>(),
            Err(IdError::BlockIdChar { .. })
        ));
        assert!(matches!(
            hex[..63].parse::<BlockId>(),
            Err(IdError::BlockIdLength { len: 63 })
        ));
        let bad = format!("{}g", &hex[..63]);
        assert_eq!(
            bad.parse::<BlockId>(),
            Err(IdError::BlockIdChar { found: 'g' })
        );
        assert!("é".repeat(32).parse::<BlockId>().is_err());
    }

    #[test]
    fn names_refuse_path_tricks() {
        for bad in ["", ".", "..", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(Name::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["acme", "ar_0123", "Sales-EU.2", &"x".repeat(64)] {
            assert!(Name::new(good).is_ok(), "{good:?} refused");
        }
    }

    proptest! {
        #[test]
        fn any_32_bytes_round_trip_through_hex(bytes in any::<[u8; 32]>()) {
            let id = BlockId::from_bytes(bytes);
            prop_assert_eq!(id.to_hex().parse::<BlockId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<BlockId>(&json).unwrap(), id);
        }
    }
}
