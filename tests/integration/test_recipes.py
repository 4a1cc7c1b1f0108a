"""The deploy recipes in conf/ agree with the options they name (#12): conf/Dockerfile,
conf/kubernetes.yaml and conf/container.toml, read as the tools would read them; the
config itself passes the real command's --check-config."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from gunrunner import config
from gunrunner.net import parse_bind
from tests.integration.test_cli import run_cli

CONF = Path(__file__).resolve().parents[2] / "conf"


def container_options() -> config.Options:
    return config.load({}, str(CONF / "container.toml"), environ={}).options


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (CONF / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            found.append((instruction.upper(), rest.strip()))
    return found


def instruction(name: str) -> list[str]:
    return [rest for found, rest in dockerfile() if found == name]


def kubernetes() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((CONF / "kubernetes.yaml").read_text()))
    return {document["kind"]: document for document in documents}


def container() -> dict[str, Any]:
    spec = kubernetes()["Deployment"]["spec"]["template"]["spec"]
    (web,) = spec["containers"]
    return dict(web)


def named_ports() -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container()["ports"]}


def test_ports_agree_across_config_image_deployment_and_service() -> None:
    options = container_options()
    (bind,) = options.bind
    assert options.metrics_bind is not None
    app_port, admin_port = parse_bind(bind).port, parse_bind(options.metrics_bind).port
    assert named_ports() == {"http": app_port, "admin": admin_port}
    assert instruction("EXPOSE") == [f"{app_port} {admin_port}"]
    (service_port,) = kubernetes()["Service"]["spec"]["ports"]
    assert service_port["targetPort"] == "http"  # the admin port is not published
    annotations = kubernetes()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(admin_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_probes_use_the_admin_endpoints() -> None:
    web = container()
    assert web["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert web["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}


def test_the_grace_period_covers_prestop_and_the_drain() -> None:
    options = container_options()
    spec = kubernetes()["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > pre_stop + options.graceful_timeout


def test_workers_auto_against_a_cpu_limit() -> None:
    assert container_options().workers == "auto"
    limits = container()["resources"]["limits"]
    assert float(limits["cpu"]) >= 1


def test_the_image_runs_gunrunner_as_pid_1_not_root_with_the_mounted_config() -> None:
    (entrypoint,) = instruction("ENTRYPOINT")
    argv = json.loads(entrypoint)  # exec form: a JSON array, no shell in between
    assert argv[0] == "gunrunner" and argv[1] == "--config"
    config_path = argv[2]
    assert any(copy.endswith(f"conf/container.toml {config_path}") for copy in instruction("COPY"))
    (mount,) = container()["volumeMounts"]
    assert config_path == f"{mount['mountPath']}/gunrunner.toml"
    assert instruction("STOPSIGNAL") == ["SIGTERM"]
    (user,) = instruction("USER")
    assert user not in ("0", "root")
    (adduser,) = [run for run in instruction("RUN") if "useradd" in run]
    uid = shlex.split(adduser)[shlex.split(adduser).index("--uid") + 1]
    assert user == uid
    security = kubernetes()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and str(security["runAsUser"]) == uid
    assert instruction("FROM")[0].endswith("-slim")


def test_the_container_config_passes_check_config() -> None:
    """The real command accepts conf/container.toml (with a test app: the recipe's app
    module is the user's). Nothing is bound: --check-config probes and releases."""
    result = run_cli(
        "--config", str(CONF / "container.toml"), "tests.apps.basic:wsgi_pid",
        "--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--check-config",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout
