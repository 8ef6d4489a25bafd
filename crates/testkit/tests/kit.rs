//! The fixtures against the installed etcd: a 3-member cluster that starts healthy, elects a leader and
//! takes members back after a crash or a clean stop; a relay that forwards, cuts and silences a client's
//! connections to a member; and the shortest lease etcd grants with this kit's raft timings (printed,
//! for the fleet tests that rely on lease expiry). Each test skips, saying so, where etcd is absent.

use std::io;
use std::time::{Duration, Instant};

use switchyard_testkit::http::{self, json_field};
use switchyard_testkit::{EtcdCluster, Relay, RelayMode};

fn cluster(test: &str) -> Option<EtcdCluster> {
    if EtcdCluster::find_binary().is_none() {
        eprintln!(
            "SKIPPED: {test}: etcd is not installed (looked at $SWITCHYARD_TEST_ETCD, etcd on PATH, /usr/bin/etcd)"
        );
        return None;
    }
    let started = Instant::now();
    let cluster = EtcdCluster::start(3).expect("start a 3-member etcd cluster");
    eprintln!("{test}: 3 etcd members healthy {:?} after start ({})", started.elapsed(), cluster.dir().display());
    Some(cluster)
}

fn healthy_via(addr: std::net::SocketAddr, timeout: Duration) -> io::Result<bool> {
    let r = http::get(addr, "/health", timeout)?;
    Ok(r.status == 200 && json_field(&r.body, "health") == Some("true"))
}

#[test]
fn cluster_elects_a_leader_and_takes_members_back() {
    let Some(c) = cluster("cluster_elects_a_leader_and_takes_members_back") else { return };
    assert_eq!(c.member_count(), 3);
    assert_eq!(c.endpoints().len(), 3);
    assert!(c.endpoints().iter().all(|e| e.starts_with("127.0.0.1:")));
    assert!(c.client_urls().iter().all(|u| u.starts_with("http://127.0.0.1:")));
    for i in 0..3 {
        assert!(c.is_running(i), "member {i} running");
        assert!(c.is_healthy(i), "member {i} healthy");
    }
    let leader = c.wait_for_leader(Duration::from_secs(5)).expect("a raft leader");
    let ids: Vec<String> = (0..3).map(|i| c.member_id(i).expect("member id")).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");

    // A follower crashes (SIGKILL) and comes back on its data directory.
    let follower = (leader + 1) % 3;
    c.kill(follower).expect("kill");
    assert!(!c.is_running(follower));
    assert!(!c.is_healthy(follower));
    assert!(c.is_healthy(leader), "two of three keep quorum");
    let t = Instant::now();
    c.restart(follower).expect("restart after kill");
    eprintln!("restart of a killed follower: healthy after {:?}", t.elapsed());
    assert!(c.is_running(follower) && c.is_healthy(follower));
    assert!(c.restart(follower).is_err(), "restarting a running member is refused");

    // The other follower stops cleanly (SIGTERM) and comes back.
    let other = (leader + 2) % 3;
    c.stop(other).expect("stop");
    assert!(!c.is_running(other));
    c.restart(other).expect("restart after stop");
    assert!(c.is_healthy(other));

    // The leader crashes: one of the others takes over.
    let t = Instant::now();
    c.kill(leader).expect("kill leader");
    let next = c.wait_for_leader(Duration::from_secs(5)).expect("a new leader");
    eprintln!("leader killed: member {next} leads after {:?}", t.elapsed());
    assert_ne!(next, leader);
    c.restart(leader).expect("restart old leader");
    for i in 0..3 {
        assert!(c.is_healthy(i), "member {i} healthy at the end");
    }
}

#[test]
fn paused_member_stays_open_but_silent() {
    let Some(c) = cluster("paused_member_stays_open_but_silent") else { return };
    let leader = c.wait_for_leader(Duration::from_secs(5)).expect("a raft leader");
    let follower = (leader + 1) % 3;
    c.pause(follower).expect("pause");
    assert!(c.is_running(follower));
    let err = http::get(c.client_addr(follower), "/health", Duration::from_millis(300)).expect_err("silent");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    c.resume(follower).expect("resume");
    c.wait_healthy(follower, Duration::from_secs(5)).expect("healthy after resume");
}

#[test]
fn relay_forwards_cuts_and_silences_a_client() {
    let Some(c) = cluster("relay_forwards_cuts_and_silences_a_client") else { return };
    let relay = Relay::start(c.client_addr(0)).expect("relay");
    assert_eq!(relay.mode(), RelayMode::Forward);
    assert!(healthy_via(relay.addr(), Duration::from_secs(2)).expect("health through the relay"));

    relay.reset();
    let t = Instant::now();
    let err = healthy_via(relay.addr(), Duration::from_secs(2)).expect_err("reset relay refuses");
    let reset_took = t.elapsed();
    eprintln!("through a reset relay: {:?} after {reset_took:?} ({err})", err.kind());
    assert!(reset_took < Duration::from_millis(500), "reset should fail fast, took {reset_took:?}");

    relay.blackhole();
    let t = Instant::now();
    let err = healthy_via(relay.addr(), Duration::from_millis(300)).expect_err("blackholed relay is silent");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(c.is_healthy(0), "the member itself is unaffected");

    relay.heal();
    assert!(healthy_via(relay.addr(), Duration::from_secs(2)).expect("health after heal"));
}

#[test]
fn lease_with_ttl_one() {
    let Some(c) = cluster("lease_with_ttl_one") else { return };
    let leader = c.wait_for_leader(Duration::from_secs(5)).expect("a raft leader");
    let member = c.client_addr(leader);
    let timeout = Duration::from_secs(2);

    let granted_at = Instant::now();
    let grant = http::post_json(member, "/v3/lease/grant", r#"{"TTL":1}"#, timeout).expect("grant");
    assert_eq!(grant.status, 200, "{}", grant.body);
    let ttl: i64 = json_field(&grant.body, "TTL").and_then(|t| t.parse().ok()).expect("TTL in the grant");
    let id = json_field(&grant.body, "ID").expect("ID in the grant").to_string();
    eprintln!("lease grant TTL 1 -> {}", grant.body);
    assert!(ttl >= 1, "granted TTL {ttl}");

    // A key on the lease ("k" = "aw==", "v" = "dg==" in base64) goes when the lease expires.
    let put = format!(r#"{{"key":"aw==","value":"dg==","lease":"{id}"}}"#);
    let r = http::post_json(member, "/v3/kv/put", &put, timeout).expect("put");
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lease_gone = None;
    let mut key_gone = None;
    while lease_gone.is_none() || key_gone.is_none() {
        assert!(Instant::now() < deadline, "lease {id} (TTL {ttl}) still alive after 10 s");
        let live = http::post_json(member, "/v3/lease/timetolive", &format!(r#"{{"ID":"{id}"}}"#), timeout)
            .expect("timetolive");
        if lease_gone.is_none() && json_field(&live.body, "TTL") == Some("-1") {
            lease_gone = Some(granted_at.elapsed());
        }
        let range = http::post_json(member, "/v3/kv/range", r#"{"key":"aw=="}"#, timeout).expect("range");
        if key_gone.is_none() && !range.body.contains("\"kvs\"") {
            key_gone = Some(granted_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("lease TTL {ttl}: timetolive says expired after {lease_gone:?}; its key gone after {key_gone:?}");
}
