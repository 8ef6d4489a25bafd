//! config.pbtxt reads: the fields Switchyard maps, Triton's text-format syntax (escapes, `<...>`, lists,
//! comments), unknown fields refused by name, and real configs from Triton's documentation.

use super::*;
use switchyard_backend::Signature;
use switchyard_protocol::DataType;

fn err(text: &str) -> String {
    model_config(text).unwrap_err().to_string()
}

#[test]
fn the_bench_harness_config_reads() {
    let (c, ignored) = model_config(
        "name: \"mlp_small\"\nbackend: \"onnxruntime\"\nmax_batch_size: 64\ninput [ { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] } ]\n\
         output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 10 ] } ]\ninstance_group [ { count: 2 kind: KIND_CPU } ]\n",
    )
    .unwrap();
    assert_eq!((c.max_batch_size, c.instances, c.device), (Some(64), 2, Device::Cpu));
    assert!(ignored.is_empty());
    assert_eq!(c.declared.len(), 2);
    assert_eq!(
        c.declared[0],
        Declared { kind: "input", name: "input".into(), datatype: Some(DataType::Fp32), dims: Some(vec![64]) }
    );
}

#[test]
fn declared_tensors_are_checked_against_the_model() {
    use switchyard_protocol::TensorSpec;
    let sig = Signature {
        platform: "onnxruntime_onnx",
        inputs: vec![TensorSpec::new("input", DataType::Fp32, vec![-1, 64])],
        outputs: vec![TensorSpec::new("output", DataType::Fp32, vec![-1, 10])],
    };
    let check = |pbtxt: &str, batched: bool| {
        check_declared(&model_config(pbtxt).unwrap().0.declared, &sig, batched).map_err(|e| e.to_string())
    };
    check("input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 64 ] } ]", true).unwrap();
    check("input [ { name: \"input\" dims: [ -1, 64 ] } ]", false).unwrap();
    check("output { name: \"output\" data_type: TYPE_FP32 dims: [ -1 ] }", true).unwrap();
    let err = check("input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 64 ] } ]", true).unwrap_err();
    assert!(err.contains("input 'x' is not an input of the model (inputs: input)"), "{err}");
    let err = check("input [ { name: \"input\" data_type: TYPE_INT64 dims: [ 64 ] } ]", true).unwrap_err();
    assert!(err.contains("data_type INT64 but the model's is FP32"), "{err}");
    let err = check("output [ { name: \"output\" dims: [ 12 ] } ]", true).unwrap_err();
    assert!(err.contains("dims [12] but the model's are [10]"), "{err}");
    let err = check("input [ { name: \"input\" dims: [ 64 ] } ]", false).unwrap_err();
    assert!(err.contains("dims [64] but the model's are [-1, 64]"), "{err}");
    assert!(model_config("input [ { data_type: TYPE_FP32 } ]").unwrap_err().to_string().contains("input: no name"));
    assert!(
        model_config("input [ { name: \"a\" data_type: TYPE_QUAT } ]").unwrap_err().to_string().contains("TYPE_QUAT")
    );
    let (s, _) = model_config("input [ { name: \"t\" data_type: TYPE_STRING dims: [ 1 ] } ]").unwrap();
    assert_eq!(s.declared[0].datatype, Some(DataType::Bytes));
}

#[test]
fn batching_versions_gpus_and_ignored_fields() {
    let (c, ignored) = model_config(
        "# a comment\nmax_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 100 preferred_batch_size: [ 4, 8 ] }\n\
         version_policy: { latest: { num_versions: 2 } }\ninstance_group [ { count: 1, kind: KIND_GPU, gpus: [ 1 ] } ]\n\
         optimization { cuda { graphs: true } }\nmodel_warmup [ { name: \"w\" } ]\n",
    )
    .unwrap();
    let b = c.dynamic_batching.unwrap();
    assert_eq!((b.max_queue_delay.unwrap().0, b.preferred_batch_size), (Duration::from_micros(100), vec![4, 8]));
    assert_eq!(c.versions, VersionPolicy::Latest { latest: 2 });
    assert_eq!(c.device, Device::Cuda(1));
    assert_eq!(ignored, ["optimization", "model_warmup"]);
    let (s, _) = model_config("version_policy: { specific: { versions: [1, 3] } }").unwrap();
    assert_eq!(s.versions, VersionPolicy::Specific(vec![1, 3]));
    assert!(model_config("max_batch_size: lots").unwrap_err().to_string().contains("max_batch_size"));
    assert!(model_config("input [ { name: \"x\"").is_err());
    // dynamic_batching and sequence_batching are one oneof in Triton's schema: Triton refuses both.
    let e = err("dynamic_batching { }\nsequence_batching { }");
    assert!(e.contains("line 2") && e.contains("scheduling_choice"), "{e}");
}

