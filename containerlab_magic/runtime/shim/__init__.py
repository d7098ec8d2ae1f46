"""The shim: one single-threaded process that forks, watches and reaps containers.

Why a separate process: a Jupyter kernel is multi-threaded, and forking a
multi-threaded Python process can deadlock in the child; exec'ing a fresh
Python per container would cost ~100 ms.  So each Engine starts (or, from the
CLI, connects to) one shim.  It is exec'd once, stays single-threaded, and
forks each container from a small, quiet address space, so start latency does
not grow with the caller's memory.

Two modes:
- private (`--fd N`): serves one Engine over a socketpair.  When the Engine's
  end closes (the kernel died or shut down) it kills every container it
  started, cleans up and exits.
- daemon (`--daemon`): listens on <state_root>/shim.sock for CLI calls, one
  process for many containers (a tiny containerd).  Containers run with
  --detach there outlive the CLI call; the daemon exits when it has neither
  containers nor clients.

The package, by role:
  main.py    the command line: modes, signals, the log
  server.py  the loop: sockets, messages, one selector, timeouts
  start.py   run (through the start plan, ../plan/) and exec
  spares.py  the plan's first steps run ahead of need (cold slots, warm PID 1s)
  exits.py   output into logs, exit events, deferred cleanup
  procs.py   clone/fork and reap; Proc
  stdio.py   pipes and ptys, and who owns each fd
  client.py  ShimClient: the Engine's side of the socket
  log.py     the shim's log (internal errors keep their traceback there)
What runs in a container's PID 1 before exec is ../child.py.
"""

from __future__ import annotations


def main(argv=None) -> int:
    from .main import main as _main

    return _main(argv)
