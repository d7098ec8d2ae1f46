"""Argument parsing shared by both faces: `containerlab-magic` and `%container`.

Docker's grammar (`run [OPTIONS] IMAGE [COMMAND] [ARG...]`), its run flags and
every verb's options are declared here once, with argparse; the CLI and the
magics build their parsers from these functions (the notebook has no
terminal, so it asks for them without the tty-only flags).  The small parsers
behind the flags live here too: signals (signal(7)), `ps --filter`, labels,
env files, `--security-opt` and `cp`'s NAME:PATH.  Each raises SpecError with
one line saying what is wrong and how to write it instead.

Nothing here runs a container or renders output: the faces hand what these
return to the commands layer (commands/) and render what it gives back.
"""

from __future__ import annotations

import argparse
import signal
from dataclasses import dataclass

from .runtime.errors import SpecError

EXIT_USAGE = 125
PROG = "containerlab-magic"
STATUSES = ("created", "running", "paused", "exiting", "exited", "dead")
FILTER_KEYS = ("label", "name", "status", "id")


class Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line with docker's status 125."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- run's options


def add_run_options(p: argparse.ArgumentParser, *, tty: bool = True) -> None:
    """Docker's run flags (not IMAGE and COMMAND: the CLI takes them as positionals,
    the cell magic as --image and the cell).  tty=False leaves out -t and -i."""
    p.add_argument("--name", help="container name (default: a generated one)")
    p.add_argument("--hostname", help="hostname inside (default: the name)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="set an environment variable (a bare K takes this shell's value)")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read K=V lines from FILE (# comments; a bare K takes this shell's value)")
    p.add_argument("-l", "--label", action="append", default=[], metavar="K=V",
                   help="a label to find the container by (ps --filter label=K=V)")
    p.add_argument("-w", "--workdir", help="working directory inside (default: the image's, else /)")
    p.add_argument("-u", "--user", help="UID[:GID] or a user name of the image")
    p.add_argument("--entrypoint", metavar="CMD",
                   help="the program to run; COMMAND becomes its arguments (builtin images have no entrypoint)")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]", help="bind mount")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOST:CTR[/udp]",
                   help="publish a container port on the host's loopback")
    p.add_argument("--net", "--network", dest="net", default="none",
                   help="none (default), bridge, a network name, container:NAME or host")
    p.add_argument("--read-only", action="store_true", help="make the root filesystem read-only")
    p.add_argument("--timeout", type=float, help="kill the container after this many seconds (at most 30 days)")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background; print its id")
    p.add_argument("--rm", action="store_true",
                   help="remove the container when it exits (a foreground container always is; "
                        "with -d, it is removed instead of kept as exited)")
    p.add_argument("--init", action="store_true", help="run a small PID 1 that reaps zombies and forwards signals")
    if tty:
        p.add_argument("-t", "--tty", action="store_true", help="give the container a terminal")
        p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("--memory", "-m", help="memory limit, e.g. 64M")
    p.add_argument("--memory-swap", help="memory+swap limit (-1: unlimited swap)")
    p.add_argument("--cpus", help="CPU limit, e.g. 0.5 (at most this host's CPU count)")
    p.add_argument("--cpu-shares", help="relative CPU weight (default 1024)")
    p.add_argument("--cpuset-cpus", help="CPUs allowed, e.g. 0-1")
    p.add_argument("--pids-limit", help="most processes at once")
    p.add_argument("--blkio-weight", help="relative I/O weight 10-1000")
    p.add_argument("--storage-size", help="size of the writable layer and /tmp, e.g. 100M")
    p.add_argument("--net-rate", help="shape eth0's rate, e.g. 1mbit (needs --net bridge)")
    p.add_argument("--net-delay", help="add latency on eth0, e.g. 50ms")
    p.add_argument("--net-loss", help="drop packets on eth0, e.g. 1%%")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                   help="a resource limit of the container's processes, e.g. nofile=1024:2048 (-1: unlimited)")
    p.add_argument("--group-add", action="append", default=[], metavar="GROUP",
                   help="a supplementary group (GID or a group of the image's /etc/group)")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="add a capability, e.g. NET_ADMIN")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="drop a capability, or ALL")
    p.add_argument("--privileged", action="store_true",
                   help="every capability, no seccomp filter, no no_new_privs (the namespaces stay)")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="no-new-privileges[=true|false], seccomp=unconfined or seccomp=PROFILE.json")
    p.add_argument("--explain", action="store_true",
                   help="show the setup steps as they ran, each with its time (with --dry-run: the plan, "
                        "without running)")


