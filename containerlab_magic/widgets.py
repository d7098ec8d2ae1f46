"""Widgets: the limits panel and the live cgroup monitor, from stock ipywidgets.

`LimitsPanel` (`%container panel`): sliders and dropdowns whose values are
written into ContainerMagics' default_* traits, so the following %%container
cells get them (an explicit option in a cell still wins).  Its callbacks may
run on another thread than a cell (ipykernel 7 subshells): they only assign
traits and redraw one label.

`Monitor` (`%cgroup NAME --watch`): a background thread reads the container's
cgroup a few times a second (the commands layer's `stats`, CPU % over each
interval, see cgroups(7)) and moves progress bars and a small SVG plot.  A
figure without a limit gets no bar: a bar is a share of something.  When the
container ends, the monitor reads the OOM kills its shim recorded at the end,
so a kill that ended it is marked too.  It never prints: widget state changes
and one display update (the text fallback a saved notebook keeps) are its
only outputs, so the kernel stays free.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
import time

import ipywidgets as w
from IPython.display import display

from . import commands, formats
from . import display as show
from .runtime.errors import ContainerError

MEMORY_CHOICES = [("unlimited", ""), ("16 MiB", "16M"), ("32 MiB", "32M"), ("64 MiB", "64M"),
                  ("128 MiB", "128M"), ("256 MiB", "256M"), ("512 MiB", "512M"), ("1 GiB", "1G"), ("2 GiB", "2G")]
PIDS_CHOICES = [("unlimited", 0), ("8", 8), ("16", 16), ("32", 32), ("64", 64), ("128", 128), ("256", 256),
                ("1024", 1024)]


def _cpu_choices() -> list[tuple[str, float | None]]:
    steps = [0.1, 0.25, 0.5, 1.0] + [float(n) for n in range(2, (os.cpu_count() or 1) + 1)]
    return [("unlimited", 0.0)] + [(f"{c:g}", c) for c in steps]


def _closest(choices, value):
    """The choice for a current default (0 stands for unlimited: a slider cannot hold None)."""
    values = [v for _, v in choices]
    return value if value in values else values[0]


class LimitsPanel(w.VBox):
    """Sliders for the defaults of the following %%container cells."""

    def __init__(self, magics):
        self.magics = magics
        images = [r["name"] for r in commands.images(magics.engine) if r["ok"]] or ["host", "busybox"]
        style = {"description_width": "80px"}
        layout = w.Layout(width="420px")
        self.memory = w.SelectionSlider(options=MEMORY_CHOICES, value=_closest(MEMORY_CHOICES, magics.default_memory),
                                        description="memory", style=style, layout=layout)
        self.cpus = w.SelectionSlider(options=_cpu_choices(), value=_closest(_cpu_choices(), magics.default_cpus),
                                      description="cpus", style=style, layout=layout)
        self.pids = w.SelectionSlider(options=PIDS_CHOICES, value=_closest(PIDS_CHOICES, magics.default_pids_limit),
                                      description="pids", style=style, layout=layout)
        self.image = w.Dropdown(options=images, value=magics.default_image if magics.default_image in images
                                else images[0], description="image", style=style)
        self.network = w.Dropdown(options=["none", "bridge"], value=magics.default_network
                                  if magics.default_network in ("none", "bridge") else "none",
                                  description="network", style=style)
        self.summary = w.HTML()
        super().__init__([w.HTML("<b>containerlab: defaults for the next %%container cells</b>"),
                          self.memory, self.cpus, self.pids, self.image, self.network, self.summary])
        self._lock = threading.Lock()
        for control in (self.memory, self.cpus, self.pids, self.image, self.network):
            control.observe(self._changed, names="value")
        self._changed()

    def _changed(self, change=None) -> None:
        with self._lock:
            self.magics.default_memory = self.memory.value or ""
            self.magics.default_cpus = self.cpus.value or None
            self.magics.default_pids_limit = self.pids.value or None
            self.magics.default_image = self.image.value
            self.magics.default_network = self.network.value
            self.summary.value = f"<code>{show._e(self.options_text())}</code>"

    def options_text(self) -> str:
        d = self.magics.defaults()
        parts = [f"--image {d['image']}"]
        if d["memory"]:
            parts.append(f"--memory {d['memory']}")
        if d["cpus"] is not None:
            parts.append(f"--cpus {d['cpus']:g}")
        if d["pids_limit"] is not None:
            parts.append(f"--pids-limit {d['pids_limit']}")
        parts.append(f"--net {d['net']}")
        return "next cells get: " + " ".join(parts)

    def __repr__(self) -> str:  # the text a saved notebook keeps
        return f"containerlab panel ({self.options_text()})"


def _show(widget, visible: bool) -> None:
    widget.layout.display = None if visible else "none"


class Monitor(w.VBox):
    """Live memory, CPU and pids of one container's cgroup, until it ends."""

    interval = 0.25
    history = 120

    def __init__(self, engine, ref: str):
        self.engine = engine
        first = engine.stats(ref)  # fails now, in the cell, if there is nothing to watch
        self._first = first
        self.cid, self.name, self.cpus = first["id"], first.get("name") or ref, first.get("cpus_limit")
        self.title = w.HTML(f"<b>{show._e(self.name)}</b>: live cgroup usage")
        self.memory = w.FloatProgress(min=0, max=1, description="memory", bar_style="info")
        self.memory_text = w.Label()
        self.cpu = w.FloatProgress(min=0, max=100 * (self.cpus or os.cpu_count() or 1), description="CPU %")
        self.cpu_text = w.Label()
        self.pids = w.IntProgress(min=0, max=1, description="pids")
        self.pids_text = w.Label()
        self.plot = w.HTML()
        self.events = w.HTML()
        # On a network: eth0's throughput against its shaping (tc is not a cgroup, but a limit all the same)
        self.net_text = w.Label()
        rows = [self.title, w.HBox([self.memory, self.memory_text]), w.HBox([self.cpu, self.cpu_text]),
                w.HBox([self.pids, self.pids_text])]
        if first.get("network"):
            rows.append(w.HBox([w.Label("network", layout=w.Layout(width="90px")), self.net_text]))
        super().__init__(rows + [self.plot, self.events])
        self._last_net: tuple[float, int, int] | None = None
        self.samples: list[tuple[float, int, float]] = []  # (t, memory bytes, cpu %)
        self.ooms: list[float] = []
        self._top = 1.0  # the plot's memory scale
        self.summary = f"monitor of {self.name}: starting"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def show(self) -> None:
        self._handle = display(self, display_id=True)
        ctx = contextvars.copy_context()  # the cell's parent header, so the final update lands in its output
        self._thread = threading.Thread(target=ctx.run, args=(self._loop,), name=f"containerlab-monitor-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        """Sample with the commands layer's `stats` (CPU % over each interval) until the end."""
        start = time.monotonic()
        oom_seen = self._first.get("oom_kills") or 0
        self.samples = [(0.0, self._first.get("memory_bytes") or 0, 0.0)]  # the reading that opened the monitor
        self._draw(self._first, 0.0)
        reason = "the container ended"  # stats stops yielding rows when it no longer runs
        try:
            for rows in commands.stats(self.engine, [self.cid], interval=self.interval):
                if self._stop.is_set():
                    reason = "stopped"
                    break
                if not rows:
                    break
                usage, cpu_pct = rows[0].usage, rows[0].cpu_percent or 0.0
                now = time.monotonic()
                kills = usage.get("oom_kills") or 0
                self.ooms += [now - start] * max(kills - oom_seen, 0)  # several may fall in one interval
                oom_seen = max(kills, oom_seen)
                self.samples = (self.samples + [(now - start, usage.get("memory_bytes") or 0, cpu_pct)]
                                )[-self.history:]
                self._draw(usage, cpu_pct)
                if usage.get("network"):
                    self.net_text.value = self._net_line(now, usage)
        except (OSError, ContainerError):  # ended before the first reading, or the engine closed
            pass
        if reason == "the container ended":
            # An OOM kill that ends the container comes after the last sample: its final
            # counters, read by its shim as it ended, are in its state once settled.
            missed = self._final_oom_kills() - oom_seen
            self.ooms += [time.monotonic() - start] * max(missed, 0)
        self._finish(reason)

    def _final_oom_kills(self, timeout: float = 3.0) -> int:
        """OOM kills in the container's whole life, from its state once its shim recorded the end."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = self.engine.inspect(self.cid)
            except ContainerError:  # removed meanwhile: nothing more to learn
                return 0
            if state.get("status") not in ("running", "exiting") or time.monotonic() > deadline:
                break
            self._stop.wait(0.02)
        count = state.get("oom_kills", (state.get("usage") or {}).get("oom_kills"))
        if count is None:  # a runtime that keeps only whether there was one
            count = 1 if state.get("oom_killed") else 0
        return count

    def _net_line(self, now: float, usage: dict) -> str:
        rx, tx = usage.get("net_rx_bytes") or 0, usage.get("net_tx_bytes") or 0
        rates = ""
        if self._last_net is not None and now > self._last_net[0]:
            dt = now - self._last_net[0]
            rates = (f"in {formats.bitrate(8 * (rx - self._last_net[1]) / dt)}, "
                     f"out {formats.bitrate(8 * (tx - self._last_net[2]) / dt)}; ")
        self._last_net = (now, rx, tx)
        return f"{rates}{show.net_io(usage)} in all; link: {show.link_shape(usage.get('net_shape'))}"

    def _draw(self, usage: dict, cpu_pct: float) -> None:
        limit = usage.get("memory_limit")
        memory = usage.get("memory_bytes") or 0
        top = limit or max(max(m for _, m, _ in self.samples) * 1.25, 1)  # the plot's scale
        pids, pids_limit = usage.get("pids_current") or 0, usage.get("pids_limit")
        with self.hold_sync():
            # A bar is a figure against its limit: without a limit there is no bar, only the figure
            _show(self.memory, limit is not None)
            if limit:
                self.memory.max = limit
                self.memory.value = min(memory, limit)
                self.memory.bar_style = "danger" if memory > 0.9 * limit else "info"
            self.memory_text.value = (f"{show.size(memory, '-')} of {show.size(limit)}" if limit else
                                      f"{show.size(memory, '-')} (no memory limit)") + \
                f", peak {show.size(usage.get('memory_peak_bytes'), '-')}"
            self.cpu.value = min(cpu_pct, self.cpu.max)
            self.cpu_text.value = (f"{formats.percent(cpu_pct)} of {self.cpus:g} CPUs ({100 * self.cpus:g}%)"
                                   if self.cpus else f"{formats.percent(cpu_pct)} (no CPU limit)")
            _show(self.pids, pids_limit is not None)
            if pids_limit:
                self.pids.max = pids_limit
                self.pids.value = min(pids, pids_limit)
            self.pids_text.value = f"{pids} of {pids_limit}" if pids_limit else f"{pids} (no pids limit)"
            self._top = top
            self.plot.value = self._svg(top)
            self.events.value = self._events_html()
        self.summary = (f"monitor of {self.name}: memory {self.memory_text.value}; CPU {formats.percent(cpu_pct)}; "
                        f"pids {self.pids_text.value}; OOM kills {len(self.ooms)}")

    def _events_html(self) -> str:
        return "".join(f"<span style='color:#b00'>OOM kill at {t:.1f} s</span> " for t in self.ooms)

    def _svg(self, top: float) -> str:
        width, height = 360, 60
        if len(self.samples) + len(self.ooms) < 2:  # nothing to draw a line or a mark with
            return ""
        t0 = self.samples[0][0] if self.samples else 0.0
        t1 = max([t for t, _, _ in self.samples] + self.ooms)  # an OOM kill read at the end comes last
        span = max(t1 - t0, self.interval)

        def x(t):
            return (t - t0) / span * width

        mem = " ".join(f"{x(t):.1f},{height - m / top * height:.1f}" for t, m, _ in self.samples)
        cpu_top = max(self.cpu.max, 1)
        cpu = " ".join(f"{x(t):.1f},{height - min(c, cpu_top) / cpu_top * height:.1f}" for t, _, c in self.samples)
        marks = "".join(f"<line x1='{min(x(t), width - 1):.1f}' x2='{min(x(t), width - 1):.1f}' y1='0' "
                        f"y2='{height}' stroke='#b00'/>" for t in self.ooms if t >= t0)
        return (f"<svg width='{width}' height='{height}' style='border:1px solid #ccc'>"
                f"<polyline fill='none' stroke='#1976d2' points='{mem}'/>"
                f"<polyline fill='none' stroke='#888' points='{cpu}'/>{marks}</svg>"
                "<div style='font-size:smaller'>blue: memory vs limit, grey: CPU %, red: OOM kills</div>")

    def _finish(self, reason: str) -> None:
        self.title.value = f"<b>{show._e(self.name)}</b>: {show._e(reason)}"
        self.events.value = self._events_html()
        self.plot.value = self._svg(self._top)  # with the OOM kills read at the end
        self.summary = re.sub(r"OOM kills \d+", f"OOM kills {len(self.ooms)}", self.summary.replace(": starting", ""))
        if "OOM kills" not in self.summary:
            self.summary += f"; OOM kills {len(self.ooms)}"
        self.summary += f" ({reason})"
        if self._handle is not None:
            bundle = self._repr_mimebundle_()
            bundle["text/plain"] = self.summary
            try:
                self._handle.update(bundle, raw=True)
            except Exception:  # noqa: BLE001, S110 - the kernel may be shutting down; the widget already says it
                pass

    def __repr__(self) -> str:
        return self.summary
