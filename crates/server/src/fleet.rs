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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use crate::config::ServerConfig;
    use clap::Parser;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let argv = ["switchyard", "serve"].iter().chain(argv).copied();
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Serve(a) => *a,
            Command::Validate(_) | Command::Rollouts(_) => unreachable!("serve"),
        }
    }

    #[test]
    fn the_fleet_comes_from_the_config_file_and_flags_win() {
        let file = ServerConfig::parse(
            "coordination:\n  etcd:\n    endpoints: [e1:2379, e2:2379]\n    prefix: /team-a/\n    lease_ttl: 3s\n",
        )
        .expect("parses");
        let etcd = file.coordination.etcd.as_ref();
        let c = config(&serve_args(&["--replica-name", "pod-a"]), etcd).expect("a fleet");
        assert_eq!(c.endpoints, ["e1:2379", "e2:2379"]);
        assert_eq!((c.prefix.as_str(), c.replica.as_str()), ("/team-a/", "pod-a"));
        assert_eq!(c.lease_ttl, Duration::from_secs(3));
        assert_eq!(c.publish_interval, FleetConfig::DEFAULT_PUBLISH_INTERVAL);
        let c = config(&serve_args(&["--etcd-endpoints", "x:1, y:2", "--etcd-prefix", "/b/"]), etcd).expect("a fleet");
        assert_eq!((c.endpoints, c.prefix.as_str()), (vec!["x:1".to_owned(), "y:2".to_owned()], "/b/"));
        assert!(config(&serve_args(&[]), None).is_none(), "no etcd, no fleet");
    }

    #[test]
    fn a_misspelt_coordination_field_is_named() {
        let e = ServerConfig::parse("coordination:\n  etcd:\n    endpoint: [e1:2379]\n").expect_err("refused");
        assert!(e.to_string().contains("endpoint"), "{e}");
    }
}
