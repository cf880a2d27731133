//! `rekey agent`: a long-running local service that hands out access tokens, so a consumer
//! that needs one per job step pays a local request instead of a process start (in the spirit
//! of Vault Agent).
//!
//! `GET /v1/token/CRED` answers with the token the mint of `rekey token` gives — the same fallback as
//! `rekey token` (CURRENT, then PENDING, then PREVIOUS on a key Salesforce does not trust right
//! now; client credentials for consumer secrets). Tokens live in this process's memory only,
//! never in a file, each for its credential's `token_cache_secs` (0: minted per request). Every
//! `[agent] refresh_secs` the agent reads each held token's stages again: a token whose key has
//! left the store (a second rotation, an emergency) is dropped, one past three quarters of its
//! life is minted anew, so the agent follows rotations without a restart. Requests are guarded
//! by the socket's mode and group, or over loopback HTTP by a bearer secret ([`listen`]).

mod listen;
mod tokens;

pub use listen::{AgentEvent, serve};
