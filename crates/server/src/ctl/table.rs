//! The CLI's readable output: aligned tables and short summaries of the admin API's answers.

use serde_json::Value;
use std::fmt::Write;

/// Rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &mut header.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

/// A target as `model/version` (or the model alone).
fn target(v: &Value) -> String {
    match (v["model"].as_str(), v["version"].as_u64()) {
        (Some(m), Some(n)) => format!("{m}/{n}"),
        (Some(m), None) => m.to_owned(),
        _ => "-".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn phase(r: &Value) -> String {
    let mut p = text(&r["phase"]);
    if let Some(step) = r["step"].as_u64() {
        p = format!("{p}, step {}", step + 1);
    }
    if r["paused"] == true {
        p.push_str(" (paused)");
    }
    p
}

/// `rollouts list`.
pub(super) fn list(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            vec![
                text(&r["endpoint"]),
                phase(r),
                format!("{}%", text(&r["canary_weight_percent"])),
                target(&r["control"]),
                target(&r["canary"]),
                text(&r["verdict"]),
                r["experiment"]["report"]["verdict"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no rollouts\n".into();
    }
    table(&["ENDPOINT", "PHASE", "CANARY", "CONTROL", "CANARY MODEL", "VERDICT", "EXPERIMENT"], &rows)
}

/// `rollouts status`.
pub(super) fn status(r: &Value) -> String {
    let mut out = String::new();
    let e = &r["evidence"];
    let _ = writeln!(out, "endpoint:  {}", text(&r["endpoint"]));
    let _ = writeln!(out, "phase:     {}  (canary {}% of traffic)", phase(r), text(&r["canary_weight_percent"]));
    let _ = writeln!(out, "verdict:   {}", text(&r["verdict"]));
    if !r["reason"].is_null() {
        let _ = writeln!(out, "reason:    {}", r["reason"]);
    }
    let arm = |name: &str, t: &Value, requests: &Value, errors: &Value, latency: &Value| {
        vec![name.to_owned(), target(t), text(requests), text(errors), seconds(latency)]
    };
    let mut rows = vec![
        arm("control", &r["control"], &e["control_requests"], &e["control_errors"], &e["control_latency_seconds"]),
        arm("canary", &r["canary"], &e["canary_requests"], &e["canary_errors"], &e["canary_latency_seconds"]),
    ];
    for s in r["shadows"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
        let agreement = &s["agreement"];
        rows.push(vec![
            "shadow".into(),
            target(&s["target"]),
            text(&agreement["compared"]),
            text(&agreement["errors"]),
            "-".into(),
        ]);
    }
    out.push('\n');
    out.push_str(&table(&["ARM", "TARGET", "REQUESTS", "ERRORS", "LATENCY"], &rows));
    let _ = writeln!(
        out,
        "\nevidence:  error rate e-value {} / latency e-value {} (rollback at {})",
        number(&e["error_e_value"]),
        number(&e["latency_e_value"]),
        number(&e["error_threshold"])
    );
    if let Some(report) = r["experiment"]["report"].as_object() {
        let p = &report["primary"];
        let _ = writeln!(
            out,
            "experiment: {} ({} lift {}, outcomes {})",
            text(&report["verdict"]),
            text(&p["metric"]),
            p["relative_lift"].as_f64().map_or("-".into(), |l| format!("{:+.1}%", l * 100.0)),
            text(&p["outcomes"])
        );
    }
    out
}

fn number(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |x| format!("{x:.3}"))
}

fn seconds(v: &Value) -> String {
    v.as_f64().map_or_else(|| "-".into(), |s| format!("{:.2} ms", s * 1000.0))
}

/// `rollouts promote|rollback|pause|resume`.
pub(super) fn action(v: &Value) -> String {
    let r = &v["rollout"];
    format!(
        "{}: {} -> {} (canary {}%)\n",
        text(&r["endpoint"]),
        v["decision"],
        phase(r),
        text(&r["canary_weight_percent"])
    )
}

/// `rollouts history`.
pub(super) fn history(v: &Value) -> String {
    let entries = v["entries"].as_array().map(|a| a.as_slice()).unwrap_or_default();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let when = e["time_ms"].as_u64().map_or("-".into(), |ms| {
                let secs = ms / 1000;
                format!("{}.{:03}", secs, ms % 1000)
            });
            let decision = match &e["decision"] {
                Value::Object(d) => d.get("decision").map_or_else(|| Value::Object(d.clone()).to_string(), text),
                other => text(other),
            };
            let reason = e["decision"]["reason"]["kind"].as_str().or(e["why"].as_str()).unwrap_or("-").to_owned();
            vec![when, text(&e["event"]), decision, text(&e["by"]), text(&e["phase"]), reason]
        })
        .collect();
    if rows.is_empty() {
        return "no decisions recorded\n".into();
    }
    table(&["TIME (unix s)", "EVENT", "DECISION", "BY", "PHASE", "REASON"], &rows)
}