#[test]
fn max_batch_size_zero_is_told_from_none_and_negatives_are_refused() {
    assert_eq!(model_config("max_batch_size: 0").unwrap().0.max_batch_size, Some(0));
    assert_eq!(model_config("name: \"m\"").unwrap().0.max_batch_size, None);
    let e = model_config("max_batch_size: -1").unwrap_err();
    assert_eq!(e, PbtxtError::invalid("max_batch_size", "must not be negative, found -1"));
    assert!(err("instance_group [ { count: -2 } ]").contains("instance_group.count: must not be negative"));
    assert!(err("instance_group [ { kind: KIND_GPU gpus: [ -1 ] } ]").contains("instance_group.gpus"));
    assert!(err("max_batch_size: 4294967296").contains("out of range"));
}

#[test]
fn strings_take_escapes_quotes_and_concatenation() {
    let (c, _) = model_config(
        r#"input [ { name: "a\"b\\c\t\x41\101\u00e9" }, { name: 'single "quoted"' }, { name: "con" 'cat' "enated" } ]"#,
    )
    .unwrap();
    let names: Vec<_> = c.declared.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a\"b\\c\tAAé", "single \"quoted\"", "concatenated"]);
    assert!(err(r#"name: "bad \q escape""#).contains("line 1"));
    assert!(err("name: \"unterminated\nmax_batch_size: 1").contains("line 1"));
}

#[test]
fn angle_brackets_separators_and_comments_read_as_braces() {
    let (c, ignored) = model_config(
        "max_batch_size: 4; # trailing comment\ndynamic_batching < max_queue_delay_microseconds: 7, >\n\
         input < name: \"x\" dims: 3 dims: 4 >\ninput: { name: \"y\"; dims: [] }\n",
    )
    .unwrap();
    assert_eq!(c.max_batch_size, Some(4));
    assert_eq!(c.dynamic_batching.unwrap().max_queue_delay.unwrap().0, Duration::from_micros(7));
    assert_eq!(c.declared[0].dims, Some(vec![3, 4]));
    assert_eq!((c.declared[1].name.as_str(), &c.declared[1].dims), ("y", &None));
    assert!(ignored.is_empty());
}

#[test]
fn lists_take_brackets_with_or_without_a_colon_for_messages() {
    for text in [
        "input [ { name: \"a\" }, { name: \"b\" } ]",
        "input: [ { name: \"a\" }, { name: \"b\" } ]",
        "input { name: \"a\" } input { name: \"b\" }",
        "input [ < name: \"a\" > ] input [ ] input [ { name: \"b\" } ]",
        "input # a comment between\n [ { name: \"a\" }, { name: \"b\" } ]",
    ] {
        let (c, _) = model_config(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.declared.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a", "b"], "{text}");
    }
    let (c, _) = model_config("input [ { name: \"a\" dims: [ 1, -1 ] dims: 2 } ]").unwrap();
    assert_eq!(c.declared[0].dims, Some(vec![1, -1, 2]));
    // As in Triton, a list of numbers needs its colon.
    let e = err("input [ { name: \"a\" dims [ 1 ] } ]");
    assert!(e.contains("line 1, column 26") && e.contains("expected ':'"), "{e}");
    assert!(err("input [ { name: \"a\" }, ]").contains("line 1"));
}

#[test]
fn unknown_fields_are_refused_by_name_and_position() {
    let e = err("name: \"m\"\nmax_batch_size: 8\n  max_batchsize: 4\n");
    assert!(e.contains("line 3, column 3") && e.contains("'max_batchsize'") && e.contains("ModelConfig"), "{e}");
    let e = err("input [ {\n  name: \"x\"\n  shape: [ 1 ]\n} ]");
    assert!(e.contains("line 3, column 3") && e.contains("'shape'") && e.contains("inference.ModelInput"), "{e}");
    let e = err("unknown_list [ { a: 1 } ]");
    assert!(e.contains("'unknown_list'") && e.contains("line 1, column 1"), "{e}");
    let e = err("instance_group [ { kind: KIND_TPU } ]");
    assert!(e.contains("KIND_TPU"), "{e}");
    assert!(matches!(model_config("foo: 1").unwrap_err(), PbtxtError::Syntax { line: 1, column: 1, .. }));
}

#[test]
fn version_policy_of_each_kind() {
    let policy = |text: &str| model_config(text).map(|(c, _)| c.versions);
    let latest = policy("version_policy { latest { num_versions: 3 } }").unwrap();
    assert_eq!(latest, VersionPolicy::Latest { latest: 3 });
    let all = policy("version_policy: { all: { } }").unwrap();
    assert_eq!(all, serde_norway::from_str::<VersionPolicy>("all").unwrap());
    assert_eq!(policy("version_policy < all < > >").unwrap(), all);
    let specific = policy("version_policy { specific { versions: 1 versions: [ 4, 2 ] } }").unwrap();
    assert_eq!(specific, VersionPolicy::Specific(vec![1, 4, 2]));
    assert_eq!(policy("version_policy { }").unwrap(), VersionPolicy::default());
    assert!(policy("version_policy { latest { } }").unwrap_err().to_string().contains("num_versions"));
    assert!(policy("version_policy { specific { versions: -1 } }").unwrap_err().to_string().contains("versions"));
    let both = policy("version_policy { all { } latest { num_versions: 1 } }").unwrap_err().to_string();
    assert!(both.contains("policy_choice"), "{both}");
}

#[test]
fn triton_documentation_configs_read() {
    // densenet_onnx, from Triton's quickstart model repository.
    let (c, ignored) = model_config(
        r#"name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size : 0
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
    reshape { shape: [ 1, 3, 224, 224 ] }
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    reshape { shape: [ 1, 1000, 1, 1 ] }
    label_filename: "densenet_labels.txt"
  }
]
"#,
    )
    .unwrap();
    assert_eq!(c.max_batch_size, Some(0));
    assert_eq!(c.declared[0].dims, Some(vec![3, 224, 224]));
    assert_eq!((c.declared[1].name.as_str(), c.declared[1].datatype), ("fc6_1", Some(DataType::Fp32)));
    assert_eq!(ignored, ["input.format", "input.reshape", "output.label_filename", "output.reshape"]);

    // simple, from Triton's examples (TensorFlow GraphDef, two inputs and outputs).
    let (c, ignored) = model_config(
        r#"name: "simple"
platform: "tensorflow_graphdef"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
"#,
    )
    .unwrap();
    assert_eq!((c.max_batch_size, c.declared.len(), c.declared[3].name.as_str()), (Some(8), 4, "OUTPUT1"));
    assert!(ignored.is_empty());
}

