"""The daemon's half of the CLI's quick path (containerlab_magic/quick_cli.py).

A `containerlab-magic run` that finds the daemon shim listening sends it its
argv, working directory and environment instead of importing the CLI, the
parser and the Engine itself (about 30 ms of a 60 ms call here).  The daemon
parses them with the CLI's own parser and rules (cli.py, parsers.py), reading
the caller's directory and environment for what the options take from them
(`-e NAME`, `--env-file FILE`, relative bind sources), and starts the container
as a `run` request from that connection: the caller gets the same pipes,
events and errors as the full CLI's Engine would.

What needs more than a start, or the caller's terminal, is declined, and the
caller then runs the full CLI, which prints what it always prints: a usage
error or --help (argparse's text), -t and -i, --explain and --dry-run, and an
image that is not in the store yet (the full CLI pulls it with a progress bar).
"""

from __future__ import annotations

import contextlib
import io
import os

from ..errors import NotFound
from ..spec import ContainerSpec


class Declined(Exception):
    """The quick path does not take this call; the caller runs the full CLI."""


@contextlib.contextmanager
def _borrowed(cwd: str, env: dict):
    """The caller's working directory and environment, while its options are read.

    The shim serves one request at a time on one thread, so nothing else reads them
    meanwhile; both are put back before the container starts."""
    if not isinstance(cwd, str) or not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and "=" not in k and "\0" not in k + v for k, v in env.items()):
        raise Declined("malformed cwd or environment")
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        os.chdir(cwd)
    except OSError as e:
        raise Declined(f"cannot enter {cwd}: {e.strerror}") from None
    try:
        os.environ.clear()
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)


def parse(argv, cwd: str, env: dict) -> tuple[ContainerSpec, list[str]]:
    """run's argv (after the verb) as the full CLI reads it: the spec, and the warnings
    it would print first."""
    from ...cli import build_parser, image_and_command
    from ...parsers import PROG, run_spec
    from .client import daemon_linger

    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise Declined("malformed argv")
    if any(a in ("-h", "--help") for a in argv):
        raise Declined("help")
    parser = build_parser("run")
    with _borrowed(cwd, env), contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = parser.parse_args(["run", *argv])
            if args.explain or args.dry_run:
                raise Declined("--explain")
            image, command = image_and_command(args)
            spec = run_spec(args, image, command)
            daemon_linger()  # the full CLI checks the caller's CONTAINERLAB_DAEMON_LINGER on every call
        except SystemExit:  # argparse's usage error: the full CLI prints it
            raise Declined("usage") from None
        except Declined:
            raise
        except Exception as e:  # a SpecError and the like: the full CLI says it in its words
            raise Declined(f"{type(e).__name__}") from None
    if spec.tty or spec.interactive:
        raise Declined("a terminal or stdin")
    warnings = [f"{PROG}: warning: --net host shares the host's network with the container"] \
        if spec.network == "host" else []
    return spec, warnings


def run(shim, message: dict, conn, received_ns: int) -> tuple[dict, list[int]]:
    """Start what the argv asks for, as a run request of this connection; or decline."""
    try:
        spec, warnings = parse(message.get("argv"), message.get("cwd"), message.get("env"))
        try:
            shim.images.resolve(spec.image)
        except NotFound:
            raise Declined("the image is not in the store") from None
    except Declined as e:
        return {"declined": str(e) or "declined"}, []
    info, fds = shim.starter.run({"op": "run", "spec": spec.to_json()}, conn, received_ns)
    proc = shim.procs.get(info["pid"])
    if proc is not None:
        proc.quick = (spec, info["name"])
    if info.get("notice"):
        warnings = [*warnings, f"containerlab-magic: warning: {info['notice']}"]
    info.update(quick=True, warnings=warnings)
    return info, fds


def with_final_line(proc, event: dict) -> dict:
    """A quick run's exit event carries the line the full CLI would print at the end."""
    if proc.quick is None or event.get("event") != "exit":
        return event
    return dict(event, say=final_line(event, proc.quick))


def final_line(event: dict, quick: tuple[ContainerSpec, str]) -> str | None:
    """What the full CLI prints on stderr when its foreground container ends (cli.attach)."""
    from ...parsers import PROG
    from ..container import result_of

    spec, name = quick
    result = result_of(event, spec)
    if result.error:
        return f"{PROG}: {result.error}"
    if result.timed_out or result.oom_killed:
        return f"{PROG}: {name}: {result.describe()}"
    return None
