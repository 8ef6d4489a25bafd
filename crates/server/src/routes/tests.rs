//! Router behaviour without sockets or models: `app(state)` driven with `oneshot`.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn state() -> AppState {
    use switchyard_runtime::Registry;
    let registry = Arc::new(Registry::default());
    registry.declare("loading", &[1], None);
    registry.declare("bad", &[], Some("config.yaml: unknown field `x`".into()));
    let endpoints = Endpoints::new(registry, Rollouts::new(), std::time::Duration::from_secs(1));
    AppState::new(
        Arc::new(arc_swap::ArcSwap::from_pointee(endpoints)),
        Arc::default(),
        None,
        Settings {
            limits: crate::limits::RequestLimits { max_request_bytes: 1000, ..Default::default() },
            ..Default::default()
        },
        None,
    )
}

async fn call(method: &str, uri: &str, body: &'static str) -> (StatusCode, String) {
    let req = Request::builder().method(method).uri(uri).body(Body::from(body)).unwrap();
    let resp = app(state()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let (status, body) = call("GET", "/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains(r#""error":"no route for /nope""#), "{body}");
    let (status, body) = call("DELETE", "/v2/models/m/infer", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(body.contains("DELETE is not allowed"), "{body}");
}

#[tokio::test]
async fn readiness_waits_for_loading_models_and_names_them() {
    assert_eq!(call("GET", "/health", "").await.0, StatusCode::OK);
    let (status, body) = call("GET", "/ready", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("'loading' version 1 is still loading") && body.contains("unknown field"), "{body}");
    let (status, body) = call("GET", "/v2/models/loading/ready", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("still loading"), "{body}");
    assert_eq!(call("GET", "/v2/models/missing/ready", "").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn infer_resolves_the_model_before_reading_the_body() {
    assert_eq!(call("POST", "/v2/models/missing/infer", "{").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call("POST", "/v2/models/loading/infer", "{").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = call("POST", "/v2/models/bad/versions/1/infer", "{").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call("GET", "/v2/models/bad", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("unknown field"), "{body}");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_json_and_is_counted() {
    async fn boom() -> &'static str {
        panic!("secret detail")
    }
    let router: Router = harden(Router::new().route("/boom", get(boom)));
    let req = Request::builder().uri("/boom").body(Body::empty()).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&bytes);
    assert!(body.contains(r#""error":"internal error while handling the request (logged)""#), "{body}");
    assert!(!body.contains("secret detail"), "the panic message stays in the log: {body}");
}
