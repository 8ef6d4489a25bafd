//! Changing the config while serving, through the real binary: edits in place and by a Kubernetes-style
//! `..data` symlink swap under continuous load, a rejected edit while the old config serves, a new
//! canary, SIGHUP, versions loaded for a new rollout, and `switchyard validate`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::rollouts::{TOKEN, admin, copy_dir, scratch, serial, traffic_to, wait_for};
use common::{Server, mlp_request, test_repo, workspace};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SCORER: &str = "rollouts:\n  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, weight: WEIGHT }\n";

fn scorer(weight: u32) -> String {
    SCORER.replace("WEIGHT", &weight.to_string())
}

/// A directory laid out as Kubernetes mounts a ConfigMap: `switchyard.yaml -> ..data/switchyard.yaml`,
/// `..data -> ..<version>`; `swap` writes a new version and points `..data` at it in one rename.
struct ConfigMapDir {
    dir: PathBuf,
    n: u32,
}

impl ConfigMapDir {
    fn new(dir: &Path, text: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut c = Self { dir: dir.to_owned(), n: 0 };
        c.swap(text);
        std::os::unix::fs::symlink("..data/switchyard.yaml", dir.join("switchyard.yaml")).unwrap();
        c
    }

    fn path(&self) -> PathBuf {
        self.dir.join("switchyard.yaml")
    }

