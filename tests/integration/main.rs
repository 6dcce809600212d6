//! Coffer's one integration-test binary. Every test drives the real `coffer`
//! binary, started by the harness on `127.0.0.1:0` in a temporary data
//! directory; the S3 tests run against a real S3-compatible server (s3s-fs)
//! that the harness installs and starts on loopback.

mod harness;

mod access;
mod admin;
mod agent;
mod agent_cli;
mod agent_protocol;
mod alerts;
mod audit;
mod bad_input;
mod connections;
mod durability;
mod escrow;
mod health;
mod holes;
mod integrity;
mod lazyfs;
mod limits;
mod operations;
mod plugins;
mod powerloss;
mod reports;
mod retention;
mod routes;
mod settings;
mod storage_s3;
mod upgrade;
mod workers;
