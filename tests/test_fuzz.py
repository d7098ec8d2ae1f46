"""Hostile input, fuzzed (hypothesis): every parser either accepts its input or says
what is wrong in one line, and the shim answers junk on its socket and keeps serving.

Targets: the CLI's `run` options and the other verbs' option values (kill -s, --label,
ps --filter, cp operands, --change), `%cgroup NAME KEY=VALUE` against a real running
container, image references, Containerfiles, stack YAML, seccomp profiles (parsed and
compiled with libseccomp), and the shim's protocol from a local client (malformed,
non-object, truncated, oversized, random-byte and mistyped messages).  The failures
hypothesis found are kept as @example regressions.  The example counts keep the file
near two minutes here; `make reliability` runs it with ten times as many
(CONTAINERLAB_FUZZ_SCALE=10).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import STATE, needs_root
from containerlab_magic.runtime.errors import ContainerError, SpecError

SCALE = int(os.environ.get("CONTAINERLAB_FUZZ_SCALE", "1"))
COUNTS: dict[str, int] = {}  # cases run per target, printed at the end (make reliability)


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """What ran, printed at the end (pytest -s, or make reliability) for the README's figures."""
    yield
    print("\nfuzz cases run: " + ", ".join(f"{k} {v}" for k, v in sorted(COUNTS.items())))


