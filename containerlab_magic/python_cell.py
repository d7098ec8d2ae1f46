"""`%%container --python`: the cell as a small script in a folder bind-mounted into the container.

The cell's folder on the host (a fresh directory under the lab's own 0700
`<state>/io`, paths.private_io_root: other host users can neither read the
cell nor plant an out.json there) is mounted at /run/containerlab-io (see mount(2), MS_BIND).  It holds `cell.py`, which the
container runs as `python3 -u /run/containerlab-io/cell.py`:

- `-u` makes stdout and stderr unbuffered (python(1)), so output streams into
  the notebook as it is printed, and a print followed by a traceback arrives
  in that order;
- the cell's code runs as the module `__main__`, compiled with the file name
  `<cell>`, so a traceback reads `File "<cell>", line 2` and shows the line,
  without the runner's own frame;
- `ps` in or out of the container shows that short command line, not a
  generated program.

Only JSON crosses the boundary, both ways (`in.json` in, `out.json` back):
unpickling anything the container made would let the sandbox run code in the
kernel.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile

from .runtime.errors import SpecError
from .runtime.paths import private_io_root

IO_DIR = "/run/containerlab-io"
PREFIX = "containerlab-io-"  # host folders: PREFIX + the kernel's PID + a random part
COMMAND = ("python3", "-u", f"{IO_DIR}/cell.py")
MAX_OUT_JSON = 16 << 20

# Runs inside the container with the image's python3 (any 3.x): no f-strings
# with `=`, no imports beyond the standard library.
RUNNER = '''\
# A %%container --python cell, run by containerlab_magic: CELL below is the
# cell's code; it runs as the module __main__ and its frames read "<cell>".
import json, linecache, sys, traceback, types

CELL = {cell!r}
INPUTS = {inputs!r}
OUT = {out!r}


def main():
    sys.argv[:] = ["<cell>"]
    sys.path[0] = ""  # as `python3 -c`: imports come from the working directory
    linecache.cache["<cell>"] = (len(CELL), None, CELL.splitlines(True), "<cell>")
    module = types.ModuleType("__main__")
    if INPUTS:
        with open(INPUTS) as f:
            module.__dict__.update(json.load(f))
    sys.modules["__main__"] = module  # pickle and multiprocessing find the cell's names there
    try:
        exec(compile(CELL, "<cell>", "exec"), module.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # the cell's frames only: this runner is not the user's code
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        sys.exit(130 if isinstance(e, KeyboardInterrupt) else 1)
    if OUT is not None:
        if OUT not in module.__dict__:
            sys.exit("--out %s: the cell did not set %s" % (OUT, OUT))
        try:
            text = json.dumps(module.__dict__[OUT])
        except (TypeError, ValueError) as e:
            sys.exit("--out %s: %s: only JSON-compatible values come back" % (OUT, e))
        with open({out_path!r}, "w") as f:
            f.write(text)


main()
'''


class OutValueError(Exception):
    """The cell ran but its --out value could not be brought back (one line)."""


def remove_orphans() -> None:
    """Folders of kernels that were killed (no atexit ran): their containers ended with their shim."""
    for path in glob.glob(os.path.join(private_io_root(), PREFIX + "*-*")):
        pid = os.path.basename(path)[len(PREFIX):].partition("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def inputs_json(names: str | None, user_ns: dict) -> dict:
    """`--in a,b` -> {'a': ..., 'b': ...} from the notebook, checked to be JSON-compatible."""
    values = {}
    for name in filter(None, (n.strip() for n in (names or "").split(","))):
        if not name.isidentifier():
            raise SpecError(f"--in {name!r}: give Python variable names separated by commas")
        if name not in user_ns:
            raise SpecError(f"--in {name}: no such variable in the notebook")
        values[name] = user_ns[name]
    try:
        json.dumps(values)
    except (TypeError, ValueError) as e:
        raise SpecError(f"--in: {e}: pass JSON-compatible values (dict, list, str, numbers, bool, None)") from None
    return values


class CellFolder:
    """The host folder of one --python cell: cell.py, in.json, and out.json once the cell wrote it."""

    def __init__(self, cell: str, inputs: dict, out: str | None, other_user: bool = False):
        if out is not None and not out.isidentifier():
            raise SpecError(f"--out {out!r}: give a Python variable name")
        self.out = out
        remove_orphans()
        # the kernel's PID in the name: see remove_orphans; the parent is 0700 (M6)
        self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=private_io_root())
        try:
            # The cell runs as root unless -u says otherwise; another user must be able to write
            # out.json here, and the sticky bit keeps anyone but root from replacing cell.py
            # (host users other than us cannot reach it: its parent is 0700)
            os.chmod(self.path, 0o1777 if other_user else 0o755)
            inputs_path = None
            if inputs:
                self._write("in.json", json.dumps(inputs))
                inputs_path = f"{IO_DIR}/in.json"
            self._write("cell.py", RUNNER.format(cell=cell, inputs=inputs_path, out=out,
                                                 out_path=f"{IO_DIR}/out.json"))
        except BaseException:
            self.remove()
            raise

    def _write(self, name: str, text: str) -> None:
        path = os.path.join(self.path, name)
        with open(path, "w", encoding="utf-8") as f:  # python3 reads source as UTF-8, whatever the locale
            f.write(text)
        os.chmod(path, 0o644)

    @property
    def volume(self) -> str:
        return f"{self.path}:{IO_DIR}"

    def read_out(self):
        """The cell's --out value, parsed from JSON (never unpickled)."""
        name = self.out
        try:
            with open(os.path.join(self.path, "out.json"), "rb") as f:
                text = f.read(MAX_OUT_JSON + 1)
        except FileNotFoundError:
            raise OutValueError(f"--out {name}: the cell wrote no value") from None
        if len(text) > MAX_OUT_JSON:
            raise OutValueError(f"--out {name}: the value is larger than {MAX_OUT_JSON >> 20} MiB of JSON")
        try:
            return json.loads(text)
        except ValueError as e:
            raise OutValueError(f"--out {name}: not JSON ({e})") from None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
