"""The deployment artefacts, checked offline with the real tools: the kustomize base rendered by `kubectl
kustomize` and validated by `kubernetes-validate --strict`; the alerting rules through `promtool check
rules` and `promtool test rules`; the metrics the real server exposes through `promtool check metrics`;
a real Prometheus on loopback scraping the real server with the rules loaded; the Grafana dashboard's
queries run by that Prometheus. Each tool is started by the test and stopped by it; a missing tool skips
its tests with the reason."""
import json
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import jsonschema
import pytest
import yaml

from conftest import ROOT, TEST_REPO, Server

KUBE_DIR = ROOT / "deploy/kubernetes"
PROM_DIR = ROOT / "deploy/prometheus"
DASHBOARD = ROOT / "deploy/grafana/switchyard.json"
VALIDATOR = ROOT / ".venv/bin/kubernetes-validate"
# The oldest Kubernetes the base targets and the newest the validator knows.
K8S_VERSIONS = ("1.30.0", "1.37.0")
REQUEST = (ROOT / "config/mlp-request.json").read_bytes()


def tool(name):
    path = shutil.which(name)
    if path is None:
        how = ("it comes with the Debian package prometheus, which scripts/install_system_packages.sh installs"
               " as root" if name in ("promtool", "prometheus")
               else "any kubectl since 1.14 renders kustomize offline; this project does not install it")
        pytest.skip(f"{name} is not installed ({how})")
    return path


def run(*cmd, stdin=None, timeout=60):
    return subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


# ---------------------------------------------------------------------------------------------- Kubernetes

@pytest.fixture(scope="module")
def rendered():
    """`kubectl kustomize deploy/kubernetes` as a list of objects (works offline, unlike `apply --dry-run`)."""
    r = run(tool("kubectl"), "kustomize", KUBE_DIR)
    assert r.returncode == 0, r.stderr
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def validate(path, version):
    if not VALIDATOR.exists():
        pytest.skip(f"{VALIDATOR} is missing (make setup installs kubernetes-validate from requirements.txt)")
    return run(VALIDATOR, "--strict", "-k", version, path)


def test_rendered_core_objects_pass_kubernetes_validate_strict(rendered, tmp_path):
    # kubernetes-validate has schemas for the core API only; the ServiceMonitor (a CRD) is checked below.
    core = [d for d in rendered if d["apiVersion"] != "monitoring.coreos.com/v1"]
    assert sorted(d["kind"] for d in core) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"]
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    for version in K8S_VERSIONS:
        r = validate(path, version)
        assert r.returncode == 0, f"against {version}:\n{r.stdout}{r.stderr}"
        assert r.stdout.count(" passed for resource ") == len(core), r.stdout
    # The validator is strict for real: a misspelt field in the same Deployment fails.
    broken = [dict(d, spec=dict(d["spec"], replicaz=2)) if d["kind"] == "Deployment" else d for d in core]
    path.write_text(yaml.safe_dump_all(broken))
    r = validate(path, K8S_VERSIONS[0])
    assert r.returncode != 0 and "replicaz" in r.stdout + r.stderr, r.stdout + r.stderr


# The ServiceMonitor fields this base uses, from the Prometheus Operator's CRD (monitoring.coreos.com/v1);
# anything else (a typo included) is refused.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"], "additionalProperties": False,
                     "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"], "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "required": ["matchLabels"], "additionalProperties": False,
                             "properties": {"matchLabels": {"type": "object",
                                                            "additionalProperties": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"], "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"},
                        "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                        "scrapeTimeout": {"type": "string", "pattern": r"^(\d+(ms|s|m|h))+$"},
                        "honorLabels": {"type": "boolean"},
                    }}},
            },
        },
    },
}


def test_service_monitor_matches_its_schema_subset_and_the_service(rendered):
    monitor, service = one(rendered, "ServiceMonitor"), one(rendered, "Service")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"
        # The rollout metrics' `endpoint` label must survive the operator's own `endpoint` target label.
        assert endpoint["honorLabels"] is True


def env_of(container):
    return {e["name"]: e for e in container["env"]}


