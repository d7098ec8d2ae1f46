"""`containerlab-magic-runtime`: the OCI runtime command line (runtime-spec runtime.md), as runc's.

    containerlab-magic-runtime [--root DIR] [--log FILE] [--log-format text|json] VERB ...
      spec [--bundle DIR]                  write a default config.json
      create [--bundle DIR] [--pid-file F] ID   make the container; its process waits for start
      start ID                             let it run its process
      state ID                             the runtime spec's state JSON
      kill ID [SIGNAL]                     (default TERM; a name or a number)
      delete [--force] ID                  remove a stopped one (--force: any)
      run [--bundle DIR] [--pid-file F] [--detach] ID   create + start (+ wait, delete)
      exec [--process F | ID CMD...] [-e K=V] [--cwd D] [-u UID[:GID]] [-d] [--pid-file F] ID
                                           another process in it, the caller's stdio; its exit code
      ps [--format table|json] ID          its processes (json: their host pids)
      pause ID / resume ID                 freeze and thaw it (the freezer cgroup)
      update [-r FILE|-] [--memory N] [--cpu-quota N] [--cpu-period N] [--cpu-share N] [--pids-limit N] ID
      list                                 every container of this --root
      features                             what this runtime supports, as JSON

Each container is the lab's own (config.py turns config.json into a ContainerSpec;
the daemon shim of --root starts it with the one start plan), its stdio the
caller's own.  Errors are one line on stderr (and the --log file), exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time

from . import hooks

PROG = "containerlab-magic-runtime"
OCI_VERSION = "1.0.2"


class Failure(Exception):
    """One line for the user, exit 1 (as runc)."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.systemd_cgroup:
        return _fail(args, "--systemd-cgroup is not supported: this runtime makes its groups under its own "
                           "cgroup subtree; drop the flag")
    try:
        return args.verb_fn(args) or 0
    except Failure as e:
        return _fail(args, str(e))
    except Exception as e:  # ContainerError and friends: one line
        from ..runtime.errors import ContainerError

        if isinstance(e, ContainerError):
            return _fail(args, str(e))
        raise


