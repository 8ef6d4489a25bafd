//! The replica's side of the fleet: one round every `publish_interval` (keep a lease, follow the
//! decisions, share the evidence, try to lead, and as leader judge the pooled evidence), plus a watch
//! on the decisions so they apply within milliseconds. A round that fails twice in a row, or a lease
//! past its deadline, marks etcd down: every rollout is cut off (rollbacks only) until a round succeeds.

use crate::keys::Keys;
use crate::lease::Lease;
use crate::record::{DecisionRecord, EvidenceRecord, rollout_id};
use crate::store::{Store, StoreError, Versioned};
use crate::{Drivers, FleetConfig};
use metrics::gauge;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use switchyard_core::rollout::{Prior, Share};
use switchyard_runtime::rollout::{FleetMode, RolloutDriver, now_ms};

pub(crate) struct Agent {
    pub config: FleetConfig,
    /// This process's evidence key: the replica's name and start time, so a restarted replica starts
    /// new totals and its old ones stay frozen in the pool.
    pub copy: String,
    pub keys: Keys,
    pub store: Store,
    drivers: Drivers,
    started: Instant,
    joined: AtomicBool,
    /// Set when `join_timeout` passed before etcd answered (serving the config's initial stage), until
    /// the first round that reaches it.
    pub started_without_etcd: AtomicBool,
    pub up: AtomicBool,
    lease: Mutex<Option<Arc<Lease>>>,
    /// The leader key's create revision while this replica leads: every decision it writes is fenced on it.
    fence: Mutex<Option<i64>>,
    pub leader_name: Mutex<Option<String>>,
    /// The last share written per endpoint (an unchanged share is not written again).
    published: Mutex<HashMap<String, Share>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Current = BTreeMap<String, (DecisionRecord, i64)>;

impl Agent {
    pub(crate) async fn new(config: FleetConfig, drivers: Drivers) -> Result<Arc<Self>, StoreError> {
        let store = Store::connect(&config.endpoints, config.op_timeout()).await?;
        for d in drivers() {
            d.set_fleet_mode(FleetMode::CutOff);
        }
        gauge!("switchyard_fleet_etcd_up").set(0.0);
        gauge!("switchyard_fleet_leader").set(0.0);
        Ok(Arc::new(Self {
            copy: format!("{}@{}", config.replica, now_ms()),
            keys: Keys::new(&config.prefix),
            store,
            drivers,
            started: Instant::now(),
            joined: AtomicBool::new(false),
            started_without_etcd: AtomicBool::new(false),
            up: AtomicBool::new(false),
            lease: Mutex::new(None),
            fence: Mutex::new(None),
            leader_name: Mutex::new(None),
            published: Mutex::new(HashMap::new()),
            config,
        }))
    }

    pub(crate) fn spawn(self: Arc<Self>) {
        tokio::spawn(self.clone().watch_decisions());
        tokio::spawn(self.run());
    }

    pub(crate) fn is_joined(&self) -> bool {
        self.joined.load(Ordering::Acquire)
    }

    pub(crate) fn is_leading(&self) -> bool {
        lock(&self.fence).is_some()
    }

    pub(crate) fn drivers(&self) -> Vec<Arc<RolloutDriver>> {
        (self.drivers)()
    }

