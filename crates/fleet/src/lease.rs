//! A replica's etcd lease, kept alive by its own task every third of its TTL. Its keys (membership,
//! and the leader key while it leads) live only as long as it does. The replica keeps its own deadline
//! (`valid_until`): once past it the lease is treated as lost even if etcd cannot say so, so a leader
//! cut off from etcd stops acting as one no later than etcd lets another take over.

use crate::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Lease {
    pub id: i64,
    ttl: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` until which the lease is known to live.
    valid_until: AtomicU64,
    lost: AtomicBool,
}

impl Lease {
    /// Grants a lease and starts keeping it alive.
    pub(crate) async fn grant(store: &Store, ttl: Duration) -> Result<Arc<Self>, crate::store::StoreError> {
        let asked = Instant::now();
        let (id, granted) = store.grant(ttl.as_secs().max(1) as i64).await?;
        let ttl = Duration::from_secs(granted.max(1) as u64);
        let lease = Arc::new(Self {
            id,
            ttl,
            epoch: asked,
            valid_until: AtomicU64::new(ttl.as_millis() as u64),
            lost: AtomicBool::new(false),
        });
        tokio::spawn(keep_alive(store.clone(), lease.clone()));
        Ok(lease)
    }

    /// Whether the lease still lives, as far as this replica can tell.
    pub(crate) fn is_alive(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
            && (self.epoch.elapsed().as_millis() as u64) < self.valid_until.load(Ordering::Acquire)
    }

    /// Stops keeping it alive (the keep-alive task ends at its next turn).
    pub(crate) fn abandon(&self) {
        self.lost.store(true, Ordering::Release);
    }
}

/// Refreshes the lease every third of its TTL until it is lost or abandoned. Each refresh that etcd
/// confirms moves the deadline to (when it was sent + TTL).
async fn keep_alive(store: Store, lease: Arc<Lease>) {
    let every = lease.ttl / 3;
    let mut stream = None;
    while lease.is_alive() {
        tokio::time::sleep(every).await;
        let sent = lease.epoch.elapsed();
        if stream.is_none() {
            let mut c = store.client();
            match tokio::time::timeout(every, c.lease_keep_alive(lease.id)).await {
                // The first request went with the call, and its answer was read.
                Ok(Ok(pair)) => {
                    lease.valid_until.store((sent + lease.ttl).as_millis() as u64, Ordering::Release);
                    stream = Some(pair);
                }
                Ok(Err(e)) if e.to_string().contains("not found") => lease.abandon(),
                _ => {}
            }
            continue;
        }
        let Some((keeper, answers)) = &mut stream else { continue };
        let refreshed = tokio::time::timeout(every, async {
            keeper.keep_alive().await?;
            answers.message().await
        })
        .await;
        match refreshed {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                lease.valid_until.store((sent + lease.ttl).as_millis() as u64, Ordering::Release);
            }
            Ok(Ok(Some(_))) => lease.abandon(), // etcd says the lease is gone
            _ => stream = None,                 // reconnect on the next turn
        }
    }
    tracing::debug!(lease = lease.id, "lease no longer kept alive");
}
