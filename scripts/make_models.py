#!/usr/bin/env python3
"""Generate Switchyard's demo and test models (deterministic, seeded) as a model repository.

    python scripts/make_models.py OUT_DIR [--test]

Models (Triton layout: OUT_DIR/<model>/<version>/model.onnx):
  mlp           input FP32 [batch, 64] -> Gemm 64x256 -> Relu -> Gemm 256x10 -> output FP32 [batch, 10];
                versions 1 and 2 (different weights); config.yaml serves both.
  multi_io      inputs a FP32 [batch, 4], b INT64 [batch, 4], flag BOOL [batch, 4];
                outputs sum = a + float(b), masked = flag ? a : 0, doubled = 2 * b
  strings       input text STRING [batch] -> Identity -> output text_out STRING [batch]
  identity_all  one Identity per V2 datatype: in_<DT> -> out_<DT>, shape [batch, 3]
With --test, also models that must fail to load (the rest of the repository keeps serving):
  broken        1/model.onnx is not an ONNX file
  bad_config    config.yaml has an unknown field
  no_versions   no numeric version directory
  on_gpu        config.yaml asks for device cuda:0 (a load error in a CPU-only build)
  mlp_buggy     mlp's signature; warms up fine on zeros but fails on real inputs (an out-of-range Gather
                index computed from the data): a canary that breaks in production
  mlp_heavy     mlp's signature with 64 -> 4096 -> 4096 -> 10 layers: a genuinely slower canary
  flaky, flaky_alone  a model failing on real inputs (a model error, 500) behind a circuit breaker (3 failures in a row, open 1 s), with mlp as
                fallback and without one
  mlp_nan       mlp's signature, NaN outputs for any negative input; its config refuses non-finite outputs
  mlp_hang      mlp's signature; hangs on real inputs (zeros are served); its workers are replaced after 1 s
  mlp_batched, multi_io_batched   mlp version 1 and multi_io with dynamic batching (2 ms queue delay)
  slow_queue1   the slow model with a queue of one: overload answers 429
  slow_priority the slow model with two client priority levels (a Triton config.pbtxt): `priority: 1`
                goes before requests without one; a batch stops at 1,024 rows
  triton_style  mlp version 1 configured only by a Triton config.pbtxt
  triton_wrong_io  mlp with a config.pbtxt naming an input the model lacks: fails to load, naming it
  slow          x FP32 [batch, 1024] -> 8 x MatMul 1024x1024 -> y: a request's compute time grows with its
                batch (about 0.1 s per 256 rows on one core), for shutdown and responsiveness tests
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8

DTYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "BF16": TensorProto.BFLOAT16, "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE, "BYTES": TensorProto.STRING,
}


def save(model, repo, name, version, config=None):
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    d = os.path.join(repo, name, str(version))
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    if config is not None:
        with open(os.path.join(repo, name, "config.yaml"), "w") as f:
            f.write(config)


def opset():
    return [helper.make_opsetid("", OPSET)]


def mlp(seed):
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((64, 256)) * np.sqrt(2 / 64)).astype(np.float32)
    b1 = (rng.standard_normal(256) * 0.01).astype(np.float32)
    w2 = (rng.standard_normal((256, 10)) * np.sqrt(2 / 256)).astype(np.float32)
    b2 = (rng.standard_normal(10) * 0.01).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["input", "W1", "B1"], ["h_pre"]),
        helper.make_node("Relu", ["h_pre"], ["h"]),
        helper.make_node("Gemm", ["h", "W2", "B2"], ["output"]),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "W1"), (b1, "B1"), (w2, "W2"), (b2, "B2")]]
    g = helper.make_graph(nodes, "mlp",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(g, opset_imports=opset(), producer_name="switchyard-make_models")


def multi_io():
    v = helper.make_tensor_value_info
    nodes = [
        helper.make_node("Cast", ["b"], ["b_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["a", "b_f"], ["sum"]),
        helper.make_node("Where", ["flag", "a", "zero"], ["masked"]),
        helper.make_node("Add", ["b", "b"], ["doubled"]),
    ]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    g = helper.make_graph(nodes, "multi_io",
                          [v("a", TensorProto.FLOAT, ["batch", 4]), v("b", TensorProto.INT64, ["batch", 4]),
                           v("flag", TensorProto.BOOL, ["batch", 4])],
                          [v("sum", TensorProto.FLOAT, ["batch", 4]), v("masked", TensorProto.FLOAT, ["batch", 4]),
                           v("doubled", TensorProto.INT64, ["batch", 4])], [zero])
    return helper.make_model(g, opset_imports=opset(), producer_name="switchyard-make_models")


def strings():
    v = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Identity", ["text"], ["text_out"])], "strings",
                          [v("text", TensorProto.STRING, ["batch"])], [v("text_out", TensorProto.STRING, ["batch"])])
    return helper.make_model(g, opset_imports=opset(), producer_name="switchyard-make_models")


def identity_all():
    v = helper.make_tensor_value_info
    nodes, ins, outs = [], [], []
    for name, ty in DTYPES.items():
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        ins.append(v(f"in_{name}", ty, ["batch", 3]))
        outs.append(v(f"out_{name}", ty, ["batch", 3]))
    g = helper.make_graph(nodes, "identity_all", ins, outs)
    return helper.make_model(g, opset_imports=opset(), producer_name="switchyard-make_models")


def mlp_buggy():
    m = mlp(1)
    g = m.graph
    g.output[0].name = "output"
    for node in g.node:
        if "output" in node.output:
            node.output[0] = "mlp_out"
    table = numpy_helper.from_array(np.zeros(10, np.float32), "table")
    k = numpy_helper.from_array(np.array(1000.0, np.float32), "k")
    g.initializer.extend([table, k])
    g.node.extend([
        helper.make_node("Abs", ["input"], ["absx"]),
        helper.make_node("ReduceMax", ["absx"], ["mx"], keepdims=0),
        helper.make_node("Mul", ["mx", "k"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "idx"], ["picked"]),
        helper.make_node("Add", ["mlp_out", "picked"], ["output"]),
    ])
    return m


def mlp_failing():
    """mlp's signature; serves inputs near zero but fails on real ones with a model error (a Reshape to a
    size the input cannot take), not an input error: a version that breaks in production."""
    m = mlp(1)
    g = m.graph
    for node in g.node:
        if "output" in node.output:
            node.output[0] = "mlp_out"
    g.initializer.extend([
        numpy_helper.from_array(np.array(1000.0, np.float32), "k"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ])
    g.node.extend([
        helper.make_node("Abs", ["input"], ["absx"]),
        helper.make_node("ReduceMax", ["absx"], ["mx"], keepdims=1),
        helper.make_node("Mul", ["mx", "k"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["idx"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["idx", "one"], ["idx1"]),
        helper.make_node("Add", ["idx1", "one"], ["cols"]),
        helper.make_node("Concat", ["minus_one", "cols"], ["shape"], axis=0),
        helper.make_node("Reshape", ["input", "shape"], ["r"]),
        helper.make_node("ReduceSum", ["r"], ["sm"], keepdims=0),
        helper.make_node("Mul", ["sm", "zero"], ["z"]),
        helper.make_node("Add", ["mlp_out", "z"], ["output"]),
    ])
    return m


def mlp_hang():
    """mlp's signature; serves inputs of zeros but spins for hours on real ones (a Loop with a trip count
    from the data): a model that hangs."""
    m = mlp(1)
    g = m.graph
    for node in g.node:
        if "output" in node.output:
            node.output[0] = "mlp_out"
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Add", ["v_in", "one_f"], ["v_out"])],
        "spin",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one_f")])
    g.initializer.extend([
        numpy_helper.from_array(np.array(1e12, np.float32), "big"),
        numpy_helper.from_array(np.array(True), "yes"),
        numpy_helper.from_array(np.array(0.0, np.float32), "v0"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ])
    g.node.extend([
        helper.make_node("Abs", ["input"], ["absx"]),
        helper.make_node("ReduceMax", ["absx"], ["mx"], keepdims=0),
        helper.make_node("Mul", ["mx", "big"], ["trips_f"]),
        helper.make_node("Cast", ["trips_f"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "yes", "v0"], ["spun"], body=body),
        helper.make_node("Mul", ["spun", "zero"], ["z"]),
        helper.make_node("Add", ["mlp_out", "z"], ["output"]),
    ])
    return m


def mlp_nan():
    """mlp's signature; outputs NaN whenever an input value is negative (log of a negative number)."""
    m = mlp(1)
    g = m.graph
    for node in g.node:
        if "output" in node.output:
            node.output[0] = "mlp_out"
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    g.initializer.extend([zero])
    g.node.extend([
        helper.make_node("ReduceMin", ["input"], ["mn"], keepdims=0),
        helper.make_node("Log", ["mn"], ["lg"]),
        helper.make_node("Mul", ["lg", "zero"], ["nan_or_zero"]),
        helper.make_node("Add", ["mlp_out", "nan_or_zero"], ["output"]),
    ])
    return m


