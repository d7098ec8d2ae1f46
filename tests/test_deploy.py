"""binder/, deploy/ and docs/jupyterhub.md stay valid: repo2docker's files are consistent
with the package, the kernel installs per user, every Zero to JupyterHub values file
validates against the schema of the chart keys it uses, every hub.extraConfig snippet
sets only KubeSpawner traits that exist, and the Kubernetes rules that would reject a pod
(privileged without privilege escalation, procMount Unmasked without hostUsers: false)
hold.  No cluster here: the checks are on the files.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINDER = os.path.join(ROOT, "binder")
Z2JH = os.path.join(ROOT, "deploy", "z2jh")
SCHEMA = os.path.join(Z2JH, "values.schema.json")
DEBIAN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # Debian policy 5.6.1


def _lines(path: str) -> list[str]:
    with open(path) as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


class Recorder:
    """Stands in for JupyterHub's `c`: records c.Class.trait = value."""

    def __init__(self, path: str = "", sets: dict | None = None):
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_sets", {} if sets is None else sets)

    def __getattr__(self, name):
        return Recorder(f"{self._path}.{name}".lstrip("."), self._sets)

    def __setattr__(self, name, value):
        self._sets[f"{self._path}.{name}"] = value


def run_config(code: str) -> dict:
    c = Recorder()
    exec(compile(code, "<config>", "exec"), {"c": c, "get_config": lambda: c})
    return c._sets


# ---- binder/ ---------------------------------------------------------------------------------


def _setup_packages() -> set[str]:
    with open(os.path.join(ROOT, "scripts", "setup")) as f:
        text = f.read()
    block = text.split("DEBIAN_PACKAGES=(", 1)[1].split(")", 1)[0]
    return {word for line in block.splitlines() for word in line.split("#", 1)[0].split()}


def test_apt_txt_names_debian_packages():
    names = _lines(os.path.join(BINDER, "apt.txt"))
    assert names and all(DEBIAN_NAME.match(n) for n in names), names
    assert {"busybox-static", "uidmap"} <= set(names)  # the builtin image; multi-id where allowed


def test_apt_txt_packages_exist_in_the_archive():
    if not shutil.which("apt-cache"):
        pytest.skip("no apt-cache here to look the packages up")
    known = _setup_packages()
    for name in _lines(os.path.join(BINDER, "apt.txt")):
        if name in known:
            continue
        policy = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
        if "Candidate:" not in subprocess.run(["apt-cache", "policy", "python3"], capture_output=True,
                                               text=True).stdout:
            pytest.skip("apt-cache has no package lists (run apt-get update)")
        assert re.search(r"Candidate: (?!\(none\))", policy), f"{name} is not in this machine's archive"


def _normalized(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, 1)[0].lower().replace("_", "-")


def test_requirements_match_the_package_dependencies():
    from packaging.requirements import Requirement

    wanted = _lines(os.path.join(BINDER, "requirements.txt"))
    for line in wanted:
        Requirement(line)  # raises on a line pip would not understand
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["jupyter"]
    assert {_normalized(r) for r in wanted} == {_normalized(r) for r in declared}


def _post_build() -> str:
    return os.path.join(BINDER, "postBuild")


def test_post_build_is_an_executable_bash_script():
    path = _post_build()
    assert os.access(path, os.X_OK), "repo2docker runs postBuild directly: chmod +x binder/postBuild"
    with open(path) as f:
        assert f.readline().startswith("#!/bin/bash")
    check = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_post_build_installs_the_kernel_per_user_with_a_command_the_cli_parses():
    from containerlab_magic import cli

    with open(_post_build()) as f:
        calls = [shlex.split(line) for line in f if "containerlab_magic.cli" in line and not line.startswith("#")]
    assert calls, "postBuild must register the kernel"
    for argv in calls:
        args = cli.build_parser().parse_args(argv[argv.index("containerlab_magic.cli") + 1:])
        assert args.verb == "install-kernel" and args.user


def test_post_build_opens_the_tour():
    with open(_post_build()) as f:
        text = f.read()
    url = re.search(r'default_url = "/lab/tree/([^"]+)"', text)
    assert url and os.path.isfile(os.path.join(ROOT, url.group(1))), "the tour postBuild opens must exist"


