//! The join between served predictions and the outcomes reported for them later (an experiment's
//! feedback): a bounded store of served requests, keyed by endpoint and request id, with the arm and
//! version that served each, the canary's share when it was assigned, and the served output's label.
//!
//! - **Bounded.** At most `capacity` requests; past it the oldest is evicted (counted). A request older
//!   than `retention` no longer joins (counted as expired).
//! - **Joined once.** Each (request, metric) pair joins at most once; a second report is refused.
//! - **Persistent** with a file: every change becomes one JSON line and the file is replayed at start,
//!   so feedback after a restart still joins. A line torn by a crash is skipped at replay. When the file
//!   holds twice the live requests' lines it is rewritten with the live ones only, atomically (a
//!   temporary file, fsynced, renamed), so it stays bounded and is never left half-written.
//! - **No file I/O under the lock.** Changes are serialised into `pending` chunks in memory; whoever
//!   writes (the service's writer thread, or `sync`) takes them and writes them in order, outside the
//!   lock the serving path takes.
//!
//! Time is passed in (milliseconds since the epoch); nothing here reads a clock.

use super::file::{Chunk, Line, LineRef, Snapshot, write_chunks};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use switchyard_core::experiment::Sums;

/// One served request, as the store remembers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub endpoint: String,
    pub id: String,
    /// Served by the canary (else control).
    pub canary: bool,
    pub version: u64,
    /// The canary's share when the request was assigned (0 to 1).
    pub share: f64,
    /// The served output's label or argmax, for accuracy metrics.
    pub label: Option<String>,
    pub at_ms: u64,
    /// The rollout's arms when it was served (`RolloutDriver::arms_fingerprint`).
    #[serde(default)]
    pub arms: u64,
}

/// Why a report does not join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("no served request with {0} on this endpoint (never served, or evicted)")]
    Unknown(String),
    #[error("the request with {id} was served {age_s} s ago, past the feedback retention of {retention_s} s")]
    Expired { id: String, age_s: u64, retention_s: u64 },
    #[error("the request with {id} already has a '{metric}' outcome")]
    Duplicate { id: String, metric: String },
}

/// What the store has refused or dropped since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub remembered: u64,
    pub evicted: u64,
    pub joined: u64,
    pub unknown: u64,
    pub expired: u64,
    pub duplicate: u64,
    /// Lines of the file skipped at replay (torn by a crash, or unreadable).
    pub skipped_lines: u64,
}

/// A served request's key: its endpoint and id (endpoint names have no `\u{1f}`), shared by the map
/// and the eviction order.
type Key = std::sync::Arc<str>;

fn key(endpoint: &str, id: &str) -> Key {
    format!("{endpoint}\u{1f}{id}").into()
}

/// An experiment metric's evidence: which endpoint, which arms (`RolloutDriver::arms_fingerprint`),
/// which metric.
type EvidenceKey = (String, u64, String);

#[derive(Debug)]
struct Entry {
    served: Arc<Served>,
    /// Shared with a snapshot being written (copied on the next join meanwhile).
    joined: Arc<Vec<String>>,
}

/// The store (module header).
#[derive(Debug)]
pub struct FeedbackStore {
    capacity: usize,
    retention_ms: u64,
    entries: HashMap<Key, Entry>,
    /// Requests in the order they were remembered (the eviction order).
    order: VecDeque<(Key, Arc<Served>)>,
    file: Option<PathBuf>,
    pending: Vec<Chunk>,
    /// A written append buffer kept for the next one (growing a fresh one costs page faults).
    spare: Vec<u8>,
    /// Joins recorded on the live entries (kept so that the live lines are counted in O(1)).
    joins: usize,
    /// Experiments' evidence, kept so that it survives a restart, with when it last changed.
    evidence: HashMap<EvidenceKey, (Sums, u64)>,
    lines: usize,
    counts: Counts,
}

