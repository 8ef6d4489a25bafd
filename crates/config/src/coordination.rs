//! `coordination:`: how replicas of one deployment share their rollouts (issue 13). With an etcd
//! cluster named, every replica pools its evidence with the others' and follows one decision per
//! rollout; without one, a replica decides alone. Read at start only (flags and variables win).

use crate::rollout::Seconds;
use serde::Deserialize;

/// `coordination:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationConfig {
    pub etcd: Option<EtcdSection>,
}

/// `coordination.etcd:`: the etcd cluster and how often replicas talk to it.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// `host:port` of each member (or `http://host:port`).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Key prefix (default `/switchyard/`): several deployments can share one cluster.
    pub prefix: Option<String>,
    /// This replica's name in the fleet (default: the host name).
    pub replica_name: Option<String>,
    /// How long a replica's lease lives without a keep-alive; a dead leader is replaced within it
    /// (default 5s).
    pub lease_ttl: Option<Seconds>,
    /// How often a replica shares its evidence and the leader judges it (default 100ms).
    pub publish_interval: Option<Seconds>,
    /// How long a starting replica waits for etcd before it serves the config's initial stage
    /// (default 5s).
    pub join_timeout: Option<Seconds>,
}
