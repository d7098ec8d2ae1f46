"""Link shaping with tc queueing disciplines (``tc-tbf(8)``, ``tc-netem(8)``).

A qdisc decides when packets leave an interface.  ``tbf`` (token bucket)
lets bytes out at a fixed rate; ``netem`` delays or drops them.  We shape the
*egress* of both ends of a container's veth pair: the container's ``eth0``
(what it sends) and the host end (what it receives), so `--net-rate` limits
both directions.  Delay and loss go on ``eth0`` only, so a ping's round trip
grows by exactly `--net-delay`.  With both, netem is the root (handle 1:) and
tbf its child (handle 2:), the recipe of tc-netem(8).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from ..errors import HostUnsupported, SpecError
from .netlink import errno_of, failure

RATE_UNITS = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3,
              "bps": 8, "kbps": 8000, "mbps": 8 * 1000**2, "gbps": 8 * 1000**3}
TIME_UNITS = {"us": 1, "ms": 1000, "s": 1000_000}
NETEM_HANDLE, TBF_HANDLE = 0x10000, 0x20000


@dataclass(frozen=True)
class Shape:
    rate_bps: int | None = None  # bits per second
    delay_us: int | None = None
    loss_pct: float | None = None

    @property
    def empty(self) -> bool:
        return self.rate_bps is None and self.delay_us is None and self.loss_pct is None

    def to_json(self) -> dict:
        return {"rate_bps": self.rate_bps, "delay_us": self.delay_us, "loss_pct": self.loss_pct}


def parse_shape(rate: str | None, delay: str | None, loss: str | None) -> Shape:
    return Shape(
        _parse(rate, RATE_UNITS, "--net-rate", "1mbit, 500kbit or 10mbps (bytes)") if rate else None,
        _parse(delay, TIME_UNITS, "--net-delay", "50ms, 1s or 200us") if delay else None,
        _parse_loss(loss) if loss else None,
    )


def _parse(text: str, units: dict[str, int], flag: str, example: str) -> int:
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*$", str(text).lower())
    if not m or m.group(2) not in units or float(m.group(1)) <= 0:
        raise SpecError(f"invalid {flag} {text!r}: write a positive number with a unit, e.g. {example}")
    return int(float(m.group(1)) * units[m.group(2)])


def _parse_loss(text: str) -> float:
    m = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*$", str(text))
    if not m or not 0 <= float(m.group(1)) <= 100:
        raise SpecError(f"invalid --net-loss {text!r}: write a percentage from 0 to 100, e.g. 1%")
    return float(m.group(1))


def clear(ipr, index: int) -> None:
    try:
        ipr.tc("del", index=index, handle=0, parent=0xFFFFFFFF)
    except Exception as exc:
        if errno_of(exc) not in (errno.ENOENT, errno.EINVAL, errno.ENODEV):
            raise failure("removing the qdisc", exc) from None


def apply(ipr, index: int, shape: Shape, mtu: int, with_netem: bool) -> None:
    """Replace the root qdisc of interface `index` by the one `shape` asks for."""
    clear(ipr, index)
    netem = with_netem and (shape.delay_us is not None or shape.loss_pct is not None)
    try:
        parent = 0xFFFFFFFF
        if netem:
            try:
                ipr.tc("add", "netem", index=index, handle=NETEM_HANDLE,
                       delay=shape.delay_us or 0, loss=shape.loss_pct or 0)
            except Exception as exc:
                if errno_of(exc) == errno.ENOENT:  # "Specified qdisc kind is unknown"
                    raise HostUnsupported(
                        "--net-delay and --net-loss need the kernel's netem qdisc (CONFIG_NET_SCH_NETEM, "
                        "module sch_netem), which this kernel lacks; --net-rate works without it"
                    ) from None
                raise
            parent = NETEM_HANDLE | 1
        if shape.rate_bps is not None:
            rate_bytes = shape.rate_bps // 8
            # burst: at least a few full frames, else 20 ms worth of bytes
            ipr.tc("add", "tbf", index=index, handle=TBF_HANDLE, parent=parent,
                   rate=f"{shape.rate_bps}bit", burst=max(4 * (mtu + 14), rate_bytes // 50),
                   latency="50ms")
    except HostUnsupported:
        raise
    except Exception as exc:
        raise failure("setting up tc shaping", exc) from None
