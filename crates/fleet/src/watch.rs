//! The decision watch: every replica applies a decision within milliseconds of its write. On any
//! error (etcd restarted, history compacted, a connection cut) it reads the decisions again and watches
//! from there; the agent's rounds apply them too, so nothing depends on the watch alone.

use crate::agent::Agent;
use crate::record::DecisionRecord;
use crate::store::StoreError;
use std::sync::Arc;

impl Agent {
    /// Watches the decisions and applies each as it is written; on any error, reads them again and
    /// watches from there (the rounds apply them too, so nothing waits on the watch).
    pub(crate) async fn watch_decisions(self: Arc<Self>) {
        loop {
            if let Err(e) = self.watch_once().await {
                tracing::debug!(error = %e, "decision watch ended; starting again");
            }
            tokio::time::sleep(self.config.publish_interval).await;
        }
    }

    async fn watch_once(&self) -> Result<(), StoreError> {
        let (list, revision) = self.store.list(&self.keys.decisions()).await?;
        for kv in list {
            self.apply_from_store(&kv.key, &kv.value, kv.mod_revision);
        }
        let mut client = self.store.client();
        let options = etcd_client::WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let mut stream = client
            .watch(self.keys.decisions(), Some(options))
            .await
            .map_err(|source| StoreError::Etcd { what: "watch", source })?;
        while let Some(resp) = stream.message().await.map_err(|source| StoreError::Etcd { what: "watch", source })? {
            if resp.canceled() {
                return Ok(());
            }
            for ev in resp.events() {
                if ev.event_type() == etcd_client::EventType::Put
                    && let Some(kv) = ev.kv()
                {
                    self.apply_from_store(&String::from_utf8_lossy(kv.key()), kv.value(), kv.mod_revision());
                }
            }
        }
        Ok(())
    }

    fn apply_from_store(&self, key: &str, value: &[u8], revision: i64) {
        let Some(ep) = self.keys.endpoint_of_decision(key) else { return };
        let Ok(rec) = serde_json::from_slice::<DecisionRecord>(value) else { return };
        if let Some(d) = self.drivers().into_iter().find(|d| d.spec.endpoint == ep) {
            self.apply(&d, &rec, revision);
        }
    }
}
