"""The multi-machine deployment files refer to real project files and settings, and are schema-valid.

There is no Docker engine or cluster in CI, so these checks are what keeps infra/ from rotting: every path a
service mounts or builds exists, every config it points at loads as a sidrec Config, every secret it needs is
declared in .env.example (and none is committed), and every Kubernetes object validates against the
Kubernetes OpenAPI schema (kubernetes-validate, offline).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from components.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
IN_IMAGE = "/opt/sidrec/"  # where infra/docker/Dockerfile puts the project


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _project_path(in_image: str) -> Path:
    assert in_image.startswith(IN_IMAGE), in_image
    return ROOT / in_image[len(IN_IMAGE) :]


def test_compose_has_the_full_stack():
    services = _compose()["services"]
    for name in [
        "postgres",
        "redis",
        "seaweedfs",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "triton",
    ]:
        assert name in services, name
    gpu = services["triton"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_compose_builds_and_mounts_real_files():
    for name, svc in _compose()["services"].items():
        build = svc.get("build")
        if build:
            context = (INFRA / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: missing {build['dockerfile']}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name}: mounts missing {source}"


def test_compose_dockerfile_copies_real_paths():
    text = (INFRA / "docker" / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"


def test_compose_airflow_env_points_at_project_settings():
    services = _compose()["services"]
    env = services["airflow-scheduler"]["environment"]
    cfg = load_config(_project_path(env["SIDREC_CONFIG"]))
    assert cfg.store.root.startswith("s3://") and cfg.features.online_store == "redis"
    dags = _project_path(env["AIRFLOW__CORE__DAGS_FOLDER"])
    assert dags.is_dir()
    # Triton serves exactly the repository `sidrec export` publishes to in this deployment.
    triton_repo = next(a for a in services["triton"]["command"] if a.startswith("--model-repository="))
    bucket_path = triton_repo.split("=", 1)[1].removeprefix("s3://").split("/", 1)[1]
    assert cfg.serving.model_repository == f"s3://{bucket_path}"
    assert cfg.store.s3_endpoint_url == env["AWS_ENDPOINT_URL"]


def test_compose_airflow_commands_are_real_subcommands():
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for name, svc in _compose()["services"].items():
        cmd = svc.get("command")
        if name.startswith("airflow") and cmd:
            assert cmd[0] == "airflow"
            args = [a for a in cmd[1:] if not a.startswith("-") and not a.isdigit()]
            parser.parse_known_args(args)  # SystemExit on an unknown subcommand


def test_compose_secrets_come_from_env_file_only():
    text = (INFRA / "docker-compose.yml").read_text()
    needed = set(re.findall(r"\$\{(\w+)(?::?[-?][^}]*)?\}", text))
    for script in [INFRA / "seaweedfs" / "entrypoint.sh", INFRA / "airflow" / "create-admin.sh"]:
        needed |= set(re.findall(r"\$\{(\w+):\?", script.read_text()))
    declared = {
        line.split("=")[0]
        for line in (INFRA / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert needed <= declared, needed - declared
    assert "infra/.env" in (ROOT / ".gitignore").read_text()
    assert not (INFRA / ".env").exists() or "infra/.env" in (ROOT / ".gitignore").read_text()


def test_compose_ports_bind_loopback_only():
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def _k8s_docs() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        if path.name == "airflow-values.yaml":
            continue
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


# Custom resources: kubernetes-validate has no schema for them, so each kind has its own structural test.
CUSTOM_KINDS = {("kubeflow.org/v1", "PyTorchJob"): "tests/infra/test_infra_pytorchjob.py"}


@pytest.mark.parametrize("name,doc", _k8s_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_k8s_objects_validate_against_schema(name, doc):
    import kubernetes_validate

    assert doc["kind"] != "Secret", f"{name}: secrets must not live in the repo"
    custom = CUSTOM_KINDS.get((doc["apiVersion"], doc["kind"]))
    if custom:
        assert (ROOT / custom).is_file(), f"{name}: {doc['kind']} has no structural test"
        return
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_k8s_triton_gpu_readiness_and_autoscaling():
    docs = {d["kind"]: d for _, d in _k8s_docs() if d["metadata"]["name"] == "triton"}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "triton"
    for env in container["env"]:
        assert "value" not in env or "SECRET" not in env["name"], "secrets come from secretKeyRef"


def test_k8s_configmap_is_a_valid_deployment_config():
    cm = next(d for _, d in _k8s_docs() if d["kind"] == "ConfigMap")
    cfg = Config.model_validate(yaml.safe_load(cm["data"]["deployment.yaml"]))
    assert cfg.features.online_store == "redis" and cfg.store.root.startswith("s3://")


def test_airflow_helm_values_use_kubernetes_executor_and_secret_refs():
    values = yaml.safe_load((INFRA / "k8s" / "airflow-values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["airflowVersion"].startswith("3.")
    assert all("secretName" in s for s in values["secret"])
    mount = values["volumeMounts"][0]["mountPath"]
    sidrec_config = next(e["value"] for e in values["env"] if e["name"] == "SIDREC_CONFIG")
    assert sidrec_config.startswith(mount)
