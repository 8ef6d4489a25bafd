//! Fleet rollouts against a real 3-member etcd cluster on loopback and 3 (or 4) real replicas with one
//! config, traffic spread unevenly over them. Each replica reaches etcd only through its own TCP relays
//! (one per member), so a test can cut one replica off without root. Skipped, with the reason, where
//! etcd is not installed (`make test` installs Debian's etcd-server as root).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::rollouts::{TOKEN, copy_dir, scratch, serial, traffic_to, wait_for};
use common::{Server, test_repo};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use switchyard_testkit::{EtcdCluster, Relay};

const LEASE_TTL_SECONDS: u64 = 2;

struct Fleet {
    etcd: EtcdCluster,
    dir: PathBuf,
    config: PathBuf,
    replicas: Vec<Replica>,
}

struct Replica {
    name: String,
    relays: Vec<Relay>,
    server: Server,
}

impl Replica {
    fn status(&self) -> Value {
        admin(&self.server, "/admin/rollouts/scorer")
    }

    fn fleet(&self) -> Value {
        admin(&self.server, "/admin/fleet")
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let text = self.server.get("/metrics").text();
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    fn phase(&self) -> String {
        self.status()["phase"].as_str().unwrap_or_default().to_owned()
    }

    fn cut_off(&self) {
        self.relays.iter().for_each(Relay::reset);
        self.relays.iter().for_each(Relay::blackhole);
    }

    fn heal(&self) {
        self.relays.iter().for_each(Relay::heal);
    }

    /// The audit log's fleet decisions: `(fleet_seq, decision)`.
    fn audit(&self, dir: &Path) -> Vec<(u64, String)> {
        let text = std::fs::read_to_string(dir.join(&self.name).join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                Some((v["fleet_seq"].as_u64()?, v["decision"]["decision"].as_str().unwrap_or("").to_owned()))
            })
            .collect()
    }
}