LIMIT_FLAGS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "pids_limit", "blkio_weight")


def limits_from_args(args: argparse.Namespace):
    """The cgroup limits named on the command line (run and update share the flags)."""
    from .runtime.spec import Limits

    options = {key: getattr(args, key, None) for key in LIMIT_FLAGS + ("storage_size",)}
    return Limits.parse(**options)


def run_spec(args: argparse.Namespace, image: str, command: list[str]):
    """Parsed run options, an image and a command -> a validated ContainerSpec.

    `--entrypoint X` replaces the image's entrypoint (and drops its Cmd), so X
    becomes the first word and COMMAND its arguments, as with docker.  With no
    COMMAND a stored image's Cmd runs (the runtime fills it in: image_config.py);
    built-in images have none."""
    from .runtime.spec import BUILTIN_IMAGES, ContainerSpec, Mount, PortMap, parse_env, parse_ulimit

    command = list(command)
    entrypoint = getattr(args, "entrypoint", None)
    if not command and not entrypoint and image in BUILTIN_IMAGES:
        raise SpecError(f"no command given: say what to run, e.g. `{PROG} run {image} echo hi`")
    if getattr(args, "tty", False) and args.detach:  # (the Engine API may: its caller holds the pty)
        raise SpecError("--tty needs a terminal to attach to: drop --detach or --tty")
    env = [line for path in getattr(args, "env_file", ()) for line in read_env_file(path)] + list(args.env)
    security = parse_security_opts(getattr(args, "security_opt", ()))
    return ContainerSpec(
        command=tuple(command), image=image, name=args.name, hostname=args.hostname,
        env=parse_env(env), workdir=args.workdir, user=args.user,
        mounts=tuple(Mount.parse(v) for v in args.volume), read_only=args.read_only, timeout=args.timeout,
        detach=args.detach, tty=getattr(args, "tty", False), interactive=getattr(args, "interactive", False),
        limits=limits_from_args(args), network=args.net, ports=tuple(PortMap.parse(p) for p in args.publish),
        net_rate=args.net_rate, net_delay=args.net_delay, net_loss=args.net_loss,
        labels=parse_labels(getattr(args, "label", ())), init=getattr(args, "init", False),
        auto_remove=getattr(args, "rm", False), cap_add=tuple(getattr(args, "cap_add", ())),
        cap_drop=tuple(getattr(args, "cap_drop", ())), privileged=getattr(args, "privileged", False),
        entrypoint=(entrypoint,) if entrypoint else None,
        ulimits=tuple(parse_ulimit(u) for u in getattr(args, "ulimit", ())),
        group_add=tuple(getattr(args, "group_add", ())), **security)


# ---------------------------------------------------------------- small parsers


def parse_signal(text: str | int) -> int:
    """'KILL', 'SIGKILL', 'kill', '9' -> 9 (see signal(7)); anything else is refused."""
    word = str(text).strip()
    if word.isascii() and word.isdigit():  # not str.isdigit alone: int('²') fails
        number = int(word)
        if number in signal.valid_signals() and number != 0:
            return number
        raise SpecError(f"unknown signal {word}: give a number from 1 to {signal.SIGRTMAX} "
                        f"or a name like TERM, INT, HUP or KILL")
    name = word.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise SpecError(f"unknown signal {text!r}: use a name like TERM, INT, HUP or KILL, or a number") from None


def parse_labels(items) -> tuple[tuple[str, str], ...]:
    """['k=v', 'k'] -> pairs (a bare k has an empty value, as docker)."""
    pairs = []
    for item in items:
        key, _, value = item.partition("=")
        if not key or key != key.strip() or any(c.isspace() or not c.isprintable() for c in key):
            raise SpecError(f"invalid label {item!r}: write KEY=VALUE with a KEY of letters, digits, '.', '-' "
                            "or '_', e.g. --label course=net101")
        pairs.append((key, value))
    return tuple(pairs)


