//! Shadow copies: after the client's answer is ready, each sampled shadow gets the same request on its
//! own workers, at the lowest queue priority, and its answer is compared with the one the client got.
//! Nothing here is on the client's path: the copies are decoded (once per signature; a shadow that
//! shares the answering arm's signature reuses its decoded inputs) and run on their own task, bounded by
//! the rollout's shadow slots, taken when the request arrives: a copy that finds no free slot is shed
//! and counted before anything is copied for it.

use super::Endpoints;
use super::run::{self, Decoded};
use crate::rollout::RolloutDriver;
use crate::{Priority, Registry};
use std::sync::Arc;
use switchyard_core::rollout::assign;
use switchyard_protocol::Tensor;
use tokio::sync::OwnedSemaphorePermit;

/// The shadows (indices into the spec) that get a copy of this request, each holding a slot. A sampled
/// copy that finds no free slot is shed (and counted) here, before anything is copied for it.
pub(super) fn sample(driver: &RolloutDriver) -> Vec<(usize, OwnedSemaphorePermit)> {
    let shadows = &driver.spec.shadows;
    let mut sampled = Vec::new();
    for (i, (_, sample_bp)) in shadows.iter().enumerate() {
        if assign::random_bucket(super::random()) >= *sample_bp {
            continue;
        }
        match driver.shadow_slots.clone().try_acquire_owned() {
            Ok(permit) => sampled.push((i, permit)),
            Err(_) => driver.shadow_stats[i].shed(),
        }
    }
    sampled
}

/// Sends the copies; returns at once.
pub(super) fn spawn(
    ep: &Endpoints,
    driver: &Arc<RolloutDriver>,
    copies: Vec<(usize, OwnedSemaphorePermit)>,
    mut decoded: Decoded,
    primary: Arc<Vec<Tensor>>,
) {
    let (registry, driver, timeout) = (Arc::clone(ep.registry()), Arc::clone(driver), ep.default_timeout);
    tokio::spawn(async move {
        for (i, permit) in copies {
            let (target, _) = &driver.spec.shadows[i];
            let stats = driver.shadow_stats[i].clone();
            let Some(served) = lookup(&registry, &target.model, target.version) else {
                stats.failed();
                continue;
            };
            let req = decoded.for_version(&served, true);
            let protocol = decoded.protocol();
            let (primary, target) = (primary.clone(), target.to_string());
            tokio::spawn(async move {
                let _permit = permit;
                match run::run(&served, req, timeout, Priority::Shadow, protocol).await {
                    (Ok((_, outputs)), took) => stats.compare(&primary, &outputs, took),
                    (Err(e), _) => {
                        tracing::debug!(shadow = %target, error = %e, "shadow request failed");
                        stats.failed();
                    }
                }
            });
        }
    });
}

fn lookup(registry: &Registry, model: &str, version: Option<u64>) -> Option<crate::Served> {
    registry.lookup(model, version.map(|v| v.to_string()).as_deref()).ok()
}
