//! The fleet's etcd operations, each under its own deadline: `etcd-client` connects lazily and a call to
//! a member that is gone or cut off can hang, so nothing here waits longer than `op_timeout`. A failed
//! call is retried on the next round (every call is idempotent or compare-and-swap).

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use std::future::Future;
use std::time::Duration;

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd did not answer {what} within {timeout:?}")]
    Timeout { what: &'static str, timeout: Duration },
    #[error("etcd {what}: {source}")]
    Etcd { what: &'static str, source: etcd_client::Error },
    #[error("{0}")]
    Corrupt(String),
}

/// A key's value with the revisions compare-and-swap needs.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub create_revision: i64,
    /// The lease the key lives on (0: none).
    pub lease: i64,
}

impl From<&KeyValue> for Versioned {
    fn from(kv: &KeyValue) -> Self {
        Self {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Store {
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("timeout", &self.timeout).finish()
    }
}

impl Store {
    /// A client for `endpoints` (`host:port` or `http://host:port`); contacts nothing yet.
    pub(crate) async fn connect(endpoints: &[String], timeout: Duration) -> Result<Self, StoreError> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(5), timeout.max(Duration::from_secs(1)))
            .with_require_leader(true);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|source| StoreError::Etcd { what: "connect", source })?;
        Ok(Self { client, timeout })
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    async fn call<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(source)) => Err(StoreError::Etcd { what, source }),
            Err(_) => Err(StoreError::Timeout { what, timeout: self.timeout }),
        }
    }

    /// Every key under `prefix`, and the store's revision when read.
    pub(crate) async fn list(&self, prefix: &str) -> Result<(Vec<Versioned>, i64), StoreError> {
        let mut c = self.client();
        let r = self.call("get", c.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
        let revision = r.header().map_or(0, |h| h.revision());
        Ok((r.kvs().iter().map(Versioned::from).collect(), revision))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let mut c = self.client();
        let r = self.call("get", c.get(key, None)).await?;
        Ok(r.kvs().first().map(Versioned::from))
    }

    /// The revision `key` was created at, if it exists (a leader key's fencing token).
    pub(crate) async fn get_created(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(key).await?.map(|kv| kv.create_revision))
    }

    /// Writes `key` unless it exists; returns the revision written at, or `None` when it existed.
    pub(crate) async fn create(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let put = lease.map(|l| PutOptions::new().with_lease(l));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value, put)]);
        let mut c = self.client();
        let r = self.call("txn", c.txn(txn)).await?;
        Ok(r.succeeded().then(|| r.header().map_or(0, |h| h.revision())))
    }

    /// Writes `key` if its last write was at `mod_revision` and, when `fence` is given, the key
    /// `fence.0` was created at revision `fence.1` (the writer still leads). Returns the revision written
    /// at, or `None` when a comparison failed.
    pub(crate) async fn swap(
        &self,
        key: &str,
        mod_revision: i64,
        value: Vec<u8>,
        fence: Option<(&str, i64)>,
    ) -> Result<Option<i64>, StoreError> {
        let mut when = vec![Compare::mod_revision(key, CompareOp::Equal, mod_revision)];
        if let Some((leader, created)) = fence {
            when.push(Compare::create_revision(leader, CompareOp::Equal, created));
        }
        let txn = Txn::new().when(when).and_then([TxnOp::put(key, value, None)]);
        let mut c = self.client();
        let r = self.call("txn", c.txn(txn)).await?;
        Ok(r.succeeded().then(|| r.header().map_or(0, |h| h.revision())))
    }

    /// Writes every `(key, value)` in one transaction (one round trip), optionally under a lease.
    pub(crate) async fn put_all(&self, pairs: Vec<(String, Vec<u8>)>, lease: Option<i64>) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let ops: Vec<TxnOp> =
            pairs.into_iter().map(|(k, v)| TxnOp::put(k, v, lease.map(|l| PutOptions::new().with_lease(l)))).collect();
        let mut c = self.client();
        self.call("txn", c.txn(Txn::new().and_then(ops))).await.map(|_| ())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.client();
        self.call("delete", c.delete(key, None)).await.map(|_| ())
    }

    /// A new lease of `ttl` seconds; returns its id and the TTL etcd granted.
    pub(crate) async fn grant(&self, ttl: i64) -> Result<(i64, i64), StoreError> {
        let mut c = self.client();
        let r = self.call("lease grant", c.lease_grant(ttl, None)).await?;
        Ok((r.id(), r.ttl()))
    }

    /// Ends a lease now (its keys go at once): a replica that stops hands leadership over quickly.
    pub(crate) async fn revoke(&self, lease: i64) -> Result<(), StoreError> {
        let mut c = self.client();
        self.call("lease revoke", c.lease_revoke(lease)).await.map(|_| ())
    }
}