def _fail(args, message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    _log(args, "error", message)
    return 1


def _log(args, level: str, message: str) -> None:
    """A line in the --log file, as runc writes it (text or json)."""
    if getattr(args, "log", None):
        with open(args.log, "a") as f:
            if args.log_format == "json":
                f.write(json.dumps({"level": level, "msg": message,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
            else:
                f.write(f"{level}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="An OCI runtime on containerlab-magic's core.")
    p.add_argument("--root", default=None, help="where container state lives (default: per user)")
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--systemd-cgroup", action="store_true")
    sub = p.add_subparsers(dest="verb", required=True)

    def verb(name, fn, *opts):
        s = sub.add_parser(name)
        for names, kw in opts:
            s.add_argument(*names, **kw)
        s.set_defaults(verb_fn=fn)
        return s

    bundle = (("--bundle", "-b"), {"default": "."})
    pid_file = (("--pid-file",), {"default": None})
    ident = (("id",), {})
    verb("spec", cmd_spec, bundle)
    verb("create", cmd_create, bundle, pid_file, (("--console-socket",), {"default": None}), ident)
    verb("start", cmd_start, ident)
    verb("state", cmd_state, ident)
    verb("kill", cmd_kill, ident, (("signal",), {"nargs": "?", "default": "TERM"}),
         (("--all", "-a"), {"action": "store_true"}))
    verb("delete", cmd_delete, (("--force", "-f"), {"action": "store_true"}), ident)
    verb("run", cmd_run, bundle, pid_file, (("--detach", "-d"), {"action": "store_true"}),
         (("--console-socket",), {"default": None}), ident)
    verb("exec", cmd_exec, (("--process", "-p"), {"default": None}), (("--cwd",), {"default": None}),
         (("--env", "-e"), {"action": "append", "default": []}), (("--user", "-u"), {"default": None}),
         (("--tty", "-t"), {"action": "store_true"}), (("--console-socket",), {"default": None}),
         (("--detach", "-d"), {"action": "store_true"}), pid_file, ident,
         (("command",), {"nargs": argparse.REMAINDER}))
    verb("ps", cmd_ps, (("--format", "-f"), {"choices": ("table", "json"), "default": "table"}), ident)
    verb("pause", cmd_pause, ident)
    verb("resume", cmd_resume, ident)
    verb("update", cmd_update, (("--resources", "-r"), {"default": None}), (("--memory",), {"default": None}),
         (("--cpu-quota",), {"type": int, "default": None}), (("--cpu-period",), {"type": int, "default": None}),
         (("--cpu-share",), {"type": int, "default": None}), (("--pids-limit",), {"type": int, "default": None}),
         ident)
    verb("list", cmd_list, (("--format", "-f"), {"choices": ("table", "json"), "default": "table"}))
    verb("features", cmd_features)
    return p


# ---- where things are ----------------------------------------------------------------------------


def _root(args) -> str:
    from ..runtime.paths import private_dir

    if args.root:
        root = os.path.abspath(args.root)
    elif os.geteuid() == 0:
        root = "/run/containerlab-magic-runtime"
    else:
        base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/containerlab-magic-runtime-{os.geteuid()}"
        root = os.path.join(base, "containerlab-magic-runtime") if os.environ.get("XDG_RUNTIME_DIR") else base
    os.makedirs(os.path.dirname(root), exist_ok=True)
    return private_dir(root, "state") if os.geteuid() != 0 else _made(root)


def _made(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _engine(args):
    from ..runtime.engine import Engine

    return Engine(daemon=True, state_dir=_root(args), prewarm=False)


def _meta_path(args, cid: str) -> str:
    return os.path.join(_made(os.path.join(_root(args), "oci")), cid + ".json")


def _lookup(args, container_id: str) -> tuple[object, str, dict, dict]:
    """(engine, lab id, lab state, our metadata) of an existing container, or Failure as runc says it."""
    from ..runtime.errors import NotFound

    engine = _engine(args)
    try:
        cid = engine.store.resolve(container_id)
    except NotFound:
        raise Failure(f'container "{container_id}" does not exist') from None
    try:
        with open(_meta_path(args, cid)) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise Failure(f'container "{container_id}" does not exist (not made by this runtime)') from None
    return engine, cid, _with_pause(engine.store, cid, engine.store.read(cid) or {}), meta


def _with_pause(store, cid: str, state: dict) -> dict:
    from ..runtime.resources import paused

    if state.get("status") == "running" and paused(store, cid):
        return dict(state, status="paused")  # (its PID 1 is alive: a frozen process cannot end)
    return state


def _status(state: dict) -> str:
    from ..runtime.state import settle

    status = settle(state).get("status")
    return {"created": "created", "running": "running", "paused": "paused", "creating": "creating"}.get(
        status, "stopped")


# ---- verbs ---------------------------------------------------------------------------------------


def cmd_spec(args) -> int:
    from .spec import default_config

    path = os.path.join(args.bundle, "config.json")
    if os.path.exists(path):
        raise Failure(f"File {path} exists. Remove it first")
    with open(path, "w") as f:
        json.dump(default_config(), f, indent="\t")
    return 0


def cmd_create(args) -> int:
    _create(args)
    return 0


def _create(args):
    from . import config
    from ..runtime.errors import Conflict

    bundle = config.read(args.bundle, args.id)
    if bundle.spec.tty and not args.console_socket:
        raise Failure("cannot allocate tty if runc will detach without setting console socket "
                      "(process.terminal is true: give --console-socket)")
    if args.console_socket and not bundle.spec.tty:
        raise Failure("cannot use console socket if runc will not detach or allocate tty "
                      "(process.terminal is false: drop --console-socket)")
    console = _console_socket(args.console_socket) if args.console_socket else None
    engine = _engine(args)
    try:
        reply, master = engine.create(bundle.spec, None if console else (0, 1, 2), bundle.tty_size)
    except Conflict:
        raise Failure(f"container with id exists: {args.id}") from None
    except BaseException:
        if console is not None:
            console.close()
        raise
    if console is not None:
        try:
            _send_console(console, master)
        except OSError as e:
            engine.rm(reply["id"], force=True)
            raise Failure(f"--console-socket {args.console_socket}: cannot send the terminal: {e.strerror}") \
                from None
        finally:
            os.close(master)
            console.close()
    meta = {"id": args.id, "bundle": bundle.path, "annotations": bundle.annotations, "created": time.time(),
            "hooks": {k: v for k, v in bundle.hooks.items() if k in ("poststart", "poststop")}}
    with open(_meta_path(args, reply["id"]), "w") as f:
        json.dump(meta, f)
    try:
        for kind in ("prestart", "createRuntime"):
            hooks.run(kind, bundle.hooks, _hook_state(meta, "creating", reply["pid"]))
    except hooks.HookFailed as e:
        engine.rm(reply["id"], force=True)
        os.unlink(_meta_path(args, reply["id"]))
        raise Failure(str(e)) from None
    if args.pid_file:
        _write_pid_file(args.pid_file, reply["pid"])
    return engine, reply


def _console_socket(path: str):
    """Connected to the caller's console socket (before anything is made: a wrong path
    is one line and leaves nothing)."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise Failure(f"--console-socket {path}: cannot connect: {e.strerror}") from None
    return sock


def _send_console(sock, master: int) -> None:
    """The pty master over the console socket, SCM_RIGHTS, with its name as the data (runc's)."""
    import socket

    if master < 0:
        raise OSError(5, "the container sent no terminal")
    socket.send_fds(sock, [b"/dev/ptmx"], [master])


def _hook_state(meta: dict, status: str, pid: int) -> dict:
    """The state a hook reads on its stdin (runtime-spec runtime.md#state)."""
    return {"ociVersion": OCI_VERSION, "id": meta["id"], "status": status, "pid": pid, "bundle": meta["bundle"],
            "annotations": meta.get("annotations") or {}}


def _write_pid_file(path: str, pid: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def cmd_start(args) -> int:
    engine, cid, state, meta = _lookup(args, args.id)
    status = _status(state)
    if status != "created":
        raise Failure(f"cannot start a container that is {status}" if status != "stopped"
                      else "cannot start a container that has stopped")
    engine.start_created(cid)
    _poststart(args, state, meta)
    return 0


def _poststart(args, state: dict, meta: dict) -> None:
    hooks.warn("poststart", meta.get("hooks") or {}, _hook_state(meta, "running", state.get("pid", 0)),
               lambda message: _log(args, "warning", message))


def _poststop(args, meta: dict) -> None:
    hooks.warn("poststop", meta.get("hooks") or {}, _hook_state(meta, "stopped", 0),
               lambda message: _log(args, "warning", message))


def cmd_state(args) -> int:
    _, cid, state, meta = _lookup(args, args.id)
    status = _status(state)
    print(json.dumps({"ociVersion": OCI_VERSION, "id": args.id, "status": status,
                      "pid": state.get("pid", 0) if status != "stopped" else 0,
                      "bundle": meta["bundle"], "annotations": meta.get("annotations") or {}}, indent=2))
    return 0


def _signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        number = int(name)
    else:
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signal.Signals, name, None)
        if number is None:
            raise Failure(f"invalid signal: {text}")
    if not 1 <= int(number) <= signal.SIGRTMAX:
        raise Failure(f"invalid signal: {text}")
    return int(number)


def cmd_kill(args) -> int:
    engine, cid, state, _ = _lookup(args, args.id)
    if _status(state) not in ("created", "running", "paused"):
        raise Failure("container not running")
    engine.kill(cid, _signal(args.signal))
    return 0


def cmd_delete(args) -> int:
    engine, cid, state, meta = _lookup(args, args.id)
    status = _status(state)
    if status != "stopped" and not args.force:
        raise Failure(f"cannot delete container {args.id} that is not stopped: {status}")
    engine.rm(cid, force=True)
    os.unlink(_meta_path(args, cid))
    _poststop(args, meta)
    return 0


def cmd_run(args) -> int:
    engine, reply = _create(args)
    engine.start_created(reply["id"])
    with open(_meta_path(args, reply["id"])) as f:
        meta = json.load(f)
    _poststart(args, reply, meta)
    if args.detach:
        return 0
    event = engine.wait_exit(reply["id"]) or {}
    engine.rm(reply["id"], force=True)
    os.unlink(_meta_path(args, reply["id"]))
    _poststop(args, meta)
    return int(event.get("exit_code", 125))


def cmd_exec(args) -> int:
    from . import config

    command, env, cwd, user, extra = list(args.command), [], args.cwd, args.user, {}
    tty, size = args.tty, None
    if args.process:
        document = _json_file(args.process)
        try:
            process = config.process_of(document, args.process)
        except config.ConfigError as e:
            raise Failure(str(e)) from None
        command, env = process["args"], process["env"]
        cwd, user = cwd or process["cwd"], user or process["user"]
        extra = {"ulimits": process["ulimits"], "group_add": process["group_add"]}
        tty, size = tty or process["terminal"], process["tty_size"]
    if tty and not args.console_socket:
        raise Failure("exec --tty needs --console-socket (where to send the terminal)")
    if args.console_socket and not tty:
        raise Failure("cannot use console socket if runc will not allocate tty (add --tty)")
    if not command:
        raise Failure("exec needs a command (after the id) or --process FILE")
    for item in args.env:
        if "=" not in item:
            raise Failure(f"--env {item!r}: write KEY=VALUE")
        env.append(tuple(item.split("=", 1)))
    engine, cid, state, _ = _lookup(args, args.id)
    status = _status(state)
    if status != "running":
        raise Failure(f"cannot exec in a {status} container" + (": start it first" if status == "created" else ""))
    console = _console_socket(args.console_socket) if tty else None
    try:
        reply, master = engine.exec_given(cid, command, None if tty else (0, 1, 2), env=dict(env), workdir=cwd,
                                          user=user, detach=args.detach, tty_size=size, **extra)
        if console is not None:
            try:
                _send_console(console, master)
            except OSError as e:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(reply["pid"], signal.SIGKILL)  # the exec we just started, by its pid
                raise Failure(f"--console-socket {args.console_socket}: cannot send the terminal: "
                              f"{e.strerror}") from None
            finally:
                if master >= 0:
                    os.close(master)
    finally:
        if console is not None:
            console.close()
    if args.pid_file:
        _write_pid_file(args.pid_file, reply["pid"])
    if args.detach:
        return 0
    event = engine.wait_exec(cid, reply["exec_id"]) or {}
    return int(event.get("exit_code", 255))


def _json_file(path: str):
    """A JSON document from a file (`-`: stdin), or Failure in one line."""
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise Failure(f"open {path}: {e.strerror.lower()}") from None
    except ValueError as e:
        raise Failure(f"{path}: malformed JSON: {e}") from None


def cmd_ps(args) -> int:
    from ..commands.processes import top

    engine, cid, state, _ = _lookup(args, args.id)
    if _status(state) not in ("running", "paused"):
        raise Failure(f"cannot ps a container that is {_status(state)}" if _status(state) != "stopped"
                      else "container not running")
    processes = top(engine, cid)
    if args.format == "json":
        print(json.dumps([p.pid for p in processes]))
        return 0
    print(f"{'PID':>8} {'USER':10} {'TIME':>8} CMD")
    for p in processes:
        print(f"{p.pid:>8} {p.user:10} {p.cpu_seconds:>8.2f} {p.command}")
    return 0


def cmd_pause(args) -> int:
    engine, cid, state, _ = _lookup(args, args.id)
    status = _status(state)
    if status != "running":
        raise Failure("container not running" if status == "stopped" else f"cannot pause a {status} container")
    engine.pause(cid)
    return 0


def cmd_resume(args) -> int:
    engine, cid, state, _ = _lookup(args, args.id)
    if _status(state) != "paused":
        raise Failure("container not paused")
    engine.unpause(cid)
    return 0


def cmd_update(args) -> int:
    from . import config
    from ..runtime.spec import Limits, SpecError, parse_size

    resources = _json_file(args.resources) if args.resources else {}
    try:
        limits = config.limits_of(resources, "resources", args.resources or "update")
        flags = {}
        if args.memory is not None:
            flags["memory"] = parse_size(args.memory)
        if args.cpu_quota is not None:
            flags["cpus"] = args.cpu_quota / (args.cpu_period or 100000) if args.cpu_quota > 0 else None
        if args.cpu_share is not None:
            flags["cpu_shares"] = args.cpu_share
        if args.pids_limit is not None:
            flags["pids_limit"] = args.pids_limit if args.pids_limit > 0 else None
        if flags:
            merged = {k: v for k, v in vars(limits).items() if v is not None}
            merged.update(flags)
            limits = Limits(**merged)
    except (config.ConfigError, SpecError) as e:
        raise Failure(str(e)) from None
    if not limits.any_cgroup_limit:
        raise Failure("update: nothing to change: give --resources FILE or a flag such as --memory 64M")
    engine, cid, state, _ = _lookup(args, args.id)
    if _status(state) not in ("created", "running", "paused"):
        raise Failure("container not running")
    engine.update(cid, limits)
    return 0


def cmd_list(args) -> int:
    root = _root(args)
    from ..runtime.state import StateStore

    store, rows = StateStore(root), []
    for name in sorted(os.listdir(os.path.join(root, "oci")) if os.path.isdir(os.path.join(root, "oci")) else ()):
        with open(os.path.join(root, "oci", name)) as f:
            meta = json.load(f)
        state = _with_pause(store, name[:-5], store.read(name[:-5]) or {})
        status = _status(state)
        rows.append({"id": meta["id"], "pid": state.get("pid", 0) if status != "stopped" else 0, "status": status,
                     "bundle": meta["bundle"], "created": meta["created"]})
    if args.format == "json":
        print(json.dumps(rows))
        return 0
    print(f"{'ID':20} {'PID':>8} {'STATUS':10} {'BUNDLE':40} CREATED")
    for r in rows:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["created"]))
        print(f"{r['id']:20} {r['pid']:>8} {r['status']:10} {r['bundle']:40} {created}")
    return 0


def cmd_features(args) -> int:
    from .spec import features

    print(json.dumps(features(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