    async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.publish_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            tick.tick().await;
            match self.round().await {
                Ok(()) => {
                    failures = 0;
                    self.started_without_etcd.store(false, Ordering::Release);
                    self.set_up(true, None);
                }
                Err(e) => {
                    failures += 1;
                    let lease_gone = lock(&self.lease).as_ref().is_none_or(|l| !l.is_alive());
                    if failures >= 2 || lease_gone {
                        self.set_up(false, Some(&e));
                    }
                }
            }
            if !self.is_joined() && self.started.elapsed() >= self.config.join_timeout {
                self.joined.store(true, Ordering::Release);
                self.started_without_etcd.store(true, Ordering::Release);
                tracing::warn!(
                    timeout = ?self.config.join_timeout,
                    "etcd unreachable at start: serving each rollout's initial stage from the config; rollbacks \
                     only until the fleet is reached"
                );
            }
        }
    }

    /// Records whether etcd answers, and switches every rollout between following and cut off.
    fn set_up(&self, up: bool, why: Option<&StoreError>) {
        let was = self.up.swap(up, Ordering::AcqRel);
        gauge!("switchyard_fleet_etcd_up").set(if up { 1.0 } else { 0.0 });
        let mode = if up { FleetMode::Following } else { FleetMode::CutOff };
        for d in self.drivers() {
            d.set_fleet_mode(mode);
        }
        if !up {
            self.step_down("etcd unreachable");
        }
        match (was, up) {
            (true, false) => tracing::warn!(
                error = %why.map_or_else(String::new, ToString::to_string),
                "cut off from etcd: keeping the last fleet decision; rollbacks on this replica's evidence only"
            ),
            (false, true) => tracing::info!(replica = %self.config.replica, "following the fleet through etcd"),
            _ => {}
        }
    }

    pub(crate) fn step_down(&self, why: &str) {
        if lock(&self.fence).take().is_some() {
            gauge!("switchyard_fleet_leader").set(0.0);
            tracing::warn!(replica = %self.config.replica, why, "no longer leading the fleet");
        }
    }

    async fn round(&self) -> Result<(), StoreError> {
        let lease = self.lease().await?;
        let drivers = self.drivers();
        let current = self.follow(&drivers).await?;
        self.joined.store(true, Ordering::Release);
        self.publish(&drivers).await?;
        self.campaign(&lease).await?;
        let fence = *lock(&self.fence);
        for d in &drivers {
            let shares = self.shares(&d.spec.endpoint, &rollout_id(&d.spec)).await?;
            // What the others have seen gives this replica's tests a head start (see `Prior`).
            let others = shares.iter().filter(|(copy, _)| *copy != self.copy).map(|(_, e)| &e.share);
            d.set_prior(&Prior::from_shares(others));
            if let (Some(fence), Some(c)) = (fence, current.get(&d.spec.endpoint)) {
                self.judge(d, c, &shares, fence).await?;
            }
        }
        Ok(())
    }

    /// The live lease, granted again (with this replica's membership) when it was lost.
    async fn lease(&self) -> Result<Arc<Lease>, StoreError> {
        let live = lock(&self.lease).as_ref().filter(|l| l.is_alive()).cloned();
        if let Some(l) = live {
            return Ok(l);
        }
        self.step_down("lease lost");
        let lease = Lease::grant(&self.store, self.config.lease_ttl).await?;
        let member = serde_json::json!({ "replica": self.config.replica, "copy": self.copy, "since_ms": now_ms() });
        let put = self
            .store
            .put_all(vec![(self.keys.member(&self.config.replica), member.to_string().into_bytes())], Some(lease.id))
            .await;
        if let Err(e) = put {
            lease.abandon();
            return Err(e);
        }
        *lock(&self.lease) = Some(lease.clone());
        Ok(lease)
    }

    /// Reads every decision and applies those newer than what each rollout applied; writes the first
    /// decision of a rollout the fleet does not know yet (its initial stage on this replica).
    async fn follow(&self, drivers: &[Arc<RolloutDriver>]) -> Result<Current, StoreError> {
        let (list, _) = self.store.list(&self.keys.decisions()).await?;
        let mut current = Current::new();
        for kv in list {
            let Some(ep) = self.keys.endpoint_of_decision(&kv.key) else { continue };
            match serde_json::from_slice::<DecisionRecord>(&kv.value) {
                Ok(rec) => _ = current.insert(ep.to_owned(), (rec, kv.mod_revision)),
                Err(e) => tracing::error!(key = kv.key, error = %e, "unreadable fleet decision ignored"),
            }
        }
        for d in drivers {
            let ep = &d.spec.endpoint;
            if let Some((rec, rev)) = current.get(ep) {
                self.apply(d, rec, *rev);
                continue;
            }
            let rec = DecisionRecord {
                seq: 0,
                rollout_id: rollout_id(&d.spec),
                control: d.spec.control.to_string(),
                canary: d.spec.canary.to_string(),
                state: d.state(),
                decision: None,
                by: format!("{} (first)", self.config.replica),
                at_ms: now_ms(),
            };
            if let Some(rev) = self.store.create(&self.keys.decision(ep), to_json(&rec), None).await? {
                self.apply(d, &rec, rev);
                current.insert(ep.clone(), (rec, rev));
            }
        }
        Ok(current)
    }

    /// Applies a decision record to a rollout when it is this rollout's (same identity) and new.
    pub(crate) fn apply(&self, d: &RolloutDriver, rec: &DecisionRecord, revision: i64) {
        if rec.rollout_id != rollout_id(&d.spec) {
            tracing::debug!(endpoint = %d.spec.endpoint, "the fleet's decision is for another config of this rollout");
            return;
        }
        if d.adopt(rec.seq, revision, rec.state.clone(), rec.decision.as_ref(), &rec.by) {
            gauge!("switchyard_fleet_decision_revision", "endpoint" => d.spec.endpoint.clone()).set(revision as f64);
            tracing::debug!(endpoint = %d.spec.endpoint, seq = rec.seq, revision, by = rec.by, "fleet decision applied");
        }
    }

    /// Writes this replica's changed shares in one transaction.
    async fn publish(&self, drivers: &[Arc<RolloutDriver>]) -> Result<(), StoreError> {
        let mut pairs = Vec::new();
        let mut shares = Vec::new();
        for d in drivers {
            let share = d.share();
            if lock(&self.published).get(&d.spec.endpoint) == Some(&share) {
                continue;
            }
            let rec = EvidenceRecord {
                rollout_id: rollout_id(&d.spec),
                replica: self.config.replica.clone(),
                at_ms: now_ms(),
                mode: d.fleet_mode().name().to_owned(),
                applied_seq: d.applied().seq,
                applied_revision: d.applied().revision,
                share: share.clone(),
            };
            pairs.push((self.keys.evidence_of(&d.spec.endpoint, &self.copy), to_json(&rec)));
            shares.push((d.spec.endpoint.clone(), share));
        }
        self.store.put_all(pairs, None).await?;
        lock(&self.published).extend(shares);
        Ok(())
    }

    /// Tries to become the leader (the leader key is created under this replica's lease).
    async fn campaign(&self, lease: &Lease) -> Result<(), StoreError> {
        if self.is_leading() {
            return Ok(());
        }
        let me = serde_json::json!({ "replica": self.config.replica, "since_ms": now_ms() });
        match self.store.create(&self.keys.leader(), me.to_string().into_bytes(), Some(lease.id)).await? {
            Some(fence) => {
                *lock(&self.fence) = Some(fence);
                *lock(&self.leader_name) = Some(self.config.replica.clone());
                gauge!("switchyard_fleet_leader").set(1.0);
                tracing::info!(replica = %self.config.replica, fence, "leading the fleet");
            }
            None => {
                let held = self.store.get(&self.keys.leader()).await?;
                // Still ours (this replica stepped down while etcd was slow, but its lease lived on):
                // lead again under the same fence rather than wait for a lease that never expires.
                if let Some(kv) = held.as_ref().filter(|kv| kv.lease == lease.id) {
                    *lock(&self.fence) = Some(kv.create_revision);
                    gauge!("switchyard_fleet_leader").set(1.0);
                    tracing::info!(replica = %self.config.replica, "leading the fleet again");
                }
                let name = held.and_then(|kv| {
                    serde_json::from_slice::<serde_json::Value>(&kv.value).ok()?["replica"].as_str().map(str::to_owned)
                });
                *lock(&self.leader_name) = name;
            }
        }
        Ok(())
    }

    /// Every replica's evidence for this rollout, by replica copy (the leader removes other rollouts'
    /// evidence).
    pub(crate) async fn shares(&self, endpoint: &str, id: &str) -> Result<Vec<(String, EvidenceRecord)>, StoreError> {
        let prefix = self.keys.evidence(endpoint);
        let (list, _) = self.store.list(&prefix).await?;
        let mut out = Vec::new();
        for Versioned { key, value, .. } in list {
            match serde_json::from_slice::<EvidenceRecord>(&value) {
                Ok(e) if e.rollout_id == id => out.push((key.strip_prefix(&prefix).unwrap_or(&key).to_owned(), e)),
                Ok(_) if self.is_leading() => self.store.delete(&key).await?,
                Ok(_) => {}
                Err(e) => tracing::error!(key, error = %e, "unreadable fleet evidence ignored"),
            }
        }
        Ok(out)
    }

    /// At shutdown: revoking the lease removes the leader key and membership at once.
    pub(crate) async fn leave(&self) {
        let lease = lock(&self.lease).take();
        self.step_down("shutting down");
        if let Some(l) = lease {
            l.abandon();
            if let Err(e) = self.store.revoke(l.id).await {
                tracing::debug!(error = %e, "could not revoke the fleet lease (it will expire)");
            }
        }
    }
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
