"""`containerlab-magic install-kernel`: a kernelspec that loads the extension at start.

For JupyterHub and Binder courses: students pick "Python 3 (container lab)"
and %%container works in the first cell, no %load_ext needed.  The spec runs
the Python that installed it (sys.executable), so it sees this package.

The kernel loads the magics as the extension `containerlab_magic.kernel`, not
`containerlab_magic`: IPython's extension manager then has not recorded
`containerlab_magic` as loaded, so a notebook's own `%load_ext
containerlab_magic` (written to work in any kernel) runs our loader, which
finds the magics there and stays silent, instead of IPython's "already
loaded ... use %reload_ext".
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

KERNEL_NAME = "containerlab"
DISPLAY_NAME = "Python 3 (container lab)"


def kernel_json(python: str | None = None) -> dict:
    return {
        "argv": [python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 "--ext=containerlab_magic.kernel"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",  # the stop button sends SIGINT: it stops the cell's container
        "metadata": {"debugger": True},
    }


def install(user: bool = False, prefix: str | None = None, name: str = KERNEL_NAME) -> str:
    """Install the kernelspec; returns the directory it went to."""
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kernel.json"), "w") as f:
            json.dump(kernel_json(), f, indent=1)
        return KernelSpecManager().install_kernel_spec(tmp, name, user=user, prefix=prefix)


def load_ipython_extension(ipython) -> None:
    """The kernelspec's --ext: the magics, under this module's name (see the docstring)."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
