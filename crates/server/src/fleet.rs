//! Joins the fleet when an etcd cluster is named (`--etcd-endpoints`, `SWITCHYARD_ETCD_ENDPOINTS` or
//! `coordination.etcd` in the config; flags and variables win), with the rollouts serving now.

use crate::cli::ServeArgs;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use switchyard_config::EtcdSection;
use switchyard_fleet::{Fleet, FleetConfig, StoreError};
use switchyard_runtime::Endpoints;

/// The fleet settings, or `None` when no etcd cluster is named (a replica decides alone).
pub fn config(args: &ServeArgs, file: Option<&EtcdSection>) -> Option<FleetConfig> {
    let empty = EtcdSection::default();
    let file = file.unwrap_or(&empty);
    let endpoints: Vec<String> =
        if args.etcd_endpoints.is_empty() { file.endpoints.clone() } else { args.etcd_endpoints.clone() };
    let endpoints: Vec<String> = endpoints.into_iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
    if endpoints.is_empty() {
        return None;
    }
    let seconds = |s: Option<switchyard_config::rollout::Seconds>, default: Duration| s.map_or(default, |s| s.0);
    Some(FleetConfig {
        endpoints,
        prefix: args
            .etcd_prefix
            .clone()
            .or_else(|| file.prefix.clone())
            .unwrap_or_else(|| FleetConfig::DEFAULT_PREFIX.into()),
        replica: args.replica_name.clone().or_else(|| file.replica_name.clone()).unwrap_or_else(host_name),
        lease_ttl: seconds(file.lease_ttl, FleetConfig::DEFAULT_LEASE_TTL).max(Duration::from_secs(1)),
        publish_interval: seconds(file.publish_interval, FleetConfig::DEFAULT_PUBLISH_INTERVAL)
            .max(Duration::from_millis(50)),
        join_timeout: seconds(file.join_timeout, FleetConfig::DEFAULT_JOIN_TIMEOUT),
    })
}

/// Starts following the fleet with whatever rollouts `endpoints` serves at each moment.
pub async fn join(config: FleetConfig, endpoints: Arc<ArcSwap<Endpoints>>) -> Result<Fleet, StoreError> {
    tracing::info!(
        etcd = %config.endpoints.join(","),
        replica = %config.replica,
        prefix = %config.prefix,
        "joining the fleet: rollouts are decided on every replica's evidence together"
    );
    let drivers: switchyard_fleet::Drivers = Arc::new(move || endpoints.load().rollouts().values().cloned().collect());
    Fleet::start(config, drivers).await
}

/// The host name (a pod's name in Kubernetes).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into())
}
