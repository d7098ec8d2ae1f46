"""How figures read, shared by both faces: sizes, ages, statuses, CPU %, bit rates,
and each verb's table as a header and rows of strings.

The CLI prints these rows as aligned text (text_table); the magics put the same
rows into HTML tables.  Nothing here talks to the runtime: the inputs are the
commands layer's dataclasses (or the Engine's dicts, read by the same names).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .runtime.spec import format_size

RATE_UNITS = (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3))


@dataclass
class Rows:
    """A table: its column names and rows of strings (`empty`: what to say when there are none)."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    empty: str = ""


def _get(row, name: str, default=None):
    """A field of a dataclass row or of an Engine dict."""
    if isinstance(row, dict):
        return row.get(name, default)
    return getattr(row, name, default)


def size(n: int | None, unlimited: str = "unlimited") -> str:
    """Bytes as people read them: 67108864 -> '64 MiB'; None -> `unlimited`."""
    return unlimited if n is None else format_size(n)


def human_age(seconds: float) -> str:
    """12 -> '12s', 130 -> '2m', 7200 -> '2h', 90000 -> '1d'."""
    seconds = max(0, int(seconds))
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{seconds // span}{unit}"
    return f"{seconds}s"


def memory_kills(count: int | None) -> str:
    """'1 process killed for memory', kept apart from the exit code (as docker's OOMKilled)."""
    return f"{count} process{'es' if count != 1 else ''} killed for memory"


def describe_status(row, now: float | None = None) -> str:
    """'running', 'running (paused)', 'exited (0) 5s ago', 'exited (137) 1m ago; timed out',
    'exited (0) 2s ago; 1 process killed for memory'."""
    now = now or time.time()
    status = _get(row, "status")
    if status == "exited":
        text = f"exited ({_get(row, 'exit_code')}) {human_age(now - (_get(row, 'finished') or now))} ago"
        if _get(row, "timed_out"):
            text += "; timed out"
        kills = _get(row, "oom_kills") or (1 if _get(row, "oom_killed") else 0)
        if kills:
            text += "; " + memory_kills(kills)
        return text
    if status == "running":
        return "running (paused)" if _get(row, "paused") else "running"
    return status or "unknown"


def percent(value: float | None) -> str:
    return "--" if value is None else f"{value:.1f}%"


def bitrate(bits_per_second: float | None) -> str:
    """4e6 -> '4 Mbit/s'."""
    if bits_per_second is None:
        return "--"
    unit, scale = next(((u, n) for u, n in RATE_UNITS if bits_per_second >= n), ("bit/s", 1))
    return f"{bits_per_second / scale:.3g} {unit}"


def net_io(usage) -> str:
    """Bytes received / sent through eth0, as docker stats' NET I/O column."""
    if not _get(usage, "network"):
        return "--"
    return f"{size(_get(usage, 'net_rx_bytes'), '--')} / {size(_get(usage, 'net_tx_bytes'), '--')}"


def link_shape(shape: dict | None) -> str:
    """--net-rate, --net-delay, --net-loss as set now: '4 Mbit/s, +100 ms, 1% loss'."""
    if not shape:
        return "unshaped"
    parts = []
    if shape.get("rate_bps"):
        parts.append(bitrate(shape["rate_bps"]))
    if shape.get("delay_us"):
        parts.append(f"+{shape['delay_us'] / 1000:g} ms")
    if shape.get("loss_pct"):
        parts.append(f"{shape['loss_pct']:g}% loss")
    return ", ".join(parts) or "unshaped"


def cpu_time(seconds: float) -> str:
    """CPU time as ps(1) prints it: 'HH:MM:SS'."""
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


# ---------------------------------------------------------------- each verb's table


def ps_table(rows, now: float | None = None, command_width: int = 30) -> Rows:
    now = now or time.time()
    table = Rows(("CONTAINER ID", "NAME", "IMAGE", "COMMAND", "STATUS", "PORTS", "AGE"), empty="no containers")
    for row in rows:
        table.rows.append((_get(row, "id")[:12], _get(row, "name") or "", _get(row, "image") or "",
                           short(" ".join(_get(row, "command") or ()), command_width), describe_status(row, now),
                           ", ".join(_get(row, "ports") or ()), human_age(now - (_get(row, "created") or now))))
    return table


def stats_table(samples) -> Rows:
    """One row per StatsRow (commands.stats), as docker stats' columns plus PEAK, OOM and LINK."""
    table = Rows(("NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PEAK", "PIDS", "OOM", "NET I/O", "BLOCK I/O",
                  "LINK"), empty="no running containers")
    for s in samples:
        u = s.usage
        mem, limit = u.get("memory_bytes") or 0, u.get("memory_limit")
        pids = str(u.get("pids_current") or 0) + (f" / {u['pids_limit']}" if u.get("pids_limit") else "")
        table.rows.append((
            s.name + (" (paused)" if u.get("paused") else ""), percent(s.cpu_percent),
            f"{size(mem)} / {size(limit)}", f"{100 * mem / limit:.1f}%" if limit else "--",
            _known(u, "memory_peak_bytes", size), pids, _known(u, "oom_kills", str), net_io(u),
            f"{size(u['io_read_bytes'])} / {size(u.get('io_write_bytes') or 0)}"
            if u.get("io_read_bytes") is not None else "--",
            link_shape(u.get("net_shape")) if u.get("network") else "--"))
    return table


def _known(usage: dict, key: str, show) -> str:
    """A figure, or -- where nothing measured it (no cgroup: usage from /proc has no peak, OOM count, I/O)."""
    if usage.get(key) is None:
        return "--" if usage.get("source", "cgroup") != "cgroup" else show(0)
    return show(usage[key])


def top_table(processes) -> Rows:
    table = Rows(("PID", "USER", "TIME", "CMD"), empty="no processes")
    for p in processes:
        table.rows.append((str(p.pid), p.user, cpu_time(p.cpu_seconds), p.command))
    return table


def images_table(images) -> Rows:
    table = Rows(("IMAGE", "ROOT", "HOST BINDS (read-only)"), empty="no images")
    for row in images:
        if row["ok"]:
            table.rows.append((row["name"], row["layers"][0] if row["layers"] else "", " ".join(row["binds"])))
        else:
            table.rows.append((row["name"], f"unavailable: {row['error']}", ""))
    return table


def image_lines_table(lines) -> Rows:
    """`images`: REPOSITORY TAG IMAGE ID CREATED SIZE SHARED (built-in images: made from the host)."""
    table = Rows(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE"), empty="no images")
    for line in lines:
        if line.builtin:
            table.rows.append((line.repository, "builtin", "-", "-", "-", "-"))
            continue
        table.rows.append((line.repository, line.tag, line.id.split(":")[-1][:12], created_age(line.created),
                           size(line.size), size(line.shared)))
    return table


def created_age(stamp: str) -> str:
    """An RFC 3339 time as an age ('3 minutes ago'), as docker images shows it."""
    import datetime

    if not stamp:
        return "-"
    try:  # the seconds are enough for an age; fractions and zones vary between writers
        when = datetime.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return stamp
    return human_age(max(0.0, time.time() - when.timestamp())) + " ago"


def history_table(steps) -> Rows:
    """`history`: each step newest first, the instruction that made it and its layer's size."""
    table = Rows(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), empty="no history")
    for step in steps:
        layer = (step.get("layer") or "").split(":")[-1][:12] or "<missing>"
        created_by = step.get("created_by") or ""
        if len(created_by) > 60:
            created_by = created_by[:57] + "..."
        table.rows.append((layer, created_age(step.get("created") or ""), created_by,
                           size(step.get("size") or 0), step.get("comment") or ""))
    return table


def freed_line(freed: dict) -> str:
    """What a prune freed, in one line."""
    return (f"freed {freed.get('blobs', 0)} blob(s), {freed.get('layers', 0)} layer(s), "
            f"{size(freed.get('bytes', 0))}")


def networks_table(networks) -> Rows:
    table = Rows(("NAME", "SUBNET", "GATEWAY", "BRIDGE", "INTERNAL", "CONTAINERS"), empty="no networks")
    for net in networks:
        table.rows.append((net["name"], net["subnet"], net["gateway"], net["bridge"],
                           "yes" if net.get("internal") else "no", str(len(net.get("containers") or ()))))
    return table


def port_lines(ports) -> list[str]:
    """docker port's lines: '80/tcp -> 127.0.0.1:8080'."""
    return [f"{p.container_port}/{p.protocol} -> {p.host_ip}:{p.host_port}" for p in ports]


def micros(us: float | None) -> str:
    """Microseconds with thin grouping: 12345 -> '12 345'; None (not measured) -> '-'."""
    return "-" if us is None else f"{round(us):,}".replace(",", " ")


def steps_of(records) -> list:
    """The runtime's StepRecords, from a list or from an object holding them as .steps."""
    return list(getattr(records, "steps", records))


def explain_table(records) -> Rows:
    """`--explain`: one row per start step (StepRecord: step, description, duration_us, side)."""
    table = Rows(("#", "STEP", "SIDE", "WHAT IT DOES", "µs"), empty="no steps")
    for i, r in enumerate(steps_of(records), 1):
        step = str(getattr(r, "step", ""))
        table.rows.append((str(i), "" if step == str(i) else step,  # a step named by its number: once is enough
                           getattr(r, "side", "") or "", getattr(r, "description", ""),
                           micros(getattr(r, "duration_us", None))))
    return table


def explain_total(records) -> int | None:
    """The steps' time added up, or None for a plan that did not run (--dry-run)."""
    times = [getattr(r, "duration_us", None) for r in steps_of(records)]
    return None if all(t is None for t in times) else round(sum(t or 0 for t in times))


def text_table(table: Rows) -> str:
    """Aligned columns, two spaces apart (the CLI's rendering of a Rows)."""
    rows = [table.header, *table.rows]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(table.header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