#[test]
fn other_triton_fields_parse_and_are_reported_as_ignored() {
    let (c, ignored) = model_config(
        r#"backend: "python"
max_batch_size: 16
input [ { name: "IN" data_type: TYPE_BF16 dims: [ -1 ] optional: true allow_ragged_batch: true } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 500
  preserve_ordering: true
  priority_levels: 2
  default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 }
  priority_queue_policy { key: 1 value: { max_queue_size: 4 } }
}
instance_group [ { name: "g" count: 2 kind: KIND_GPU gpus: [ 0, 1 ] profile: [ "0" ] }, { count: 1 kind: KIND_CPU } ]
parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }
parameters [ { key: "x" value: < string_value: "y" > } ]
model_warmup [ { name: "w" batch_size: 1 inputs { key: "IN" value: { data_type: TYPE_BF16 dims: [ 4 ] zero_data: true } } } ]
model_transaction_policy { decoupled: True }
response_cache { enable: 1 }
optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }
"#,
    )
    .unwrap();
    assert_eq!((c.instances, c.device, c.declared[0].datatype), (3, Device::Cuda(0), Some(DataType::Bf16)));
    let batching = c.dynamic_batching.unwrap();
    assert_eq!((batching.preferred_batch_size, batching.priority_levels), (vec![4, 8], 2));
    assert_eq!(batching.default_priority_level, None);
    assert_eq!(
        ignored,
        [
            "input.allow_ragged_batch",
            "input.optional",
            "instance_group.profile",
            "dynamic_batching.preserve_ordering",
            "dynamic_batching.default_queue_policy",
            "dynamic_batching.priority_queue_policy",
            "optimization",
            "parameters",
            "model_warmup",
            "model_transaction_policy",
            "response_cache",
        ]
    );
    let (_, ignored) = model_config(
        r#"platform: "ensemble"
ensemble_scheduling { step [ { model_name: "pre" model_version: -1 input_map { key: "a" value: "b" } output_map { key: "c" value: "d" } } ] }
"#,
    )
    .unwrap();
    assert_eq!(ignored, ["ensemble_scheduling"]);
}
