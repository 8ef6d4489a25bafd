//! The rollout console: a page at `/ui` whose HTML, CSS and JavaScript are compiled into the binary (so
//! it works offline, and nothing is fetched from anywhere else, which its Content-Security-Policy also
//! enforces), and the one admin call it polls each second, `GET /admin/console`. Without the admin token
//! the page reads `/metrics` instead and shows only what that shows.

use super::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchyard_core::rollout::{Plan, Schedule};

/// Timeline entries sent per rollout.
const HISTORY: usize = 200;

/// The page's files: name, media type, contents.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../console/index.html")),
    ("console.css", "text/css; charset=utf-8", include_str!("../../console/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../console/console.js")),
    ("model.js", "text/javascript; charset=utf-8", include_str!("../../console/model.js")),
    ("charts.js", "text/javascript; charset=utf-8", include_str!("../../console/charts.js")),
    ("render.js", "text/javascript; charset=utf-8", include_str!("../../console/render.js")),
];

/// Only this origin, for scripts, styles and every fetch; no inline script, no frames.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                      img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui` (and `/ui/`): the page.
pub(super) async fn page() -> Response {
    asset("index.html")
}

/// `GET /ui/{file}`: the page's scripts and styles.
pub(super) async fn file(Path(name): Path<String>) -> Response {
    asset(&name)
}

fn asset(name: &str) -> Response {
    let Some((_, media, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return crate::ApiError::NotFound(format!("no console file '{name}'")).into_response();
    };
    let mut resp = (StatusCode::OK, *body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /admin/console`: everything the page shows, in one answer: each rollout's status (with its
/// fleet view and drift), plan, last five minutes per arm and recent decisions; the fleet; the latest
/// config reloads.
pub(super) async fn data(State(app): State<AppState>) -> Json<Value> {
    let endpoints = app.endpoints();
    let mut rollouts = Vec::new();
    for driver in endpoints.rollouts().values() {
        let mut status = super::admin::status(&app, driver).await;
        status["plan"] = plan(&driver.spec.plan);
        status["series"] = driver.series();
        status["history"] = json!(driver.history(HISTORY));
        rollouts.push(status);
    }
    Json(json!({
        "time_ms": switchyard_runtime::rollout::now_ms(),
        "rollouts": rollouts,
        "fleet": app.fleet.as_ref().map(switchyard_fleet::Fleet::summary),
        "reloads": app.reloads.entries(),
    }))
}

/// The schedule as the page draws it: each step's weight and hold, or the fixed split.
fn plan(plan: &Plan) -> Value {
    match &plan.schedule {
        Schedule::Steps(steps) => json!({
            "steps": steps.iter().map(|s| json!({
                "weight_percent": f64::from(s.weight_bp) / 100.0,
                "hold_seconds": s.hold_ms as f64 / 1000.0,
            })).collect::<Vec<_>>(),
        }),
        Schedule::Fixed(bp) => json!({ "fixed_percent": f64::from(*bp) / 100.0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the page or a script loads is one the binary serves, so none is missing offline; and
    /// no file names another host (the SVG namespace is a name, not a request).
    #[test]
    fn every_file_the_page_loads_is_served_and_none_is_elsewhere() {
        let served: Vec<&str> = ASSETS.iter().map(|(n, _, _)| *n).collect();
        let mut loaded = Vec::new();
        for (_, _, body) in ASSETS {
            for prefix in ["\"/ui/", "from \"./"] {
                for (i, _) in body.match_indices(prefix) {
                    let name = &body[i + prefix.len()..];
                    loaded.push(name[..name.find('"').unwrap_or(0)].to_owned());
                }
            }
            let body = body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{body:.80}");
        }
        assert_eq!(loaded.len(), 6, "{loaded:?}");
        for name in &loaded {
            assert!(served.contains(&name.as_str()), "{name} is loaded but not served: {served:?}");
        }
    }

    #[test]
    fn files_carry_their_type_and_a_same_origin_policy_and_unknown_ones_are_404() {
        let resp = asset("console.js");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(resp.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("connect-src 'self'"));
        assert_eq!(asset("index.html").headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(asset("../main.rs").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_plan_shows_steps_or_the_fixed_split() {
        use switchyard_core::rollout::{Analysis, Step};
        let steps = vec![Step { weight_bp: 500, hold_ms: 20_000 }, Step { weight_bp: 10_000, hold_ms: 1_000 }];
        let p = Plan { schedule: Schedule::Steps(steps), analysis: Analysis::default() };
        assert_eq!(
            plan(&p),
            json!({ "steps": [
            { "weight_percent": 5.0, "hold_seconds": 20.0 }, { "weight_percent": 100.0, "hold_seconds": 1.0 }] })
        );
        let p = Plan { schedule: Schedule::Fixed(2_500), analysis: Analysis::default() };
        assert_eq!(plan(&p), json!({ "fixed_percent": 25.0 }));
    }
}
