"""containerlab_magic: a Jupyter-native container lab.

The runtime core lives in `containerlab_magic.runtime` and knows nothing of
Jupyter; `%load_ext containerlab_magic` registers the magics on top of it.
"""

__version__ = "0.1.0"


def load_ipython_extension(ipython):  # pragma: no cover - thin shim to magics
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):  # pragma: no cover
    from .magics import unload_ipython_extension as unload

    unload(ipython)
