"""restart: on-failure for a stack's services, while someone watches (the CLI's
foreground `stack up`, or the notebook's kernel after `%%stack`).

A poll, not an event: every `poll` seconds each such service's container is
inspected; one that exited non-zero is removed and started again under the
same name (at most N times for on-failure:N), and the stack's service-name
lines in every member's /etc/hosts are rewritten for its new address.
"""

from __future__ import annotations

import threading

from ..runtime.errors import ContainerError
from ..stack import Service, Stack
from .stack import refresh_aliases, spec_of


class Restarter:
    """restart: on-failure, while someone watches: a member that exits non-zero is started again."""

    def __init__(self, engine, stack: Stack, on_event=None, poll: float = 0.2):
        self.engine, self.stack, self.poll = engine, stack, poll
        self.say = on_event or (lambda text: None)
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def needed(self) -> bool:
        return any(s.restart == "on-failure" for s in self.stack.services)

    def start(self) -> "Restarter":
        if self.needed:
            self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            for service in self.stack.services:
                if service.restart == "on-failure":
                    try:
                        self.check(service)
                    except ContainerError as e:
                        self.say(f"restart of {service.name} failed: {e}")

    def check(self, service: Service) -> None:
        from .containers import run

        name = self.stack.container_name(service.name)
        state = self.engine.inspect(name)
        if state.get("status") != "exited" or not state.get("exit_code"):
            return
        done = self.counts.get(service.name, 0)
        if service.max_restarts is not None and done >= service.max_restarts:
            return
        if self._stop.is_set():
            return
        self.counts[service.name] = done + 1
        self.engine.rm(name, force=True)
        run(self.engine, spec_of(self.stack, service)).close()
        refresh_aliases(self.engine, self.stack.name)
        self.say(f"{name} exited with {state.get('exit_code')}: restarted ({done + 1})")
