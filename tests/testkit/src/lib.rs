//! Test support shared by the store crates and the end-to-end tests: one conformance suite every
//! `SecretStore` must pass, a real OpenBao dev server (the Vault HTTP API) and a moto server (the
//! AWS Secrets Manager API), each started on a free loopback port, a recording HTTP receiver, and
//! store settings validated as the binary reads them.

pub mod conformance;
pub mod moto;
pub mod openbao;
pub mod receiver;
pub mod sarif;
pub mod settings;
pub mod venv;
