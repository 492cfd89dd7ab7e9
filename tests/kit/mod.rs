//! The test kit: what the simulations (`sim/`) and the black-box tests (`tests/`) share, one
//! copy of each. `sim/main.rs` and `tests/support/mod.rs` include it with `#[path]`.
//!
//! - [`model`]: the reference graph model the product is checked against: transactions applied
//!   as the store applies them, the digest, the HTTP API's node answers.
//! - [`certs`]: a CA and the server and client certificates it signs (rcgen), for TLS on the
//!   backup port; from a seed, byte for byte the same.
//! - [`http`]: the HTTP/1.1 client of the server's API over any byte stream or `Net` seam, the
//!   status answer it parses and the one encoder of `Op`s into a transaction body.
//!
//! The simulations run this code on simulated hosts, so it follows their determinism rules: no
//! thread or blocking pool, no hash map, every `select!` biased (SIM-2, SIM-11, SIM-12;
//! `sim/rules.rs` scans this directory too).

// Each includer uses its own part of the kit.
#![allow(dead_code)]

pub mod certs;
pub mod http;
pub mod model;
