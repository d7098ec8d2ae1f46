"""Graders for the course's exercises (notebooks/en, notebooks/ko).

Each check looks at the real thing (a container's state and cgroup through
the kernel's Engine, a stack's members, a value the student computed) and
returns a `Report`: one line per point, what is right (✓) and what is missing
(✗), shown as a list in the notebook.  A check never raises for a wrong
answer: the report says what to change.  `Report.passed` is True when every
point holds.

    from containerlab_magic.course import check_container
    check_container("first", image="busybox", hostname="lab", running=True)
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from .runtime.errors import ContainerError
from .runtime.spec import format_size, parse_size


@dataclass
class Report:
    title: str
    points: list[tuple[bool, str]] = field(default_factory=list)

    def add(self, ok: bool, text: str) -> "Report":
        self.points.append((bool(ok), text))
        return self

    @property
    def passed(self) -> bool:
        return bool(self.points) and all(ok for ok, _ in self.points)

    def summary(self) -> str:
        right = sum(ok for ok, _ in self.points)
        return f"{self.title}: {right}/{len(self.points)}" + (" - all done!" if self.passed else "")

    def __repr__(self) -> str:
        return "\n".join([self.summary()] + [f"  {'✓' if ok else '✗'} {text}" for ok, text in self.points])

    def _repr_html_(self) -> str:
        items = "".join(f"<li style='color:{'#1a7f37' if ok else '#cf222e'}'>{'✓' if ok else '✗'} "
                        f"{html.escape(text)}</li>" for ok, text in self.points)
        return f"<b>{html.escape(self.summary())}</b><ul style='list-style:none'>{items}</ul>"


def _engine():
    from IPython import get_ipython

    from .magics import _loaded

    magics = _loaded.get(id(get_ipython()))
    if magics is None:
        from .runtime.errors import SpecError

        raise SpecError("load the lab first: %load_ext containerlab_magic")
    return magics.engine


def check_container(name: str, *, image: str | None = None, hostname: str | None = None,
                    running: bool | None = None, memory: str | None = None, cpus: float | None = None,
                    pids_limit: int | None = None, network: str | None = None, labels: dict | None = None,
                    engine=None) -> Report:
    """Does container NAME exist and look as asked?"""
    engine = engine or _engine()
    report = Report(f"container {name}")
    try:
        state = engine.inspect(name)
    except ContainerError:
        return report.add(False, f"there is no container named {name}: start one with --name {name}")
    spec = state.get("spec") or {}
    report.add(True, f"a container named {name} exists")
    if image is not None:
        report.add(spec.get("image") == image, f"image is {spec.get('image')!r}" +
                   ("" if spec.get("image") == image else f", want {image!r}"))
    if hostname is not None:
        got = spec.get("hostname") or ""
        report.add(got == hostname, f"hostname is {got!r}" + ("" if got == hostname else f", want {hostname!r}"))
    if running is not None:
        is_running = state.get("status") == "running"
        report.add(is_running == running, f"it is {state.get('status')}" +
                   ("" if is_running == running else f", want {'running (try --detach)' if running else 'ended'}"))
    import dataclasses

    limits = dataclasses.asdict(engine.limits(name))  # with live changes (%cgroup NAME memory=...) applied
    if memory is not None:
        want = parse_size(memory)
        got = limits.get("memory")
        report.add(got == want, f"memory limit is {format_size(got) if got else 'none'}" +
                   ("" if got == want else f", want {format_size(want)} (--memory {memory})"))
    if cpus is not None:
        got = limits.get("cpus")
        report.add(got == cpus, f"CPU limit is {got if got else 'none'}" +
                   ("" if got == cpus else f", want {cpus:g} (--cpus {cpus:g})"))
    if pids_limit is not None:
        got = limits.get("pids_limit")
        report.add(got == pids_limit, f"pids limit is {got if got else 'none'}" +
                   ("" if got == pids_limit else f", want {pids_limit} (--pids-limit {pids_limit})"))
    if network is not None:
        got = spec.get("network")
        report.add(got == network, f"network is {got!r}" + ("" if got == network else f", want {network!r}"))
    for key, value in (labels or {}).items():
        got = dict(tuple(kv) for kv in spec.get("labels") or ()).get(key)
        report.add(got == value, f"label {key}={got}" if got == value else f"label {key}={value} is missing")
    return report


def check_output(text, *expected: str, title: str = "output") -> Report:
    """Does the text (a str, bytes, or a cell's Result) contain each expected piece?"""
    if hasattr(text, "stdout"):
        text = text.stdout
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    report = Report(title)
    for piece in expected:
        report.add(piece in (text or ""), f"shows {piece!r}" if piece in (text or "") else f"{piece!r} is missing")
    return report


def check_value(got, want, what: str) -> Report:
    """One computed value against the expected one."""
    return Report(what).add(got == want, f"{what} = {got!r}" + ("" if got == want else f", want {want!r}"))


def check_image(name: str, *, shares_with: str | None = None, output: str | None = None,
                engine=None) -> Report:
    """Is image NAME in the store; does it share its bottom layers with `shares_with`; does
    running it (its own CMD, in a fresh container) print `output`?"""
    from . import commands
    from .runtime.spec import ContainerSpec

    engine = engine or _engine()
    report = Report(f"image {name}")
    try:
        mine = commands.image_inspect(engine, name)["RootFS"]["Layers"]
    except ContainerError:
        return report.add(False, f"there is no image {name}: build it with %%container build -t {name}")
    report.add(True, f"{name} is in the store, {len(mine)} layer{'s' if len(mine) != 1 else ''}")
    if shares_with is not None:
        try:
            base = commands.image_inspect(engine, shares_with)["RootFS"]["Layers"]
        except ContainerError:
            base = None
        shared = base is not None and mine[:len(base)] == base
        report.add(shared, f"its bottom {len(base)} layer(s) are {shares_with}'s: shared, stored once" if shared
                   else f"it does not start with {shares_with}'s layers: write FROM {shares_with}")
    if output is not None:
        result = engine.run(ContainerSpec((), image=name, timeout=10)).wait(30)
        text = (result.stdout or b"").decode(errors="replace")
        report.add(output in text, f"running it prints {output!r}" if output in text else
                   f"running it prints {text.strip()[:60]!r}, not {output!r}: check its CMD")
    return report


def check_stack(name: str, services: list[str], engine=None) -> Report:
    """Is stack NAME up with (at least) these services running?"""
    from . import commands

    engine = engine or _engine()
    report = Report(f"stack {name}")
    rows = {row.labels.get("com.docker.compose.service"): row for row in commands.stack_ps(engine, name)}
    for service in services:
        row = rows.get(service)
        report.add(row is not None and row.status == "running",
                   f"{service} is running" if row is not None and row.status == "running" else
                   f"{service} is {'missing: add it under services:' if row is None else row.status}")
    return report


# The grader's harness, run by python3 -I in the container: the student's code is exec'd there, never
# here, and only JSON comes back (the last line of stdout).
HARNESS = r"""
import json, sys
cases, code, name = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
space = {}
exec(compile(code, "<answer>", "exec"), space)
function = space.get(name)
results = []
for args in cases:
    try:
        results.append(["ok", function(*args)] if callable(function) else ["error", f"no function {name}()"])
    except Exception as e:
        results.append(["error", f"{type(e).__name__}: {e}"])
print("\nRESULTS " + json.dumps(results))
"""


def grade(code: str, function: str, cases: list, *, timeout: float = 3.0, memory: str = "64M",
          engine=None) -> Report:
    """Run untrusted `code` in a fresh container (host image, no network, read-only root, memory,
    CPU, process and time limits), call `function` on each case's arguments and compare with the
    expected value.  cases: [((args...), expected), ...]; values must be JSON."""
    import json

    from .runtime.spec import ContainerSpec, Limits

    engine = engine or _engine()
    report = Report(f"{function}()")
    # Half a CPU where a cgroup can hold it; a rootless lab without one keeps the timeout,
    # and memory and processes as rlimits (runtime/rootless.py).
    cpus = 0.5 if engine.cgroups is not None else None
    spec = ContainerSpec(["python3", "-I", "-c", HARNESS, json.dumps([list(a) for a, _ in cases]), code, function],
                         image="host", network="none", read_only=True, timeout=timeout,
                         limits=Limits(memory=parse_size(memory), cpus=cpus, pids_limit=16))
    result = engine.run(spec).wait()
    lines = result.stdout.decode(errors="replace").splitlines()
    found = [line for line in lines if line.startswith("RESULTS ")]
    if not found:
        why = result.describe() if not result.ok else "it printed no results"
        last = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return report.add(False, f"the answer did not finish: {why}" + (f" ({last[0]})" if last[0] else ""))
    for (args, want), (kind, got) in zip(cases, json.loads(found[-1][8:])):
        call = f"{function}({', '.join(map(repr, args))})"
        if kind == "error":
            report.add(False, f"{call} raised {got}")
        else:
            report.add(got == want, f"{call} = {got!r}" + ("" if got == want else f", want {want!r}"))
    return report
