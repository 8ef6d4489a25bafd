"""Triton's perf_analyzer, unchanged, against a rollout endpoint over HTTP and gRPC: it reads the
endpoint's metadata and config (and over gRPC its statistics around each window), drives inference
through the rollout, and every request succeeds on one of the two arms.
perf_analyzer comes from `scripts/install_perf_analyzer.sh`, which `make test` runs."""
import json
import os
import pathlib
import re
import subprocess
import urllib.request

import pytest

from conftest import ROOT, Server

PA = pathlib.Path(os.environ.get("PERF_ANALYZER", ROOT / "target/tools/perf_analyzer/bin/perf_analyzer"))


@pytest.mark.skipif(not PA.exists(), reason=f"perf_analyzer is not installed ({PA}); "
                    "scripts/install_perf_analyzer.sh installs it (make test runs it)")
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_drives_a_rollout_endpoint(tmp_path, test_repo, protocol):
    cfg = tmp_path / "switchyard.yaml"
    cfg.write_text(
        "rollouts:\n"
        "  - endpoint: scorer\n"
        "    control: { model: mlp, version: 1 }\n"
        "    canary: { model: mlp, version: 2, weight: 20 }\n")
    s = Server(test_repo, "--strict-readiness", "false", "--config", str(cfg), "--admin-insecure")
    try:
        out = subprocess.run(
            [str(PA), "-m", "scorer", "-u", s.url if protocol == "http" else s.grpc_url, "-i", protocol,
             "--concurrency-range", "2",
             "--measurement-interval", "1500", "--stability-percentage", "100", "--max-trials", "3"],
            capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        m = re.search(r"Concurrency: 2, throughput: ([0-9.]+) infer/sec", out.stdout)
        assert m and float(m.group(1)) > 100, out.stdout
        status = json.load(urllib.request.urlopen(f"http://{s.url}/admin/rollouts/scorer"))
        evidence = status["evidence"]
        assert evidence["control_requests"] > 0 and evidence["canary_requests"] > 0, status
        assert evidence["control_errors"] == 0 and evidence["canary_errors"] == 0, status
    finally:
        s.stop()


@pytest.mark.skipif(not PA.exists(), reason=f"perf_analyzer is not installed ({PA})")
def test_perf_analyzer_drives_a_model_over_grpc_with_streaming(server):
    out = subprocess.run(
        [str(PA), "-m", "mlp", "-x", "1", "-u", server.grpc_url, "-i", "grpc", "--streaming", "-b", "4",
         "--concurrency-range", "4", "--measurement-interval", "1500", "--stability-percentage", "100",
         "--max-trials", "3"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"Concurrency: 4, throughput: ([0-9.]+) infer/sec", out.stdout)
    assert m and float(m.group(1)) > 100, out.stdout