def fuzz(n: int):
    return settings(max_examples=n * SCALE, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def counted(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def one_line(text: str) -> None:
    assert text and "\n" not in text.strip() and "Traceback" not in text, text


# ---------------------------------------------------------------- CLI run options

FLAGS = ["--name", "--hostname", "-e", "--env-file", "-l", "-w", "-u", "--entrypoint", "-v", "-p", "--net",
         "--memory", "--memory-swap", "--cpus", "--cpu-shares", "--cpuset-cpus", "--pids-limit", "--blkio-weight",
         "--storage-size", "--timeout", "--net-rate", "--net-delay", "--net-loss", "--cap-add", "--cap-drop",
         "--security-opt", "--label", "--read-only", "--init", "--rm", "-d", "--privileged", "--explain", "--", "-t",
         "-i"]
VALUES = ["busybox", "host", "true", "x", "", " ", "0", "-1", "1e308", "nan", "inf", "64M", "4M", "12x", "1T",
          "99999999T", "0.5", "lots", "8080:80", "99999:80", "127.0.0.1:80:80/udp", "/tmp:/x", "/tmp:/x:ro",
          "/nonexistent:/x", "relative:/x", ":", "::", "A=1", "A", "=", "bridge", "none", "host", "container:",
          "container:nosuch", "seccomp=unconfined", "seccomp=/nonexistent.json", "no-new-privileges=maybe",
          "SYS_ADMIN", "NOPE", "ALL", "0:0", "1000", "root", "1mbit", "50ms", "1%", "101%", "\x00", "é", "a" * 300]
tokens = st.one_of(st.sampled_from(FLAGS), st.sampled_from(VALUES), st.text(max_size=12))


def parse_run(argv: list[str]):
    """The CLI's own path from argv to a checked spec, without starting anything."""
    from containerlab_magic import cli, parsers
    from containerlab_magic.runtime import security

    args = cli.build_parser("run").parse_args(["run", *argv])
    image, command = cli.image_and_command(args)
    spec = parsers.run_spec(args, image, command)
    security.check_spec(spec)
    return spec


@fuzz(400)
@given(st.lists(tokens, max_size=8))
@example(["--timeout", "1e308", "busybox", "true"])
@example(["--pids-limit", "-1", "busybox", "true"])
@example(["-p", "99999:80", "busybox", "true"])
@example(["--security-opt", "seccomp=/nonexistent.json", "busybox", "true"])
@example(["-e", "\x00", "busybox", "true"])
def test_run_options_parse_or_fail_in_one_line(argv):
    counted("cli run options")
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parse_run(argv)
    except SystemExit as e:  # argparse's usage error, in docker's status
        assert e.code == 125, (argv, e.code)
        one_line(err.getvalue())
    except ContainerError as e:
        assert e.exit_code == 125
        one_line(str(e))


# ---------------------------------------------------------------- the other verbs' option values

HELPER_TEXT = st.one_of(st.sampled_from(["9", "0", "65", "KILL", "sigterm", "SIG", "label=a=b", "label=",
                                         "status=running", "status=x", "name=", "web:/etc", ":/x", "web:", "./a:b",
                                         "CMD [\"sh\"]", "ENV A=1", "FROM x", "EXPOSE 80/tcp"]),
                        st.text(max_size=12))


@fuzz(300)
@given(st.sampled_from(["signal", "labels", "filters", "cp", "changes"]), st.lists(HELPER_TEXT, min_size=1, max_size=3))
@example("signal", ["\u00b2"])  # str.isdigit() is true for '²' but int() refuses it: was a ValueError
@example("signal", ["\u0663"])  # an Arabic-Indic three: refused, not read as SIGQUIT
@example("changes", ["EXPOSE \u00b2"])  # was a ValueError from int()
@example("changes", ["STOPSIGNAL \u00b2"])  # stop() then met int('²'): a container that could not be stopped
def test_verb_option_values_parse_or_fail_in_one_line(kind, items):
    """kill -s, --label, ps --filter, cp's operands and commit/import --change."""
    from containerlab_magic import parsers

    counted("verb option values")
    parse = {"signal": lambda: [parsers.parse_signal(i) for i in items], "labels": lambda: parsers.parse_labels(items),
             "filters": lambda: parsers.parse_filters(items), "cp": lambda: [parsers.parse_container_path(i) for i in items],
             "changes": lambda: parsers.parse_changes(items)}[kind]
    try:
        result = parse()
    except ContainerError as e:
        assert e.exit_code == 125
        one_line(str(e))
    else:
        if kind == "changes" and "StopSignal" in result:  # what `stop` makes of it: a signal number, always
            from containerlab_magic.runtime.image_config import stop_signal

            assert isinstance(stop_signal({"stop_signal": result["StopSignal"]}), int)


# ---------------------------------------------------------------- %cgroup NAME KEY=VALUE

KEYS = ["memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "pids", "pids_limit", "blkio_weight",
        "net_rate", "net_delay", "net_loss", "memory-swap", "bogus", ""]
SETTING_VALUES = ["64M", "4M", "1M", "-1", "0", "1", "1.5", "256", "0-1", "0", "7", "99", "lots", "", "1e308",
                  "nan", "1mbit", "50ms", "1%", "100%", "12x", "1T"]
assignments = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.one_of(st.sampled_from(SETTING_VALUES),
                                                                      st.text(max_size=8))),
    st.text(max_size=10)), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def target(module_no_leaks):
    """A real running container whose limits the assignments change."""
    from containerlab_magic.runtime import ContainerSpec, Engine, Limits

    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, mounts and cgroups")
    with Engine() as engine:
        box = engine.run(ContainerSpec(("sleep", "600"), image="busybox", detach=True, name="fuzz-cgroup",
                                       limits=Limits(memory=64 << 20, pids_limit=64)))
        yield engine, box
        engine.rm("fuzz-cgroup", force=True)


@needs_root
@fuzz(150)
@given(assignments)
@example(["memory=banana"])
@example(["net_rate=1mbit"])  # a container on --net none has no link to shape
@example(["=1"])
def test_cgroup_assignments_apply_or_fail_in_one_line(target, settings_):
    from containerlab_magic import magic_cgroup

    engine, box = target
    counted("%cgroup assignments")
    try:
        magic_cgroup.update(engine, "fuzz-cgroup", settings_)
    except ContainerError as e:
        one_line(str(e))
    assert engine.inspect("fuzz-cgroup")["status"] == "running"  # whatever was asked, it still runs


# ---------------------------------------------------------------- image references, Containerfiles

REF_ALPHABET = string.ascii_letters + string.digits + "._-/:@+ " + "\x00é"


@fuzz(300)
@given(st.one_of(st.text(alphabet=REF_ALPHABET, max_size=40), st.text(max_size=20)))
@example("busybox@sha256:" + "0" * 63)
@example("localhost:99999/x")
@example("A/B")
@example("x:" + "t" * 200)
def test_image_references_parse_or_fail_in_one_line(text):
    from containerlab_magic.runtime.images.reference import parse

    counted("image references")
    try:
        ref = parse(text)
    except SpecError as e:
        one_line(str(e))
        return
    assert parse(str(ref)) == ref  # what it prints reads back the same


