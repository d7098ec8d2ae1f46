"""config.json's hooks (runtime-spec config.md, POSIX-platform hooks), run by the runtime.

Each hook is a program on the runtime's side (its path resolves there, it runs in the
runtime's namespaces) that gets the container's state JSON on stdin:

- createRuntime and prestart: during `create`, once the container's namespaces exist
  and before `create` returns.  The lab's PID 1 has already pivoted into its root by
  then (it waits for `start` after pivot_root, not before): what such hooks do in the
  container's network namespace (/proc/PID/ns/net, the usual use) works; a hook that
  mounts into the container's root before pivot_root does not (docs/oci-runtime.md).
  A failure stops and deletes the container, and `create` fails.
- poststart: after `start` let the process run, before `start` returns; a failure is
  a warning.
- poststop: after `delete` removed the container, before it returns; a failure is a
  warning.
- createContainer and startContainer run in the container's namespaces: refused at
  create, naming the field.
"""

from __future__ import annotations

import json
import os
import sys

RUNTIME_SIDE = ("prestart", "createRuntime", "poststart", "poststop")
CONTAINER_SIDE = ("createContainer", "startContainer")


class HookFailed(Exception):
    """One line: which hook, and why."""


def check(hooks, refuse) -> dict:
    """The hooks object of config.json, validated; `refuse(where, why)` raises."""
    if hooks is None:
        return {}
    if not isinstance(hooks, dict):
        refuse("hooks", "must be an object")
    found = {}
    for kind, entries in hooks.items():
        if not entries:
            continue
        if kind in CONTAINER_SIDE:
            refuse(f"hooks.{kind}", "hooks run in the container's namespaces are not supported yet "
                                    "(createRuntime, prestart, poststart and poststop are)")
        if kind not in RUNTIME_SIDE:
            refuse(f"hooks.{kind}", "not a hook this runtime knows")
        if not isinstance(entries, list):
            refuse(f"hooks.{kind}", "must be a list")
        for i, hook in enumerate(entries):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(hook, dict) or not isinstance(hook.get("path"), str) \
                    or not os.path.isabs(hook["path"]):
                refuse(f"{where}.path", "must be an absolute path")
            for key in ("args", "env"):
                value = hook.get(key)
                if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                    refuse(f"{where}.{key}", "must be a list of strings")
            timeout = hook.get("timeout")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
                refuse(f"{where}.timeout", f"{timeout!r}: must be a number of seconds above 0")
        found[kind] = entries
    return found


def run(kind: str, hooks: dict, state: dict) -> None:
    """Run every hook of `kind` in order with `state` on stdin; HookFailed at the first
    that fails (exit code, signal, timeout or a missing program)."""
    import subprocess

    for i, hook in enumerate(hooks.get(kind) or ()):
        path, name = hook["path"], f"hooks.{kind}[{i}] ({hook['path']})"
        args = hook.get("args") or [path]
        env = dict(item.split("=", 1) for item in hook.get("env") or () if "=" in item)
        try:
            done = subprocess.run(args, executable=path, input=json.dumps(state).encode(), env=env, cwd="/",
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=hook.get("timeout"))
        except subprocess.TimeoutExpired:
            raise HookFailed(f"{name} timed out after {hook['timeout']} s") from None
        except OSError as e:
            raise HookFailed(f"{name}: {e.strerror or e}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
            raise HookFailed(f"{name} failed: {how}" + (f": {said[-1]}" if said else ""))


def warn(kind: str, hooks: dict, state: dict, log) -> None:
    """poststart and poststop: a failure is a warning on stderr (and the --log file)."""
    try:
        run(kind, hooks, state)
    except HookFailed as e:
        print(f"warning: {e}", file=sys.stderr)
        log(f"warning: {e}")
