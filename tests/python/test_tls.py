"""HTTPS on the listener (--tls-cert/--tls-key, rustls): a real TLS client infers over it, the
certificate is the one configured, plain HTTP to the TLS port gets no answer, and bad key files
stop the start with the file named. The gRPC port serves TLS with the same certificate: tritonclient.grpc
with ssl=True infers over it, a plaintext client gets no answer. The certificate is made here with the
openssl command. `switchyard rollouts` talks to the admin API over HTTPS with the certificate as its CA,
and refuses a server whose certificate it cannot check."""
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time

import pytest

from conftest import BIN, ROOT, TEST_REPO

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (Debian: openssl)")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


GRPC = {}  # server pid -> its gRPC address, when it serves gRPC over TLS


def start(*args, env=None):
    proc = subprocess.Popen(
        [str(BIN), "serve", "--model-repository", str(TEST_REPO), "--port", "0", "--strict-readiness", "false", *args],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    port, log, found = [], [], threading.Event()

    def drain():
        for line in proc.stderr:
            log.append(line)
            g = re.search(r"gRPC listening on (127\.0\.0\.1:\d+) \(TLS\)", line)
            if g:
                GRPC[proc.pid] = g.group(1)
            m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
            if m:
                port.append(int(m.group(1)))
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    found.wait(30)
    return proc, (port[0] if port else None), log


def test_inference_over_https_with_the_configured_certificate(cert):
    cert_file, key_file = cert
    proc, port, log = start("--tls-cert", str(cert_file), "--tls-key", str(key_file))
    try:
        assert port, "".join(log)
        ctx = ssl.create_default_context(cafile=str(cert_file))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        deadline = time.monotonic() + 30
        while True:  # readiness over HTTPS: every model loaded
            conn.request("GET", "/v2/models/mlp/ready")
            r = conn.getresponse()
            r.read()
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0.1] * 64}]})
        for _ in range(3):  # keep-alive over one TLS session
            conn.request("POST", "/v2/models/mlp/infer", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200, r.read()
            assert json.loads(r.read())["outputs"][0]["shape"] == [1, 10]
        peer = conn.sock.getpeercert()
        assert ("commonName", "localhost") in [kv for rdn in peer["subject"] for kv in rdn]
        # Plain HTTP on the TLS port gets no HTTP answer.
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/v2/health/live")
            plain.getresponse().read()
    finally:
        proc.terminate()
        proc.wait(10)


def test_unreadable_key_files_stop_the_start_with_the_file_named(cert, tmp_path):
    cert_file, _ = cert
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a key\n")
    proc, port, log = start("--tls-cert", str(cert_file), "--tls-key", str(bogus))
    assert proc.wait(30) != 0
    assert port is None
    text = "".join(log)
    assert "TLS private key" in text and str(bogus) in text, text


def test_grpc_serves_tls_with_the_same_certificate(cert):
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    cert_file, key_file = cert
    proc, port, log = start("--tls-cert", str(cert_file), "--tls-key", str(key_file))
    try:
        assert port and proc.pid in GRPC, "".join(log)
        client = grpcclient.InferenceServerClient(GRPC[proc.pid], ssl=True, root_certificates=str(cert_file))
        deadline = time.monotonic() + 30
        while not client.is_model_ready("mlp"):
            assert time.monotonic() < deadline, "mlp never became ready over gRPC with TLS"
            time.sleep(0.05)
        x = np.full((2, 64), 0.1, np.float32)
        i = grpcclient.InferInput("input", [2, 64], "FP32")
        i.set_data_from_numpy(x)
        assert client.infer("mlp", [i]).as_numpy("output").shape == (2, 10)
        client.close()
        # A plaintext client on the TLS port gets no answer.
        plain = grpcclient.InferenceServerClient(GRPC[proc.pid])
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=3)
        plain.close()
        # ...and its failed handshake is counted.
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=str(cert_file)),
                                           timeout=30)
        conn.request("GET", "/metrics")
        metrics = conn.getresponse().read().decode()
        failures = [l for l in metrics.splitlines() if l.startswith("switchyard_grpc_tls_handshake_failures_total ")]
        assert failures and float(failures[0].split()[-1]) >= 1, metrics[-2000:]
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_cli_steers_rollouts_over_https(cert, tmp_path):
    cert_file, key_file = cert
    cfg = tmp_path / "switchyard.yaml"
    cfg.write_text("rollouts:\n  - endpoint: scorer\n    control: { model: mlp, version: 1 }\n"
                   "    canary: { model: mlp, version: 2, steps: [ { weight: 10, hold: 1h } ] }\n")
    proc, port, log = start("--tls-cert", str(cert_file), "--tls-key", str(key_file), "--config", str(cfg),
                            env={"SWITCHYARD_ADMIN_TOKEN": "tls-token"})
    try:
        assert port, "".join(log)

        def ctl(*args, server=f"https://127.0.0.1:{port}", **env):
            return subprocess.run([str(BIN), "rollouts", "--server", server, *args], capture_output=True, text=True,
                                  env={**os.environ, "SWITCHYARD_ADMIN_TOKEN": "tls-token", **env}, timeout=30)

        r = ctl("list", "--ca-cert", str(cert_file))
        assert r.returncode == 0 and "scorer" in r.stdout, r.stderr
        r = ctl("pause", "scorer", server=f"https://localhost:{port}", SWITCHYARD_CA_CERT=str(cert_file))
        assert r.returncode == 0 and "paused" in r.stdout, r.stderr
        # A CA bundle that cannot be read is a usage error (2), naming it; a CA that does not vouch for the
        # server's certificate leaves it unreachable (3), saying why.
        r = ctl("list", SSL_CERT_FILE="/nonexistent")
        assert r.returncode == 2 and "/nonexistent" in r.stderr, r.stderr
        other = tmp_path / "other.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                        "-keyout", str(tmp_path / "other.key"), "-out", str(other)], check=True, capture_output=True)
        r = ctl("list", "--ca-cert", str(other))
        assert r.returncode == 3 and "certificate" in r.stderr.lower(), r.stderr
    finally:
        proc.terminate()
        proc.wait(10)
    # A pinned certificate past its dates is refused as expired, as curl refuses it.
    old_cert, old_key = expired_cert(tmp_path / "expired")
    proc, port, log = start("--tls-cert", str(old_cert), "--tls-key", str(old_key), "--config", str(cfg),
                            env={"SWITCHYARD_ADMIN_TOKEN": "tls-token"})
    try:
        assert port, "".join(log)
        r = subprocess.run([str(BIN), "rollouts", "--server", f"https://127.0.0.1:{port}", "list",
                            "--ca-cert", str(old_cert)], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "SWITCHYARD_ADMIN_TOKEN": "tls-token"})
        assert r.returncode == 3 and "expired" in r.stderr.lower(), r.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def expired_cert(d):
    """A self-signed certificate for 127.0.0.1 valid for one day in 2020 (`openssl ca` sets past dates)."""
    d.mkdir()
    (d / "index.txt").touch()
    (d / "serial").write_text("01\n")
    (d / "ca.cnf").write_text("[ca]\ndefault_ca = old\n[old]\ndatabase = index.txt\nnew_certs_dir = .\n"
                              "serial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n"
                              "[any]\ncommonName = supplied\n")
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", "key.pem", "-out", "req.csr")
    run("openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", "key.pem", "-in", "req.csr",
        "-out", "cert.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z")
    return d / "cert.pem", d / "key.pem"