    fn swap(&mut self, text: &str) {
        self.n += 1;
        let version = format!("..2026_11_30_{:02}", self.n);
        std::fs::create_dir_all(self.dir.join(&version)).unwrap();
        std::fs::write(self.dir.join(&version).join("switchyard.yaml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

fn metric(s: &Server, line_start: &str) -> f64 {
    let text = s.get("/metrics").text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn start(config: &Path, repo: &Path, extra: &[&str]) -> Server {
    let state = config.parent().unwrap().parent().unwrap().join("state");
    let mut args = vec!["--config", config.to_str().unwrap(), "--state-dir", state.to_str().unwrap()];
    if !extra.contains(&"--config-poll-secs") {
        args.extend_from_slice(&["--config-poll-secs", "1"]);
    }
    args.extend_from_slice(extra);
    Server::start_with(repo, &args, &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)])
}

#[test]
fn config_edits_apply_under_load_without_a_failed_request_and_a_bad_edit_keeps_the_old_config() {
    let _serial = serial();
    let dir = scratch("reload");
    let mut cm = ConfigMapDir::new(&dir.join("config"), &scorer(10));
    let s = start(&cm.path(), &test_repo(), &[]);
    assert_eq!(admin(&s, "scorer")["canary_weight_percent"], 10.0);
    let started_ms = admin(&s, "scorer")["started_ms"].clone();
    let s = &s;
    let weight = |w: f64| move || admin(s, "scorer")["canary_weight_percent"] == w;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (n, bad, _) = std::thread::scope(|scope| {
        let done = &done;
        let finished = move || done.load(std::sync::atomic::Ordering::SeqCst);
        let load = scope
            .spawn(move || traffic_to(s, "scorer", 4, Duration::from_millis(2), Duration::from_secs(60), finished));
        // 1. A Kubernetes-style swap of `..data`: same control and canary, so the rollout continues.
        cm.swap(&scorer(50));
        wait_for(Duration::from_secs(10), "the swapped config", weight(50.0));
        assert_eq!(admin(s, "scorer")["started_ms"], started_ms, "the rollout continues, not restarts");
        // Its history carries over: started, then reloaded.
        let auth = format!("Bearer {TOKEN}");
        let history =
            s.conn().request("GET", "/admin/rollouts/scorer/history", &[("Authorization", &auth)], b"").json();
        let events: Vec<&str> =
            history["entries"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(events, ["started", "reloaded"], "{history}");
        // 2. An edit in place: a second endpoint appears.
        let with_other = format!(
            "{}  - endpoint: other\n    control: {{ model: mlp, version: 2 }}\n    canary: {{ model: mlp, version: 1, weight: 5 }}\n",
            scorer(50)
        );
        std::fs::write(cm.path(), &with_other).unwrap();
        wait_for(Duration::from_secs(10), "the edited config", || s.get("/v2/models/other").status == 200);
        // 3. A bad edit: rejected, counted, and the old config keeps serving.
        let failures = metric(s, r#"switchyard_config_reloads_total{result="failure"}"#);
        std::fs::write(cm.path(), with_other.replace("version: 1, weight: 5", "version: 9, weight: 5")).unwrap();
        wait_for(Duration::from_secs(10), "the rejection", || {
            metric(s, r#"switchyard_config_reloads_total{result="failure"}"#) > failures
        });
        assert!(s.log().contains("config rejected") && s.log().contains("version 9"), "{}", s.log());
        assert_eq!(s.get("/v2/models/other").status, 200, "the old config still serves");
        assert_eq!(admin(s, "scorer")["canary_weight_percent"], 50.0);
        // 4. A new canary starts a new rollout; the removed endpoint stops routing.
        cm.swap(&scorer(30).replace("canary: { model: mlp, version: 2", "canary: { model: mlp_heavy, version: 1"));
        wait_for(Duration::from_secs(10), "the new canary", || admin(s, "scorer")["canary"]["model"] == "mlp_heavy");
        assert_ne!(admin(s, "scorer")["started_ms"], started_ms, "a new canary is a new rollout");
        assert_eq!(s.get("/v2/models/other").status, 404);
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let (n, bad, arms) = load.join().unwrap_or_default();
        (n, bad, arms)
    });
    assert!(n > 100, "{n} requests");
    assert_eq!(bad, 0, "{bad} of {n} requests failed across the reloads");
    assert!(metric(s, r#"switchyard_config_reloads_total{result="success"}"#) >= 3.0);
    assert!(metric(s, "switchyard_config_last_reload_success_timestamp_seconds") > 1.7e9);
}

#[test]
fn sighup_reloads_and_a_new_rollout_loads_the_versions_it_needs() {
    let _serial = serial();
    let dir = scratch("reload-hup");
    // `mlp` without its config.yaml serves only its latest version (2); the rollout added later needs 1.
    let repo = dir.join("models");
    copy_dir(&test_repo().join("mlp"), &repo.join("mlp"));
    std::fs::write(repo.join("mlp/config.yaml"), "{}\n").unwrap();
    let config = dir.join("config").join("switchyard.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "server: { strict_readiness: true }\n").unwrap();
    let s = start(&config, &repo, &["--config-poll-secs", "0"]);
    assert_eq!(s.get("/v2/models/mlp/versions/1").status, 404, "version 1 is not served yet");
    std::fs::write(&config, scorer(50)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(s.get("/v2/models/scorer").status, 404, "no poll: nothing changes before SIGHUP");
    std::process::Command::new("kill").args(["-HUP", &s.child.id().to_string()]).status().unwrap();
    wait_for(Duration::from_secs(20), "the rollout after SIGHUP", || s.get("/v2/models/scorer").status == 200);
    assert_eq!(s.post_json("/v2/models/mlp/versions/1/infer", &mlp_request(1)).status, 200);
    let mut versions = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = s.post_json("/v2/models/scorer/infer", &mlp_request(1));
        assert_eq!(r.status, 200);
        versions.insert(r.json()["model_version"].as_str().unwrap().to_owned());
    }
    assert_eq!(versions.len(), 2, "both arms serve: {versions:?}");
}

#[test]
fn validate_checks_a_config_offline() {
    let dir = scratch("validate");
    let run = |yaml: &str| {
        let cfg = dir.join("c.yaml");
        std::fs::write(&cfg, yaml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["validate", "--config", cfg.to_str().unwrap(), "--model-repository"])
            .arg(test_repo())
            .current_dir(workspace())
            .output()
            .unwrap()
    };
    let ok = run(&scorer(10));
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("scorer: control mlp/1, canary mlp/2"));
    for (yaml, needle) in [
        (scorer(10).replace("version: 2", "version: 9"), "canary.version 9"),
        (scorer(10).replace("weight: 10", "weight: 150"), "150"),
        ("rollouts:\n  - endpoint: s\n    contrl: {}\n".to_owned(), "contrl"),
    ] {
        let out = run(&yaml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{yaml}: {err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
