"""A rollout endpoint through the official tritonclient, unchanged: it is a V2 model like any other
(ready, metadata, config, statistics, inference), and its answers match the arm that served them."""
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import Server


@pytest.fixture(scope="module")
def rollout_server(tmp_path_factory, test_repo):
    cfg = tmp_path_factory.mktemp("rollout") / "switchyard.yaml"
    cfg.write_text(
        "rollouts:\n"
        "  - endpoint: scorer\n"
        "    control: { model: mlp, version: 1 }\n"
        "    canary: { model: mlp, version: 2, weight: 50 }\n"
        "    assignment: { header: x-user-id }\n")
    s = Server(test_repo, "--strict-readiness", "false", "--config", str(cfg))
    yield s
    s.stop()


@pytest.fixture()
def client(rollout_server):
    return httpclient.InferenceServerClient(rollout_server.url)


def test_readiness_metadata_and_config_of_the_endpoint(client):
    assert client.is_model_ready("scorer")
    meta = client.get_model_metadata("scorer")
    assert meta["name"] == "scorer" and meta["versions"] == ["1"]
    assert [i["name"] for i in meta["inputs"]] == ["input"]
    assert meta["inputs"][0]["datatype"] == "FP32"
    config = client.get_model_config("scorer")
    assert config["name"] == "scorer" and config["max_batch_size"] > 0
    stats = client.get_inference_statistics("scorer")
    assert {m["arm"] for m in stats["model_stats"]} == {"control", "canary"}


@pytest.mark.parametrize("binary", [False, True])
def test_inference_on_the_endpoint_matches_the_arm_that_served_it(client, binary):
    x = np.linspace(-1, 1, 3 * 64, dtype=np.float32).reshape(3, 64)
    direct = {}
    for v in ("1", "2"):
        inp = httpclient.InferInput("input", [3, 64], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        direct[v] = client.infer("mlp", [inp], model_version=v).as_numpy("output")
    seen = set()
    for user in range(40):
        inp = httpclient.InferInput("input", [3, 64], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        r = client.infer("scorer", [inp], headers={"x-user-id": f"user-{user}"})
        version = r.get_response()["model_version"]
        assert r.get_response()["model_name"] == "scorer"
        np.testing.assert_array_equal(r.as_numpy("output"), direct[version])
        seen.add(version)
    assert seen == {"1", "2"}, "both arms answer at 50 %"


def test_unversioned_calls_of_the_model_are_answered_by_control(client):
    inp = httpclient.InferInput("input", [1, 64], "FP32")
    inp.set_data_from_numpy(np.ones((1, 64), np.float32))
    for _ in range(10):
        assert client.infer("mlp", [inp]).get_response()["model_version"] == "1"


def test_client_mistakes_on_the_endpoint_are_400_naming_the_field(client):
    inp = httpclient.InferInput("input", [1, 63], "FP32")
    inp.set_data_from_numpy(np.ones((1, 63), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("scorer", [inp])
    assert e.value.status() == "400" and "'input'" in e.value.message(), e.value
