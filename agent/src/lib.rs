//! The reference Coffer backup agent, as a library: the `coffer-agent` binary
//! is a thin command line over [`cli`].
//!
//! It speaks only `docs/protocol.md`, keeps every key on the device, and sends
//! the server nothing but sealed blocks.

pub mod api;
pub mod backup;
pub mod cli;
pub mod commands;
mod confined;
pub mod crypto;
pub mod escrow;
pub mod manifest;
pub mod profile;
pub mod progress;
pub mod restore;
pub mod settings;
