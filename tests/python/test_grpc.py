"""Drives switchyard's gRPC port with the official tritonclient[grpc] package, unchanged: health,
metadata, config, statistics, repository, inference with every datatype (raw contents, as tritonclient
sends), typed InferTensorContents, streaming, errors and their status codes, and a rollout endpoint;
every answer compared with the HTTP answer for the same input."""
import queue
import time
import urllib.request

import grpc
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from test_rollout_endpoint import rollout_server  # noqa: F401 (the same rollout: a fixture)
from test_tritonclient import DTYPES, reference, sample


@pytest.fixture(scope="module")
def client(server):
    assert server.grpc_url, "no gRPC port in the log"
    c = grpcclient.InferenceServerClient(url=server.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def http(server):
    c = httpclient.InferenceServerClient(url=server.url)
    yield c
    c.close()


def grpc_input(name, array, datatype):
    i = grpcclient.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array)
    return i


def http_input(name, array, datatype):
    i = httpclient.InferInput(name, list(array.shape), datatype)
    i.set_data_from_numpy(array, binary_data=True)
    return i


def code_of(call):
    with pytest.raises(InferenceServerException) as e:
        call()
    return e.value.status(), e.value.message()


def test_health_metadata_config_and_repository(client, server):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    meta = client.get_server_metadata()
    assert meta.name == "switchyard" and "statistics" in meta.extensions
    md = client.get_model_metadata("mlp")
    assert md.name == "mlp" and md.versions == ["1", "2"]
    assert [(t.name, t.datatype, list(t.shape)) for t in md.inputs] == [("input", "FP32", [-1, 64])]
    config = client.get_model_config("mlp").config
    assert config.name == "mlp" and config.max_batch_size > 0 and config.backend == "onnxruntime"
    assert config.input[0].name == "input" and list(config.input[0].dims) == [64]
    index = client.get_model_repository_index().models
    assert {(m.name, m.version, m.state) for m in index} >= {("mlp", "1", "READY"), ("mlp", "2", "READY")}
    assert any(m.name == "broken" and m.state == "UNAVAILABLE" for m in index)
    # grpc.health.v1, as Kubernetes' gRPC probe asks it: an empty HealthCheckRequest; SERVING is 1.
    with grpc.insecure_channel(server.grpc_url) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        assert check(b"", timeout=5) == b"\x08\x01"


@pytest.mark.parametrize("version", [None, "1"])
def test_mlp_matches_onnxruntime_and_http(client, http, test_repo, version):
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    r = client.infer("mlp", [grpc_input("input", x, "FP32")], model_version=version or "", request_id="abc")
    resp = r.get_response()
    assert (resp.model_name, resp.model_version, resp.id) == ("mlp", version or "2", "abc")
    want = reference(test_repo, "mlp", version or 2, {"input": x})["output"]
    np.testing.assert_allclose(r.as_numpy("output"), want, rtol=1e-6, atol=1e-6)
    over_http = http.infer("mlp", [http_input("input", x, "FP32")], model_version=version or "")
    np.testing.assert_array_equal(r.as_numpy("output"), over_http.as_numpy("output"))


def test_every_datatype_round_trips(client):
    rng = np.random.default_rng(3)
    arrays = {dt: sample(dt, rng) for dt in DTYPES}
    inputs = [grpc_input(f"in_{dt}", a, dt) for dt, a in arrays.items()]
    bf16 = np.array([[1.5, -2.0, 0.0], [3.25, 1e-3, -7.0]], dtype=ml_dtypes.bfloat16)
    inputs.append(grpc_input("in_BF16", bf16, "BF16"))
    r = client.infer("identity_all", inputs)
    for dt, a in arrays.items():
        got = r.as_numpy(f"out_{dt}")
        if dt == "BYTES":
            assert got.tolist() == a.tolist(), dt
        else:
            assert got.dtype == a.dtype, dt
            np.testing.assert_array_equal(got, a, err_msg=dt)
    np.testing.assert_array_equal(r.as_numpy("out_BF16").astype(np.float32), bf16.astype(np.float32))


