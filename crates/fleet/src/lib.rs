//! Fleet rollouts: N replicas of one deployment run each rollout as one thing, through etcd. Every
//! replica shares its test totals a few times a second; one replica, elected with an etcd lease, pools
//! them (`switchyard_core::rollout::pooled` says why that stays valid), decides, and writes each decision
//! by compare-and-swap under a sequence number; every replica watches the decisions and applies each
//! once, in order. Admin actions on any replica are written the same way. A replica cut off from etcd
//! keeps its last decision and may only roll back on its own evidence; a replica that starts reads the
//! current decision before it reports ready, or serves the config's initial stage once `join_timeout`
//! passes without etcd, and joins when etcd returns.
//!
//! Without a configured etcd nothing here runs, and each replica decides alone.

mod agent;
mod decide;
mod keys;
mod lease;
mod record;
mod store;
mod view;
mod watch;

pub use record::{DecisionRecord, EvidenceRecord, rollout_id};
pub use store::StoreError;

use std::sync::Arc;
use std::time::Duration;
use switchyard_core::rollout::{ActionRefused, Decision};
use switchyard_runtime::rollout::RolloutDriver;

/// How this replica joins the fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// etcd members, `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    /// Key prefix; several deployments can share a cluster under different prefixes.
    pub prefix: String,
    /// This replica's name (unique in the fleet; the host name by default).
    pub replica: String,
    pub lease_ttl: Duration,
    pub publish_interval: Duration,
    pub join_timeout: Duration,
}

impl FleetConfig {
    pub const DEFAULT_PREFIX: &'static str = "/switchyard/";
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
    pub const DEFAULT_PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
    pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(5);

    /// Each etcd call's deadline: short enough that a cut-off replica notices within a few seconds, long
    /// enough that a busy etcd (an fsync stall, a member election) does not look like a partition.
    fn op_timeout(&self) -> Duration {
        (self.publish_interval * 10).clamp(Duration::from_secs(1), Duration::from_secs(2))
    }
}

/// The rollout drivers serving now (they change when the config is reloaded).
pub type Drivers = Arc<dyn Fn() -> Vec<Arc<RolloutDriver>> + Send + Sync>;

/// Why a fleet-wide admin action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The action makes no sense in the rollout's phase (a 409, as on one server).
    #[error(transparent)]
    Refused(#[from] ActionRefused),
    /// etcd cannot be reached, or the fleet runs another config for this rollout (a 503).
    #[error("{0}")]
    Unavailable(String),
}

/// A running fleet membership; cheap to clone.
#[derive(Clone)]
pub struct Fleet(Arc<agent::Agent>);

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("replica", &self.0.config.replica).finish()
    }
}

impl Fleet {
    /// Joins the fleet: every rollout is held to rollbacks only until the fleet's decisions are read,
    /// then the agent runs in the background for the life of the process.
    pub async fn start(config: FleetConfig, drivers: Drivers) -> Result<Self, StoreError> {
        let agent = agent::Agent::new(config, drivers).await?;
        agent.clone().spawn();
        Ok(Self(agent))
    }

    /// Whether this replica may report ready: it has read the fleet's decisions, or waited
    /// `join_timeout` for etcd and serves the config's initial stage.
    pub fn is_joined(&self) -> bool {
        self.0.is_joined()
    }

    /// An operator's action, for the whole fleet: written to etcd, then applied here. Answers once
    /// committed in etcd (every replica applies it within a second).
    pub async fn act(
        &self,
        driver: &RolloutDriver,
        action: switchyard_core::rollout::Action,
    ) -> Result<Decision, ActError> {
        self.0.act(driver, action).await
    }

    /// The fleet as `/admin/fleet` shows it.
    pub fn summary(&self) -> serde_json::Value {
        self.0.summary()
    }

    /// One rollout as the fleet sees it: each replica's evidence and the pooled verdict.
    pub async fn rollout_view(&self, driver: &RolloutDriver) -> serde_json::Value {
        self.0.rollout_view(driver).await
    }

    /// Hands leadership over and drops this replica's membership now (at shutdown).
    pub async fn leave(&self) {
        self.0.leave().await;
    }
}
