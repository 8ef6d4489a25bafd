//! Decisions without I/O. Everything here is a pure function of its inputs (time, when needed, is passed
//! in), so the server's choices can be tested exhaustively and the rollout engine can reuse them.

pub mod breaker;
pub mod drift;
pub mod experiment;
pub mod ratelimit;
pub mod rollout;
mod versions;

pub use versions::{Resolution, ResolveError, SelectError, VersionPolicy, resolve_version};
