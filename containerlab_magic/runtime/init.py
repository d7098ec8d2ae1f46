"""--init: PID 1 stays as a small reaper, the command runs as its child.

A PID namespace's init gets only the signals it has handlers for, and must
reap every orphan of the namespace (pid_namespaces(7)).  A shell or a server
is rarely written for that: SIGTERM is ignored and zombies pile up.  Like
docker's --init (tini), PID 1 here forks the command, forwards the signals a
container is stopped or told with (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
SIGUSR2, SIGWINCH) and reaps every child; when the command ends it exits with
the command's status (128+N if a signal N killed it).  It has dropped its
privileges already, like the command.  The signals are taken synchronously
(sigwaitinfo(2)): blocked, so no handler runs between fork and exec.
"""

from __future__ import annotations

import os
import signal

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH)


def start_init(setup, env: dict, timeline) -> None:
    """Fork the command; return in the child (which then execs), never in PID 1."""
    waited = set(FORWARDED) | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    command = os.fork()
    if command == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # the command starts with an empty mask
        timeline.enabled = False  # PID 1 sends the records
        return
    timeline.mark("init", f"PID 1 stays as init: forks the command, which execs {' '.join(setup.command)}; "
                          f"forwards signals, reaps (the command's pid {command})")
    timeline.send(setup.error_fd)
    os.close(setup.error_fd)  # (close-on-exec, but init never execs: EOF tells the shim)
    os._exit(_reap(command, waited))


def _reap(command: int, waited: set) -> int:
    while True:
        info = signal.sigwaitinfo(waited)
        if info.si_signo != signal.SIGCHLD:
            try:
                os.kill(command, info.si_signo)
            except ProcessLookupError:
                pass
            continue
        while True:  # reap every child that ended: the command, and orphans of the namespace
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == 0:
                break
            if pid == command:
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