def read_env_file(path: str) -> list[str]:
    """Docker's env file: K=V lines; blank lines and # comments skipped; a bare K
    takes this shell's value (parse_env checks it is set).  Values are taken as
    written: no quotes removed, no variables expanded."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SpecError(f"--env-file {path}: {e.strerror.lower()}: give a readable file of K=V lines") from None
    except UnicodeDecodeError:
        raise SpecError(f"--env-file {path}: not UTF-8 text: give a file of K=V lines") from None
    items = []
    for number, line in enumerate(lines, 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        if not key or any(c.isspace() for c in key):
            raise SpecError(f"--env-file {path}, line {number}: {line!r} is not K=V: write NAME=value")
        items.append(line)
    return items


def parse_security_opts(items) -> dict:
    """--security-opt values -> ContainerSpec fields (no_new_privileges, seccomp).
    The security layer validates a profile's content and applies both."""
    fields: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep and ":" in item:  # docker's older spelling: no-new-privileges:true
            key, sep, value = item.partition(":")
        if key == "no-new-privileges":
            flag = value.lower() if sep else "true"
            if flag not in ("true", "false"):
                raise SpecError(f"invalid --security-opt {item!r}: write no-new-privileges, "
                                "no-new-privileges=true or no-new-privileges=false")
            fields["no_new_privileges"] = flag == "true"
        elif key == "seccomp" and value:
            fields["seccomp"] = "unconfined" if value == "unconfined" else _read_profile(value)
        else:
            raise SpecError(f"unsupported --security-opt {item!r}: use no-new-privileges[=true|false], "
                            "seccomp=unconfined or seccomp=PROFILE.json")
    return fields


def _read_profile(path: str) -> str:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if not isinstance(json.loads(text), dict):
            raise ValueError("not an object")
    except OSError as e:
        raise SpecError(f"--security-opt seccomp={path}: {e.strerror.lower()}: "
                        "give a readable JSON profile, or seccomp=unconfined") from None
    except ValueError:
        raise SpecError(f"--security-opt seccomp={path}: not a JSON object: "
                        "give a seccomp profile in docker's JSON format") from None
    return text


@dataclass(frozen=True)
class Filter:
    """One `ps --filter KEY=VALUE`: label=K, label=K=V, name=PART, status=S, id=PREFIX."""

    key: str
    value: str


def parse_filters(items) -> tuple[Filter, ...]:
    filters = []
    for item in items:
        key, sep, value = item.partition("=")
        if key not in FILTER_KEYS or not sep:
            raise SpecError(f"invalid filter {item!r}: use label=KEY, label=KEY=VALUE, name=NAME, "
                            f"status=STATUS or id=PREFIX")
        if key == "status" and value not in STATUSES:
            raise SpecError(f"invalid filter {item!r}: status is one of {', '.join(STATUSES)}")
        if key == "label" and not value.partition("=")[0]:
            raise SpecError(f"invalid filter {item!r}: write label=KEY or label=KEY=VALUE")
        filters.append(Filter(key, value))
    return tuple(filters)


def parse_container_path(text: str) -> tuple[str | None, str]:
    """`cp`'s operands: 'NAME:PATH' -> (NAME, PATH); a host path -> (None, PATH).
    As with docker, a host path holding ':' is written with a leading ./ or /."""
    if text.startswith(("/", ".")) or ":" not in text:
        if not text:
            raise SpecError("cp: an empty path: write NAME:PATH or a host path")
        return None, text
    name, _, path = text.partition(":")
    if not name or not path:
        raise SpecError(f"cp: invalid operand {text!r}: write NAME:PATH for a container's file, e.g. web:/etc/hosts")
    return name, path


# ---------------------------------------------------------------- the verbs


def _ps(p, tty: bool) -> None:
    p.add_argument("-a", "--all", action="store_true", help="also show exited containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only ids")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="label=K, label=K=V, name=PART, status=STATUS, id=PREFIX; different keys must "
                        "all match, one key given twice matches either (labels: all)")


def _logs(p, tty: bool) -> None:
    p.add_argument("-f", "--follow", action="store_true", help="follow until it ends")
    p.add_argument("container")


def _exec(p, tty: bool) -> None:
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    if tty:
        p.add_argument("-t", "--tty", action="store_true")
        p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _stop(p, tty: bool) -> None:
    p.add_argument("-t", "--time", type=float, default=10.0, help="grace period in seconds (default 10)")
    p.add_argument("containers", nargs="+")


