//! Changing models while serving, through the real binary: versions added, replaced, corrupted and
//! removed under continuous load, and the V2 repository extension's load and unload.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::rollouts::{TOKEN, copy_dir, scratch, serial, traffic_to, wait_for};
use common::{Server, mlp_request, test_repo};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn outputs(s: &Server, path: &str) -> Value {
    let r = s.post_json(path, &mlp_request(1));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()["outputs"][0]["data"].clone()
}

fn index_entry(s: &Server, model: &str, version: &str) -> Value {
    let r = s.conn().request("POST", "/v2/repository/index", &[], b"");
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == model && e["version"] == version)
        .cloned()
        .unwrap_or(Value::Null)
}

fn load_failures(s: &Server, model: &str) -> f64 {
    let text = s.get("/metrics").text();
    let prefix = format!("switchyard_model_load_failures_total{{model=\"{model}\"}}");
    text.lines().find(|l| l.starts_with(&prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

fn replace_file(from: &Path, to: &Path) {
    // Written beside, then renamed: the poll never reads a half-copied file.
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn versions_added_replaced_corrupted_and_removed_under_load_fail_no_request() {
    let _serial = serial();
    let dir = scratch("repo-live");
    let repo = dir.join("models");
    std::fs::create_dir_all(repo.join("m")).unwrap();
    copy_dir(&test_repo().join("mlp/1"), &repo.join("m/1"));
    std::fs::write(repo.join("m/config.yaml"), "versions: all\n").unwrap();
    let s = Server::start_with(&repo, &["--repository-poll-secs", "1"], &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
    let v1 = outputs(&s, "/v2/models/m/infer");
    let done = std::sync::atomic::AtomicBool::new(false);
    let (n, bad, _) = std::thread::scope(|scope| {
        let (s, done) = (&s, &done);
        let load = scope.spawn(move || {
            traffic_to(s, "m", 4, Duration::from_millis(2), Duration::from_secs(90), || {
                done.load(std::sync::atomic::Ordering::SeqCst)
            })
        });
        // Added: version 2 loads, warms up, and takes the unversioned calls.
        copy_dir(&test_repo().join("mlp/2"), &repo.join("m/2"));
        wait_for(Duration::from_secs(20), "version 2", || s.get("/v2/models/m/versions/2/ready").status == 200);
        let v2 = outputs(s, "/v2/models/m/versions/2/infer");
        assert_ne!(v2, v1);
        assert_eq!(s.post_json("/v2/models/m/infer", &mlp_request(1)).json()["model_version"], "2");
        // Replaced: version 2's file becomes version 1's model; swapped in once loaded.
        replace_file(&test_repo().join("mlp/1/model.onnx"), &repo.join("m/2/model.onnx"));
        wait_for(Duration::from_secs(20), "the replaced file", || outputs(s, "/v2/models/m/versions/2/infer") == v1);
        // Corrupted: the load fails, the previous file keeps serving, and the index and metrics say so.
        let failures = load_failures(s, "m");
        std::fs::write(repo.join("m/2/model.onnx.tmp"), b"not an onnx model").unwrap();
        std::fs::rename(repo.join("m/2/model.onnx.tmp"), repo.join("m/2/model.onnx")).unwrap();
        wait_for(Duration::from_secs(20), "the failed load", || load_failures(s, "m") > failures);
        assert_eq!(outputs(s, "/v2/models/m/versions/2/infer"), v1, "the previous file still serves");
        let entry = index_entry(s, "m", "2");
        assert_eq!(entry["state"], "READY", "{entry}");
        assert!(entry["reason"].as_str().unwrap().contains("failed to load"), "{entry}");
        // Removed: version 1 stops serving.
        std::fs::remove_dir_all(repo.join("m/1")).unwrap();
        wait_for(Duration::from_secs(20), "version 1 removed", || s.get("/v2/models/m/versions/1/ready").status == 404);
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        load.join().unwrap()
    });
    assert!(n > 100, "{n} requests");
    assert_eq!(bad, 0, "{bad} of {n} requests failed while the repository changed");
    assert!(s.log().contains("model repository changed"), "{}", s.log());
}

#[test]
fn the_repository_extension_loads_and_unloads_with_the_admin_token() {
    let _serial = serial();
    let dir = scratch("repo-api");
    let repo = dir.join("models");
    for m in ["mlp", "strings"] {
        copy_dir(&test_repo().join(m), &repo.join(m));
    }
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        "rollouts:\n  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, weight: 10 }\n",
    )
    .unwrap();
    let s = Server::start_with(&repo, &["--config", cfg.to_str().unwrap()], &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
    let auth = format!("Bearer {TOKEN}");
    let post = |path: &str, token: bool| {
        let headers: Vec<(&str, &str)> = if token { vec![("Authorization", &auth)] } else { vec![] };
        s.conn().request("POST", path, &headers, b"")
    };
    assert_eq!(post("/v2/repository/models/strings/unload", false).status, 401);
    assert_eq!(post("/v2/repository/models/mlp/unload", true).status, 409, "a rollout uses mlp");
    let r = post("/v2/repository/models/strings/unload", true);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/v2/models/strings").status, 404);
    let r = post("/v2/repository/models/strings/load", true);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.get("/v2/models/strings/ready").status, 200);
    assert_eq!(post("/v2/repository/models/nope/load", true).status, 404);
    // Names cannot escape the repository: not by `..`, nor by a symlink leading out of it.
    for name in ["..%2F..%2Fetc", "..", "%2Ftmp"] {
        let r = post(&format!("/v2/repository/models/{name}/load"), true);
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(r.error().contains("not a model name"), "{name}: {}", r.text());
    }
    let outside = dir.join("outside");
    copy_dir(&test_repo().join("mlp"), &outside);
    std::os::unix::fs::symlink(&outside, repo.join("escape")).unwrap();
    let r = post("/v2/repository/models/escape/load", true);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("outside the model repository"), "{}", r.text());
    assert_eq!(s.get("/v2/models/escape").status, 404);
    // A corrupt file: 400 with the reason, and the model keeps serving what it served.
    std::fs::write(repo.join("strings/1/model.onnx"), b"garbage").unwrap();
    let r = post("/v2/repository/models/strings/load", true);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.error().contains("failed to load"), "{}", r.text());
    assert_eq!(s.get("/v2/models/strings/ready").status, 200);
}