KEYWORDS = ["FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "CMD", "ENTRYPOINT", "USER", "EXPOSE", "LABEL",
            "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD", "from", "NOPE", "#", "\\"]
ARGS = ["busybox", "scratch", "[\"sh\", \"-c\"]", "[\"unclosed", "[1, 2]", "a=b", "a", "=", "--from=x", "--chown=1",
        "/x", "$HOME", "${A:-b}", "${", "80/tcp", "\\", "\"", "'", ""]
lines = st.builds(lambda k, a: f"{k} {' '.join(a)}", st.sampled_from(KEYWORDS), st.lists(st.sampled_from(ARGS),
                                                                                         max_size=3))


@fuzz(300)
@given(st.one_of(st.lists(lines, max_size=6).map("\n".join), st.text(max_size=60)))
@example("FROM busybox\nRUN \\")
@example("ENV")
@example("CMD [\"unclosed")
@example("FROM busybox\nEXPOSE \u00b2")  # str.isdigit() is true for '²', int() refuses it
def test_containerfiles_parse_or_fail_in_one_line(text):
    from containerlab_magic.runtime.images import containerfile

    counted("Containerfiles")
    try:
        instructions = containerfile.parse(text)
    except SpecError as e:
        one_line(str(e))
        return
    for ins in instructions:  # each on its own: a refused FROM must not hide the EXPOSE after it
        try:
            if ins.keyword in ("CMD", "ENTRYPOINT", "RUN", "SHELL"):
                containerfile.command_form(ins)
            elif ins.keyword in ("ENV", "LABEL", "ARG"):
                containerfile.pairs(ins)
            containerfile.apply_config({}, ins, {})
        except SpecError as e:
            one_line(str(e))


# ---------------------------------------------------------------- stack YAML, seccomp profiles

yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 100000), st.floats(allow_nan=True), st.text(max_size=10),
              st.sampled_from(["busybox", "sleep 1", "64M", "10s", "always", "on-failure:3", "8080:80", "a=b"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["services", "networks", "image", "command", "environment", "ports", "depends_on", "deploy",
                         "healthcheck", "restart", "volumes", "mem_limit", "cpus", "x", "test", "interval",
                         "condition", "web", "db"]), inner, max_size=4)),
    max_leaves=12)


@fuzz(200)
@given(st.one_of(yaml_values.map(lambda v: json.dumps(v, allow_nan=True)), st.text(max_size=60)))
@example("services: {web: {image: busybox, depends_on: [web]}}")
@example("services: {web: {image: busybox, ports: ['99999:80']}}")
@example("[1, 2")
@example("services: {web: {image: busybox, command: [sleep, '1'], restart: 'on-failure:\u00b2'}}")  # was a ValueError from int()
@example("services:\n  a: &x {image: busybox}\n  b: *x")
def test_stack_documents_load_or_fail_in_one_line(tmp_path_factory, text):
    from containerlab_magic import stack

    counted("stack YAML")
    try:
        stack.load(text, name="fuzz", base_dir=str(tmp_path_factory.getbasetemp()))
    except SpecError as e:
        one_line(str(e))


seccomp_rules = st.lists(st.fixed_dictionaries({
    "names": st.lists(st.sampled_from(["read", "write", "chmod", "openat", "clone", "no_such_call", "", "mount"]),
                      max_size=3),
    "action": st.sampled_from(["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_NOPE", 5]),
}, optional={"args": st.lists(st.fixed_dictionaries({
    "index": st.integers(-1, 7), "value": st.integers(-1, 2 ** 64), "op": st.sampled_from(
        ["SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NOPE"])}, optional={"valueTwo": st.integers(-1, 10)}),
    max_size=2), "errnoRet": st.integers(-1, 70000)}), max_size=4)