impl FeedbackStore {
    /// A store in memory only.
    pub fn in_memory(capacity: usize, retention_ms: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            retention_ms,
            // Sized up front (up to a million), so that growing never rehashes under the serving path's lock.
            entries: HashMap::with_capacity(capacity.min(1 << 20)),
            order: VecDeque::with_capacity(capacity.min(1 << 20)),
            file: None,
            pending: Vec::new(),
            spare: Vec::new(),
            joins: 0,
            evidence: HashMap::new(),
            lines: 0,
            counts: Counts::default(),
        }
    }

    /// A store kept in `path`: what the file holds is replayed (up to `capacity`, within retention at
    /// `now_ms`), then changes are appended to it.
    pub fn open(path: &Path, capacity: usize, retention_ms: u64, now_ms: u64) -> std::io::Result<Self> {
        let mut store = Self::in_memory(capacity, retention_ms);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        match std::fs::File::open(path) {
            Ok(f) => {
                for line in std::io::BufReader::new(f).lines() {
                    match serde_json::from_str::<Line>(&line?) {
                        Ok(Line::Served(s))
                            if now_ms.saturating_sub(s.at_ms) <= retention_ms
                                && !store.entries.contains_key(&*key(&s.endpoint, &s.id)) =>
                        {
                            store.insert(key(&s.endpoint, &s.id), s);
                        }
                        Ok(Line::Served(_)) => {}
                        Ok(Line::Joined { endpoint, id, metric }) => {
                            if let Some(e) = store.entries.get_mut(&*key(&endpoint, &id)) {
                                Arc::make_mut(&mut e.joined).push(metric);
                                store.joins += 1;
                            }
                        }
                        Ok(Line::Outcome { endpoint, arms, metric, canary, share, value, at_ms }) => {
                            let e = store.evidence.entry((endpoint, arms, metric)).or_default();
                            e.0.record(canary, share, value);
                            e.1 = at_ms;
                        }
                        Ok(Line::Sums { endpoint, arms, metric, sums, at_ms }) => {
                            store.evidence.insert((endpoint, arms, metric), (sums, at_ms));
                        }
                        Err(_) => store.counts.skipped_lines += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        store.counts.remembered = 0;
        store.counts.evicted = 0;
        store.file = Some(path.to_owned());
        store.rewrite();
        store.sync()?;
        Ok(store)
    }

    /// The file changes not written yet, with the file's path (none in memory only).
    pub fn take_pending(&mut self) -> Option<(PathBuf, Vec<Chunk>)> {
        let path = self.file.clone()?;
        Some((path, std::mem::take(&mut self.pending)))
    }

    /// Takes back written chunks' append buffers for reuse.
    pub fn recycle(&mut self, chunks: Vec<Chunk>) {
        for chunk in chunks {
            if let Chunk::Append(mut buf) = chunk
                && buf.capacity() > self.spare.capacity()
            {
                buf.clear();
                self.spare = buf;
            }
        }
    }

    /// Writes what is pending now (at start, in tests; the service's writer does it outside the lock).
    pub fn sync(&mut self) -> std::io::Result<()> {
        match self.take_pending() {
            Some((path, chunks)) => write_chunks(&path, &chunks),
            None => Ok(()),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Requests held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers a served request (a repeated id on the same endpoint keeps the first).
    pub fn remember(&mut self, served: Served) {
        let key = key(&served.endpoint, &served.id);
        if self.entries.contains_key(&key) {
            return;
        }
        self.append(&LineRef::Served(&served));
        self.insert(key, served);
        self.compact_if_due();
    }

    /// The request `id` of `endpoint` as it was served, if it would join `metrics` now (nothing is
    /// joined: for checking a whole report before any of it joins).
    pub fn check(&mut self, endpoint: &str, id: &str, metrics: &[&str], now_ms: u64) -> Result<Served, JoinError> {
        let Some(entry) = self.entries.get(&*key(endpoint, id)) else {
            self.counts.unknown += 1;
            return Err(JoinError::Unknown(id.to_owned()));
        };
        let age = now_ms.saturating_sub(entry.served.at_ms);
        if age > self.retention_ms {
            self.counts.expired += 1;
            return Err(JoinError::Expired {
                id: id.to_owned(),
                age_s: age / 1000,
                retention_s: self.retention_ms / 1000,
            });
        }
        if let Some(m) = metrics.iter().find(|m| entry.joined.iter().any(|j| j == *m)) {
            self.counts.duplicate += 1;
            return Err(JoinError::Duplicate { id: id.to_owned(), metric: (*m).to_owned() });
        }
        Ok(Served::clone(&entry.served))
    }

    /// Joins a `metric` outcome reported at `now_ms` for request `id` of `endpoint`: the request as it
    /// was served, once per metric.
    pub fn join(&mut self, endpoint: &str, id: &str, metric: &str, now_ms: u64) -> Result<Served, JoinError> {
        let served = self.check(endpoint, id, &[metric], now_ms)?;
        if let Some(entry) = self.entries.get_mut(&*key(endpoint, id)) {
            Arc::make_mut(&mut entry.joined).push(metric.to_owned());
            self.joins += 1;
        }
        self.counts.joined += 1;
        self.append(&LineRef::Joined { endpoint, id, metric });
        Ok(served)
    }

    /// Records an outcome an experiment counts, so its evidence survives a restart.
    pub fn record_outcome(&mut self, key: EvidenceKey, canary: bool, share: f64, value: f64, now_ms: u64) {
        let e = self.evidence.entry(key.clone()).or_default();
        if e.0.record(canary, share, value) {
            e.1 = now_ms;
            let (endpoint, arms, metric) = key;
            self.append(&LineRef::Outcome {
                endpoint: &endpoint,
                arms,
                metric: &metric,
                canary,
                share,
                value,
                at_ms: now_ms,
            });
            self.compact_if_due();
        }
    }

    /// An experiment metric's saved evidence.
    pub fn evidence(&self, endpoint: &str, arms: u64, metric: &str) -> Option<Sums> {
        self.evidence.get(&(endpoint.to_owned(), arms, metric.to_owned())).map(|e| e.0)
    }

    fn insert(&mut self, key: Key, served: Served) {
        while self.entries.len() >= self.capacity {
            let Some((old, _)) = self.order.pop_front() else { break };
            if let Some(e) = self.entries.remove(&old) {
                self.joins -= e.joined.len();
                self.counts.evicted += 1;
            }
        }
        let served = Arc::new(served);
        self.order.push_back((key.clone(), served.clone()));
        self.entries.insert(key, Entry { served, joined: Arc::default() });
        self.counts.remembered += 1;
    }

    fn append(&mut self, line: &LineRef<'_>) {
        if self.file.is_none() {
            return;
        }
        if !matches!(self.pending.last(), Some(Chunk::Append(_))) {
            self.pending.push(Chunk::Append(std::mem::take(&mut self.spare)));
        }
        if let Some(Chunk::Append(buf)) = self.pending.last_mut()
            && serde_json::to_writer(&mut *buf, line).is_ok()
        {
            buf.push(b'\n');
            self.lines += 1;
        }
    }

    fn compact_if_due(&mut self) {
        let live_lines = self.entries.len() + self.joins + self.evidence.len();
        if self.file.is_some() && self.lines > 2 * live_lines.max(self.capacity / 2) {
            self.rewrite();
        }
    }

    /// Queues the file's replacement by the live requests (written atomically), appending from there.
    fn rewrite(&mut self) {
        // Evidence no outcome has touched within the retention belongs to experiments long over.
        let newest = self.order.back().map_or(0, |(_, s)| s.at_ms);
        let retention = self.retention_ms;
        self.evidence.retain(|_, (_, at)| newest.saturating_sub(*at) <= retention);
        let mut sums = Vec::new();
        for ((endpoint, arms, metric), (s, at_ms)) in &self.evidence {
            let line = LineRef::Sums { endpoint, arms: *arms, metric, sums: *s, at_ms: *at_ms };
            // Serialising plain data into memory cannot fail.
            if serde_json::to_writer(&mut sums, &line).is_ok() {
                sums.push(b'\n');
            }
        }
        let served = self.order.iter().map(|(_, s)| s.clone()).collect();
        let joined = self.entries.values().filter(|e| !e.joined.is_empty());
        let joined = joined.map(|e| (e.served.clone(), e.joined.clone())).collect();
        let lines = self.evidence.len() + self.entries.len() + self.joins;
        // What was pending is superseded by the whole file.
        self.pending.clear();
        self.pending.push(Chunk::Rewrite(Snapshot { sums, served, joined, lines: lines as u64 }));
        self.lines = lines;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fresh file path in a directory of its own (removed by the caller).
    fn scratch(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.join("feedback.jsonl"), dir)
    }

    fn served(id: &str, at_ms: u64) -> Served {
        Served {
            endpoint: "scorer".into(),
            id: id.into(),
            canary: id.ends_with('1'),
            version: 2,
            share: 0.2,
            label: Some("7".into()),
            at_ms,
            arms: 1,
        }
    }

    #[test]
    fn joins_once_per_metric_and_refuses_the_unknown_and_the_late() {
        let mut s = FeedbackStore::in_memory(10, 60_000);
        s.remember(served("a1", 1_000));
        assert_eq!(s.join("scorer", "a1", "conversion", 2_000).unwrap(), served("a1", 1_000));
        assert!(matches!(s.join("scorer", "a1", "conversion", 3_000), Err(JoinError::Duplicate { .. })));
        assert!(s.join("scorer", "a1", "revenue", 3_000).is_ok(), "another metric joins");
        assert_eq!(s.join("other", "a1", "conversion", 3_000), Err(JoinError::Unknown("a1".into())));
        let late = s.join("scorer", "a1", "clicks", 62_000).unwrap_err();
        assert_eq!(late.to_string(), "the request with a1 was served 61 s ago, past the feedback retention of 60 s");
        let c = s.counts();
        assert_eq!((c.joined, c.duplicate, c.unknown, c.expired), (2, 1, 1, 1));
    }

    #[test]
    fn the_oldest_is_evicted_past_capacity() {
        let mut s = FeedbackStore::in_memory(3, 60_000);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            s.remember(served(id, i as u64));
        }
        assert_eq!((s.len(), s.counts().evicted), (3, 1));
        assert!(matches!(s.join("scorer", "a", "m", 10), Err(JoinError::Unknown(_))));
        assert!(s.join("scorer", "d", "m", 10).is_ok());
        // A repeated id keeps the first.
        s.remember(served("d", 99));
        assert_eq!((s.len(), s.counts().remembered), (3, 4));
    }

    #[test]
    fn a_restart_replays_the_file_joins_included_and_skips_a_torn_line() {
        let (path, dir) = scratch("feedback");
        {
            let mut s = FeedbackStore::open(&path, 100, 60_000, 0).unwrap();
            s.remember(served("a1", 1_000));
            s.remember(served("b0", 2_000));
            s.join("scorer", "a1", "conversion", 3_000).unwrap();
            s.sync().unwrap();
        }
        // A crash tore the last line.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"op\":\"served\",\"endp").unwrap();
        let mut s = FeedbackStore::open(&path, 100, 60_000, 4_000).unwrap();
        assert_eq!((s.len(), s.counts().skipped_lines), (2, 1));
        assert!(matches!(s.join("scorer", "a1", "conversion", 5_000), Err(JoinError::Duplicate { .. })));
        assert_eq!(s.join("scorer", "b0", "conversion", 5_000).unwrap().id, "b0");
        // Past retention at the next start, nothing is replayed.
        drop(s);
        let s = FeedbackStore::open(&path, 100, 60_000, 100_000).unwrap();
        assert!(s.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn experiment_evidence_survives_a_restart_and_a_rewrite() {
        let (path, dir) = scratch("feedback-evidence");
        let key = || ("scorer".to_owned(), 9, "conversion".to_owned());
        {
            let mut s = FeedbackStore::open(&path, 4, u64::MAX, 0).unwrap();
            for i in 0..20u64 {
                s.remember(served(&format!("r{i}"), i));
                s.record_outcome(key(), i % 2 == 1, 0.5, (i % 3) as f64, i);
            }
            s.sync().unwrap();
        }
        let mut want = Sums::default();
        (0..20u64).for_each(|i| _ = want.record(i % 2 == 1, 0.5, (i % 3) as f64));
        let s = FeedbackStore::open(&path, 4, u64::MAX, 30).unwrap();
        assert_eq!(s.evidence("scorer", 9, "conversion"), Some(want));
        assert_eq!(s.evidence("scorer", 8, "conversion"), None, "another pair of arms has its own");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_stays_bounded() {
        let (path, dir) = scratch("feedback-bound");
        let mut s = FeedbackStore::open(&path, 50, u64::MAX, 0).unwrap();
        for i in 0..1_000u64 {
            s.remember(served(&format!("r{i}"), i));
            if i % 7 == 0 {
                s.sync().unwrap();
            }
        }
        s.sync().unwrap();
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * 50 + 1, "{lines} lines for 50 live requests");
        let s = FeedbackStore::open(&path, 50, u64::MAX, 0).unwrap();
        assert_eq!(s.len(), 50);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
