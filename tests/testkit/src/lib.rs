//! Test support shared by the store crates and the end-to-end tests: one conformance suite every
//! `SecretStore` must pass, and a real OpenBao dev server (the Vault HTTP API) started on a free
//! loopback port.

pub mod conformance;
pub mod openbao;
