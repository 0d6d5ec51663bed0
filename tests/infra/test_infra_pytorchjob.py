"""infra/k8s/pytorchjob-train.yaml: a Kubeflow Training Operator PyTorchJob (kubeflow.org/v1) for multi-node training.

kubernetes-validate has no schema for custom resources, so this checks the PyTorchJob fields the manifest uses
against the Training Operator v1 API (`PyTorchJobSpec`: runPolicy, elasticPolicy, pytorchReplicaSpecs,
nprocPerNode; `ReplicaSpec`: replicas, template, restartPolicy; the operator's admission rules: Master and Worker
only, exactly one Master, a container named "pytorch"), validates each replica's pod template as a core/v1
PodTemplate, parses the command with torchrun's own argument parser, and launches that command for two nodes on
127.0.0.1 with the environment the operator gives each pod (a probe module stands in for `components.cli`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MANIFEST = INFRA / "k8s" / "pytorchjob-train.yaml"

# Training Operator v1 API (kubeflow.org/v1, pkg/apis/kubeflow.org/v1): the fields each object may carry.
PYTORCHJOB_SPEC = {"runPolicy", "elasticPolicy", "pytorchReplicaSpecs", "nprocPerNode"}
RUN_POLICY = {
    "cleanPodPolicy",
    "ttlSecondsAfterFinished",
    "activeDeadlineSeconds",
    "backoffLimit",
    "schedulingPolicy",
    "suspend",
    "managedBy",
}
CLEAN_POD_POLICIES = {"All", "Running", "None"}
REPLICA_SPEC = {"replicas", "template", "restartPolicy"}
RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}
REPLICA_TYPES = {"Master", "Worker"}
CONTAINER = "pytorch"  # PyTorchJobDefaultContainerName: the operator injects its env into this container
PORT_NAME = "pytorchjob-port"  # PyTorchJobDefaultPortName: MASTER_PORT comes from this port of the Master
# What the operator sets in every pod of a PyTorchJob with a Master and no elasticPolicy (torchrun reads PET_*).
OPERATOR_ENV = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
OPERATOR_ENV |= {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "PYTHONUNBUFFERED"}
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _job() -> dict:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert len(docs) == 1
    return docs[0]


def _replicas() -> dict[str, dict]:
    return _job()["spec"]["pytorchReplicaSpecs"]


def _container(replica: dict) -> dict:
    return next(c for c in replica["template"]["spec"]["containers"] if c["name"] == CONTAINER)


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_pytorchjob_fields_follow_the_training_operator_v1_api():
    job = _job()
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    assert re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", job["metadata"]["name"])  # DNS-1035, as the webhook
    assert job["metadata"]["namespace"] == "sidrec"
    spec = job["spec"]
    assert set(spec) <= PYTORCHJOB_SPEC, set(spec) - PYTORCHJOB_SPEC
    assert set(spec["runPolicy"]) <= RUN_POLICY
    assert spec["runPolicy"].get("cleanPodPolicy", "None") in CLEAN_POD_POLICIES
    # static Master + Worker job; an elasticPolicy would change PET_NNODES to a range and drop the Master
    assert "elasticPolicy" not in spec
    assert isinstance(spec["nprocPerNode"], str) and re.fullmatch(r"auto|cpu|gpu|[1-9][0-9]*", spec["nprocPerNode"])
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) == REPLICA_TYPES
    assert replicas["Master"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] >= 1
    for name, replica in replicas.items():
        assert set(replica) <= REPLICA_SPEC, f"{name}: {set(replica) - REPLICA_SPEC}"
        assert replica["restartPolicy"] in RESTART_POLICIES
        container = _container(replica)
        assert container["image"], f"{name}: the operator requires an image"
        assert {"name": PORT_NAME, "containerPort": 23456} in container["ports"]
    # one pod template for both roles (a YAML anchor): the command exists once
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]


@pytest.mark.parametrize("role", sorted(REPLICA_TYPES))
def test_pytorchjob_pod_templates_validate_against_the_kubernetes_schema(role):
    import kubernetes_validate

    template = _replicas()[role]["template"]
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    kubernetes_validate.validate(pod_template, kubernetes_validate.latest_version(), strict=True)


def test_pytorchjob_runs_the_sidrec_image_on_gpus_with_nccl():
    job = _job()
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    sidrec_image = compose["x-airflow-common"]
    assert sidrec_image["build"]["dockerfile"] == "infra/docker/Dockerfile"
    container = _container(_replicas()["Master"])
    assert container["image"] == sidrec_image["image"] == "sidrec:latest"
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus  # extended resources: requests == limits
    assert str(gpus) == job["spec"]["nprocPerNode"], "one torchrun process per GPU"
    pod = _replicas()["Master"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    env = _env(container)
    for name in ["NCCL_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_DEBUG", "TORCH_NCCL_ASYNC_ERROR_HANDLING"]:
        assert "value" in env[name], name
    shm = next(v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
    assert {"name": shm["name"], "mountPath": "/dev/shm"} in container["volumeMounts"]


def test_pytorchjob_s3_credentials_and_config_come_from_the_existing_secret_and_configmap():
    container = _container(_replicas()["Master"])
    env = _env(container)
    for name, key in [("AWS_ACCESS_KEY_ID", "access_key_id"), ("AWS_SECRET_ACCESS_KEY", "secret_access_key")]:
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": "sidrec-s3", "key": key}}
    for name, entry in env.items():
        if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", name):
            assert "value" not in entry, f"{name}: from a secretKeyRef, not a literal"
    # the same secret keys Triton reads
    triton = yaml.safe_load_all((INFRA / "k8s" / "triton-deployment.yaml").read_text())
    triton_env = {e["name"]: e for e in next(triton)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert triton_env["AWS_ACCESS_KEY_ID"] == env["AWS_ACCESS_KEY_ID"]
    assert triton_env["AWS_SECRET_ACCESS_KEY"] == env["AWS_SECRET_ACCESS_KEY"]
    # --config is the deployment.yaml of the sidrec-config ConfigMap, mounted where the Airflow pods mount it
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent))
    volume = next(v for v in _replicas()["Master"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    configmap = next(yaml.safe_load_all((INFRA / "k8s" / "configmap.yaml").read_text()))
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_path.name in configmap["data"]
    assert env["SIDREC_CONFIG"]["value"] == str(config_path)
    values = yaml.safe_load((INFRA / "k8s" / "airflow-values.yaml").read_text())
    assert values["volumeMounts"][0]["mountPath"] == mount["mountPath"]
    # the store (S3) is the only shared state: no volume but the config, /dev/shm and nothing persistent
    for volume in _replicas()["Master"]["template"]["spec"]["volumes"]:
        assert set(volume) - {"name"} <= {"configMap", "emptyDir"}, volume


def _torchrun_argv(container: dict) -> tuple[list[str], list[str]]:
    """(torchrun's own options, the module and its args) from the container's command + args."""
    argv = [*container["command"], *container["args"]]
    assert argv[0] == "torchrun"
    cut = argv.index("-m")
    return argv[1:cut], argv[cut:]


def test_pytorchjob_command_is_torchrun_running_sidrec_pipeline_train():
    """Structure only: `components.cli` and its `pipeline train` group may not exist in this tree yet."""
    container = _container(_replicas()["Master"])
    env = _env(container)
    # every $(VAR) is defined in the container or set by the operator (else Kubernetes passes it literally)
    argv = [*container["command"], *container["args"]]
    for ref in {r for a in argv for r in VAR_REF.findall(a)}:
        assert ref in env or ref in OPERATOR_ENV, f"$({ref}) is not defined"
    options, module = _torchrun_argv(container)
    # torchrun sizes come from the operator, i.e. from the spec itself (replicas, nprocPerNode): written once
    assert "--nnodes=$(PET_NNODES)" in options and "--nproc-per-node=$(PET_NPROC_PER_NODE)" in options
    from torch.distributed.run import get_args_parser

    fake = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "m"}
    fake |= {"PET_MASTER_PORT": "23456"} | {k: e.get("value", "") for k, e in env.items()}
    parsed = get_args_parser().parse_args([VAR_REF.sub(lambda m: fake[m.group(1)], a) for a in options + module])
    assert (parsed.nnodes, parsed.nproc_per_node, parsed.node_rank) == ("2", "1", 1)
    assert (parsed.master_addr, parsed.master_port, parsed.rdzv_backend) == ("m", 23456, "static")
    assert parsed.module and parsed.training_script == "components.cli"
    assert len(parsed.training_script_args) == len(module) - 2
    sidrec = module[2:]  # as written, before the kubelet expands $(VAR)
    assert sidrec[:2] == ["pipeline", "train"]
    flags = dict(zip(sidrec[2::2], sidrec[3::2], strict=True))
    assert set(flags) == {"--config", "--examples-version", "--sid-version"}
    # input versions are pinned per job (every rank must read the same artifacts) and set in one place
    for flag, var in [("--examples-version", "EXAMPLES_VERSION"), ("--sid-version", "SID_VERSION")]:
        assert flags[flag] == f"$({var})"
        assert env[var]["value"] == f"@{var}@", "substituted at submission (infra/README.md)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pytorchjob_command_forms_one_process_group_across_two_nodes(tmp_path):
    """The manifest's torchrun line, expanded as the kubelet does with the env the operator gives the Master and
    Worker pods, launched for both nodes on 127.0.0.1: one group of 2, ranks 0 and 1, args intact."""
    container = _container(_replicas()["Master"])
    options, module = _torchrun_argv(container)
    module = ["-m", "_torchrun_probe", *module[2:]]  # the probe stands in for components.cli
    port = _free_port()
    procs = []
    for node_rank in range(2):
        pod_env = {k: e["value"] for k, e in _env(container).items() if "value" in e}
        pod_env |= {"EXAMPLES_VERSION": "ex-v1", "SID_VERSION": "sid-v1"}  # what the README's sed writes
        pod_env |= {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": str(node_rank)}
        pod_env |= {"PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(port)}
        argv = [VAR_REF.sub(lambda m, e=pod_env: e[m.group(1)], a) for a in [*options, *module]]
        run_env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "TORCHELASTIC_"))}
        run_env |= {k: v for k, v in pod_env.items() if not k.startswith(("NCCL_", "AWS_"))}
        run_env |= {"PYTHONPATH": str(Path(__file__).parent), "PROBE_OUT": str(tmp_path), "GLOO_SOCKET_IFNAME": "lo"}
        run_env |= {"OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", *argv]
        procs.append(subprocess.Popen(cmd, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=180)[0])
    finally:
        for proc in procs:
            proc.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    reports = sorted((json.loads(f.read_text()) for f in tmp_path.glob("rank*.json")), key=lambda r: r["rank"])
    seen = [(r["rank"], r["group_rank"], r["local_rank"], r["world_size"]) for r in reports]
    assert seen == [(0, 0, 0, 2), (1, 1, 0, 2)]  # (global rank, node rank, local rank, world size)
    assert {r["sum"] for r in reports} == {3.0}  # 1 + 2: both nodes are in one group
    expected = ["pipeline", "train", "--config", "/opt/sidrec/configs/k8s/deployment.yaml"]
    expected += ["--examples-version", "ex-v1", "--sid-version", "sid-v1"]
    assert all(r["argv"] == expected for r in reports)
