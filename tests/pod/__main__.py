"""Run a command in an emulated locked-down pod, by hand (as root, from tests/):

    cd tests && python -m pod --seccomp crio -- -m containerlab_magic.runtime.doctor
    cd tests && python -m pod --seccomp unconfined --unmasked-proc --own-userns -- -m pytest -p no:cacheprovider \
        /src/tests/test_rungs.py

Everything after `--` is given to this Python inside the pod (its prefix and the checkout,
at /src, are bound read-only); the pod and its runc state are removed afterwards.
"""

from __future__ import annotations

import argparse
import sys

from . import bundle, profiles, run


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pod", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seccomp", choices=("unconfined", "crio", "containerd"), default="crio")
    parser.add_argument("--unmasked-proc", action="store_true", help="like Kubernetes procMount: Unmasked")
    parser.add_argument("--own-userns", action="store_true", help="like Kubernetes hostUsers: false")
    parser.add_argument("--uid", type=int, default=1000)
    args, rest = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv), \
        argv[argv.index("--") + 1:] if "--" in argv else []
    problem = run.why_not()
    if problem:
        print(f"python -m pod: {problem}", file=sys.stderr)
        return 125
    if args.seccomp != "unconfined" and not profiles.available():
        print(f"python -m pod: {profiles.CONTAINERS_COMMON} is missing", file=sys.stderr)
        return 125
    pod = bundle.Pod(seccomp=args.seccomp, unmasked_proc=args.unmasked_proc, host_users=not args.own_userns,
                     uid=args.uid, gid=args.uid, cwd="/src")
    print(f"# pod: {pod.describe()}", file=sys.stderr)
    ran = run.run(pod, run.python_argv(*rest), timeout=3600)
    sys.stdout.write(ran.stdout)
    sys.stderr.write(ran.stderr)
    return ran.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
