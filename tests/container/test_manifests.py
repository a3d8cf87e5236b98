"""The Kubernetes manifest and the compose file, read: they agree with each
other and with the example's pidone.toml. (The manifest also runs, under
podman, in test_webapp_pod.py; the compose file cannot run here, with no
Docker engine: this is all the checking it gets.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib
import yaml

from tests.container.images import WEBAPP

K8S = WEBAPP / "k8s"
WWW_DATA_GID = 33  # Debian's www-data, in every Debian-based image: nginx's group


def pidone_toml() -> dict[str, Any]:
    return tomllib.loads((WEBAPP / "pidone.toml").read_text())


def socket_dir() -> str:
    return str(Path(pidone_toml()["socket"]["app"]["path"]).parent)


def worst_stop_seconds() -> float:
    """pidone stops web and worker together, then redis (what they are after)."""
    config = pidone_toml()
    default = config["pidone"].get("stop_timeout", 10)
    processes = config["process"]
    timeout = {name: p.get("stop_timeout", default) for name, p in processes.items()}
    return float(max(timeout["web"], timeout["worker"]) + timeout["redis"])


def manifest() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / "pidone-webapp.yaml").read_text()) if d]


def pod_spec() -> dict[str, Any]:
    [dep] = [d for d in manifest() if d["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def containers() -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in pod_spec()["containers"]}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((WEBAPP / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_app_and_sidecar_share_an_emptydir_for_the_socket() -> None:
    spec = pod_spec()
    assert "initContainers" not in spec  # pidone fixes the ownership itself
    assert "fsGroup" not in spec.get("securityContext", {})
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {
        name: {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        for name, c in containers().items()
    }
    assert set(mounts) == {"app", "nginx"}
    volume = mounts["app"][socket_dir()]
    assert mounts["nginx"][socket_dir()] == volume
    assert "emptyDir" in volumes[volume]
    shared = set(mounts["app"].values()) & set(mounts["nginx"].values())
    assert shared == {volume}  # the socket's volume, and nothing else


def test_probes_metrics_and_grace_period() -> None:
    [dep] = [d for d in manifest() if d["kind"] == "Deployment"]
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9100"
    assert annotations["prometheus.io/path"] == "/metrics"
    app = containers()["app"]
    assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 9100}
    assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 9100}
    assert app["livenessProbe"]["timeoutSeconds"] >= 1  # /healthz answers within 0.8 s
    assert pod_spec()["terminationGracePeriodSeconds"] > worst_stop_seconds()


def test_security_contexts() -> None:
    app = containers()["app"]["securityContext"]
    assert app["allowPrivilegeEscalation"] is False
    assert app["readOnlyRootFilesystem"] is True
    assert app["capabilities"]["drop"] == ["ALL"]
    assert set(app["capabilities"]["add"]) == {"SETUID", "SETGID", "SETPCAP", "CHOWN", "KILL"}
    nginx = containers()["nginx"]["securityContext"]
    assert nginx["runAsNonRoot"] is True
    assert nginx["runAsGroup"] == WWW_DATA_GID
    assert pidone_toml()["socket"]["app"]["group"] == "www-data"
    assert nginx["capabilities"] == {"drop": ["ALL"]}
    assert nginx["allowPrivilegeEscalation"] is False


def test_nginx_conf_is_one_file() -> None:
    """The ConfigMap holds k8s/nginx.conf (compose mounts that file), and it
    passes requests to pidone's socket."""
    [cm] = [d for d in manifest() if d["kind"] == "ConfigMap"]
    text = (K8S / "nginx.conf").read_text()
    assert cm["data"]["nginx.conf"] == text
    socket = pidone_toml()["socket"]["app"]["path"]
    assert "uwsgi_pass uwsgi_app;" in text
    assert f"server unix:{socket} max_fails=0;" in text
    assert f"server unix:{socket} max_fails=0 backup;" in text
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in containers()["nginx"]["volumeMounts"]}
    [conf] = [n for n, v in volumes.items() if v.get("configMap", {}).get("name")]
    command = containers()["nginx"]["command"]
    assert command[command.index("-c") + 1] == mounts[conf] + "/nginx.conf"


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return float(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_file_agrees() -> None:
    spec = compose()
    app, nginx = spec["services"]["app"], spec["services"]["nginx"]
    assert (WEBAPP / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    assert app["cap_drop"] == ["ALL"]
    assert app["cap_add"] == containers()["app"]["securityContext"]["capabilities"]["add"]
    assert seconds(app["stop_grace_period"]) > worst_stop_seconds()
    assert nginx["cap_drop"] == ["ALL"]
    assert "cap_add" not in nginx
    assert nginx["user"].split(":")[1] == str(WWW_DATA_GID)
    assert nginx["stop_signal"] == "SIGQUIT"  # nginx's graceful stop

    def mounted(service: dict[str, Any]) -> dict[str, str]:
        return dict(reversed(v.split(":", 1)) for v in service.get("volumes", []))

    assert mounted(app)[socket_dir()] == mounted(nginx)[socket_dir()]
    assert mounted(app)[socket_dir()] in spec["volumes"]
    [config] = nginx["configs"]
    path = WEBAPP / spec["configs"][config["source"]]["file"]
    assert path.resolve() == (K8S / "nginx.conf").resolve()
    command = nginx["command"]
    assert command[command.index("-c") + 1] == config["target"]


def test_compose_services_restart_unless_stopped() -> None:
    """Docker's "restart at reboot": every service comes back when the engine
    starts again, or when it exits, unless someone stopped it."""
    services = compose()["services"]
    assert {name: s.get("restart") for name, s in services.items()} == {
        "app": "unless-stopped",
        "nginx": "unless-stopped",
    }
