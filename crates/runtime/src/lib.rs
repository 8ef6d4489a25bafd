//! Where models run: a pool of worker threads per model version, each owning one backend instance and
//! fed by a bounded channel, so inference never touches the async executor; and the registry of every
//! model version's state (loading, ready, failed) that the front ends read; and the serving core
//! (`serving`) that every front end calls, rollouts and shadows included.

mod batch;
mod contain;
pub mod drift;
pub mod feedback;
mod metrics;
mod pool;
mod priority;
mod queue;
mod registry;
pub mod rollout;
pub mod serving;
pub mod shadow;
mod worker;

pub use batch::BatchPolicy;
pub use contain::VersionBreaker;
pub use metrics::{Outcome, Protocol, StatsSnapshot, VersionMetrics};
pub use pool::{DEFAULT_MAX_BATCH_SIZE, InferError, Loader, Pool, PoolOptions};
pub use priority::{Foreground, foreground_for_this_thread};
pub use queue::{LevelsError, MAX_PRIORITY_LEVELS, Priority, PriorityLevels};
pub use registry::{LookupError, ModelIndex, ModelState, Readiness, Registry, Served, VersionEntry};
pub use serving::{Call, Decode, Endpoints, Metadata, RateLimitSpec, RateLimits, Reply, Resolved, ServeError};
