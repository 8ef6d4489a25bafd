#!/usr/bin/env python3
# Writes the committed seed corpus under seeds/<target>/ (small valid requests for the fuzz targets'
# model signatures in src/lib.rs, and the edge cases a hostile client would try first) and the libFuzzer
# dictionaries under dicts/ (the protocol's keys and datatype names), so libFuzzer starts from meaningful
# inputs instead of from nothing. Run it again after changing it; crash inputs found by fuzzing are added
# by hand as seeds/<target>/crash-* and are not written here.
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def req(inputs, **extra):
    return json.dumps({**extra, "inputs": inputs}, ensure_ascii=False, separators=(",", ":"))


def inp(name, dt, shape, data=None, size=None, **params):
    x = {"name": name, "datatype": dt, "shape": shape}
    if size is not None:
        params["binary_data_size"] = size
    if params:
        x["parameters"] = params
    if data is not None:
        x["data"] = data
    return x


def framed(strings):
    out = b""
    for s in strings:
        b = s.encode() if isinstance(s, str) else s
        out += struct.pack("<I", len(b)) + b
    return out


# The every-datatype model: name, datatype, a shape that fits its signature, flat data, binary packing.
EVERY = [
    ("bool", "BOOL", [3], [True, False, True], lambda v: bytes(int(x) for x in v)),
    ("uint8", "UINT8", [1, 2], [0, 255], lambda v: struct.pack("<2B", *v)),
    ("uint16", "UINT16", [2, 1, 1], [0, 65535], lambda v: struct.pack("<2H", *v)),
    ("uint32", "UINT32", [], [4294967295], lambda v: struct.pack("<I", *v)),
    ("uint64", "UINT64", [1, 2], [0, 18446744073709551615], lambda v: struct.pack("<2Q", *v)),
    ("int8", "INT8", [3], [-128, 0, 127], lambda v: struct.pack("<3b", *v)),
    ("int16", "INT16", [2], [-32768, 32767], lambda v: struct.pack("<2h", *v)),
    ("int32", "INT32", [2, 2], [-2147483648, 0, 1, 2147483647], lambda v: struct.pack("<4i", *v)),
    ("int64", "INT64", [2, 1, 1], [-9223372036854775808, 9223372036854775807], lambda v: struct.pack("<2q", *v)),
    ("fp16", "FP16", [], [65504.0], lambda v: struct.pack("<e", *v)),
    ("bf16", "BF16", [2, 2], [1.0, -2.0, 0.5, 0.0], lambda v: b"".join(struct.pack("<f", x)[2:] for x in v)),
    ("fp32", "FP32", [3], [1.5, -0.0, 3.4028234663852886e38], lambda v: struct.pack("<3f", *v)),
    ("fp64", "FP64", [2, 1, 1], [1e-308, 0.9577587029597641], lambda v: struct.pack("<2d", *v)),
    ("bytes", "BYTES", [1, 2], ["héllo", ""], framed),
]