def test_typed_contents_decode_as_raw_contents_do(client):
    """InferTensorContents (which tritonclient never sends) through the generated stub."""
    x = np.arange(128, dtype=np.float32).reshape(2, 64) / 100
    req = service_pb2.ModelInferRequest(model_name="mlp", model_version="1")
    t = req.inputs.add(name="input", datatype="FP32", shape=[2, 64])
    t.contents.fp32_contents.extend(x.ravel().tolist())
    typed = client._client_stub.ModelInfer(req)
    raw = client.infer("mlp", [grpc_input("input", x, "FP32")], model_version="1").get_response()
    assert typed.raw_output_contents == raw.raw_output_contents
    ints = service_pb2.ModelInferRequest(model_name="identity_all")
    for name, dt, field, values in [("in_INT8", "INT8", "int_contents", [-128, 127, 0]),
                                    ("in_UINT16", "UINT16", "uint_contents", [0, 65535, 1]),
                                    ("in_INT64", "INT64", "int64_contents", [-(2**63), 2**63 - 1, 0]),
                                    ("in_BOOL", "BOOL", "bool_contents", [True, False, True]),
                                    ("in_BYTES", "BYTES", "bytes_contents", [b"a", "é".encode(), b""])]:
        t = ints.inputs.add(name=name, datatype=dt, shape=[1, 3])
        getattr(t.contents, field).extend(values)
    with pytest.raises(grpc.RpcError) as e:
        client._client_stub.ModelInfer(ints)  # identity_all needs every input: these five decode
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "is required" in e.value.details(), e.value.details()
    bad = service_pb2.ModelInferRequest(model_name="mlp")
    t = bad.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    t.contents.int_contents.extend([1] * 64)
    with pytest.raises(grpc.RpcError) as e:
        client._client_stub.ModelInfer(bad)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 'input'" in e.value.details()


def test_errors_carry_the_status_code_and_the_http_message(client, http):
    x = np.ones((1, 64), np.float32)
    status, message = code_of(lambda: client.infer("nope", [grpc_input("input", x, "FP32")]))
    assert status == "StatusCode.NOT_FOUND" and "nope" in message
    assert code_of(lambda: client.is_model_ready("nope"))[0] == "StatusCode.NOT_FOUND"
    # A model that exists but cannot serve (it failed to load) is not ready, not an error (KServe's
    # ModelReady); so is one still loading, which a client polls for.
    assert client.is_model_ready("broken") is False
    assert code_of(lambda: client.get_model_metadata("mlp", "9"))[0] == "StatusCode.NOT_FOUND"
    wrong = np.ones((1, 63), np.float32)
    status, message = code_of(lambda: client.infer("mlp", [grpc_input("input", wrong, "FP32")]))
    with pytest.raises(InferenceServerException) as over_http:
        http.infer("mlp", [http_input("input", wrong, "FP32")])
    assert status == "StatusCode.INVALID_ARGUMENT" and message == over_http.value.message()
    assert code_of(lambda: client.get_model_config("broken"))[0] == "StatusCode.UNAVAILABLE"
    # A deadline the client sets in `timeout` (microseconds) that a slow model misses.
    slow = np.ones((64, 1024), np.float32)
    status, message = code_of(lambda: client.infer("slow", [grpc_input("x", slow, "FP32")], timeout=1000))
    assert status == "StatusCode.DEADLINE_EXCEEDED", message


def test_streaming_answers_in_order_and_reports_failures_on_the_stream(client):
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    x = np.ones((1, 64), np.float32)
    wrong = np.ones((1, 63), np.float32)
    for i in range(20):
        data = wrong if i == 7 else x
        client.async_stream_infer("mlp", [grpc_input("input", data, "FP32")], request_id=str(i))
    client.stop_stream()
    got = [answers.get(timeout=10) for _ in range(20)]
    for i, (result, error) in enumerate(got):
        if i == 7:
            assert result is None and "input 'input'" in str(error)
        else:
            assert error is None and result.get_response().id == str(i)


def in_flight(server, model):
    text = urllib.request.urlopen(f"http://{server.url}/metrics").read().decode()
    line = f'switchyard_requests_in_flight{{model="{model}",version="1"}} '
    return next(int(float(l[len(line):])) for l in text.splitlines() if l.startswith(line))


def wait_in_flight(server, model, n):
    deadline = time.time() + 10
    while in_flight(server, model) < n:
        assert time.time() < deadline, f"{n} requests to {model} never went in flight"
        time.sleep(0.005)


