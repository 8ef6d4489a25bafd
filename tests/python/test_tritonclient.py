"""Drives switchyard with the official tritonclient[http] package, unchanged, and compares every answer
with ONNX Runtime's Python results for the same inputs."""
import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(url=server.url)
    yield c
    c.close()


def reference(test_repo, model, version, feeds):
    sess = ort.InferenceSession(str(test_repo / model / str(version) / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def make_input(name, array, datatype, binary):
    i = httpclient.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array, binary_data=binary)
    return i


def test_server_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "switchyard" and "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("broken")
    assert not client.is_model_ready("nope")
    m = client.get_model_metadata("mlp")
    assert m["versions"] == ["1", "2"]
    assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert client.get_model_config("mlp")["max_batch_size"] == 1024
    index = {(m["name"], m.get("version")): m for m in client.get_model_repository_index()}
    assert index[("mlp", "2")]["state"] == "READY"
    assert index[("broken", "1")]["state"] == "UNAVAILABLE" and index[("broken", "1")]["reason"]
    assert index[("bad_config", None)]["state"] == "UNAVAILABLE"


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("version", ["1", "2", ""])
@pytest.mark.parametrize("rows", [1, 7])
def test_mlp_matches_onnxruntime(client, test_repo, binary, version, rows):
    x = np.random.default_rng(rows).standard_normal((rows, 64)).astype(np.float32)
    out = httpclient.InferRequestedOutput("output", binary_data=binary)
    r = client.infer("mlp", [make_input("input", x, "FP32", binary)], model_version=version, outputs=[out], request_id="abc")
    resp = r.get_response()
    assert resp["model_version"] == (version or "2")
    assert resp["id"] == "abc"
    want = reference(test_repo, "mlp", version or 2, {"input": x})["output"]
    got = r.as_numpy("output")
    assert got.dtype == np.float32 and got.shape == (rows, 10)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def sample(dt, rng):
    shape = (2, 3)
    if dt == "BOOL":
        return rng.integers(0, 2, shape).astype(bool)
    if dt == "BYTES":
        return np.array([[b"a", "é".encode(), b""], [b"xyz", "日本".encode(), b"0"]], dtype=np.object_)
    if dt in ("FP16", "FP32", "FP64"):
        return rng.standard_normal(shape).astype(DTYPES[dt])
    info = np.iinfo(DTYPES[dt])
    # The extremes of each integer type must travel unchanged.
    return np.array([[info.min, info.max, 0], [1, info.max - 1, info.min + 1]], dtype=DTYPES[dt])


@pytest.mark.parametrize("binary", [False, True])
def test_every_datatype_round_trips(client, test_repo, binary):
    rng = np.random.default_rng(3)
    arrays = {dt: sample(dt, rng) for dt in DTYPES}
    inputs = [make_input(f"in_{dt}", a, dt, binary) for dt, a in arrays.items()]
    # tritonclient carries BF16 only as binary data, as ml_dtypes.bfloat16 arrays.
    bf16 = np.array([[1.5, -2.0, 0.0], [3.25, 1e-3, -7.0]], dtype=ml_dtypes.bfloat16)
    inputs.append(make_input("in_BF16", bf16, "BF16", True))
    outputs = [httpclient.InferRequestedOutput(f"out_{dt}", binary_data=binary) for dt in arrays]
    outputs.append(httpclient.InferRequestedOutput("out_BF16", binary_data=True))
    r = client.infer("identity_all", inputs, outputs=outputs)
    for dt, a in arrays.items():
        got = r.as_numpy(f"out_{dt}")
        if dt == "BYTES":
            got = np.array([x if isinstance(x, bytes) else x.encode() for x in got.ravel()], dtype=np.object_).reshape(got.shape)
            assert got.tolist() == a.tolist(), dt
        else:
            assert got.dtype == a.dtype, dt
            np.testing.assert_array_equal(got, a, err_msg=dt)
    got_bf16 = r.as_numpy("out_BF16")
    np.testing.assert_array_equal(got_bf16.astype(np.float32), bf16.astype(np.float32))


@pytest.mark.parametrize("binary", [False, True])
def test_multi_input_model_matches_onnxruntime(client, test_repo, binary):
    rng = np.random.default_rng(5)
    feeds = {"a": rng.standard_normal((3, 4)).astype(np.float32),
             "b": rng.integers(-1000, 1000, (3, 4)).astype(np.int64),
             "flag": rng.integers(0, 2, (3, 4)).astype(bool)}
    dts = {"a": "FP32", "b": "INT64", "flag": "BOOL"}
    r = client.infer("multi_io", [make_input(n, v, dts[n], binary) for n, v in feeds.items()],
                     outputs=[httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("sum", "masked", "doubled")])
    want = reference(test_repo, "multi_io", 1, feeds)
    for name, value in want.items():
        np.testing.assert_array_equal(r.as_numpy(name), value, err_msg=name)


@pytest.mark.parametrize("binary", [False, True])
def test_strings(client, binary):
    texts = np.array(["hello", "", "wörld 🌍", "x" * 1000], dtype=np.object_)
    r = client.infer("strings", [make_input("text", texts, "BYTES", binary)],
                     outputs=[httpclient.InferRequestedOutput("text_out", binary_data=binary)])
    got = [x.decode() if isinstance(x, bytes) else x for x in r.as_numpy("text_out")]
    assert got == list(texts)


def test_default_outputs_and_async_client(server, test_repo):
    import asyncio
    import tritonclient.http.aio as aioclient

    async def go():
        c = aioclient.InferenceServerClient(url=server.url)
        x = np.ones((2, 64), np.float32)
        i = aioclient.InferInput("input", [2, 64], "FP32")
        i.set_data_from_numpy(x)
        results = await asyncio.gather(*[c.infer("mlp", [i], model_version="1") for _ in range(16)])
        await c.close()
        return results

    want = reference(test_repo, "mlp", 1, {"input": np.ones((2, 64), np.float32)})["output"]
    for r in asyncio.run(go()):
        np.testing.assert_allclose(r.as_numpy("output"), want, rtol=1e-6, atol=1e-6)


def status_of(call):
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status(), e.value.message()


def test_errors_reach_the_client_with_status_and_field(client):
    x = np.ones((1, 64), np.float32)
    status, msg = status_of(lambda: client.infer("nope", [make_input("input", x, "FP32", True)]))
    assert status == "404" and "nope" in msg
    status, msg = status_of(lambda: client.infer("mlp", [make_input("input", x, "FP32", True)], model_version="9"))
    assert status == "404"
    status, msg = status_of(lambda: client.infer("mlp", [make_input("input", x.astype(np.float64), "FP64", True)]))
    assert status == "400" and "input 'input'" in msg and "FP64" in msg
    status, msg = status_of(lambda: client.infer("mlp", [make_input("input", np.ones((1, 63), np.float32), "FP32", False)]))
    assert status == "400" and "[-1, 64]" in msg
    status, msg = status_of(lambda: client.infer("multi_io", [make_input("a", np.ones((1, 4), np.float32), "FP32", True)]))
    assert status == "400" and "is required" in msg
    status, msg = status_of(lambda: client.infer("mlp", [make_input("input", x, "FP32", True)],
                                                 outputs=[httpclient.InferRequestedOutput("nope")]))
    assert status == "400" and "output 'nope'" in msg
    status, msg = status_of(lambda: client.get_model_metadata("broken"))
    assert status == "503" and "failed to load" in msg
    # And it still serves.
    assert client.infer("mlp", [make_input("input", x, "FP32", True)]).as_numpy("output").shape == (1, 10)


def test_statistics_extension(client):
    x = np.ones((3, 64), np.float32)
    before = client.get_inference_statistics("mlp", "1")["model_stats"][0]
    for _ in range(4):
        client.infer("mlp", [make_input("input", x, "FP32", True)], model_version="1")
    with pytest.raises(InferenceServerException):
        client.infer("mlp", [make_input("input", np.ones((1, 63), np.float32), "FP32", True)], model_version="1")
    after = client.get_inference_statistics("mlp", "1")["model_stats"][0]
    assert after["name"] == "mlp" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 12
    assert after["execution_count"] - before["execution_count"] == 4
    s, b = after["inference_stats"], before["inference_stats"]
    assert s["success"]["count"] - b["success"]["count"] == 4
    assert s["fail"]["count"] - b["fail"]["count"] == 1
    assert s["compute_infer"]["ns"] > b["compute_infer"]["ns"]
    assert after["last_inference"] > 0
    every = client.get_inference_statistics()["model_stats"]
    assert {("mlp", "1"), ("mlp", "2"), ("strings", "1")} <= {(m["name"], m["version"]) for m in every}
    status, _ = status_of(lambda: client.get_inference_statistics("nope"))
    assert status == "404"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(client, test_repo, algorithm):
    x = np.random.default_rng(9).standard_normal((4, 64)).astype(np.float32)
    r = client.infer("mlp", [make_input("input", x, "FP32", True)], model_version="1",
                     request_compression_algorithm=algorithm, response_compression_algorithm=algorithm)
    want = reference(test_repo, "mlp", 1, {"input": x})["output"]
    np.testing.assert_allclose(r.as_numpy("output"), want, rtol=1e-6, atol=1e-6)
