//! The gRPC side: `ModelInfer` with raw input contents over `--connections` HTTP/2 connections, each
//! slot on one of them in turn.

use crate::{Args, Input, Tally, Window};
use anyhow::{Context, Result, bail};
use std::time::Instant;
use switchyard_grpc::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use switchyard_grpc::inference::{ModelInferRequest, model_infer_request::InferInputTensor};
use tonic::transport::{Channel, Endpoint};

pub(crate) async fn run(args: &Args, addr: &str, input: &Input, window: Window) -> Result<Vec<Tally>> {
    let connections = args.connections.unwrap_or(args.concurrency.div_ceil(4)).clamp(1, args.concurrency);
    let mut channels: Vec<Channel> = Vec::with_capacity(connections);
    for _ in 0..connections {
        // One `Endpoint::connect` per connection: tonic opens one HTTP/2 connection per channel.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
        channels.push(endpoint.connect().await.with_context(|| format!("connect to {addr}"))?);
    }
    let request = ModelInferRequest {
        model_name: args.model.clone(),
        inputs: vec![InferInputTensor {
            name: input.name.clone(),
            datatype: "FP32".into(),
            shape: input.shape.clone(),
            ..Default::default()
        }],
        raw_input_contents: vec![input.data.clone()],
        ..Default::default()
    };
    let slots: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let mut client = GrpcInferenceServiceClient::new(channels[i % connections].clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX);
            let request = request.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < window.end {
                    let sent = Instant::now();
                    let outcome = match client.model_infer(request.clone()).await {
                        Ok(r) if r.get_ref().raw_output_contents.is_empty() => {
                            Err(anyhow::anyhow!("an answer without raw_output_contents"))
                        }
                        Ok(_) => Ok(()),
                        Err(status) => Err(anyhow::anyhow!("{:?}: {}", status.code(), status.message())),
                    };
                    tally.record(&window, sent, outcome);
                }
                tally
            })
        })
        .collect();
    let mut tallies = Vec::with_capacity(slots.len());
    for slot in slots {
        tallies.push(slot.await?);
    }
    if tallies.iter().all(|t| t.latencies_us.is_empty() && t.errors == 0) {
        bail!("no answer arrived in the measured window");
    }
    Ok(tallies)
}