fn admin(s: &Server, path: &str) -> Value {
    let r = s.conn().request("GET", path, &[("Authorization", &format!("Bearer {TOKEN}"))], b"");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn act(s: &Server, action: &str) -> (u16, Value) {
    let path = format!("/admin/rollouts/scorer/{action}");
    let r = s.conn().request("POST", &path, &[("Authorization", &format!("Bearer {TOKEN}"))], b"");
    (r.status, r.json())
}

/// A 3-member etcd cluster and a scratch repository with `mlp` and `mlp_buggy`; `None` (with the reason
/// printed) where etcd is not installed.
fn fleet(name: &str, rollout: &str) -> Option<Fleet> {
    if EtcdCluster::find_binary().is_none() {
        eprintln!("SKIPPED: etcd is not installed (Debian etcd-server; `make test` installs it as root)");
        return None;
    }
    let etcd = EtcdCluster::start(3).expect("a 3-member etcd cluster");
    let dir = scratch(&format!("fleet-{name}"));
    for model in ["mlp", "mlp_buggy"] {
        copy_dir(&test_repo().join(model), &dir.join("models").join(model));
    }
    let config = dir.join("switchyard.yaml");
    let yaml = format!(
        "coordination:\n  etcd:\n    lease_ttl: {LEASE_TTL_SECONDS}s\n    join_timeout: 3s\nrollouts:\n{rollout}"
    );
    std::fs::write(&config, yaml).unwrap();
    Some(Fleet { etcd, dir, config, replicas: Vec::new() })
}

impl Fleet {
    /// Starts a replica that reaches every etcd member through its own relays.
    fn add(&mut self, name: &str, cut_off_from_the_start: bool) -> &Replica {
        let models = self.dir.join("models");
        self.add_over(name, cut_off_from_the_start, &models)
    }

    /// `add`, over its own model repository.
    fn add_over(&mut self, name: &str, cut_off_from_the_start: bool, models: &Path) -> &Replica {
        let relays: Vec<Relay> =
            (0..self.etcd.member_count()).map(|i| Relay::start(self.etcd.client_addr(i)).unwrap()).collect();
        if cut_off_from_the_start {
            relays.iter().for_each(Relay::blackhole);
        }
        let endpoints = relays.iter().map(Relay::endpoint).collect::<Vec<_>>().join(",");
        let state = self.dir.join(name);
        let server = Server::start_with(
            models,
            &[
                "--config",
                self.config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
                "--etcd-endpoints",
                &endpoints,
                "--replica-name",
                name,
            ],
            &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
        );
        self.replicas.push(Replica { name: name.to_owned(), relays, server });
        self.replicas.last().unwrap()
    }

    fn ready(&self, r: usize) -> bool {
        self.replicas[r].server.get("/v2/health/ready").status == 200
    }

    fn leader(&self) -> Option<usize> {
        let leading: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| {
                self.replicas[i].server.child.id() > 0
                    && self.replicas[i].metric("switchyard_fleet_leader ") == Some(1.0)
            })
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        leading.first().copied()
    }

    /// Sends traffic unevenly (3, 2 and 1 clients) to the first three replicas until `done` or `limit`;
    /// returns the requests and the non-200 answers.
    fn traffic(&self, limit: Duration, done: impl Fn() -> bool + Sync) -> (u64, u64) {
        let stop = std::sync::atomic::AtomicBool::new(false);
        let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::scope(|scope| {
            let runs: Vec<_> = self.replicas[..3]
                .iter()
                .zip([3, 2, 1])
                .map(|(r, clients)| {
                    scope.spawn(move || {
                        traffic_to(&r.server, "scorer", clients, Duration::from_millis(10), limit, stopped)
                    })
                })
                .collect();
            let start = Instant::now();
            while start.elapsed() < limit && !done() {
                std::thread::sleep(Duration::from_millis(20));
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            runs.into_iter().map(|h| h.join().unwrap()).fold((0, 0), |(n, b), (n2, b2, _)| (n + n2, b + b2))
        })
    }
}

#[test]
fn a_failing_canary_is_rolled_back_on_every_replica_on_the_pooled_evidence() {
    let _serial = serial();
    let rollout = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp_buggy, version: 1, steps: [ { weight: 20, hold: 60s } ] }\n";
    let Some(mut f) = fleet("failing", rollout) else { return };
    for name in ["r1", "r2", "r3"] {
        f.add(name, false);
    }
    wait_for(Duration::from_secs(10), "every replica ready in the fleet", || (0..3).all(|i| f.ready(i)));
    let everywhere = || f.replicas.iter().all(|r| r.phase() == "rolled_back");
    let (n, bad) = f.traffic(Duration::from_secs(20), everywhere);
    assert!(everywhere(), "not rolled back everywhere after {n} requests");
    assert_eq!(bad, 0, "clients saw errors in {n} requests");
    let view = f.replicas[0].status()["fleet"].clone();
    let decided_at = view["decision"]["at_ms"].as_u64().unwrap();
    assert_eq!(view["decision"]["decision"]["decision"], "rolled_back", "{view:#}");
    assert!(view["decision"]["by"].as_str().unwrap().starts_with("leader "), "{view:#}");
    // Every replica applied it within 2 s of the leader's decision, at the same etcd revision.
    let revisions: Vec<Option<f64>> =
        f.replicas.iter().map(|r| r.metric("switchyard_fleet_decision_revision")).collect();
    assert!(revisions.windows(2).all(|w| w[0] == w[1]) && revisions[0].is_some(), "{revisions:?}");
    for r in &f.replicas {
        let audit = std::fs::read_to_string(f.dir.join(&r.name).join("audit.jsonl")).unwrap();
        let line = audit.lines().find(|l| l.contains(r#""decision":"rolled_back""#)).expect("rollback audited");
        let applied_at = serde_json::from_str::<Value>(line).unwrap()["time_ms"].as_u64().unwrap();
        assert!(
            applied_at.saturating_sub(decided_at) < 2_000,
            "{}: applied {} ms after",
            r.name,
            applied_at - decided_at
        );
    }
    // The pooled evidence crossed before the replica with the least traffic could have alone.
    let threshold = view["pooled"]["error_threshold"].as_f64().unwrap();
    let pooled = view["pooled"]["error_e_value"].as_f64().unwrap();
    let alone: Vec<(String, f64, u64)> = view["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["replica"].as_str().unwrap().to_owned(),
                r["error_e_value"].as_f64().unwrap(),
                r["requests"]["canary"].as_u64().unwrap(),
            )
        })
        .collect();
    eprintln!("pooled e-value {pooled:.1} (threshold {threshold:.0}); each replica alone: {alone:?}");
    assert!(pooled >= threshold, "{view:#}");
    assert!(alone.iter().any(|(_, e, _)| *e < threshold), "every replica had crossed alone: {alone:?}");
}

