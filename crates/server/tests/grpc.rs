//! A rollout judged on gRPC traffic alone, through the generated Rust client: the serving core is the
//! same as HTTP's, so a failing canary is answered by control (no client error), counted as the
//! canary's failure, and rolled back; the arm rides in the response's parameters and metadata.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::rollouts::{admin, serial, start};
use std::time::{Duration, Instant};
use switchyard_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use switchyard_grpc::inference::infer_parameter::ParameterChoice;
use switchyard_grpc::inference::model_infer_request::InferInputTensor;
use switchyard_grpc::inference::{ModelInferRequest, ModelReadyRequest};

fn request(seed: u32) -> ModelInferRequest {
    let values: Vec<u8> = (0..64u32).map(|i| ((i * 7 + seed) % 13) as f32 / 13.0).flat_map(f32::to_le_bytes).collect();
    ModelInferRequest {
        model_name: "scorer".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![Bytes::from(values)],
        ..Default::default()
    }
}

fn arm(r: &switchyard_grpc::inference::ModelInferResponse) -> String {
    match r.parameters.get("x-switchyard-arm").and_then(|p| p.parameter_choice.as_ref()) {
        Some(ParameterChoice::StringParam(s)) => s.clone(),
        other => panic!("no arm: {other:?}"),
    }
}

#[test]
fn a_failing_canary_is_rolled_back_on_grpc_traffic_and_its_clients_see_no_error() {
    let _serial = serial();
    let (s, _dir) = start(
        "grpc-buggy",
        "  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n    canary: { model: mlp_buggy, version: 1, steps: [ { weight: 20, hold: 60s } ] }\n",
    );
    let url = format!("http://127.0.0.1:{}", s.grpc_port());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (sent, failed, arms) = rt.block_on(async {
        let mut c = GrpcInferenceServiceClient::connect(url).await.unwrap();
        let ready = c.model_ready(ModelReadyRequest { name: "scorer".into(), version: String::new() }).await;
        assert!(ready.unwrap().into_inner().ready);
        let (mut sent, mut failed, mut arms) = (0u64, 0u64, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && admin(&s, "scorer")["phase"] != "rolled_back" {
            for i in 0..20 {
                sent += 1;
                match c.model_infer(request(i)).await {
                    Ok(r) => {
                        let meta = r.metadata().get("x-switchyard-arm").map(|v| v.to_str().unwrap().to_owned());
                        let r = r.into_inner();
                        assert_eq!(meta.as_deref(), Some(arm(&r).as_str()), "the arm in metadata and parameters");
                        arms.push(arm(&r));
                    }
                    Err(status) => {
                        failed += 1;
                        eprintln!("{status}");
                    }
                }
            }
        }
        (sent, failed, arms)
    });
    let status = admin(&s, "scorer");
    assert_eq!(status["phase"], "rolled_back", "after {sent} gRPC requests: {status:#}");
    assert_eq!(status["reason"]["kind"], "error_rate", "{status:#}");
    assert!(status["evidence"]["canary_errors"].as_u64().unwrap() > 0, "{status:#}");
    assert_eq!(failed, 0, "clients saw errors in {sent} requests");
    assert!(arms.iter().all(|a| a == "control"), "failed canary answers are replaced by control's");
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains(r#"switchyard_grpc_requests_total{method="ModelInfer",code="OK"}"#), "{metrics}");
    // The model versions count the requests under their protocol.
    assert!(
        metrics.contains(r#"switchyard_requests_total{model="mlp",version="1",outcome="success",protocol="grpc"}"#),
        "{metrics}"
    );
    // So do the rollout's arms: the canary's failures all came over gRPC, none over HTTP.
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series}"))
    };
    let arm = |outcome: &str, protocol: &str| {
        value(&format!(
            r#"switchyard_rollout_requests_total{{endpoint="scorer",arm="canary",outcome="{outcome}",protocol="{protocol}"}}"#
        ))
    };
    assert!(arm("error", "grpc") > 0.0, "{metrics}");
    assert_eq!(arm("error", "http"), 0.0, "{metrics}");
}
