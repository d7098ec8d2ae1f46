"""Attacks from inside a process sandbox (the rung of a pod that allows no namespace).

The pod is the emulated one of tests/pod (runc: uid 1000, no capabilities,
no_new_privs, a containerd-like seccomp profile that refuses unshare, mount and
namespace flags to clone).  There the lab runs a command as a plain process of the
user's (runtime/sandbox.py); two guards keep it a sandbox:

- `sandbox-session`: setsid(2) is refused, so nothing it starts can leave its
  session, and ending the container ends the session: a process that calls setsid
  and sleeps (its output sent elsewhere, so that the run returns) would otherwise
  outlive its container;
- `sandbox-ptrace`: ptrace(2) and friends are refused: otherwise a sandboxed
  process could attach to another process of the same user (its Jupyter kernel).

Each attack runs with its guard removed (it must work) and in place (it must fail).
"""

from __future__ import annotations

import pytest

from pod import bundle
from pod import run as pod_run

pytestmark = pytest.mark.skipif(pod_run.why_not() is not None, reason=str(pod_run.why_not()))

DRIVER = r"""
import os, subprocess, sys, time
attack = sys.argv[1]
def cli(*args):
    return subprocess.run([sys.executable, '-m', 'containerlab_magic', *args], capture_output=True, text=True)
def sleepers(tag):
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if f.read() == b'sleep\0' + tag.encode() + b'\0':
                    found.append(int(pid))
        except OSError:
            pass
    return found
if attack == 'session':
    leave = ("import os, time\nif os.fork() == 0:\n    try:\n        os.setsid()\n        print('left', flush=True)\n"
             "    except OSError as e:\n        print('stayed', e.errno, flush=True)\n"
             "    null = os.open('/dev/null', os.O_RDWR)\n    os.dup2(null, 1); os.dup2(null, 2)\n"
             "    os.execvp('sleep', ['sleep', '41'])\n"
             "time.sleep(0.5)")
    r = cli('run', 'host', 'python3', '-c', leave)
    time.sleep(1.0)
    print(r.returncode, r.stdout.strip(), 'survivors', len(sleepers('41')))
else:
    victim = subprocess.Popen(['sleep', '42'])
    attach = ("import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              "pid = int(sys.argv[1])\nif libc.ptrace(16, pid, 0, 0) == 0:\n    print('attached')\n"
              "    import os; os.waitpid(pid, 0); libc.ptrace(17, pid, 0, 0)\n"
              "else:\n    print('refused', ctypes.get_errno())\n")
    r = cli('run', 'host', 'python3', '-c', attach, str(victim.pid))
    print(r.returncode, r.stdout.strip(), 'victim', 'alive' if victim.poll() is None else 'gone')
    victim.kill()
"""


def sandbox_attack(attack: str, off: str | None = None) -> list[str]:
    env = (f"CONTAINERLAB_TEST_DISABLE_GUARD={off}",) if off else ()
    pod = bundle.Pod(seccomp="containerd", env=env)
    ran = pod_run.run(pod, pod_run.python_argv("-c", DRIVER, attack))
    assert ran.returncode == 0, ran.stderr
    assert "process-sandbox" in ran.stderr or ran.stderr == "", ran.stderr
    return ran.stdout.split()


def test_a_sandboxed_process_cannot_leave_its_session_and_outlive_the_container():
    escaped = sandbox_attack("session", off="sandbox-session")
    assert escaped[:2] == ["0", "left"] and escaped[-1] == "1", escaped  # it left, and outlived it
    held = sandbox_attack("session")
    assert held[:3] == ["0", "stayed", "1"] and held[-1] == "0", held  # EPERM, and ended with it


def test_a_sandboxed_process_cannot_ptrace_the_users_other_processes():
    attached = sandbox_attack("ptrace", off="sandbox-ptrace")
    assert attached[:2] == ["0", "attached"], attached
    refused = sandbox_attack("ptrace")
    assert refused[:3] == ["0", "refused", "1"] and refused[-1] == "alive", refused