def _kill(p, tty: bool) -> None:
    p.add_argument("-s", "--signal", default="KILL", help="KILL (default), TERM, SIGHUP, 9, ...")
    p.add_argument("containers", nargs="+")


def _rm(p, tty: bool) -> None:
    p.add_argument("-f", "--force", action="store_true", help="kill running ones first")
    p.add_argument("containers", nargs="+")


def _stats(p, tty: bool) -> None:
    p.add_argument("--no-stream", action="store_true", help="print once and exit")
    p.add_argument("containers", nargs="*")


def _update(p, tty: bool) -> None:
    for flag in ("--memory", "--memory-swap", "--cpus", "--cpu-shares", "--cpuset-cpus", "--pids-limit",
                 "--blkio-weight", "--net-rate", "--net-delay", "--net-loss"):
        p.add_argument(flag)
    p.add_argument("containers", nargs="+")


def _cp(p, tty: bool) -> None:
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DST")


def _containers(p, tty: bool) -> None:
    p.add_argument("containers", nargs="+")


def _container(p, tty: bool) -> None:
    p.add_argument("container")


def _nothing(p, tty: bool) -> None:
    pass


def _pull(p, tty: bool) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress, only the name pulled")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")


def _push(p, tty: bool) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.add_argument("image", metavar="NAME[:TAG]")
    p.add_argument("target", nargs="?", metavar="TARGET", help="push under this name instead (default: NAME)")


def _login(p, tty: bool) -> None:
    p.add_argument("-u", "--username", default="", help="user name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin (as docker)")
    p.add_argument("server", metavar="SERVER", help="registry host[:port]")


def _logout(p, tty: bool) -> None:
    p.add_argument("server", metavar="SERVER")


def _tag(p, tty: bool) -> None:
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")


def _rmi(p, tty: bool) -> None:
    p.add_argument("-f", "--force", action="store_true", help="remove every name of an image given by id")
    p.add_argument("images", nargs="+", metavar="IMAGE")


def _one_image(p, tty: bool) -> None:
    p.add_argument("image", metavar="IMAGE")


def _image(p, tty: bool) -> None:
    """`image prune|inspect|ls|history`."""
    sub = p.add_subparsers(dest="image_verb", metavar="VERB")
    sub.required = True
    sub.add_parser("prune", help="free every layer and blob no image and no container uses")
    q = sub.add_parser("inspect", help="an image's config, layers and digests as JSON")
    q.add_argument("images", nargs="+", metavar="IMAGE")
    sub.add_parser("ls", help="list images (as `images`)")
    _one_image(sub.add_parser("history", help="the steps that made an image"), tty)


def _save(p, tty: bool) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the tar to write")
    p.add_argument("--format", default="docker-archive", choices=("docker-archive", "oci"))
    p.add_argument("images", nargs="+", metavar="IMAGE")


def _load(p, tty: bool) -> None:
    p.add_argument("-i", "--input", required=True, metavar="FILE",
                   help="a tar (or directory) written by save, docker save or skopeo")


def _import(p, tty: bool) -> None:
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTR",
                   help="set config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, STOPSIGNAL")
    p.add_argument("file", metavar="FILE", help="a tar of a root filesystem (plain, .gz, .zst)")
    p.add_argument("image", metavar="NAME[:TAG]")


def _export(p, tty: bool) -> None:
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.add_argument("container")


def _commit(p, tty: bool) -> None:
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTR",
                   help="set config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, STOPSIGNAL")
    p.add_argument("-m", "--message", default="", help="a comment kept in the image's history")
    p.add_argument("container")
    p.add_argument("image", metavar="NAME[:TAG]")


def _build(p, tty: bool) -> None:
    p.add_argument("-t", "--tag", metavar="NAME[:TAG]", help="name the image")
    p.add_argument("-f", "--file", metavar="FILE", help="the Containerfile (default: CONTEXT/Containerfile, "
                                                        "else CONTEXT/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V", help="a value for an ARG")
    p.add_argument("--network", default="none", help="RUN's network: none (default), bridge or a network name")
    p.add_argument("--memory", "-m", help="memory limit of each RUN container")
    p.add_argument("--cpus", help="CPU limit of each RUN container")
    p.add_argument("--pids-limit", help="process limit of each RUN container")
    if tty:
        p.add_argument("context", metavar="CONTEXT", help="the folder COPY and ADD read from")
    else:  # %%container build: the cell is the Containerfile, the context defaults to the notebook's folder
        p.add_argument("context", nargs="?", default=".", metavar="CONTEXT")


