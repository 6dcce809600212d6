//! Coffer's shared vocabulary: ids, error codes and the JSON wire types of the
//! agent protocol and the admin API. Every other crate speaks these types;
//! this crate depends on nothing but serialization and hashing.

mod error;
mod ids;
mod role;
pub mod wire;

pub use error::ErrorCode;
pub use ids::{BlockId, IdError, Name, BLOCK_ID_HEX_LEN};
pub use role::Role;

/// Milliseconds since the Unix epoch, as stamped by the server's clock.
///
/// Every health, retention and hold decision uses times of this type that the
/// server recorded itself, never a time an agent claims (DESIGN §3.5).
pub type UnixMillis = u64;