def test_deployment_probes_shutdown_security_and_wiring(rendered):
    dep, svc, pdb = one(rendered, "Deployment"), one(rendered, "Service"), one(rendered, "PodDisruptionBudget")
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    (c,) = spec["containers"]
    env = env_of(c)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["image"] == "localhost/switchyard:latest"
    assert env["SWITCHYARD_HOST"]["value"] == "0.0.0.0" and ports["http"] == int(env["SWITCHYARD_PORT"]["value"])
    assert ports["grpc"] == int(env["SWITCHYARD_GRPC_PORT"]["value"])

    # Probes: liveness /health, readiness /ready, a startup probe long enough for slow model loads.
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ports

    # Shutdown: preStop (if any) + drain delay + shutdown timeout fit in the grace period.
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert "exec" not in c.get("lifecycle", {}).get("preStop", {}), "an exec hook needs binaries in the image"
    drain, shutdown = int(env["SWITCHYARD_DRAIN_DELAY_SECS"]["value"]), int(env["SWITCHYARD_SHUTDOWN_TIMEOUT"]["value"])
    assert drain > 0 and pre_stop + drain + shutdown < spec["terminationGracePeriodSeconds"]

    # Resources and security.
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= c["resources"][kind].keys()
    sc = c["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] and sc["runAsNonRoot"] and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc.get("privileged")

    # Volumes: the ConfigMap as a directory (no subPath, so updates reach the pod), writable state and /tmp.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    config_mount = mounts["/etc/switchyard"]
    assert "subPath" not in config_mount and config_mount["readOnly"]
    config_map = one(rendered, "ConfigMap")
    assert volumes[config_mount["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    config_file = pathlib.PurePosixPath(env["SWITCHYARD_CONFIG"]["value"])
    assert str(config_file.parent) == "/etc/switchyard" and config_file.name in config_map["data"]
    assert "emptyDir" in volumes[mounts[env["SWITCHYARD_STATE_DIR"]["value"]]["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]

    # The admin token comes from the generated Secret (kustomize rewrote the hashed name).
    ref = env["SWITCHYARD_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = one(rendered, "Secret")
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"]
    assert secret["data"][ref["key"]] == "", "never commit a real admin token"

    # Service, PDB and scrape annotations point at these pods and this port.
    labels = pod["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports.keys()
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == ports["http"]


# -------------------------------------------------------------------------------------------------- Prometheus

def test_alert_rules_pass_promtool_check_and_unit_tests():
    promtool = tool("promtool")
    r = run(promtool, "check", "rules", PROM_DIR / "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(promtool, "test", "rules", PROM_DIR / "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run(promtool, "check", "config", PROM_DIR / "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROM_DIR / "alerts_test.yml").read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts == fired == quiet


def dashboard_queries():
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    return board, exprs


def test_dashboard_is_well_formed():
    board, exprs = dashboard_queries()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "job", "endpoint", "model"}
    for p in board["panels"]:
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    text = "\n".join(exprs)
    for metric in ("switchyard_rollout_requests_total", "switchyard_rollout_request_duration_seconds_bucket",
                   "switchyard_rollout_canary_weight_ratio", "switchyard_rollout_step",
                   "switchyard_rollout_error_rate_e_value", "switchyard_rollout_latency_e_value",
                   "switchyard_rollout_e_value_threshold", "switchyard_rollout_rollbacks_total",
                   "switchyard_requests_total", "switchyard_request_duration_seconds_bucket",
                   "switchyard_queue_duration_seconds_bucket", "switchyard_requests_in_flight",
                   "switchyard_model_ready"):
        assert metric in text, f"the dashboard shows no {metric}"


def as_prometheus_query(expr):
    """A dashboard query with Grafana's variables replaced by what "All" and a short range mean."""
    for var, value in (("$__rate_interval", "1m"), ("$job", ".*"), ("$endpoint", ".*"), ("$model", ".*")):
        expr = expr.replace(var, value)
    return expr


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """`mlp` (versions 1 and 2, for the rollouts) and `broken` (a load failure) from the test repository:
    quicker to load than all of it."""
    path = tmp_path_factory.mktemp("repo")
    for model in ("mlp", "broken"):
        shutil.copytree(TEST_REPO / model, path / model)   # the loader does not follow symlinks
    return path


def send(server, endpoint, n, headers=None):
    for i in range(n):
        req = urllib.request.Request(f"http://{server.url}/v2/models/{endpoint}/infer", data=REQUEST,
                                     headers={"x-user-id": f"user-{i}", **(headers or {})})
        urllib.request.urlopen(req, timeout=10).read()


def post_admin(server, path, token):
    req = urllib.request.Request(f"http://{server.url}/admin/rollouts/{path}", data=b"", method="POST",
                                 headers={"Authorization": f"Bearer {token}"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


def metric_families(text):
    """{name: {"type": ..., "help": ...}} from an exposition."""
    families = {}
    for line in text.splitlines():
        m = re.match(r"# (HELP|TYPE) (\S+) ?(.*)", line)
        if m:
            families.setdefault(m.group(2), {})[m.group(1).lower()] = m.group(3)
    return families


def test_every_metric_has_help_and_passes_promtool_check_metrics(repo, tmp_path, monkeypatch):
    """Every family the server can show, including those born of an event: rollout arms, e-values,
    shadows, a rollback and a promotion, a model load failure (`broken`), a config reload that succeeds
    and one that fails."""
    config = tmp_path / "switchyard.yaml"
    config.write_text(
        "rollouts:\n"
        "  - endpoint: scorer\n"
        "    control: { model: mlp, version: 1 }\n"
        "    canary: { model: mlp, version: 2, weight: 50 }\n"
        "    shadows: [ { model: mlp, version: 1, sample: 100% } ]\n"
        "    assignment: { header: x-user-id }\n"
        "  - endpoint: ranker\n"
        "    control: { model: mlp, version: 1 }\n"
        "    canary: { model: mlp, version: 2, weight: 50 }\n")
    monkeypatch.setenv("SWITCHYARD_ADMIN_TOKEN", "test-token")
    monkeypatch.setenv("SWITCHYARD_DRAIN_DELAY_SECS", "0")   # stop at once (no load balancer to wait for)
    server = Server(repo, "--strict-readiness", "false", "--config", str(config),
                    "--state-dir", str(tmp_path / "state"))
    try:
        # The e-values are published every 64 requests judged: send until both endpoints show theirs.
        for _ in range(4):
            send(server, "scorer", 64)
            send(server, "ranker", 64)
            text = urllib.request.urlopen(f"http://{server.url}/metrics", timeout=10).read().decode()
            if all(f'switchyard_rollout_error_rate_e_value{{endpoint="{e}"}}' in text for e in ("scorer", "ranker")):
                break
        assert post_admin(server, "scorer/rollback", "test-token")["rollout"]["phase"] == "rolled_back"
        assert post_admin(server, "ranker/promote", "test-token")["rollout"]["phase"] == "promoted"
        # A reload that applies (new bytes, same rollouts), then one that is refused; SIGHUP forces each.
        for text_now, counted in ((config.read_text() + "# changed\n", "success"),
                                  ("rollouts: [ { endpoint: 7 } ]\n", "failure")):
            config.write_text(text_now)
            server.proc.send_signal(signal.SIGHUP)
            text = wait_for_metric(server, f'switchyard_config_reloads_total{{result="{counted}"}}')
    finally:
        server.stop()
    families = metric_families(text)
    assert [n for n, f in families.items() if not f.get("help")] == [], "metrics without HELP text"
    for name in ("switchyard_rollout_rollbacks_total", "switchyard_rollout_promotions_total",
                 "switchyard_rollout_error_rate_e_value", "switchyard_rollout_sample_requests",
                 "switchyard_shadow_cosine_similarity", "switchyard_model_load_failures_total"):
        assert name in families, f"{name} not exposed"

    # Every metric the alerts and the dashboard name is one the server exposes (typos fail here).
    named = set()
    for source in ((PROM_DIR / "alerts.yml").read_text(), "\n".join(dashboard_queries()[1])):
        for name in re.findall(r"\bswitchyard_[a-z_]+[a-z]", source):
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            named.add(family if family in families else name)
    assert named - set(families) == set()

    r = run(tool("promtool"), "check", "metrics", stdin=text)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def wait_for_metric(server, series, patience=10):
    """The exposition once it holds `series` (a name with its labels, as rendered)."""
    deadline = time.time() + patience
    while True:
        text = urllib.request.urlopen(f"http://{server.url}/metrics", timeout=10).read().decode()
        if series in text or time.time() > deadline:
            assert series in text, f"no {series} within {patience} s"
            return text
        time.sleep(0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=5):
    try:
        return json.loads(urllib.request.urlopen(url, timeout=timeout).read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def kubernetes_config_text():
    """The server config the ConfigMap carries: from the rendering when kubectl is here, else the file."""
    if shutil.which("kubectl"):
        r = run("kubectl", "kustomize", KUBE_DIR)
        if r.returncode == 0:
            docs = [d for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "ConfigMap"]
            return docs[0]["data"]["switchyard.yaml"]
    return (KUBE_DIR / "switchyard.yaml").read_text()


def test_real_prometheus_scrapes_the_server_evaluates_the_rules_and_answers_the_dashboard(repo, tmp_path, monkeypatch):
    """The server runs the ConfigMap's own config (the demo rollout `mlp`: 5 % first); Prometheus scrapes
    it every second with alerts.yml loaded, until a rollout metric of the endpoint is queryable."""
    prometheus = tool("prometheus")
    monkeypatch.setenv("SWITCHYARD_DRAIN_DELAY_SECS", "0")
    config = tmp_path / "switchyard.yaml"
    config.write_text(kubernetes_config_text())
    server = Server(repo, "--strict-readiness", "false", "--config", str(config),
                    "--state-dir", str(tmp_path / "state"))
    proc = None
    try:
        send(server, "mlp", 20)
        port = free_port()
        prom_config = tmp_path / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(PROM_DIR / "alerts.yml")],
            "scrape_configs": [{"job_name": "switchyard", "static_configs": [{"targets": [server.url]}]}],
        }))
        with (tmp_path / "prometheus.log").open("w") as log:   # the child keeps its own descriptor
            proc = subprocess.Popen(
                [prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        api = f"http://127.0.0.1:{port}/api/v1"

        def query(expr):
            return get_json(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))

        # The first sample lands about 5.5 s after start (Prometheus hands targets to the scraper on a
        # ~5 s throttle); by then every rule has been evaluated at least once.
        deadline, sample, rules = time.time() + 30, None, None
        while time.time() < deadline and proc.poll() is None:
            try:
                result = query('switchyard_rollout_canary_weight_ratio{endpoint="mlp"}')["data"]["result"]
                rules = [r for g in get_json(f"{api}/rules")["data"]["groups"] for r in g["rules"]]
            except (urllib.error.URLError, ConnectionError, KeyError):
                result = []
            evaluated = rules and all(not r["lastEvaluation"].startswith("0001") for r in rules)
            if result and evaluated:
                sample = result[0]
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()}"
        assert sample is not None, f"no sample within 30 s; rules: {rules}"
        first_weight = yaml.safe_load(config.read_text())["rollouts"][0]["canary"]["steps"][0]["weight"]
        assert sample["metric"]["job"] == "switchyard" and float(sample["value"][1]) == first_weight / 100
        declared = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
        assert len(rules) == sum(len(g["rules"]) for g in declared)
        assert all(r["health"] == "ok" for r in rules), rules

        # Every dashboard query is valid PromQL for this Prometheus (2.42).
        for expr in dashboard_queries()[1]:
            answer = query(as_prometheus_query(expr))
            assert answer["status"] == "success", f"{expr}: {answer}"
        arms = query('sum by (arm) (switchyard_rollout_requests_total{endpoint="mlp"})')["data"]["result"]
        assert sum(float(a["value"][1]) for a in arms) == 20
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()
