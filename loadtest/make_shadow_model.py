#!/usr/bin/env python3
"""Writes the shadow model of loadtest/shadow.sh: an MLP 64->2048->2048->10 (Gemm+Relu, seeded), with the
signature of the shared harness's mlp_small (input 'input' FP32 [-1, 64], output 'output' FP32 [-1, 10]),
so it can shadow mlp_small; about 4.3 M multiply-adds per row against mlp_small's 84 k.

Usage: make_shadow_model.py OUT.onnx [DIMS]     DIMS default 64,2048,2048,10. Needs onnx and numpy.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20261130
OPSET = 17
IR_VERSION = 8  # as the harness's models: loadable by any onnxruntime >= 1.10


def make_mlp(dims, seed):
    rng = np.random.default_rng(seed)
    inits, nodes, cur = [], [], "input"
    for i, (fan_in, fan_out) in enumerate(zip(dims, dims[1:])):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal((fan_out,)) * 0.01).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        last = i == len(dims) - 2
        out = "output" if last else f"h{i}_pre"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], name=f"gemm{i}"))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"h{i}"], name=f"relu{i}"))
            cur = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "mlp_shadow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", dims[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", dims[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="switchyard-shadow-bench", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    dims = [int(d) for d in (sys.argv[2] if len(sys.argv) > 2 else "64,2048,2048,10").split(",")]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    model = make_mlp(dims, SEED)
    onnx.save(model, out)
    macs = sum(a * b for a, b in zip(dims, dims[1:]))
    print(f"{out}: {'->'.join(map(str, dims))}, {macs / 1e6:.2f} M multiply-adds per row")


if __name__ == "__main__":
    main()