def test_priority_one_overtakes_queued_requests(client, server):
    # tritonclient sends `priority` as a uint64 parameter; slow_priority has two levels, default 2, and
    # runs a batch as soon as it holds 1,024 rows: the first request keeps the worker busy while the
    # others queue, each of the others runs alone.
    done = queue.Queue()

    def send(label, rows, **kw):
        x = np.full((rows, 1024), 0.01, np.float32)
        client.async_infer("slow_priority", [grpc_input("x", x, "FP32")],
                           callback=lambda result, error: done.put((label, error)), **kw)

    send("running", 4096)
    wait_in_flight(server, "slow_priority", 1)
    for p in (0, 2, 3):
        send(f"priority {p}", 1024, priority=p)
    wait_in_flight(server, "slow_priority", 4)
    send("priority 1", 1024, priority=1)
    finished = [done.get(timeout=30) for _ in range(5)]
    assert all(error is None for _, error in finished), finished
    assert [label for label, _ in finished][:2] == ["running", "priority 1"], finished


def test_large_messages_pass(client):
    # 6 MB each way, past gRPC's usual 4 MB limit (the limit is the HTTP body limit, 64 MiB).
    texts = np.array(["x" * 3_000_000, "y" * 3_000_000], dtype=np.object_)
    r = client.infer("strings", [grpc_input("text", texts, "BYTES")])
    assert [len(t) for t in r.as_numpy("text_out")] == [3_000_000, 3_000_000]


def test_statistics_count_grpc_requests(client):
    before = client.get_inference_statistics("mlp", "1").model_stats[0].inference_stats.success.count
    client.infer("mlp", [grpc_input("input", np.ones((1, 64), np.float32), "FP32")], model_version="1")
    after = client.get_inference_statistics("mlp", "1").model_stats[0].inference_stats.success.count
    assert after == before + 1


def test_a_rollout_endpoint_over_grpc_is_sticky_and_names_the_arm(rollout_server, test_repo):
    c = grpcclient.InferenceServerClient(url=rollout_server.grpc_url)
    h = httpclient.InferenceServerClient(url=rollout_server.url)
    assert c.is_model_ready("scorer")
    x = np.random.default_rng(4).standard_normal((1, 64)).astype(np.float32)
    arms = set()
    for user in range(40):
        headers = {"x-user-id": f"user-{user}"}
        r = c.infer("scorer", [grpc_input("input", x, "FP32")], headers=headers)
        arm = r.get_response().parameters["x-switchyard-arm"].string_param
        arms.add(arm)
        # The same user lands on the same arm over HTTP, and gets the same answer.
        over_http = h.infer("scorer", [http_input("input", x, "FP32")], headers=headers)
        np.testing.assert_array_equal(r.as_numpy("output"), over_http.as_numpy("output"))
        version = 1 if arm == "control" else 2
        want = reference(test_repo, "mlp", version, {"input": x})["output"]
        np.testing.assert_allclose(r.as_numpy("output"), want, rtol=1e-6, atol=1e-6)
    assert arms == {"control", "canary"}
    stats = c.get_inference_statistics("scorer").model_stats
    assert {s.version for s in stats} == {"1", "2"}
    # The arm is in the response metadata too (initial metadata of a unary call), as HTTP's header.
    req = service_pb2.ModelInferRequest(model_name="scorer")
    t = req.inputs.add(name="input", datatype="FP32", shape=[1, 64])
    t.contents.fp32_contents.extend(x.ravel().tolist())
    resp, call = c._client_stub.ModelInfer.with_call(req, metadata=[("x-user-id", "user-1")])
    meta = dict(call.initial_metadata())
    assert meta["x-switchyard-arm"] == resp.parameters["x-switchyard-arm"].string_param
    assert meta["x-switchyard-model"] in ("mlp/1", "mlp/2")


def test_grpc_requests_are_in_the_metrics(client, server):
    client.is_server_live()
    text = urllib.request.urlopen(f"http://{server.url}/metrics").read().decode()
    assert 'switchyard_grpc_requests_total{method="ServerLive",code="OK"}' in text
    assert 'switchyard_grpc_requests_total{method="ModelInfer",code="INVALID_ARGUMENT"}' in text