profiles = st.fixed_dictionaries({"defaultAction": st.sampled_from(["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "NOPE"])},
                                 optional={"syscalls": seccomp_rules,
                                           "architectures": st.lists(st.sampled_from(["SCMP_ARCH_X86_64", "x86"]),
                                                                     max_size=2)})


@fuzz(200)
@given(st.one_of(profiles.map(json.dumps), st.text(max_size=40)))
@example('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", '
         '"args": [{"index": 0, "value": 18446744073709551616, "op": "SCMP_CMP_EQ"}]}]}')
@example('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", '
         '"errnoRet": 70000}]}')
def test_seccomp_profiles_compile_or_fail_in_one_line(text):
    from containerlab_magic.runtime.errors import HostUnsupported
    from containerlab_magic.runtime.security import seccomp

    counted("seccomp profiles")
    try:
        profile = seccomp.parse(text)
        program = seccomp.compile_profile(profile, frozenset({"CAP_CHOWN"}))
    except (SpecError, HostUnsupported) as e:
        one_line(str(e))
        return
    assert program and len(program) % 8 == 0  # whole struct sock_filter instructions


# ---------------------------------------------------------------- the shim's socket

@pytest.fixture(scope="module")
def daemon(module_no_leaks):
    """A daemon shim of this session's state root and a way to talk to it raw."""
    from containerlab_magic.runtime import Engine

    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, mounts and cgroups")
    engine = Engine(daemon=True)
    engine.start()
    yield engine
    engine.close()


def raw(payload: bytes, timeout: float = 10.0) -> tuple[dict | None, socket.socket]:
    """Send one message on a new connection; the reply (None if the shim closed it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.settimeout(timeout)
        sock.connect(os.path.join(STATE, "shim.sock"))
        sock.send(payload)
        data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
        for fd in fds:
            os.close(fd)
        return (json.loads(data) if data else None), sock
    except BaseException:
        sock.close()
        raise


spec_dicts = st.dictionaries(
    st.sampled_from(["command", "image", "limits", "mounts", "env", "nonsense"]),
    st.one_of(st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)), max_size=3)
junk_objects = st.fixed_dictionaries({}, optional={
    "op": st.one_of(st.sampled_from(["hello", "run", "exec", "cli-run", "bogus", ""]), st.integers(), st.none()),
    "req": st.one_of(st.integers(), st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2)),
    "spec": st.one_of(st.none(), st.integers(), spec_dicts),
    "container": st.one_of(st.integers(), st.text(max_size=8), st.none()),
    "command": st.one_of(st.integers(), st.lists(st.integers(), max_size=2), st.none()),
    "argv": st.one_of(st.integers(), st.lists(st.sampled_from(["busybox", "-d", "--bogus", "-h"]), max_size=3)),
})
payloads = st.one_of(
    st.binary(min_size=1, max_size=64),  # random bytes
    junk_objects.map(lambda m: json.dumps(m).encode()),  # mistyped requests
    junk_objects.map(lambda m: json.dumps(m).encode()[:-3] or b"{"),  # truncated
    st.sampled_from([b"[]", b"null", b"1", b'"hello"', b"{}", b'{"op": "hello"', b"\xff\xfe"]),
)


@needs_root
@fuzz(150)
@given(payloads)
@example(b"x" * 150_000)  # (about the largest message the kernel sends here: wmem_max)
@example(b'{"op": "hello", "req": 1, "pad": "' + b"x" * 150_000 + b'"}')
@example(b'{"op": "run", "spec": {"command": ["true"], "no_such_field": 1}}')
@example(b'{"op": "exec"}')
@example(b'[1, 2, 3]')
def test_the_shim_answers_junk_in_one_line_and_keeps_serving(daemon, payload):
    counted("shim messages")
    reply, sock = raw(payload)
    with sock:
        assert reply is not None, "the shim dropped the connection instead of answering"
        if not reply.get("ok"):
            one_line(reply["error"])
        # the same connection still serves
        sock.send(json.dumps({"op": "hello", "req": 99}).encode())
        while True:  # (skipping any event of a container the junk started and the close ended)
            data = sock.recv(1 << 20)
            message = json.loads(data)
            if message.get("req") == 99:
                break
        assert message["ok"] and message["pid"] == daemon.shim_pid


@needs_root
def test_the_shim_still_runs_containers_after_the_junk(daemon):
    from containerlab_magic.runtime import ContainerSpec

    assert daemon.run(ContainerSpec(("echo", "ok"), image="busybox")).wait(30).exit_code == 0


# ---------------------------------------------------------------- image inputs: manifests, configs, layers

manifest_docs = st.fixed_dictionaries({}, optional={
    "schemaVersion": st.one_of(st.integers(-1, 3), st.text(max_size=3)),
    "mediaType": st.sampled_from(["application/vnd.oci.image.manifest.v1+json",
                                  "application/vnd.docker.distribution.manifest.v2+json",
                                  "application/vnd.oci.image.index.v1+json", "text/plain", ""]),
    "config": st.one_of(st.none(), st.integers(), st.fixed_dictionaries({}, optional={
        "digest": st.sampled_from(["sha256:" + "a" * 64, "sha256:xyz", "md5:00", ""]),
        "size": st.one_of(st.integers(-5, 10 ** 12), st.text(max_size=3)),
        "mediaType": st.text(max_size=10)})),
    "layers": st.one_of(st.integers(), st.lists(st.one_of(st.integers(), st.fixed_dictionaries({}, optional={
        "digest": st.sampled_from(["sha256:" + "b" * 64, "sha256:../../etc", "", 5]),
        "size": st.integers(-1, 10 ** 15), "mediaType": st.sampled_from([
            "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/x-nonsense"])})), max_size=3)),
})


@fuzz(200)
@given(st.one_of(manifest_docs.map(lambda d: json.dumps(d).encode()), st.binary(max_size=40)),
       st.sampled_from(["", "application/vnd.oci.image.manifest.v1+json", "application/json"]))
@example(b"0", "application/vnd.oci.image.manifest.v1+json")  # non-object JSON: was an AttributeError
def test_manifests_and_configs_parse_or_fail_in_one_line(data, content_type):
    from containerlab_magic.runtime.images.config import parse_config
    from containerlab_magic.runtime.images.manifest import parse_manifest

    counted("manifests and configs")
    for parse in (lambda: parse_manifest(data, content_type), lambda: parse_config(data)):
        try:
            parse()
        except ContainerError as e:
            one_line(str(e))


MEMBER_NAMES = ["a", "dir/", "dir/b", "../escape", "/abs", "dir/../../up", ".wh.a", "dir/.wh..wh..opq", "link",
                "dir/link/x", "dev", "", ".", "a" * 300]


@st.composite
def hostile_tars(draw) -> bytes:
    """A tar layer whose members try what a hostile image does: climbing out, absolute
    paths, links through links, devices, whiteouts, hard links to outside."""
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _ in range(draw(st.integers(0, 6))):
            info = tarfile.TarInfo(draw(st.sampled_from(MEMBER_NAMES)))
            kind = draw(st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                                         tarfile.CHRTYPE, tarfile.FIFOTYPE]))
            info.type = kind
            info.mode = draw(st.sampled_from([0o644, 0o4755, 0o777, 0o000, 0o7777]))
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(st.sampled_from(["/etc/passwd", "../../../../etc", "a", "link", "dir",
                                                      "/proc/self/root"]))
            if kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            data = draw(st.binary(max_size=16)) if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@needs_root
@fuzz(200)
@given(st.one_of(hostile_tars(), st.binary(max_size=64)))
@example(b"\x1f\x8b" + b"\x00" * 20)  # a gzip header and nothing
def test_hostile_layers_unpack_inside_their_folder_or_fail_in_one_line(tmp_path_factory, blob):
    from containerlab_magic.runtime.images.layers import unpack

    counted("tar layers")
    base = tmp_path_factory.mktemp("layer")
    dest, outside = base / "dest", base / "outside"
    outside.mkdir()
    dest.mkdir()  # (the store unpacks into a fresh folder of its own)
    (outside / "keep").write_text("host file")
    try:
        unpack(io.BytesIO(blob), str(dest))
    except ContainerError as e:
        one_line(str(e))
    # nothing was written or changed beside dest, whatever the layer tried
    assert sorted(os.listdir(base)) == ["dest", "outside"]
    assert os.listdir(outside) == ["keep"] and (outside / "keep").read_text() == "host file"
    if True:
        for root, dirs, files in os.walk(dest):
            for name in dirs + files:
                path = os.path.join(root, name)
                assert os.path.realpath(path).startswith(str(dest)) or os.path.islink(path)
                if os.path.islink(path):
                    continue
                st_ = os.lstat(path)
                assert not (os.path.isfile(path) and st_.st_nlink > 1 and
                            not os.path.realpath(path).startswith(str(dest)))
    import shutil

    shutil.rmtree(base)