def mlp_heavy():
    rng = np.random.default_rng(3)
    dims = [64, 4096, 4096, 10]
    nodes, inits, cur = [], [], "input"
    for i in range(3):
        w = (rng.standard_normal((dims[i], dims[i + 1])) * np.sqrt(2 / dims[i])).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        out = "output" if i == 2 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [cur, f"W{i}"], [out if i == 2 else f"p{i}"]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"p{i}"], [out]))
        cur = out
    v = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "mlp_heavy", [v("input", TensorProto.FLOAT, ["batch", 64])],
                          [v("output", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(g, opset_imports=opset(), producer_name="switchyard-make_models")


def slow():
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((1024, 1024)) / 32.0).astype(np.float32)
    nodes, cur = [], "x"
    for i in range(8):
        out = "y" if i == 7 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [cur, "W"], [out]))
        cur = out
    v = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "slow", [v("x", TensorProto.FLOAT, ["batch", 1024])],
                          [v("y", TensorProto.FLOAT, ["batch", 1024])], [numpy_helper.from_array(w, "W")])
    return helper.make_model(g, opset_imports=opset(), producer_name="switchyard-make_models")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repo = args[0] if args else "models"
    os.makedirs(repo, exist_ok=True)
    save(mlp(1), repo, "mlp", 1)
    save(mlp(2), repo, "mlp", 2, config="# Serve both versions; unversioned calls go to the latest ready one.\nversions: all\n")
    save(multi_io(), repo, "multi_io", 1)
    save(strings(), repo, "strings", 1)
    save(identity_all(), repo, "identity_all", 1)
    if "--test" in sys.argv:
        os.makedirs(os.path.join(repo, "broken", "1"), exist_ok=True)
        with open(os.path.join(repo, "broken", "1", "model.onnx"), "wb") as f:
            f.write(b"this is not an onnx model")
        save(strings(), repo, "bad_config", 1, config="instnces: 2\n")
        os.makedirs(os.path.join(repo, "no_versions", "latest"), exist_ok=True)
        save(slow(), repo, "slow", 1)
        save(strings(), repo, "on_gpu", 1, config="device: cuda:0\n")
        save(mlp_buggy(), repo, "mlp_buggy", 1)
        save(mlp_heavy(), repo, "mlp_heavy", 1)
        # Containment: a version that fails on real inputs behind a breaker, with and without a fallback,
        # and one whose NaN outputs its config refuses.
        breaker = "circuit_breaker: { consecutive_failures: 3, open_for: 1s }\n"
        save(mlp_failing(), repo, "flaky", 1, config=breaker + "fallback: { model: mlp, version: 1 }\n")
        save(mlp_failing(), repo, "flaky_alone", 1, config=breaker)
        save(mlp_nan(), repo, "mlp_nan", 1, config="reject_non_finite: true\n")
        save(mlp_hang(), repo, "mlp_hang", 1, config="hang_timeout: 1s\n")
        batching = "max_batch_size: 64\ndynamic_batching: { max_queue_delay: 2ms }\n"
        save(mlp(1), repo, "mlp_batched", 1, config=batching)
        save(multi_io(), repo, "multi_io_batched", 1, config=batching)
        save(slow(), repo, "slow_queue1", 1, config="# One request computing, one waiting; the rest get 429.\nqueue_capacity: 1\n")
        save(slow(), repo, "slow_priority", 1)
        with open(os.path.join(repo, "slow_priority", "config.pbtxt"), "w") as f:
            f.write('max_batch_size: 4096\n'
                    'dynamic_batching { preferred_batch_size: [ 1024 ] priority_levels: 2 default_priority_level: 2 }\n')
        save(mlp(1), repo, "triton_style", 1)
        with open(os.path.join(repo, "triton_style", "config.pbtxt"), "w") as f:
            f.write('name: "triton_style"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
                    'input [ { name: "input" data_type: TYPE_FP32 dims: [ 64 ] } ]\n'
                    'output [ { name: "output" data_type: TYPE_FP32 dims: [ 10 ] } ]\n'
                    'instance_group [ { count: 2 kind: KIND_CPU } ]\n'
                    'dynamic_batching { max_queue_delay_microseconds: 100 }\n'
                    'optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ] } }\n')
        save(mlp(1), repo, "triton_wrong_io", 1)
        with open(os.path.join(repo, "triton_wrong_io", "config.pbtxt"), "w") as f:
            f.write('max_batch_size: 8\ninput [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 64 ] } ]\n')
    print(f"models written to {repo}")


if __name__ == "__main__":
    main()
