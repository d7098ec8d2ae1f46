"""What the magics show: small objects with an HTML repr and a plain-text twin.

Every object here has `_repr_html_` for JupyterLab and `__repr__` for
terminals, nbval and saved notebooks read without a browser, so nothing is
ever shown only as HTML.  Nothing here runs containers: the magics hand in
the rows, results and usage figures they got from the commands layer.  How
each figure reads (sizes, rates, statuses) and each verb's rows come from
formats.py, shared with the CLI; this module only lays them out.
"""

from __future__ import annotations

import html
import signal
from dataclasses import dataclass, field

from .formats import (Rows, explain_table, explain_total, link_shape, memory_kills, micros, net_io, size, steps_of,
                      text_table)
from .runtime.spec import format_size

__all__ = ["CellResult", "ExplainTable", "Report", "Table", "Text", "cgroup_report", "limits_change",
           "link_shape", "net_io", "size", "stats_footer"]

# JupyterLab right-aligns every rendered table cell (.jp-RenderedHTMLCommon td): ours read left to right
STYLE = ("<style>table.clab-table td,table.clab-table th{padding:2px 8px;text-align:left !important;"
         "font-family:monospace}.clab-bad{color:#b00}.clab-ok{color:#070}</style>")


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


@dataclass
class Table:
    """A titled table: rows of strings; HTML in the notebook, aligned text elsewhere."""

    headers: tuple[str, ...]
    rows: list[tuple] = field(default_factory=list)
    title: str = ""
    empty: str = "(none)"

    @classmethod
    def of(cls, rows: Rows, title: str = "") -> "Table":
        """A verb's rows (formats.py) as a table."""
        return cls(tuple(rows.header), list(rows.rows), title=title, empty=rows.empty or "(none)")

    def __repr__(self) -> str:
        lines = [self.title] if self.title else []
        if not self.rows:
            return "\n".join(lines + [self.empty])
        cells = [tuple("" if c is None else str(c) for c in row) for row in self.rows]
        return "\n".join(lines + [text_table(Rows(tuple(self.headers), cells))])  # as the CLI prints it

    def _repr_html_(self) -> str:
        title = f"<b>{_e(self.title)}</b>" if self.title else ""
        if not self.rows:
            return f"{title}<div><i>{_e(self.empty)}</i></div>"
        head = "".join(f"<th>{_e(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return f"{STYLE}{title}<table class='clab-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Text:
    """Preformatted text (doctor, gc): the same in HTML and plain text."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f"<pre>{_e(self.text)}</pre>"


# ---------------------------------------------------------------- figures


def seconds_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    s = ns / 1e9
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def limits_text(limits: dict) -> str:
    """{'memory': 67108864, 'cpus': 0.5, ...} -> 'memory 64 MiB, cpus 0.5' ('no limits' if none)."""
    parts = []
    for key, value in limits.items():
        if value is None:
            continue
        if key in ("memory", "memory_swap", "storage_size") and value != -1:
            value = format_size(value)
        parts.append(f"{key.replace('_', '-')} {value}")
    return ", ".join(parts) or "no limits"


def stats_footer(result) -> str:
    """--stats: 'exit 0 · 0.31 s · peak memory 3.4 MiB of 64 MiB · CPU 19.7 ms (user 4.0 ms, system 0.0 ms)'
    (`result`: a CellResult, whose describe() keeps the exit status and OOM kills apart)."""
    usage = result.usage or {}
    parts = [result.describe(), f"{result.duration:.2f} s"]
    if usage.get("memory_peak_bytes") is not None:
        limit = usage.get("memory_limit")
        parts.append(f"peak memory {format_size(usage['memory_peak_bytes'])}"
                     + (f" of {format_size(limit)}" if limit else " (no limit)"))
    if usage.get("cpu_usage_ns") is not None:
        parts.append(f"CPU {seconds_ns(usage['cpu_usage_ns'])} (user {seconds_ns(usage.get('cpu_user_ns'))}, "
                     f"system {seconds_ns(usage.get('cpu_system_ns'))})")
    if usage.get("nr_throttled"):
        parts.append(f"throttled {usage['nr_throttled']} of {usage.get('nr_periods')} periods")
    if not usage:
        parts.append("no cgroup usage (see %container doctor)")
    return " · ".join(parts)


class CellResult:
    """How a %%container cell ended: the runtime's Result plus what was asked for.

    Attributes: name, id, image, exit_code, signal, oom_killed, timed_out,
    interrupted, duration, usage (dict of the cgroup's final figures), ok.
    """

    def __init__(self, result, name: str, cid: str, image: str, limits: dict, interrupted: bool = False):
        self.result = result
        self.name, self.id, self.image, self.limits = name, cid, image, limits
        self.interrupted = interrupted

    def __getattr__(self, attr):  # exit_code, signal, duration, usage, oom_killed, timed_out, ...
        return getattr(self.__dict__["result"], attr)

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.interrupted

    @property
    def memory_kills(self) -> int:
        """Processes the kernel's OOM killer ended in the container's cgroup (PID 1 or others)."""
        r = self.result
        return getattr(r, "oom_kills", 0) or (r.usage or {}).get("oom_kills") or (1 if r.oom_killed else 0)

    def describe(self) -> str:
        """One line: 'exit 137: killed, out of memory (limit 64 MiB, peak 64 MiB)', or when PID 1
        lived through another process's OOM kill, 'exit 0; 1 process killed for memory (...)':
        the exit status is the command's, the kills are said apart (as docker's ExitCode, OOMKilled)."""
        r = self.result
        if self.interrupted:
            return f"interrupted: container {self.name} was stopped ({r.describe()})"
        peak = (r.usage or {}).get("memory_peak_bytes")
        figures = ", ".join(f"{what} {format_size(n)}" for what, n in (("limit", r.memory_limit), ("peak", peak)) if n)
        if self.memory_kills and not (r.error or r.timed_out or r.signal == signal.SIGKILL):
            return f"exit {r.exit_code}; {memory_kills(self.memory_kills)}" + (f" ({figures})" if figures else "")
        text = r.describe()
        if r.oom_killed and peak and text.endswith(")"):
            text = text[:-1] + f", peak {format_size(peak)})"
        return text

    def __repr__(self) -> str:
        return f"<container {self.name}: {self.describe()}, {self.duration:.2f} s>"

    def _repr_html_(self) -> str:
        usage = self.usage or {}
        cls = "clab-ok" if self.ok else "clab-bad"
        rows = [("container", f"{self.name} ({self.id[:12]})"), ("image", self.image),
                ("status", self.describe()), ("duration", f"{self.duration:.3f} s"),
                ("limits", limits_text(self.limits))]
        if usage:
            rows += [("peak memory", size(usage.get("memory_peak_bytes"), "-")),
                     ("CPU time", seconds_ns(usage.get("cpu_usage_ns"))),
                     ("OOM kills", usage.get("oom_kills"))]
        body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        return (f"{STYLE}<table class='clab-table'><caption class='{cls}'>{_e(self.describe())}</caption>"
                f"{body}</table>")


# ---------------------------------------------------------------- tables


def usage_rows(usage: dict) -> list[tuple[str, str, str]]:
    """(what, used now, limit) from Engine.stats(): the figures a learner compares."""
    rows = [("memory", f"{size(usage.get('memory_bytes'), '-')} now, {size(usage.get('memory_peak_bytes'), '-')} peak",
             size(usage.get("memory_limit")))]
    cpu = seconds_ns(usage.get("cpu_usage_ns"))
    if usage.get("nr_periods"):
        cpu += (f", throttled in {usage.get('nr_throttled')} of {usage['nr_periods']} periods "
                f"({seconds_ns(usage.get('throttled_ns'))})")
    cpus = usage.get("cpus_limit")
    rows.append(("cpu", cpu, f"{cpus:g} CPUs" if cpus else "unlimited"))
    rows.append(("pids", "-" if usage.get("pids_current") is None else str(usage["pids_current"]),
                 "unlimited" if usage.get("pids_limit") is None else str(usage["pids_limit"])))
    rows.append(("oom kills", "-" if usage.get("oom_kills") is None else str(usage["oom_kills"]), ""))
    if usage.get("network"):
        rows.append((f"network ({usage['network']})", net_io(usage), link_shape(usage.get("net_shape"))))
    return rows


def cgroup_report(name: str, usage: dict, files: dict[str, str]) -> Report:
    usage_table = Table(("", "USED", "LIMIT"), usage_rows(usage), title=f"{name}: usage against limits")
    files_table = Table(("FILE", "VALUE"), [(k, _one_line(v)) for k, v in sorted(files.items())],
                        title=f"the cgroup v{usage.get('cgroup_version')} files behind them")
    return Report([usage_table, files_table])


def limits_change(name: str, before, after) -> Table:
    """%cgroup NAME memory=...: each limit that changed, before and after."""
    table = Table(("LIMIT", "BEFORE", "AFTER"), title=f"{name}: limits changed", empty="nothing changed")
    for key, old in vars(before).items():
        new = getattr(after, key)
        if new != old:
            fmt = (lambda v: size(v) if v != -1 else "unlimited") if key in ("memory", "memory_swap") else (
                lambda v: "unlimited" if v is None else str(v))
            table.rows.append((key.replace("_", "-"), fmt(old), fmt(new)))
    return table


def _one_line(text: str, width: int = 100) -> str:
    text = " | ".join(line for line in text.strip().splitlines())
    return text if len(text) <= width else text[:width - 3] + "..."


class ExplainTable:
    """`--explain`: the start plan's steps (StepRecord: step, description, duration_us, side).

    The rows are formats.explain_table's, as the CLI prints them.  Executed
    steps carry their duration: each gets a bar on a timeline that starts
    where the previous step ended, so the longest steps stand out and the bars
    add up to the total at the bottom.  A plan that did not run (`--dry-run`)
    has no durations, hence no bars and no total.
    """

    def __init__(self, records, title: str = ""):
        self.records = steps_of(records)
        self.table = explain_table(self.records)
        self.total_us = explain_total(self.records)  # None: not run
        self.title = title

    def __repr__(self) -> str:
        text = repr(Table.of(self.table, title=self.title))
        if self.total_us is not None:
            text += f"\ntotal {micros(self.total_us)} µs"
        return text

    def _repr_html_(self) -> str:
        title = f"<b>{_e(self.title)}</b>" if self.title else ""
        if not self.records:
            return f"{title}<div><i>{_e(self.table.empty)}</i></div>"
        timed = self.total_us is not None
        head = "".join(f"<th>{_e(h)}</th>" for h in self.table.header) + ("<th>timeline</th>" if timed else "")
        body, start, total = [], 0.0, max(self.total_us or 0, 1)
        for row, record in zip(self.table.rows, self.records):
            cells = "".join(f"<td>{_e(c)}</td>" if i != 3 else  # long paths (a v1 cgroup per controller) wrap
                            f"<td style='max-width:48em;overflow-wrap:anywhere'>{_e(c)}</td>"
                            for i, c in enumerate(row))
            duration = getattr(record, "duration_us", None) or 0
            if timed:
                left, width = 100 * start / total, max(100 * duration / total, 0.5)
                cells += (f"<td style='width:200px'><div style='position:relative;height:10px;background:#eee'>"
                          f"<div style='position:absolute;left:{left:.1f}%;width:{width:.1f}%;height:10px;"
                          f"background:#1976d2'></div></div></td>")
            start += duration
            body.append(f"<tr>{cells}</tr>")
        foot = ""
        if timed:
            foot = (f"<tfoot><tr><th colspan='4' style='text-align:right'>total</th>"
                    f"<th>{_e(micros(self.total_us))}</th><th></th></tr></tfoot>")
        return (f"{STYLE}{title}<table class='clab-table'><thead><tr>{head}</tr></thead>"
                f"<tbody>{''.join(body)}</tbody>{foot}</table>")


@dataclass
class Report:
    """Several tables shown together."""

    parts: list

    def __repr__(self) -> str:
        return "\n\n".join(repr(p) for p in self.parts)

    def _repr_html_(self) -> str:
        return "".join(p._repr_html_() for p in self.parts)
