"""The shim's command line: `python -m containerlab_magic.runtime.shim --state S --data D
(--fd N | --daemon [--linger S]) [--prewarm]`."""

from __future__ import annotations

import argparse
import fcntl
import gc
import os
import signal
import socket
import sys

from .. import linux
from .log import ShimLog
from .server import Shim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="containerlab-shim")
    parser.add_argument("--fd", type=int, help="serve one engine on this socket")
    parser.add_argument("--daemon", action="store_true", help="listen on <state>/shim.sock")
    parser.add_argument("--state", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--prewarm", action="store_true", help="keep the next container's PID 1 ready")
    parser.add_argument("--linger", type=float, default=2.0, help="seconds an idle daemon waits before it exits")
    args = parser.parse_args(argv)
    linux.default_all_signals()  # nothing ignored by whoever started us reaches a container
    # ...but the shim itself keeps what Python set at its start: a write to a pipe whose reader
    # is gone (a PID 1 that failed) is EPIPE, not death; PID 1 resets both before execve.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the client, which stops its container
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.daemon:
        os.makedirs(args.state, exist_ok=True)
        lock = os.open(os.path.join(args.state, "shim.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("busy", flush=True)  # another daemon serves this state root
            return 0
        if os.fork():  # the caller waits for us: leave, and let the daemon be adopted
            os._exit(0)
        log = ShimLog(os.path.join(args.state, "shim.log"), private=False)
    else:
        log = ShimLog(os.path.join(args.state, "logs", f"shim-{os.getpid()}.log"), private=True)
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # not inherited across fork: set it here
    shim = Shim(args.state, args.data, log, prewarm=args.prewarm)
    # Every object so far lives as long as the shim: keep the collector off them, so a
    # cloned child does not dirty (and copy) their pages when it collects.
    gc.freeze()
    if args.daemon:
        shim.listen(os.path.join(args.state, "shim.sock"))
        print("ready", flush=True)
        sys.stdout = open(os.devnull, "w")
        os.dup2(shim.devnull, 1)
    else:
        shim.add_conn(socket.socket(fileno=args.fd))
    try:
        shim.serve(linger=args.linger)
    except Exception:
        log.exception("the shim's loop failed")
        raise
    finally:
        if shim.listener is not None:
            try:
                os.unlink(os.path.join(args.state, "shim.sock"))
            except FileNotFoundError:
                pass
        log.close()
    return 0
