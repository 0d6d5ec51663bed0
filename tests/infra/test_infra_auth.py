"""The compose and Helm Airflow stacks log users in for real, and every credential they use comes from a secret.

Local `sidrec airflow start` runs SimpleAuthManager with all-admins (no login) on loopback; these deployment files
must never do that. They run the FAB auth manager (users and passwords in the metadata DB), the first admin's
password comes from a docker secret (compose) or a Kubernetes Secret (Helm), and no file here holds a literal
password, key or token. No Docker engine or cluster is needed: scripts/setup.sh installs the FAB provider as the
image does, so the FAB CLI flags are checked, and a real api-server on 127.0.0.1 with the FAB auth manager logs
in the admin that create-admin.sh made.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
TRUE = {"true", "1", "yes", "on"}
# Names of settings that carry credentials.
SENSITIVE = re.compile(r"pass(word)?|secret|token|fernet|credential|private|_key$|^key$|connection", re.I)
# A value that is a reference to a secret held elsewhere, not the secret itself.
COMPOSE_REF = re.compile(r"^\$\{\w+(:?\?[^}]*)?\}$")


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def _values() -> dict:
    return yaml.safe_load((INFRA / "k8s" / "airflow-values.yaml").read_text())


def _airflow_services() -> dict[str, dict]:
    return {n: s for n, s in _compose()["services"].items() if n.startswith("airflow")}


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


# ---- compose -------------------------------------------------------------------------------------------------


def test_compose_airflow_runs_the_fab_auth_manager_never_all_admins():
    services = _airflow_services()
    assert {"airflow-init", "airflow-api-server", "airflow-create-admin"} <= set(services)
    for name, svc in services.items():
        env = svc["environment"]
        assert env.get("AIRFLOW__CORE__AUTH_MANAGER") == FAB, f"{name}: no real auth manager"
        all_admins = str(env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False"))
        assert all_admins.lower() not in TRUE, f"{name} runs all-admins"
    # infra/.env is read by every Airflow container; it must not be able to switch auth off either
    # (compose gives `environment:` precedence over env_file, and the template does not try).
    assert not [k for k in _env_example() if "AUTH_MANAGER" in k], "auth settings belong in docker-compose.yml"


def test_compose_environment_holds_no_literal_credentials():
    for name, svc in _compose()["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if SENSITIVE.search(key):
                assert COMPOSE_REF.match(str(value)), f"{name}: {key} must come from infra/.env, not the repo"
            # credentials inside URLs too (e.g. the metadata DB connection string)
            for user_pass in re.findall(r"://[^/@\s]+:([^@/\s]+)@", str(value)):
                assert COMPOSE_REF.match(user_pass), f"{name}: {key} embeds a literal password"


def test_compose_env_template_holds_placeholders_only():
    for key, value in _env_example().items():
        if SENSITIVE.search(key):
            assert value.startswith("change-me"), f"infra/.env.example: {key} looks like a real secret"
    assert not (INFRA / ".env").exists() or _ignored("infra/.env")


def _ignored(path: str) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False)
    return done.returncode == 0


def _tracked(path: str) -> bool:
    done = subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True, check=False)
    return done.returncode == 0


def test_compose_admin_password_is_a_docker_secret_outside_the_repo():
    compose = _compose()
    secrets = compose["secrets"]
    assert set(secrets) == {"airflow_admin_password"}
    for spec in secrets.values():
        rel = (Path("infra") / spec["file"]).as_posix().replace("infra/./", "infra/")
        assert _ignored(rel), f"{rel} must be gitignored"
        assert not _tracked(rel), f"{rel} is committed"
    # Only the one-shot admin service sees it; nothing else gets it through env or mounts.
    holders = {n for n, s in compose["services"].items() if s.get("secrets")}
    assert holders == {"airflow-create-admin"}
    assert compose["services"]["airflow-create-admin"]["secrets"] == ["airflow_admin_password"]
    assert not [k for k in _env_example() if "ADMIN_PASSWORD" in k]


def test_compose_create_admin_runs_the_mounted_script_with_the_mounted_secret():
    svc = _compose()["services"]["airflow-create-admin"]
    shell, script_in_container = svc["entrypoint"]
    assert shell == "/bin/sh"
    mounts = dict(v.split(":")[:2] for v in svc["volumes"])
    host_script = next(src for src, dst in mounts.items() if dst == script_in_container)
    text = (INFRA / host_script).read_text()
    assert "/run/secrets/airflow_admin_password" in text  # where compose mounts the secret of that name
    assert "airflow users create" in text and "--password" in text and "--role Admin" in text
    assert svc["restart"] == "no"


def test_compose_airflow_waits_for_migrations_which_create_the_user_tables():
    for name, svc in _airflow_services().items():
        if name == "airflow-init":
            continue
        dep = svc["depends_on"].get("airflow-init")
        assert dep == {"condition": "service_completed_successfully"}, f"{name} starts before `db migrate`"


def test_fab_users_create_accepts_the_flags_the_image_scripts_pass():
    """The flags create-admin.sh and the Helm job pass to `airflow users create` exist (FAB provider's CLI).

    scripts/setup.sh installs the provider as the image does (airflow-auth.txt on the lock), so this runs everywhere.
    """
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

    assert f"{FabAuthManager.__module__}.{FabAuthManager.__name__}" == FAB
    import argparse

    from airflow.cli.cli_config import GroupCommand
    from airflow.cli.cli_parser import _add_command

    group = next(c for c in FabAuthManager.get_cli_commands() if c.name == "users")
    parser = argparse.ArgumentParser()
    _add_command(parser.add_subparsers(dest="cmd"), GroupCommand(name="users", help="", subcommands=group.subcommands))
    helm_args = _values()["createUserJob"]["args"][4:]
    flags = [a for a in helm_args if a.startswith("-")]
    parser.parse_args(["users", "create", *[x for f in flags for x in (f, "v")], "--password", "p"])
    script = (INFRA / "airflow" / "create-admin.sh").read_text()
    script_flags = re.findall(r"(--[a-z]+)", script.split("airflow users create", 1)[1])
    parser.parse_args(["users", "create", *[x for f in script_flags for x in (f, "v")]])


def _call(url: str, method: str = "GET", body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_fab_api_server_logs_in_the_admin_create_admin_sh_made_and_nobody_else(tmp_path):
    """What compose runs, on 127.0.0.1: `db migrate` with the FAB auth manager, create-admin.sh reading the password
    from a secret file, then the api-server: no token 401, a wrong password 401, the right one a token that reads
    the API (the Docker stacks themselves are not brought up here)."""
    from components.local.airflow import airflow_environment
    from components.local.procs import free_port, port_open, start_process, stop_process, wait_until

    port = free_port()
    env = airflow_environment(tmp_path / "airflow", port, dags_folder=tmp_path / "dags")
    (tmp_path / "dags").mkdir()
    env["AIRFLOW__CORE__AUTH_MANAGER"] = FAB
    env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS")
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run([*airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stderr[-2000:]
    secret = tmp_path / "airflow_admin_password"
    secret.write_text("a-long-test-password")
    secret.chmod(0o600)
    admin = {"AIRFLOW_ADMIN_USERNAME": "admin", "AIRFLOW_ADMIN_EMAIL": "admin@example.com"}
    create = [*admin.items(), ("AIRFLOW_ADMIN_PASSWORD_FILE", str(secret))]
    made = subprocess.run(
        ["sh", str(INFRA / "airflow" / "create-admin.sh")], env={**env, **dict(create)}, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr[-2000:]
    missing = subprocess.run(
        ["sh", str(INFRA / "airflow" / "create-admin.sh")],
        env={**env, **admin, "AIRFLOW_ADMIN_PASSWORD_FILE": str(tmp_path / "none")},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "missing or empty" in missing.stderr
    log = tmp_path / "api-server.log"
    server = start_process([*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)], log, env=env)
    try:
        wait_until(lambda: port_open(port), 180, "FAB api-server", server, log)
        url = f"http://127.0.0.1:{port}"
        assert _call(f"{url}/api/v2/dags")[0] == 401
        assert _call(f"{url}/auth/token", "POST", {"username": "admin", "password": "wrong"})[0] == 401
        status, body = _call(f"{url}/auth/token", "POST", {"username": "admin", "password": "a-long-test-password"})
        assert status == 201 and body.get("access_token"), (status, body)
        status, dags = _call(f"{url}/api/v2/dags", token=body["access_token"])
        assert status == 200 and dags["total_entries"] == 0
    finally:
        stop_process(server)


def test_image_installs_the_fab_provider_pinned():
    pins = (INFRA / "docker" / "airflow-auth.txt").read_text()
    assert re.search(r"^apache-airflow-providers-fab==\d+\.\d+\.\d+$", pins, re.M)
    for line in pins.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.+]*", line), f"unpinned: {line}"
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert "infra/docker/airflow-auth.txt" in dockerfile
    assert "-c requirements.lock -r airflow-auth.txt" in dockerfile  # the lock constrains it: nothing locked moves


# ---- Helm ----------------------------------------------------------------------------------------------------


def test_helm_airflow_runs_the_fab_auth_manager_never_all_admins():
    values = _values()
    core = values["config"]["core"]
    assert core["auth_manager"] == FAB
    assert str(core.get("simple_auth_manager_all_admins", "False")).lower() not in TRUE
    for env in values.get("env", []):
        if env["name"] == "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS":
            assert str(env.get("value")).lower() not in TRUE
        assert env["name"] != "AIRFLOW__CORE__AUTH_MANAGER" or env.get("value") == FAB
    assert "ALL_ADMINS" not in str(values.get("extraEnv") or "")


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))
    else:
        yield path, node


def test_helm_values_hold_no_literal_credentials():
    values = _values()
    # every credential the chart needs is a Secret referenced by name
    assert values["data"]["metadataSecretName"] and values["jwtSecretName"] and values["apiSecretKeySecretName"]
    for literal in ["apiSecretKey", "jwtSecret", "fernetKey", "webserverSecretKey", "webserverSecretKeySecretName"]:
        assert values.get(literal) is None, f"{literal}: use a Secret"
    assert "metadataConnection" not in values["data"]
    for entry in values["secret"]:
        assert set(entry) == {"envName", "secretName", "secretKey"}
    for env in values.get("env", []):
        assert not SENSITIVE.search(env["name"]) or "value" not in env, f"{env['name']}: use `secret:`"
    # No leaf under a credential-named key is a literal, except references to Secrets and the chart's
    # defaultUser.password, which the create-user args below never use (the chart only prints it).
    for path, value in _walk(values):
        key = path[-1]
        if not SENSITIVE.search(key) or key.endswith(("SecretName", "secretName", "secretKey")):
            continue
        if path == ("createUserJob", "defaultUser", "password"):
            assert str(value).startswith("see Secret "), "defaultUser.password must not hold a password"
            continue
        pytest.fail(f"{'.'.join(path)} holds a literal credential")


def test_helm_create_user_job_reads_the_password_from_a_mounted_secret():
    job = _values()["createUserJob"]
    assert job["enabled"] and job["defaultUser"]["enabled"]
    assert job["defaultUser"]["role"] == "Admin"
    bash, dash_c, script, dollar0, *args = job["args"]
    assert (bash, dash_c, dollar0) == ("bash", "-c", "--")
    joined = " ".join(job["args"])
    assert "defaultUser.password" not in joined, "the password must not come from the values"
    assert "-p" not in args and "--password" not in args
    match = re.fullmatch(r'exec airflow users create "\$@" --password "\$\(cat (/[\w/.-]+)\)"', script)
    assert match, script
    password_file = Path(match.group(1))
    mount = next(m for m in job["extraVolumeMounts"] if m["mountPath"] == str(password_file.parent))
    assert mount["readOnly"] is True
    volume = next(v for v in job["extraVolumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == "sidrec-airflow-admin"
    assert password_file.name == "password"  # the Secret's key, as infra/README.md creates it


def test_readme_documents_authentication_and_the_secrets_the_files_reference():
    readme = (INFRA / "README.md").read_text()
    section = readme.split("## Authentication", 1)[1].split("\n## ", 1)[0]
    values = _values()
    for name in [
        values["data"]["metadataSecretName"],
        values["jwtSecretName"],
        values["apiSecretKeySecretName"],
        "sidrec-airflow-admin",
        "infra/secrets/airflow_admin_password",
        "AIRFLOW__API__SECRET_KEY",
        "all-admins",
        "loopback",
    ]:
        assert name in section, f"infra/README.md 'Authentication' does not mention {name}"
