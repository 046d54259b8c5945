"""docker-compose.yml and its Prometheus/Grafana files: parsed and cross-checked (no Docker here)."""

import json
from pathlib import Path

import pytest
import yaml

from riskwatch.metrics import WorkerMetrics
from riskwatch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_wiring():
    c = compose()
    svc = c["services"]
    assert {"kafka", "redis", "worker", "dispatcher", "api", "prometheus", "grafana"} <= set(svc)
    kafka_env = svc["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert "zookeeper" not in svc
    assert "--appendonly" in svc["redis"]["command"] and "yes" in svc["redis"]["command"]
    assert svc["worker"]["deploy"]["replicas"] == 2
    # a dispatcher exits when its Redis goes away (measured: exit 1 at start without Redis): restarted
    assert all(svc[name].get("restart") == "unless-stopped" for name in ("worker", "dispatcher", "api"))
    assert "restart" not in svc["topics"]  # a one-shot job the others wait for
    # replicas must not share a state directory (riskwatch.datadir refuses the second)
    assert not any(str(v).split(":")[0] in c.get("volumes", {}) for v in svc["worker"].get("volumes", []))
    for name in ("worker", "dispatcher", "api", "topics"):
        env = svc[name]["environment"]
        assert env["RISKWATCH_BROKER"] == "kafka:9092" and env["RISKWATCH_REDIS_URL"].startswith("redis://redis:")
        assert set(env) <= set(f"RISKWATCH_{k.upper()}" for k in Settings.model_fields), env
    assert svc["worker"]["environment"]["RISKWATCH_WORKER_METRICS_PORT"] == "9100"
    assert "8000:8000" in svc["api"]["ports"]


def test_prometheus_scrapes_every_riskwatch_process():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert jobs["riskwatch-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["riskwatch-dispatcher"]["static_configs"][0]["targets"] == [
        "dispatcher:" + compose()["services"]["dispatcher"]["environment"]["RISKWATCH_DISPATCHER_METRICS_PORT"]]
    assert compose()["services"]["dispatcher"]["volumes"][0].startswith("./config/alerts.yaml:")
    sd = jobs["riskwatch-worker"]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and sd["port"] == 9100
    mounted = compose()["services"]["prometheus"]["volumes"][0]
    assert mounted.startswith("./deploy/prometheus.yml:")


@pytest.mark.parametrize("name", ["riskwatch.json", "supervision.json"])
def test_dashboard_queries_metrics_that_exist(name):
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / name).read_text())
    names = _metric_names()
    for panel in dash["panels"]:
        for target in panel["targets"]:  # every query of a panel (until 2026-12-06 only its first)
            words = target["expr"].replace("(", " ").replace(")", " ").replace("[", " ").replace("{", " ").split()
            used = [w for w in words if w.startswith("riskwatch_")]
            assert used and all(u in names for u in used), (panel["title"], used)


def _metric_names() -> set[str]:
    from riskwatch.alerts.metrics import AlertMetrics
    from riskwatch.api.app import audit_shipper
    from riskwatch.api.context import ApiContext
    from riskwatch.settings import Settings

    api = ApiContext(Settings())
    audit_shipper(api)  # its counters are on the API's registry
    names = set()
    for registry in (WorkerMetrics().registry, AlertMetrics().registry, api.registry):
        for metric in registry.collect():
            names |= {metric.name + suffix for suffix in ("", "_total", "_bucket", "_count", "_sum", "_info")}
    return names


def test_alert_rules_query_metrics_that_exist_and_prometheus_loads_them():
    import re

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-rules.yml").read_text())
    names = _metric_names()
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert {"RiskwatchWorkerDown", "RiskwatchStalled", "RiskwatchFallingBehind", "RiskwatchEngineErrors",
            "RiskwatchFeedQuiet"} <= set(exprs)
    for alert, expr in exprs.items():
        used = set(re.findall(r"riskwatch_[a-z_]+", expr))
        assert used <= names, (alert, used - names)
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/rules.yml"]
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus-rules.yml:/etc/prometheus/rules.yml:ro" in mounts


def test_alert_rules_pass_promtool_and_their_unit_tests():
    """promtool (Debian package `prometheus`; .ci/run installs it) checks the rules and runs
    deploy/prometheus-rules.test.yml: synthetic series in, the alerts that must (not) fire out."""
    import shutil
    import subprocess

    import pytest

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus); .ci/run installs it")
    deploy = ROOT / "deploy"
    checked = subprocess.run([promtool, "check", "rules", "prometheus-rules.yml"], cwd=deploy,
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "19 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "prometheus-rules.test.yml"], cwd=deploy,
                            capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
