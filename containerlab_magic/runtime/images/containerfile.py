"""The Containerfile (Dockerfile) grammar: instructions, and the config they set.

Docker's reference (docs.docker.com/reference/dockerfile): one instruction a
line, `\\` continues a line, `#` starts a comment line, an instruction word in
any case.  CMD, ENTRYPOINT and RUN take the exec form (a JSON array) or the
shell form (wrapped in `/bin/sh -c`).  ENV and LABEL take `K=V ...` (or the
old `K V`).  `$VAR` and `${VAR}` in FROM, COPY, ADD, ENV, WORKDIR, USER,
EXPOSE, LABEL and ARG are replaced from ARG and ENV as the file goes.

Every error names the line: `Containerfile line 3: ...`.  The same
config-setting instructions are what `commit --change` and `import --change`
take.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from ..errors import SpecError

KNOWN = ("FROM", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "EXPOSE", "LABEL", "ARG",
         "STOPSIGNAL")
CONFIG_ONLY = ("ENV", "WORKDIR", "USER", "ENTRYPOINT", "CMD", "EXPOSE", "LABEL", "STOPSIGNAL")
VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    line: int  # where it starts in the file (1-based)
    keyword: str  # upper case
    args: str  # the rest, continuation lines joined
    flags: tuple[tuple[str, str], ...] = ()  # --from=stage, --chown=...

    @property
    def text(self) -> str:
        flags = "".join(f"--{k}={v} " for k, v in self.flags)
        return f"{self.keyword} {flags}{self.args}".strip()

    def flag(self, name: str) -> str | None:
        return dict(self.flags).get(name)

    def fail(self, what: str, where: str = "Containerfile") -> SpecError:
        return SpecError(f"{where} line {self.line}: {self.keyword}: {what}")


def parse(text: str, where: str = "Containerfile") -> list[Instruction]:
    """The instructions of a Containerfile, in order; one-line errors naming the line."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped, as docker does
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(_instruction(start, pending + line, where))
        pending = ""
    if pending.strip():
        out.append(_instruction(start, pending, where))
    if not out:
        raise SpecError(f"{where} is empty: start it with FROM IMAGE")
    first = next((i for i in out if i.keyword != "ARG"), None)
    if first is None or first.keyword != "FROM":
        line = first.line if first else out[0].line
        raise SpecError(f"{where} line {line}: the first instruction must be FROM IMAGE (ARG may come before it)")
    return out


def _instruction(number: int, line: str, where: str) -> Instruction:
    word, _, rest = line.strip().partition(" ")
    keyword = word.upper()
    if keyword not in KNOWN:
        raise SpecError(f"{where} line {number}: unknown instruction {word!r}: use one of {', '.join(KNOWN)}")
    rest = rest.strip()
    flags = []
    while keyword in ("COPY", "ADD", "FROM", "RUN") and rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, sep, value = flag[2:].partition("=")
        if key not in ("from", "chown", "chmod", "platform", "network") or not sep:
            raise SpecError(f"{where} line {number}: {keyword}: unsupported flag {flag!r} (COPY takes --from=STAGE)")
        flags.append((key, value))
        rest = rest.strip()
    if not rest:
        raise SpecError(f"{where} line {number}: {keyword} needs arguments")
    return Instruction(number, keyword, rest, tuple(flags))


def substitute(text: str, variables: dict[str, str]) -> str:
    """$VAR and ${VAR} from ARG and ENV (an unset one is empty, as docker)."""
    return VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), ""), text)


def command_form(ins: Instruction) -> list[str]:
    """CMD/ENTRYPOINT/RUN: the exec form (JSON array) as is, else ['/bin/sh', '-c', text]."""
    if ins.args.startswith("["):
        try:
            value = json.loads(ins.args)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if ins.keyword != "RUN":
            raise ins.fail('the exec form is a JSON array of strings, e.g. ["sh", "-c", "echo hi"]')
    return ["/bin/sh", "-c", ins.args]


def pairs(ins: Instruction) -> list[tuple[str, str]]:
    """ENV/LABEL/ARG's K=V words (quotes allowed), or the old `K V` form."""
    try:
        words = shlex.split(ins.args)
    except ValueError as e:
        raise ins.fail(f"{e}: close the quote") from None
    if words and "=" not in words[0]:
        if ins.keyword == "ARG":
            return [(words[0], None)] if len(words) == 1 else [(w.partition("=")[0], None) for w in words]
        if len(words) < 2:
            raise ins.fail("write KEY=VALUE")
        return [(words[0], ins.args.split(None, 1)[1])]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not key or (not sep and ins.keyword != "ARG"):
            raise ins.fail(f"{word!r} is not KEY=VALUE")
        out.append((key, value if sep else None))
    return out


def apply_config(config: dict, ins: Instruction, variables: dict[str, str] | None = None,
                 own_cmd: bool = False) -> None:
    """Apply one config-only instruction to an image config's `config` object (docker's keys).
    own_cmd: a CMD came earlier in this file (else ENTRYPOINT clears the base image's Cmd, as docker)."""
    variables = variables if variables is not None else {}
    kw = ins.keyword
    if kw in ("CMD", "ENTRYPOINT"):
        config["Cmd" if kw == "CMD" else "Entrypoint"] = command_form(ins)
        if kw == "ENTRYPOINT" and not own_cmd:
            config.pop("Cmd", None)
    elif kw == "ENV":
        env = dict(item.partition("=")[::2] for item in config.get("Env") or ())
        for key, value in pairs(ins):
            env[key] = substitute(value, {**variables, **env})
            variables[key] = env[key]
        config["Env"] = [f"{k}={v}" for k, v in env.items()]
    elif kw == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update((k, substitute(v, variables)) for k, v in pairs(ins))
        config["Labels"] = labels
    elif kw == "WORKDIR":
        path = substitute(ins.args, variables)
        if not path.startswith("/"):
            path = (config.get("WorkingDir") or "/").rstrip("/") + "/" + path
        config["WorkingDir"] = path
    elif kw == "USER":
        config["User"] = substitute(ins.args, variables)
    elif kw == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for word in substitute(ins.args, variables).split():
            port, _, proto = word.partition("/")
            if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp"):
                raise ins.fail(f"invalid port {word!r}: write PORT[/tcp|/udp], e.g. 80/tcp")
            ports[f"{int(port)}/{proto or 'tcp'}"] = {}
        config["ExposedPorts"] = ports
    elif kw == "STOPSIGNAL":
        config["StopSignal"] = ins.args.strip()
    else:
        raise ins.fail("only CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL and STOPSIGNAL change the config")


def config_changes(items, base: dict | None = None) -> dict:
    """`--change` lines applied on `base` (an image config's `config` object); the new object."""
    config = json.loads(json.dumps(base or {}))
    for n, item in enumerate(items, 1):
        ins = _instruction(n, item, "--change")
        if ins.keyword not in CONFIG_ONLY:
            raise SpecError(f"--change {item!r}: only {', '.join(CONFIG_ONLY)} can be changed")
        apply_config(config, ins)
    return config
