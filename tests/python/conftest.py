"""Starts the real switchyard binary on free loopback ports for the Python compatibility tests."""
import os
import pathlib
import re
import subprocess
import threading
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("SWITCHYARD_BIN", ROOT / "target/release/switchyard"))
TEST_REPO = pathlib.Path(os.environ.get("SWITCHYARD_TEST_REPO", ROOT / "target/test-models"))


class Server:
    def __init__(self, repo, *args, env=None):
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--model-repository", str(repo), "--port", "0", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        self.log = []
        self.grpc_url = None
        found = threading.Event()

        def drain():
            for line in self.proc.stderr:
                self.log.append(line)
                g = re.search(r"gRPC listening on 127\.0\.0\.1:(\d+)", line)
                if g:
                    self.grpc_url = f"127.0.0.1:{g.group(1)}"
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(20):
            self.stop()
            raise RuntimeError("switchyard did not start:\n" + "".join(self.log))
        self.url = f"127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                body = urllib.request.urlopen(f"http://{self.url}/ready").read()
                break
            except urllib.error.HTTPError as e:
                if b"loading" not in e.read():
                    break
            time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="session")
def server():
    """The test repository, which also holds models that fail to load (non-strict readiness)."""
    s = Server(TEST_REPO, "--strict-readiness", "false")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def test_repo():
    return TEST_REPO