#[test]
fn a_healthy_canary_is_promoted_together_and_actions_on_any_replica_apply_fleet_wide() {
    let _serial = serial();
    let rollout = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 20, hold: 2s }, { weight: 50, hold: 2s } ] }\n    analysis: { min_requests: 20, latency: { quantile: 0.75, max_ratio: 5.0 } }\n";
    let Some(mut f) = fleet("healthy", rollout) else { return };
    for name in ["r1", "r2", "r3"] {
        f.add(name, false);
    }
    wait_for(Duration::from_secs(10), "every replica ready in the fleet", || (0..3).all(|i| f.ready(i)));
    wait_for(Duration::from_secs(5), "a leader", || f.leader().is_some());
    // Paused from a replica that does not lead: every replica holds.
    let follower = (0..3).find(|&i| Some(i) != f.leader()).unwrap();
    let (status, body) = act(&f.replicas[follower].server, "pause");
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(1), "the pause on every replica", || {
        f.replicas.iter().all(|r| r.status()["paused"] == true)
    });
    let (status, body) = act(&f.replicas[follower].server, "pause");
    assert_eq!(status, 409, "a refused action stays refused: {body}");
    f.traffic(Duration::from_secs(3), || false);
    assert!(f.replicas.iter().all(|r| r.status()["step"] == 0), "a paused rollout advanced");
    let (status, body) = act(&f.replicas[(follower + 1) % 3].server, "resume");
    assert_eq!(status, 200, "{body}");
    // A replica that joins mid-rollout reads the fleet's decision before it is ready.
    let first_three_promoted = |f: &Fleet| f.replicas[..3].iter().all(|r| r.phase() == "promoted");
    let (n, bad) =
        f.traffic(Duration::from_secs(30), || first_three_promoted(&f) || f.replicas[0].status()["step"] == 1);
    assert_eq!(bad, 0, "clients saw errors in {n} requests");
    f.add("r4", false);
    wait_for(Duration::from_secs(5), "r4 ready", || f.ready(3));
    let step = f.replicas[3].status()["step"].clone();
    let fleet_step = f.replicas[0].status()["step"].clone();
    assert!(step == fleet_step || f.replicas[0].phase() == "promoted", "r4 at {step}, the fleet at {fleet_step}");
    let (n, bad) = f.traffic(Duration::from_secs(30), || first_three_promoted(&f));
    assert_eq!(bad, 0, "clients saw errors in {n} requests");
    wait_for(Duration::from_secs(2), "promoted on every replica", || {
        f.replicas.iter().all(|r| r.phase() == "promoted")
    });
    // No replica took a step the fleet did not decide: each applied the same decisions, in order, once.
    let reference: Vec<(u64, String)> =
        f.replicas[0].audit(&f.dir).into_iter().filter(|(_, d)| !d.is_empty()).collect();
    let kinds: Vec<&str> = reference.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(kinds, ["paused", "resumed", "advanced", "promoted"], "{reference:?}");
    for r in &f.replicas[1..3] {
        let mine: Vec<(u64, String)> = r.audit(&f.dir).into_iter().filter(|(_, d)| !d.is_empty()).collect();
        assert_eq!(mine, reference, "{}", r.name);
    }
    let seqs: Vec<u64> = reference.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gaps or repeats: {seqs:?}");
}