def build_limits(args):
    from .runtime.spec import Limits

    return Limits.parse(memory=args.memory, cpus=args.cpus, pids_limit=args.pids_limit)


def parse_changes(items) -> dict:
    """`--change 'CMD ["sh"]'` lines -> image config keys (docker's commit/import --change)."""
    from .runtime.images.containerfile import config_changes

    return config_changes(items)


# verb -> (help, how its options are declared); the network verb has subcommands (add_network_parser)
VERBS = {
    "ps": ("list containers", _ps),
    "logs": ("output of a detached container", _logs),
    "exec": ("run a command in a running container", _exec),
    "stop": ("SIGTERM, then SIGKILL after a grace period", _stop),
    "kill": ("send a signal (default SIGKILL)", _kill),
    "rm": ("remove containers", _rm),
    "wait": ("wait for containers to end; print their exit codes", _containers),
    "inspect": ("a container's configuration and state as JSON (docker's names)", _containers),
    "stats": ("live usage against limits (like docker stats)", _stats),
    "top": ("the processes of a container", _container),
    "update": ("change limits of a running container", _update),
    "pause": ("freeze every process of a container", _containers),
    "unpause": ("thaw a paused container", _containers),
    "cp": ("copy files between a container and the host: cp NAME:PATH HOSTPATH, or cp HOSTPATH NAME:PATH", _cp),
    "port": ("a container's published ports", _container),
    "network": ("create, list, inspect and remove networks", None),
    "images": ("list images: built-in ones, then stored ones (repo, tag, id, size, shared)", _nothing),
    "pull": ("pull an image from a registry", _pull),
    "push": ("push an image to a registry", _push),
    "login": ("keep credentials for a registry (0600 file)", _login),
    "logout": ("forget a registry's credentials", _logout),
    "tag": ("give an image another name", _tag),
    "rmi": ("remove image names; free what nothing uses", _rmi),
    "image": ("prune, inspect, ls, history", _image),
    "history": ("the steps that made an image, with each layer's size", _one_image),
    "save": ("write images to a tar (docker-archive or OCI layout)", _save),
    "load": ("read images from a tar written by save, docker save or skopeo", _load),
    "import": ("a root filesystem tarball as a one-layer image", _import),
    "export": ("a running container's filesystem as a tar", _export),
    "commit": ("a new image from a running container's changes", _commit),
    "build": ("build an image from a Containerfile and a context folder", _build),
    "doctor": ("what this host supports, and fixes", _nothing),
    "gc": ("remove what crashes left behind", _nothing),
}


def add_verbs(sub, parser_class, *, tty: bool = True, only: str | None = None) -> None:
    """Every verb but run (see VERBS), or only the one a command line names: building
    all of them costs more than the rest of a CLI call's parsing."""
    for verb, (text, declare) in VERBS.items():
        if only is not None and verb != only:
            continue
        if declare is None:
            add_network_parser(sub, parser_class)
        else:
            declare(sub.add_parser(verb, help=text), tty)


def add_network_parser(sub, parser_class) -> None:
    """`network create|ls|inspect|rm`."""
    p = sub.add_parser("network", help=VERBS["network"][0])
    netsub = p.add_subparsers(dest="net_verb", metavar="VERB", parser_class=parser_class)
    netsub.required = True
    q = netsub.add_parser("create", help="a bridge network with its own subnet")
    q.add_argument("--subnet", help="CIDR, e.g. 10.214.0.0/24 (default: a free /24)")
    q.add_argument("--internal", action="store_true", help="no route beyond the bridge")
    q.add_argument("name")
    netsub.add_parser("ls", help="list networks")
    q = netsub.add_parser("inspect", help="a network's containers and addresses")
    q.add_argument("name")
    q = netsub.add_parser("rm", help="remove networks")
    q.add_argument("names", nargs="+")

