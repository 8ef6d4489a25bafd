//! `switchyard rollouts ...` against the real binary serving a real rollout: every command, its table
//! and JSON output, and its exit codes (0 done, 1 refused, 2 usage, 3 unreachable, 4 unauthorised).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use common::rollouts::{TOKEN, serial, start};
use std::process::{Command, Output};

/// Runs `switchyard rollouts <args>` against `server` with `token`.
fn ctl(server: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("rollouts")
        .args(args)
        .env("SWITCHYARD_SERVER", server)
        .env("SWITCHYARD_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn every_command_answers_with_its_table_json_and_exit_code() {
    let _serial = serial();
    let (s, _dir) = start(
        "ctl",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp, version: 2, steps: [ { weight: 20, hold: 1h } ] }\n",
    );
    let server = format!("http://127.0.0.1:{}", s.port);
    let run = |args: &[&str]| ctl(&server, TOKEN, args);

    let (code, out, err) = run(&["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ENDPOINT") && out.contains("scorer") && out.contains("mlp/2"), "{out}");
    let (code, out, _) = run(&["list", "--output", "json"]);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["endpoint"], "scorer");

    let (code, out, _) = run(&["status", "scorer"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("phase:     progressing, step 1") && out.contains("control") && out.contains("e-value"),
        "{out}"
    );

    // Pause, a refused second pause, resume.
    assert_eq!(run(&["pause", "scorer"]).0, 0);
    let (code, _, err) = run(&["pause", "scorer"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already paused") && err.contains("409"), "{err}");
    assert!(run(&["status", "scorer"]).1.contains("(paused)"));
    let (code, out, _) = run(&["resume", "scorer"]);
    assert_eq!(code, 0);
    assert!(out.contains("resumed"), "{out}");

    // The history has every decision, oldest first.
    let (code, out, _) = run(&["history", "scorer"]);
    assert_eq!(code, 0);
    let events: Vec<&str> = out.lines().skip(1).filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(events, ["-", "paused", "resumed"], "{out}");
    let (_, out, _) = run(&["history", "scorer", "--limit", "1", "--output", "json"]);
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["entries"].as_array().unwrap().len(), 1);

    // The last minutes of traffic per arm, second by second (the console's charts). A request assigned
    // to a canary still loading is answered by control and judged for neither.
    common::rollouts::wait_for(std::time::Duration::from_secs(30), "the canary to load", || {
        s.get("/v2/models/mlp/versions/2/ready").status == 200
    });
    for _ in 0..5 {
        assert_eq!(s.post_json("/v2/models/scorer/infer", &common::mlp_request(1)).status, 200);
    }
    let auth = format!("Bearer {TOKEN}");
    let series = s.conn().request("GET", "/admin/rollouts/scorer/series", &[("Authorization", &auth)], b"").json();
    let total =
        |arm: &str| series[arm]["requests"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).sum::<u64>();
    assert_eq!(total("control") + total("canary"), 5, "{series}");
    assert_eq!(series["control"]["requests"].as_array().unwrap().len(), 300);
    let judged = series["e_values"]["error_rate"].as_array().unwrap().iter().filter(|v| v.is_number()).count();
    assert!(judged >= 1, "the e-values as a second began: {series}");

    // The console's one call: each rollout's status with its plan, series and history; the page itself
    // is public, the call is not.
    let console = s.conn().request("GET", "/admin/console", &[("Authorization", &auth)], b"").json();
    let r = &console["rollouts"][0];
    assert_eq!(
        (r["endpoint"].as_str(), r["plan"]["steps"][0]["weight_percent"].as_f64()),
        (Some("scorer"), Some(20.0))
    );
    assert_eq!(r["series"]["control"]["requests"].as_array().unwrap().len(), 300);
    assert_eq!(r["history"].as_array().unwrap().len(), 3, "{r}");
    assert!(console["reloads"].as_array().unwrap().is_empty() && console["fleet"].is_null(), "{console}");
    assert_eq!(s.get("/admin/console").status, 401);
    // An action is a POST and a view a GET: the other method is refused as such, naming the method.
    let wrong = s.conn().request("GET", "/admin/rollouts/scorer/pause", &[("Authorization", &auth)], b"");
    assert_eq!(wrong.status, 405, "{}", wrong.text());
    assert!(wrong.text().contains("GET"), "{}", wrong.text());
    let wrong = s.conn().request("POST", "/admin/rollouts/scorer/history", &[("Authorization", &auth)], b"");
    assert_eq!(wrong.status, 405, "{}", wrong.text());
    let page = s.get("/ui");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<script type=\"module\" src=\"/ui/console.js\">"), "{}", page.text());

    // Roll back; then promoting is refused, and --watch ends at once on a finished rollout.
    let (code, out, _) = run(&["rollback", "scorer"]);
    assert_eq!(code, 0);
    assert!(out.contains("rolled_back"), "{out}");
    assert_eq!(run(&["promote", "scorer"]).0, 1);
    let (code, out, _) = run(&["status", "scorer", "--watch", "--interval", "0.2"]);
    assert_eq!(code, 0);
    assert!(out.contains("rolled_back"), "{out}");
    // With --output json, each look is one line of JSON (here one: the rollout has finished).
    let (code, out, _) = run(&["status", "scorer", "--watch", "--interval", "0.2", "--output", "json"]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");
    let look: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(look["phase"], "rolled_back", "{look}");
    assert_eq!(run(&["status", "nowhere"]).0, 1);

    // A wrong token, no server, and usage mistakes.
    let (code, _, err) = ctl(&server, "wrong", &["list"]);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = ctl("http://127.0.0.1:1", TOKEN, &["list"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    assert_eq!(ctl(&server, TOKEN, &["frobnicate"]).0, 2);
    assert_eq!(ctl(&server.replace("http://", ""), TOKEN, &["list"]).0, 2);
}