def v2_json():
    t = "v2_json"
    write(t, "mlp_flat.json", req([inp("input", "FP32", [2, 2], [1, 2, 3, 4])]))
    write(t, "mlp_nested_id_outputs.json", req(
        [inp("input", "FP32", [2, 2], [[1.5, -2e-3], [3E+2, 4]])], id="7",
        parameters={"timeout": 500, "binary_data_output": True},
        outputs=[{"name": "aux", "parameters": {"binary_data": False}}, {"name": "output"}]))
    write(t, "every_datatype.json", req([inp(n, dt, s, d) for n, dt, s, d, _ in EVERY]))
    write(t, "text_strings.json", req([inp("text", "BYTES", [3], ["héllo", "\u0000\"\\", "😀"])]))
    write(t, "tokens_nested.json", req([inp("ids", "INT64", [2, 3], [[101, 2023, 102], [101, 0, 102]])]))
    write(t, "zero_sized.json", req([inp("fp32", "FP32", [0, 3], []), inp("bytes", "BYTES", [0, 2], [[]] * 0)]))
    write(t, "spaced.json", '{ "inputs" : [ { "name" : "input" , "shape" : [ 1 , 2 ] ,\n'
          '"datatype" : "FP32" , "data" : [ 1 , 2 ] } ] }\n')
    # Each should be refused, naming the field.
    write(t, "err_wrong_datatype.json", req([inp("input", "FP64", [1, 2], [1, 2])]))
    write(t, "err_shape_mismatch.json", req([inp("input", "FP32", [2, 2], [1, 2, 3])]))
    write(t, "err_overflow_dims.json", req([inp("input", "FP32", [9223372036854775807, 4], [1, 2])]))
    write(t, "err_negative_dim.json", req([inp("input", "FP32", [-2, 2], [1, 2])]))
    write(t, "err_duplicate.json", req([inp("input", "FP32", [1, 2], [1, 2])] * 2))
    write(t, "err_out_of_range.json", req([inp("int8", "INT8", [3], [-129, 0, 1]), inp("fp16", "FP16", [], [70000])]))
    write(t, "err_non_finite.json", '{"inputs":[{"name":"fp32","shape":[3],"datatype":"FP32","data":[NaN,Infinity,null]}]}')
    write(t, "err_negative_zero_int.json", req([inp("int8", "INT8", [3], [0, 0, 0])]).replace("[0,0,0]", "[-0,0,1]"))
    write(t, "err_deep_nesting.json", req([inp("input", "FP32", [1, 2], None)])[:-3] + ',"data":' + "[" * 200 + "]" * 200 + "}]}")
    write(t, "err_output_params.json", req(
        [inp("input", "FP32", [1, 2], [1, 2])],
        outputs=[{"name": "output", "parameters": {"classification": 2}}, {"name": "nope"}]))
    write(t, "err_shared_memory.json", req([inp("input", "FP32", [1, 2], [1, 2], shared_memory_region="r")]))