#[test]
fn the_leader_killed_mid_rollout_is_replaced_within_the_lease_ttl_and_nothing_is_lost() {
    let _serial = serial();
    let rollout = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 20, hold: 1s }, { weight: 50, hold: 600s } ] }\n    analysis: { min_requests: 10, latency: { quantile: 0.75, max_ratio: 5.0 } }\n";
    let Some(mut f) = fleet("leader", rollout) else { return };
    for name in ["r1", "r2", "r3"] {
        f.add(name, false);
    }
    wait_for(Duration::from_secs(10), "every replica ready in the fleet", || (0..3).all(|i| f.ready(i)));
    f.traffic(Duration::from_secs(20), || f.replicas.iter().all(|r| r.status()["step"] == 1));
    let leader = f.leader().expect("a leader");
    let revision = f.replicas[leader].metric("switchyard_fleet_decision_revision");
    f.replicas[leader].server.child.kill().unwrap();
    let killed = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = || others.iter().copied().find(|&i| f.replicas[i].metric("switchyard_fleet_leader ") == Some(1.0));
    wait_for(Duration::from_secs(LEASE_TTL_SECONDS + 3), "a new leader", || new_leader().is_some());
    let took = killed.elapsed();
    eprintln!("a new leader {took:?} after the leader was killed (lease TTL {LEASE_TTL_SECONDS} s)");
    assert!(took < Duration::from_secs(LEASE_TTL_SECONDS) + Duration::from_millis(1_500), "{took:?}");
    // Nothing was lost: the survivors still stand at the decision the dead leader wrote, and the new
    // leader's decisions follow it.
    for &i in &others {
        assert_eq!(f.replicas[i].metric("switchyard_fleet_decision_revision"), revision);
        assert_eq!(f.replicas[i].status()["step"], 1);
    }
    let (status, body) = act(&f.replicas[others[0]].server, "promote");
    assert_eq!(status, 200, "{body}");
    wait_for(Duration::from_secs(1), "promoted on the survivors", || {
        others.iter().all(|&i| f.replicas[i].phase() == "promoted")
    });
    let seqs: Vec<u64> = f.replicas[others[1]].audit(&f.dir).into_iter().map(|(s, _)| s).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
}

#[test]
fn an_etcd_member_killed_and_restarted_changes_nothing_for_clients() {
    let _serial = serial();
    let rollout = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 20, hold: 600s } ] }\n";
    let Some(mut f) = fleet("member", rollout) else { return };
    for name in ["r1", "r2", "r3"] {
        f.add(name, false);
    }
    wait_for(Duration::from_secs(10), "every replica ready in the fleet", || (0..3).all(|i| f.ready(i)));
    let before: Vec<Option<f64>> = f.replicas.iter().map(|r| r.metric("switchyard_fleet_decision_revision")).collect();
    let member = f.etcd.wait_for_leader(Duration::from_secs(5)).expect("an etcd leader");
    let (n, bad) = std::thread::scope(|scope| {
        let load = scope.spawn(|| f.traffic(Duration::from_secs(6), || false));
        std::thread::sleep(Duration::from_secs(1));
        f.etcd.kill(member).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        f.etcd.restart(member).unwrap();
        load.join().unwrap()
    });
    assert!(n > 100, "{n}");
    assert_eq!(bad, 0, "clients saw errors in {n} requests while etcd's leader member was killed and restarted");
    let after: Vec<Option<f64>> = f.replicas.iter().map(|r| r.metric("switchyard_fleet_decision_revision")).collect();
    assert_eq!(before, after, "a decision changed");
    assert!(f.replicas.iter().all(|r| r.status()["step"] == 0 && r.status()["canary_weight_percent"] == 20.0));
    wait_for(Duration::from_secs(5), "etcd up on every replica", || {
        f.replicas.iter().all(|r| r.metric("switchyard_fleet_etcd_up") == Some(1.0))
    });
}

