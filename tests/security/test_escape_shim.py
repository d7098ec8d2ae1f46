"""C1: the shim (host root) must import nothing a container can plant.

A container that has the caller's working directory bound in writes
secrets.py there (the shim imports the stdlib's secrets); the next shim start
from that directory, with that directory on PYTHONPATH too, must not import it.
The planted module only leaves a marker file and then behaves as the real one.
"""

from __future__ import annotations

import os

from escape import attack, lab, run, escape_checks  # noqa: F401 - escape_checks: autouse

from containerlab_magic.runtime.spec import Mount

PLANT = r"""cat > /work/secrets.py <<'PY'
import os
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "PLANTED-RAN"), "w").write(str(os.getuid()))
def token_hex(n=32):
    return os.urandom(n).hex()
PY
"""


def _plant_and_restart(tmp_path, monkeypatch, off: tuple[str, ...]) -> bool:
    result = attack(["sh", "-c", PLANT], mounts=(Mount(str(tmp_path), "/work"),))
    assert result.exit_code == 0, result.stderr
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with lab(off) as engine:
        assert run(engine, ["true"]).exit_code == 0
    monkeypatch.undo()
    ran = (tmp_path / "PLANTED-RAN").exists()
    for name in ("PLANTED-RAN", "secrets.py"):
        if (tmp_path / name).exists():
            os.unlink(tmp_path / name)
    return ran


def test_the_shim_does_not_import_from_the_callers_directory(tmp_path, monkeypatch):
    assert _plant_and_restart(tmp_path, monkeypatch, off=("shim-isolation",))  # as it was: host root ran it
    assert not _plant_and_restart(tmp_path, monkeypatch, off=())


def test_the_shim_environment_is_fixed(monkeypatch):
    from containerlab_magic.runtime.engine import Engine
    from containerlab_magic.runtime.shim import client

    monkeypatch.setenv("LD_PRELOAD", "/nonexistent.so")
    monkeypatch.setenv("CONTAINERLAB_CGROUPS", "on")
    env = client._shim_env()
    assert "LD_PRELOAD" not in env and "PYTHONPATH" not in env and env["CONTAINERLAB_CGROUPS"] == "on"
    command = Engine()._shim_command()
    assert command[1] == "-I" and client._shim_cwd() == "/"