def binary_framing():
    t = "binary_framing"

    def framed_req(inputs, tail, **extra):
        head = req(inputs, **extra).encode()
        return str(len(head)).encode() + b"\n" + head + tail

    f = struct.pack("<2f", 1.0, 2.0)
    write(t, "mlp_binary.bin", framed_req([inp("input", "FP32", [1, 2], size=8)], f))
    tail = b"".join(pack(d) for _, _, _, d, pack in EVERY)
    write(t, "every_datatype_binary.bin",
          framed_req([inp(n, dt, s, size=len(pack(d))) for n, dt, s, d, pack in EVERY], tail,
                     parameters={"binary_data_output": True}))
    mixed = [inp("int32", "INT32", [2, 2], [1, 2, 3, 4]), inp("bytes", "BYTES", [1, 2], size=len(framed(["a", "bc"])))]
    write(t, "mixed_json_and_binary.bin", framed_req(mixed, framed(["a", "bc"])))
    write(t, "raw_fp32.bin", b"0\n" + struct.pack("<4f", 1, 2, 3, 4))
    write(t, "raw_bytes.bin", b"0\n" + framed(["héllo", "", "x"]))
    write(t, "no_header_json.bin", req([inp("input", "FP32", [1, 2], [1, 2])]))
    # Each should be refused.
    head = req([inp("input", "FP32", [1, 2], size=8)]).encode()
    write(t, "err_length_past_body.bin", str(len(head) + 100).encode() + b"\n" + head + f)
    write(t, "err_length_mid_json.bin", str(len(head) // 2).encode() + b"\n" + head + f)
    write(t, "err_unclaimed_bytes.bin", framed_req([inp("input", "FP32", [1, 2], size=8)], f + b"\0"))
    write(t, "err_size_past_data.bin", framed_req([inp("input", "FP32", [1, 2], size=8)], f[:7]))
    write(t, "err_size_huge.bin", framed_req([inp("input", "FP32", [1, 2], size=18446744073709551615)], f))
    write(t, "err_data_and_size.bin", framed_req([inp("input", "FP32", [1, 2], [1, 2], size=8)], f))
    write(t, "err_bool_byte.bin", framed_req([inp("bool", "BOOL", [3], size=3)], b"\x00\x01\x02"))
    write(t, "err_bytes_bad_utf8.bin", framed_req([inp("text", "BYTES", [1], size=6)], b"\x02\0\0\0\xc3\x28"))
    write(t, "err_raw_ragged.bin", b"0\n" + struct.pack("<3f", 1, 2, 3)[:11])


def bytes_tensor():
    t = "bytes_tensor"
    write(t, "empty.bin", b"")
    write(t, "one.bin", framed(["hello"]))
    write(t, "with_empty.bin", framed(["a", "", "héllo", "😀"]))
    write(t, "pair.bin", framed(["question", "answer"]))
    write(t, "err_prefix_cut.bin", framed(["a"]) + b"\x01\0")
    write(t, "err_claims_more.bin", b"\x09\0\0\0abc")
    write(t, "err_huge_claim.bin", b"\xff\xff\xff\xff" + b"a" * 8)
    write(t, "err_bad_utf8.bin", framed([b"\xc3\x28", b"ok"]))
    write(t, "json_strings.json", '["a","b c","héllo"]')
    write(t, "json_empty.json", "[]")
    write(t, "json_escapes.json", r'["\u00e9\n\"\\", "\ud83d\ude00", "\u0000"]')
    write(t, "err_json_lone_surrogate.json", r'["\ud800"]')
    write(t, "err_json_nested.json", '[["a"],["b"]]')
    write(t, "err_json_not_strings.json", '["a", 1, null, true]')


def dict_entry(token):
    """A dictionary line for `token` (bytes, or str written as UTF-8): printable ASCII as is, everything
    else (and quote, backslash) as \\xNN."""
    raw = token if isinstance(token, bytes) else token.encode()
    body = "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in raw)
    return f'"{body}"\n'


def dicts():
    keys = ["inputs", "outputs", "name", "shape", "datatype", "data", "parameters", "id", "binary_data_size",
            "binary_data", "binary_data_output", "timeout", "shared_memory_region", "classification"]
    dts = [dt for _, dt, _, _, _ in EVERY]
    names = [n for n, _, _, _, _ in EVERY] + ["input", "output", "aux", "text", "ids", "embedding", "score",
                                             "logits", "out_fp32", "out_bytes", "out_bool"]
    json_tokens = ["{", "}", "[", "]", ":", ",", "true", "false", "null", "-1", "-0", "0.0", "1e308", "1e-45",
                   "65504", "18446744073709551615", "9223372036854775807", "-9223372036854775808", "NaN",
                   "\\u0000", "\\ud83d\\ude00", "\\ud800"]
    common = [f'"{k}"' for k in keys + dts + names] + json_tokens
    binary = ["\n", "0\n", b"\0\0\0\0", b"\x01\0\0\0", b"\xff\xff\xff\xff", b"\0\0\x80\x7f", b"\0\0\xc0\x7f"]
    strings = [b"\0\0\0\0", b"\x01\0\0\0", b"\x04\0\0\0", b"\xff\xff\xff\xff", "é", "😀", b"\xed\xa0\x80",
               b"\xc3\x28", "[", "]", ",", '"', "\\u", "\\ud83d\\ude00", "\\ud800", "\\\\", "\\n", "null"]
    d = os.path.join(HERE, "dicts")
    os.makedirs(d, exist_ok=True)
    for target, tokens in [("v2_json", common), ("binary_framing", common + binary), ("bytes_tensor", strings)]:
        with open(os.path.join(d, f"{target}.dict"), "w") as f:
            f.write(f"# libFuzzer dictionary for {target}, written by make_seeds.py.\n")
            f.writelines(dict_entry(t) for t in tokens)


if __name__ == "__main__":
    v2_json()
    binary_framing()
    bytes_tensor()
    dicts()
    sys.exit(0)