#[test]
fn a_replica_cut_off_from_etcd_never_promotes_while_the_others_do_and_one_started_without_etcd_joins_later() {
    let _serial = serial();
    let rollout = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 20, hold: 2s }, { weight: 50, hold: 2s } ] }\n    analysis: { min_requests: 20, latency: { quantile: 0.75, max_ratio: 5.0 } }\n";
    let Some(mut f) = fleet("cut", rollout) else { return };
    for name in ["r1", "r2", "r3"] {
        f.add(name, false);
    }
    wait_for(Duration::from_secs(10), "every replica ready in the fleet", || (0..3).all(|i| f.ready(i)));
    // Cut off the replica that does not lead (the leader's own cut-off is the leader test's business).
    let cut = (0..3).rev().find(|&i| Some(i) != f.leader()).unwrap();
    f.replicas[cut].cut_off();
    wait_for(Duration::from_secs(6), "etcd down on the cut-off replica", || {
        f.replicas[cut].metric("switchyard_fleet_etcd_up") == Some(0.0)
    });
    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let promoted = || others.iter().all(|&i| f.replicas[i].phase() == "promoted");
    let (n, bad) = f.traffic(Duration::from_secs(40), promoted);
    assert!(promoted(), "the connected replicas were not promoted after {n} requests");
    assert_eq!(bad, 0, "clients saw errors in {n} requests");
    let status = f.replicas[cut].status();
    assert_eq!((status["phase"].as_str(), status["step"].as_u64()), (Some("progressing"), Some(0)), "{status:#}");
    assert_eq!(status["fleet"]["this_replica"]["mode"], "cut_off", "{status:#}");
    // A replica started while etcd cannot be reached serves the config's first stage after the join
    // timeout, and says so.
    let started = Instant::now();
    f.add("r4", true);
    wait_for(Duration::from_secs(10), "r4 ready without etcd", || f.ready(3));
    assert!(started.elapsed() >= Duration::from_secs(2), "ready before the join timeout: {:?}", started.elapsed());
    let r4 = &f.replicas[3];
    assert_eq!(r4.metric("switchyard_fleet_etcd_up"), Some(0.0));
    assert_eq!(r4.fleet()["etcd_up"], false);
    assert_eq!(r4.status()["step"], 0);
    assert!(r4.server.log().contains("etcd unreachable at start"), "{}", r4.server.log());
    // Healed, both adopt the fleet's decision.
    f.replicas[cut].heal();
    r4.heal();
    wait_for(Duration::from_secs(5), "both healed replicas promoted", || {
        f.replicas[cut].phase() == "promoted" && f.replicas[3].phase() == "promoted"
    });
}

#[test]
fn a_cut_off_replica_rolls_back_on_its_own_evidence_and_the_others_carry_on() {
    let _serial = serial();
    // `cand` is mlp on r1 and r2, and the failing mlp_buggy on r3 (a fault of that replica alone).
    let rollout = "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: cand, version: 1, steps: [ { weight: 20, hold: 600s } ] }\n";
    let Some(mut f) = fleet("local", rollout) else { return };
    copy_dir(&test_repo().join("mlp"), &f.dir.join("models/cand"));
    let bad = f.dir.join("models-bad");
    copy_dir(&test_repo().join("mlp"), &bad.join("mlp"));
    copy_dir(&test_repo().join("mlp_buggy"), &bad.join("cand"));
    f.add("r1", false);
    f.add("r2", false);
    f.add_over("r3", false, &bad);
    wait_for(Duration::from_secs(10), "every replica ready in the fleet", || (0..3).all(|i| f.ready(i)));
    f.replicas[2].cut_off();
    wait_for(Duration::from_secs(6), "etcd down on r3", || {
        f.replicas[2].metric("switchyard_fleet_etcd_up") == Some(0.0)
    });
    let (n, bad_answers) = f.traffic(Duration::from_secs(20), || f.replicas[2].phase() == "rolled_back");
    assert_eq!(bad_answers, 0, "clients saw errors in {n} requests");
    let r3 = f.replicas[2].status();
    assert_eq!(r3["phase"], "rolled_back", "{r3:#}");
    assert_eq!(r3["reason"]["kind"], "error_rate", "{r3:#}");
    let audit = std::fs::read_to_string(f.dir.join("r3/audit.jsonl")).unwrap();
    assert!(audit.contains("cut off from the fleet"), "{audit}");
    // The others never saw r3's failures: their rollout goes on.
    for r in &f.replicas[..2] {
        let s = r.status();
        assert_eq!(
            (s["phase"].as_str(), s["canary_weight_percent"].as_f64()),
            (Some("progressing"), Some(20.0)),
            "{s:#}"
        );
    }
}
