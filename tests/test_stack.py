"""Stacks: the compose-style document's checks, and real stacks brought up and down.

The three-service app is the course's (notebook 05): busybox httpd as the web
front, a small sh API behind nc, and an nc store; the API waits for the
store, the web front for the API's healthcheck.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import ipython_shell, needs_root

from containerlab_magic import stack as model
from containerlab_magic.runtime.errors import NotFound, SpecError

APP = """
services:
  store:
    image: busybox
    command: ["sh", "-c", "echo store ready; while true; do echo 42 | nc -l -p 7000; done"]
    pids_limit: 32
  api:
    image: busybox
    command: ["sh", "-c", "echo api ready; while true; do echo \\"count=$(nc store 7000)\\" | nc -l -p 8000; done"]
    depends_on: [store]
    environment: {MODE: test}
    healthcheck: {test: ["CMD-SHELL", "nc 127.0.0.1 8000 </dev/null | grep -q count="], interval: 100ms, retries: 50}
    deploy: {resources: {limits: {memory: 32M}}}
  web:
    image: busybox
    command: httpd -f -p 80
    depends_on: {api: {condition: service_healthy}}
    mem_limit: 32M
"""


def until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- the document (no root needed)

@pytest.mark.parametrize("text,message", [
    ("services:\n  web:\n    image: busybox\n    command: x\n    prots: [1]\n",
     "line 5: services.web: unknown key 'prots' (known: image, command,"),
    ("services: [\n", "line 2: not valid YAML"),
    ("servics: {}\n", "line 1: top level: unknown key 'servics'"),
    ("services:\n  web:\n    image: busybox\n    command: x\n    deploy: {resources: {limits: {mem: 1}}}\n",
     "line 5: services.web.deploy.resources.limits: unknown key 'mem' (known: memory, cpus, pids)"),
    ("services:\n  web:\n    image: busybox\n    command: x\n    mem_limit: lots\n",
     "line 5: services.web.mem_limit: invalid --memory 'lots'"),
    ("services:\n  web:\n    image: busybox\n    command: x\n    restart: always\n",
     "line 5: services.web.restart: restart 'always' is not supported here: use no, on-failure"),
    ("services:\n  a:\n    image: busybox\n    command: x\n    depends_on: [b]\n"
     "  b:\n    image: busybox\n    command: x\n    depends_on: [a]\n", "depends_on makes a cycle: a -> b -> a"),
    ("services:\n  a:\n    image: busybox\n    command: x\n    depends_on: [nope]\n",
     "line 5: services.a.depends_on: no service 'nope' in this stack"),
    ("services:\n  a:\n    image: busybox\n    command: x\n    networks: [front, back]\n",
     "line 5: services.a.networks: a service joins exactly one network here"),
    ("services:\n  a:\n    image: busybox\n    command: x\n    healthcheck: {test: true, intervl: 1s}\n",
     "line 5: services.a.healthcheck: unknown key 'intervl'"),
    ("services:\n  a:\n    image: busybox\n    command: x\n    healthcheck: {test: \"true\", interval: soon}\n",
     "line 5: services.a.healthcheck: invalid healthcheck.interval 'soon'"),
    ("services:\n  a:\n    image: busybox\n", "line 3: services.a.image: give a command"),
])
def test_bad_documents_are_one_line_naming_the_line_and_key(text, message):
    with pytest.raises(SpecError) as info:
        model.load(text, "t")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_the_document_becomes_services_in_dependency_order(tmp_path):
    (tmp_path / "api.env").write_text("# comment\nTOKEN=abc\n")
    (tmp_path / "www").mkdir()
    text = APP.replace("environment: {MODE: test}", "environment: [MODE=test]\n    env_file: api.env") \
              .replace("mem_limit: 32M", "mem_limit: 32M\n    volumes: [\"./www:/www:ro\"]\n    restart: on-failure:3")
    stack = model.load(text, "shop", base_dir=str(tmp_path))
    assert stack.service_names == ["store", "api", "web"]
    api, web = stack.service("api"), stack.service("web")
    assert api.env == (("TOKEN", "abc"), ("MODE", "test"))
    assert api.limits.memory == 32 << 20 and stack.service("store").limits.pids_limit == 32
    assert api.health.command == ("/bin/sh", "-c", "nc 127.0.0.1 8000 </dev/null | grep -q count=")
    assert api.health.interval == 0.1
    assert web.depends_on == (("api", "service_healthy"),)
    assert web.mounts[0].source == str(tmp_path / "www") and web.mounts[0].read_only
    assert (web.restart, web.max_restarts) == ("on-failure", 3)
    assert stack.container_name("web") == "shop-web-1" and stack.network_name("default") == "shop_default"


# ---------------------------------------------------------------- real stacks

def _network_names(engine) -> set[str]:
    from containerlab_magic import commands

    return {n["name"] for n in commands.network_ls(engine)}


@needs_root
def test_up_ps_logs_down(engine, no_leaks):
    from containerlab_magic import commands
    from containerlab_magic.parsers import parse_filters

    stack = model.load(APP, "shop")
    events = []
    names = commands.stack_up(engine, stack, on_event=events.append)
    try:
        assert names == ["shop-store-1", "shop-api-1", "shop-web-1"]
        assert events.index("shop-api-1 is healthy") < events.index("shop-web-1 started")
        rows = commands.stack_ps(engine, "shop")
        assert [(r.name, r.status) for r in rows] == [("shop-api-1", "running"), ("shop-store-1", "running"),
                                                      ("shop-web-1", "running")]
        found = commands.ps(engine, filters=parse_filters(["label=com.docker.compose.project=shop",
                                                           "label=com.docker.compose.service=web"]))
        assert [r.name for r in found] == ["shop-web-1"]
        # services reach each other by service name, over the stack's network
        command = ["sh", "-c", "nc api 8000 </dev/null; readlink /proc/$$/exe"]
        result = engine.exec("shop-web-1", command).wait(timeout=10)
        assert result.stdout == b"count=42\n/bin/busybox\n", (result, engine.inspect("shop-web-1")["spec"]["image"])
        env = engine.exec("shop-api-1", ["sh", "-c", "echo $MODE"]).wait(timeout=10)
        assert env.stdout == b"test\n"
        lines = set(commands.stack_logs(engine, "shop"))
        assert ("store", "stdout", b"store ready\n") in lines and ("api", "stdout", b"api ready\n") in lines
        assert "shop_default" in _network_names(engine)
        with pytest.raises(Exception, match="already up"):
            commands.stack_up(engine, stack)
    finally:
        removed = commands.stack_down(engine, "shop")
    assert set(removed) == {"shop-store-1", "shop-api-1", "shop-web-1", "network shop_default"}
    assert "shop_default" not in _network_names(engine)
    assert not commands.stack_ps(engine, "shop")
    assert not os.path.exists(os.path.join(engine.state_root, "stacks", "shop.json"))


@needs_root
def test_limits_reach_the_services_cgroups(engine, no_leaks):
    from containerlab_magic import commands

    commands.stack_up(engine, model.load(APP, "lim"))
    try:
        assert engine.limits("lim-api-1").memory == 32 << 20
        assert engine.stats("lim-api-1")["memory_limit"] == 32 << 20  # what the cgroup says
        assert engine.limits("lim-store-1").pids_limit == 32
        assert engine.stats("lim-store-1")["pids_limit"] == 32
    finally:
        commands.stack_down(engine, "lim")


@needs_root
def test_a_failed_healthcheck_leaves_nothing(engine, no_leaks):
    from containerlab_magic import commands
    from containerlab_magic.runtime.errors import ContainerError

    text = ("services:\n  db:\n    image: busybox\n    command: sleep 60\n"
            "    healthcheck: {test: [\"CMD\", \"false\"], interval: 50ms, retries: 3}\n"
            "  app:\n    image: busybox\n    command: sleep 60\n    depends_on: {db: {condition: service_healthy}}\n")
    with pytest.raises(ContainerError, match="bad-db-1 is unhealthy after 3 checks"):
        commands.stack_up(engine, model.load(text, "bad"))
    assert not commands.stack_ps(engine, "bad") and "bad_default" not in _network_names(engine)


@needs_root
def test_restart_on_failure_starts_a_failed_service_again(engine, no_leaks):
    from containerlab_magic import commands

    text = ("services:\n  flaky:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo try; sleep 0.3; exit 3\"]\n"
            "    restart: on-failure:2\n")
    stack = model.load(text, "flaky")
    events = []
    commands.stack_up(engine, stack)
    restarter = commands.stack_restarter(engine, stack, on_event=events.append, poll=0.05).start()
    try:
        def status():
            try:
                return engine.inspect("flaky-flaky-1").get("status")
            except NotFound:
                return None  # between the failed one's removal and the new one's start

        assert until(lambda: restarter.counts.get("flaky") == 2 and status() == "exited", timeout=15), events
        assert events[0] == "flaky-flaky-1 exited with 3: restarted (1)"
        stop_at = time.monotonic() + 0.5
        while time.monotonic() < stop_at:  # polled 10 times more: no third restart, the policy said two
            assert restarter.counts["flaky"] == 2
            time.sleep(0.05)
    finally:
        restarter.stop()
        commands.stack_down(engine, "flaky")


@needs_root
def test_cli_stack_verbs(tmp_path, no_leaks):
    folder = tmp_path / "demo"
    folder.mkdir()
    path = folder / "compose.yml"
    path.write_text("services:\n  hello:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo hi; sleep 30\"]\n"
                    "  other:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo there; sleep 30\"]\n")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "containerlab_magic", "stack", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    r = cli("up", "-d", str(path))
    try:
        assert r.returncode == 0, r.stderr
        assert "demo-hello-1 started" in r.stdout and "network demo_default created" in r.stdout
        r = cli("ps", str(path))
        assert "demo-hello-1" in r.stdout and "demo-other-1" in r.stdout
        assert until(lambda: len(cli("logs", str(path)).stdout.splitlines()) == 2)
        assert set(cli("logs", str(path)).stdout.splitlines()) == {"hello | hi", "other | there"}
    finally:
        r = cli("down", str(path))
    assert r.returncode == 0 and "removed network demo_default" in r.stdout
    r = cli("down", str(path))
    assert r.returncode == 125 and r.stderr.strip() == (
        "containerlab-magic: no stack 'demo' here: `stack ps` lists the stacks that are up")
    path.write_text("services:\n  hello:\n    image: busybox\n    comand: x\n")
    r = cli("up", str(path))
    assert r.returncode == 125 and r.stderr.strip().startswith(
        "containerlab-magic: line 4: services.hello: unknown key 'comand'")


@needs_root
def test_stack_magics(no_leaks):
    from IPython.core.error import UsageError
    from containerlab_magic import commands
    from containerlab_magic.magics import _loaded

    shell = ipython_shell()
    shell.run_line_magic("load_ext", "containerlab_magic")
    magics = _loaded[id(shell)]
    try:
        shell.run_cell_magic("stack", "tiny --logs", "services:\n  one:\n    image: busybox\n"
                             "    command: [\"sh\", \"-c\", \"echo up; sleep 30\"]\n")
        assert [r.name for r in commands.stack_ps(magics.engine, "tiny")] == ["tiny-one-1"]
        with pytest.raises(UsageError, match="line 3: services.one: unknown key 'imag'"):
            shell.run_cell_magic("stack", "typo", "services:\n  one:\n    imag: busybox\n")
        shell.run_line_magic("stack", "down tiny")
        assert not magics.restarters and not commands.stack_ps(magics.engine, "tiny")
    finally:
        shell.run_line_magic("unload_ext", "containerlab_magic")


@needs_root
def test_cli_up_in_the_foreground_prefixes_output_restarts_and_ctrl_c_takes_it_down(tmp_path, no_leaks):
    import signal

    folder = tmp_path / "fg"
    folder.mkdir()
    path = folder / "compose.yml"
    path.write_text("services:\n  ticker:\n    image: busybox\n"
                    "    command: [\"sh\", \"-c\", \"echo tick; sleep 0.2; exit 3\"]\n    restart: on-failure:1\n"
                    "  other:\n    image: busybox\n    command: [\"sh\", \"-c\", \"echo other here; sleep 60\"]\n")
    proc = subprocess.Popen([sys.executable, "-m", "containerlab_magic", "stack", "up", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 30
    while "fg-ticker-1 exited with 3: restarted (1)" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    seen += out.splitlines()
    assert proc.returncode == 130, (seen, err)
    assert "ticker | tick" in seen and "other  | other here" in seen, seen
    assert "fg-ticker-1 exited with 3: restarted (1)" in seen
    assert err.strip() == "stopping stack fg"
    ps = subprocess.run([sys.executable, "-m", "containerlab_magic", "ps", "-a", "--filter",
                         "label=com.docker.compose.project=fg"], capture_output=True, text=True, check=False)
    assert ps.stdout.strip().splitlines()[1:] == []
