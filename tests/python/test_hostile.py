"""Malformed and hostile requests over raw sockets: each must get a 4xx JSON error (or hyper's own 4xx
for broken HTTP), never a 5xx, never a crash, and the server must answer correctly afterwards."""
import json
import socket

import pytest

GOOD = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]})


def exchange(port, raw, timeout=10):
    """Sends raw bytes and returns (status, headers, body) of the first response, or None if the server
    closed the connection without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def post(path, body, extra=""):
    if isinstance(body, str):
        body = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def inp(**kw):
    d = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}
    d.update(kw)
    return json.dumps({"inputs": [d]})


JSON_CASES = [
    "[]", "{}", '{"inputs": {}}', '{"inputs": [null]}', '{"inputs": [[]]}', '{"inputs": "x"}',
    '{"inputs": [], "inputs": []}', inp(data={}), inp(data="abc"), inp(data=None), inp(shape=[1.5, 64]),
    inp(shape=[-9223372036854775808, 64]), inp(shape=None), inp(shape=[[1], [64]]), inp(datatype=None),
    inp(datatype=5), inp(name=5), inp(name=None), inp(name="x" * 100000),
    '{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [NaN]}]}',
    '{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP32", "data": [1e400]}]}',
    '{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [1' + "0" * 100000 + "]}]}",
    '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}',
    json.dumps({"inputs": json.loads(inp())["inputs"], "outputs": {}}),
    json.dumps({"inputs": json.loads(inp())["inputs"], "outputs": [{"name": 5}]}),
    json.dumps({"inputs": json.loads(inp())["inputs"], "parameters": {"binary_data_output": "yes"}}),
    json.dumps({"inputs": json.loads(inp())["inputs"], "parameters": {"timeout": -1}}),
    json.dumps({"inputs": json.loads(inp(parameters={"binary_data_size": -4}))["inputs"]}),
    json.dumps({"inputs": json.loads(inp(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 4}))["inputs"]}),
    json.dumps({"inputs": json.loads(inp(shape=[1] * 10000))["inputs"]}),
    "{" * 200000, "[" * 200000, '{"a":' * 100000 + "1" + "}" * 100000,
    '{"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": ' + "[" * 100000 + "]" * 100000 + "}]}",
    "\x00\x01\x02", "\ufeff" + GOOD,
]


@pytest.mark.parametrize("i", range(len(JSON_CASES)))
def test_malformed_json_is_a_4xx_json_error(server, i):
    body = JSON_CASES[i]
    path = "/v2/models/strings/infer" if '"text"' in body else "/v2/models/mlp/infer"
    got = exchange(server.port, post(path, body))
    assert got is not None, "connection dropped"
    status, headers, resp = got
    assert 400 <= status < 500, (status, resp[:300])
    assert "error" in json.loads(resp), resp[:300]
    assert exchange(server.port, post("/v2/models/mlp/infer", GOOD))[0] == 200


HTTP_CASES = [
    b"GARBAGE\r\n\r\n",
    b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 200000 + b"\r\n\r\n",
    b"GET /v2/models/\xff\xfe/ready HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nInference-Header-Content-Length: 18446744073709551616\r\n\r\n0123456789",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"BREW /v2 HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("i", range(len(HTTP_CASES)))
def test_broken_http_never_gets_a_5xx(server, i):
    got = exchange(server.port, HTTP_CASES[i])
    if got is not None:  # hyper may answer and close for unparseable HTTP
        assert got[0] < 500, got[:2]
    assert exchange(server.port, post("/v2/models/mlp/infer", GOOD))[0] == 200
