//! The catalog (`crate::catalog`: metadata, config, statistics, repository index) as protobuf messages.

use crate::catalog::{ConfigTensor, ConfigView, IndexRow, StatsRow};
use switchyard_grpc::inference as pb;
use switchyard_protocol::{ModelMetadata, TensorMetadata};

pub(super) fn metadata(m: ModelMetadata) -> pb::ModelMetadataResponse {
    let tensor = |t: TensorMetadata| pb::model_metadata_response::TensorMetadata {
        name: t.name,
        datatype: t.datatype.as_str().to_owned(),
        shape: t.shape,
    };
    pb::ModelMetadataResponse {
        name: m.name,
        versions: m.versions,
        platform: m.platform.to_owned(),
        inputs: m.inputs.into_iter().map(tensor).collect(),
        outputs: m.outputs.into_iter().map(tensor).collect(),
    }
}

pub(super) fn config(c: ConfigView) -> pb::ModelConfigResponse {
    let data_type =
        |t: &ConfigTensor| pb::DataType::from_str_name(&t.data_type).unwrap_or(pb::DataType::TypeInvalid) as i32;
    let config = pb::ModelConfig {
        name: c.name,
        platform: c.platform,
        backend: "onnxruntime".into(),
        max_batch_size: Some(c.max_batch_size as i32),
        input: c
            .input
            .iter()
            .map(|t| pb::ModelInput {
                name: t.name.clone(),
                data_type: data_type(t),
                dims: t.dims.clone(),
                ..Default::default()
            })
            .collect(),
        output: c
            .output
            .iter()
            .map(|t| pb::ModelOutput {
                name: t.name.clone(),
                data_type: data_type(t),
                dims: t.dims.clone(),
                ..Default::default()
            })
            .collect(),
        instance_group: vec![pb::ModelInstanceGroup {
            count: c.instances as i32,
            kind: if c.gpu { pb::model_instance_group::Kind::Gpu } else { pb::model_instance_group::Kind::Cpu } as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    pb::ModelConfigResponse { config: Some(config) }
}

pub(super) fn stats(rows: Vec<StatsRow>) -> pb::ModelStatisticsResponse {
    let d = |(count, ns): (u64, u64)| Some(pb::StatisticDuration { count, ns });
    let model_stats = rows
        .into_iter()
        .map(|r| {
            let s = r.stats;
            pb::ModelStatistics {
                name: r.name,
                version: r.version.to_string(),
                last_inference: s.last_inference_ms,
                inference_count: s.inference_count,
                execution_count: s.execution_count,
                inference_stats: Some(pb::InferStatistics {
                    success: d(s.success),
                    fail: d(s.fail),
                    queue: d(s.queue),
                    compute_input: d((s.compute.0, 0)),
                    compute_infer: d(s.compute),
                    compute_output: d((s.compute.0, 0)),
                    cache_hit: d((0, 0)),
                    cache_miss: d((0, 0)),
                }),
                ..Default::default()
            }
        })
        .collect();
    pb::ModelStatisticsResponse { model_stats }
}

pub(super) fn index(rows: Vec<IndexRow>, ready_only: bool) -> pb::RepositoryIndexResponse {
    let models = rows
        .into_iter()
        .filter(|r| !ready_only || r.state == "READY")
        .map(|r| pb::repository_index_response::ModelIndex {
            name: r.name,
            version: r.version.unwrap_or_default(),
            state: r.state.to_owned(),
            reason: r.reason,
        })
        .collect();
    pb::RepositoryIndexResponse { models }
}
