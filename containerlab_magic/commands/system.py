"""The lab as a whole: images, doctor, gc, and networks."""

from __future__ import annotations


def images(engine) -> list[dict]:
    """Each image: name, layers, host binds, ok (or error: why it cannot be used here)."""
    return engine.images()


def doctor() -> str:
    """What this host supports, and the fix for each thing it lacks (a report to show as is)."""
    from ..runtime import doctor as probe

    return probe.report()


def gc(engine) -> list[str]:
    """Remove what crashes left behind; what was removed, one phrase each."""
    return engine.gc()


def network_create(engine, name: str, subnet: str | None = None, internal: bool = False) -> dict:
    networks = engine.networks()
    try:
        return networks.create(name, subnet=subnet, internal=internal)
    finally:
        networks.close()


def network_ls(engine) -> list[dict]:
    networks = engine.networks()
    try:
        return networks.list()
    finally:
        networks.close()


def network_inspect(engine, name: str) -> dict:
    networks = engine.networks()
    try:
        return networks.inspect(name)
    finally:
        networks.close()


def network_rm(engine, name: str) -> None:
    networks = engine.networks()
    try:
        networks.remove(name)
    finally:
        networks.close()
