//! The Switchyard server: HTTP routes speaking KServe V2, configuration, the model repository loader,
//! metrics and the command line. `app` builds the router from state, so routes are testable without
//! sockets; `main.rs` only wires it to a listener.

mod catalog;
pub mod cli;
pub mod ctl;
mod error;
pub mod fleet;
pub mod grpc;
pub mod limits;
pub mod listen;
pub mod live_repository;
pub mod observe;
pub mod rate_limits;
pub mod reload;
pub mod repository;
pub mod rollouts;
mod routes;
pub mod shutdown;
pub mod validate;

pub use error::{ApiError, ApiResult};
pub use routes::{AdminAuth, AppState, FORCE_ARM_HEADER, Rollouts, Settings, app};
pub use switchyard_config::{pbtxt, rollout as rollout_config, server as config};