def test_install_kernel_user_writes_a_kernelspec_in_the_users_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(HOME=str(tmp_path), PYTHONPATH=ROOT)
    ran = subprocess.run([sys.executable, "-m", "containerlab_magic.cli", "install-kernel", "--user"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert ran.returncode == 0, ran.stderr
    spec = tmp_path / ".local/share/jupyter/kernels/containerlab/kernel.json"
    argv = json.loads(spec.read_text())["argv"]
    assert "--ext=containerlab_magic.kernel" in argv and argv[0] == sys.executable


# ---- deploy/z2jh ---------------------------------------------------------------------------------


def _values() -> dict[str, dict]:
    import yaml

    found = {}
    for name in sorted(os.listdir(Z2JH)):
        if name.endswith(".yaml"):
            with open(os.path.join(Z2JH, name)) as f:
                found[name] = yaml.safe_load(f)
    return found


def _schema() -> dict:
    with open(SCHEMA) as f:
        return json.load(f)


def test_one_values_file_per_rung():
    assert set(_values()) == {"privileged.yaml", "userns.yaml", "locked-down.yaml"}


@pytest.mark.parametrize("name", ["privileged.yaml", "userns.yaml", "locked-down.yaml"])
def test_values_validate_against_the_chart_keys(name):
    import jsonschema

    jsonschema.validate(_values()[name], _schema())


def test_the_schema_rejects_a_misspelt_key():
    import jsonschema

    with pytest.raises(jsonschema.ValidationError, match="allowPrivilegeEscalaton"):
        jsonschema.validate({"singleuser": {"allowPrivilegeEscalaton": False}}, _schema())


def _effective(values: dict) -> dict:
    """What KubeSpawner would get: the chart's keys, then hub.extraConfig's assignments."""
    user = values.get("singleuser", {})
    traits = {"uid": user.get("uid", 1000), "allow_privilege_escalation": user.get("allowPrivilegeEscalation", False),
              "extra_pod_config": user.get("extraPodConfig", {}), "privileged": False,
              "container_security_context": {}, "pod_security_context": {}, "args": []}
    for code in values.get("hub", {}).get("extraConfig", {}).values():
        for key, value in run_config(code).items():
            cls, trait = key.split(".", 1)
            assert cls == "KubeSpawner", f"extraConfig sets {key}: only KubeSpawner traits here"
            traits[trait] = value
    return traits


@pytest.mark.parametrize("name", ["privileged.yaml", "userns.yaml", "locked-down.yaml"])
def test_extra_config_sets_only_real_traits_and_kubernetes_would_accept_the_pod(name):
    traits = _effective(_values()[name])
    assert set(traits) <= set(_schema()["x-kubespawner-traits"]) | {"uid"}
    context = traits["container_security_context"]
    privileged = context.get("privileged", traits["privileged"])
    escalation = context.get("allowPrivilegeEscalation", traits["allow_privilege_escalation"])
    assert not (privileged and escalation is False), "Kubernetes refuses privileged without privilege escalation"
    if context.get("procMount") == "Unmasked":
        assert traits["extra_pod_config"].get("hostUsers") is False, "procMount: Unmasked needs hostUsers: false"
    if traits["uid"] == 0:
        assert "--allow-root" in traits["args"], "the single-user server refuses root without --allow-root"
    assert all("_" not in key for key in {**context, **traits["pod_security_context"]}), "camelCase keys only"


def test_each_file_asks_for_what_its_rung_needs():
    values = _values()
    root = _effective(values["privileged.yaml"])
    assert root["privileged"] is True and root["uid"] == 0
    userns = _effective(values["userns.yaml"])
    assert userns["extra_pod_config"] == {"hostUsers": False}
    assert userns["container_security_context"]["procMount"] == "Unmasked"
    assert userns["pod_security_context"]["seccompProfile"]["type"] in ("Unconfined", "Localhost")
    plain = _effective(values["locked-down.yaml"])
    assert plain["uid"] == 1000 and plain["allow_privilege_escalation"] is False and not plain["privileged"]


# ---- deploy/systemd and the docs -------------------------------------------------------------------


def test_systemd_spawner_delegates_the_controllers_the_lab_uses():
    with open(os.path.join(ROOT, "deploy", "systemd", "jupyterhub_config.py")) as f:
        sets = run_config(f.read())
    assert sets["JupyterHub.spawner_class"] == "systemdspawner.SystemdSpawner"
    delegate = sets["SystemdSpawner.unit_extra_properties"]["Delegate"].split()
    assert {"memory", "pids", "cpu"} <= set(delegate)


def test_user_service_drop_in_delegates():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, "deploy", "systemd", "user@.service.d", "delegate.conf"))
    assert {"memory", "pids", "cpu"} <= set(parser["Service"]["Delegate"].split())


def test_the_guide_names_every_deploy_file_and_only_real_traits():
    with open(os.path.join(ROOT, "docs", "jupyterhub.md")) as f:
        guide = f.read()
    for name in _values():
        assert f"deploy/z2jh/{name}" in guide
    assert "deploy/systemd/jupyterhub_config.py" in guide
    for trait in re.findall(r"c\.KubeSpawner\.(\w+)", guide):
        assert trait in _schema()["x-kubespawner-traits"], trait
