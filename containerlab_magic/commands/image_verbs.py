"""Image verbs: pull, push, login, logout, tag, images, rmi, prune, inspect, history,
save, load, import, export, commit.

Thin, checked calls into the image store (runtime/images/, see docs/images.md).
The store lives under the Engine's data root, the same one its shim resolves
images from, so an image pulled here is the one the next `run` uses.  The
built-in images (host, busybox) are listed with the others but are made from
the host, not stored: the store's verbs refuse them in one line.

Progress callbacks (pull, push) are called from the store's worker threads:
`progress(layer_digest, done, total, status)`; the faces render them
(cli_progress.py, widgets.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..runtime.errors import SpecError

BUILTIN = ("host", "busybox")


def _store(engine):
    from ..runtime.images import ImageStore

    return ImageStore(engine.data_root)


def _not_builtin(name: str, verb: str) -> None:
    if name in BUILTIN:
        raise SpecError(f"{verb} {name}: {name} is a built-in image made from this host, not a stored one; "
                        f"give a pulled, loaded, built or committed image (see `images`)")


def _checked_ref(name: str, what: str = "image name") -> str:
    from ..runtime.images.reference import parse

    try:
        return str(parse(name))
    except ValueError as e:
        raise SpecError(f"invalid {what} {name!r}: {e}; write NAME[:TAG], e.g. 127.0.0.1:5000/team/app:1") from None


# ---------------------------------------------------------------- registry


def pull(engine, ref: str, progress=None) -> tuple[str, str]:
    """Pull REF into the store; (normalised name, manifest digest)."""
    from ..runtime.images import pull as puller

    _not_builtin(ref, "pull")
    _checked_ref(ref)
    name, digest = puller.pull(_store(engine).oci, ref, progress=progress)
    return str(name), digest


def has_image(engine, name: str) -> bool:
    """Whether `run` would find `name` without a pull."""
    if name in BUILTIN:
        return True
    from ..runtime.images.reference import parse

    try:
        ref = str(parse(name))
    except ValueError:
        return False
    store = _store(engine)
    return os.path.isdir(os.path.join(store.root, "oci")) and ref in store.oci.refs()


def push(engine, name: str, target: str | None = None, progress=None) -> tuple[str, str]:
    from ..runtime.images import push as pusher

    _not_builtin(name, "push")
    ref, digest = pusher.push(_store(engine).oci, name, target=target, progress=progress)
    return str(ref), digest


def login(host: str, user: str, password: str) -> str:
    """Check the credentials against HOST's registry, then keep them (0600); the file written."""
    from ..runtime.images import push as pusher

    if not host or "/" in host:
        raise SpecError(f"login: invalid registry {host!r}: give a host[:port], e.g. 127.0.0.1:5000")
    if not user:
        raise SpecError("login: no user name: give -u USER (and the password on stdin with --password-stdin)")
    if not password:
        raise SpecError("login: empty password: pipe it in with --password-stdin, e.g. "
                        "`cat pw | containerlab-magic login -u USER --password-stdin HOST`")
    return pusher.login(host, user, password)


def logout(host: str) -> str:
    from ..runtime.images import push as pusher

    return pusher.logout(host)


# ---------------------------------------------------------------- the store's names


@dataclass(frozen=True)
class ImageLine:
    """One row of `images`: a stored image's name, or a built-in image."""

    repository: str
    tag: str
    id: str
    created: str
    size: int | None
    shared: int | None
    builtin: bool = False
    layers: tuple[tuple[str, int], ...] = ()  # (diff_id, size), bottom first: for the chart


def image_list(engine) -> list[ImageLine]:
    """Built-in images first, then every stored name (repo, tag, id, created, size, shared)."""
    from ..runtime.images import catalog

    lines = [ImageLine(name, "builtin", "-", "-", None, None, True) for name in BUILTIN]
    store = _store(engine)
    if not os.path.isdir(os.path.join(store.root, "oci")):
        return lines
    for row in catalog.images(store.oci):
        try:
            record = store.oci.record(row.digest)
            layers = tuple((d, catalog._layer_size(store.oci, d)) for d in record.config.diff_ids)
        except (OSError, ValueError):
            layers = ()
        lines.append(ImageLine(row.repository, row.tag, row.id, row.created, row.size, row.shared, False, layers))
    return lines


def tag(engine, source: str, target: str) -> str:
    from ..runtime.images import catalog

    _not_builtin(source, "tag")
    return catalog.tag(_store(engine).oci, source, target)


def rmi(engine, name: str, force: bool = False) -> dict:
    """Remove a name and free what nothing uses: {'untagged': [...], ...what prune freed}."""
    from ..runtime.images import catalog

    _not_builtin(name, "rmi")
    return catalog.rmi(_store(engine).oci, name, force=force)


def image_prune(engine) -> dict:
    """Free every blob and layer no name and no live container uses."""
    return _store(engine).oci.prune()


def image_inspect(engine, name: str) -> dict:
    from ..runtime.images import catalog

    _not_builtin(name, "image inspect")
    return catalog.inspect(_store(engine).oci, name)


def history(engine, name: str) -> list[dict]:
    """Newest first: created, created_by (the instruction), comment, layer, size."""
    from ..runtime.images import catalog

    _not_builtin(name, "history")
    return catalog.history(_store(engine).oci, name)


# ---------------------------------------------------------------- files


def save(engine, names: list[str], path: str, fmt: str = "docker-archive") -> str:
    from ..runtime.images import archive

    if fmt not in ("docker-archive", "oci"):
        raise SpecError(f"save: unknown format {fmt!r}: use docker-archive (default) or oci")
    if not names:
        raise SpecError("save: no image given: write save -o FILE IMAGE...")
    for name in names:
        _not_builtin(name, "save")
    if not path:
        raise SpecError("save: no output file: give -o FILE (a terminal gets no tar)")
    return archive.save(_store(engine).oci, names, path, fmt)


def load(engine, path: str) -> list[str]:
    from ..runtime.images import archive

    return archive.load(_store(engine).oci, path)


def import_(engine, path: str, name: str, changes: dict | None = None) -> tuple[str, str]:
    from ..runtime.images import commit as committer

    _not_builtin(name, "import")
    _checked_ref(name)
    ref, digest = committer.import_tarball(_store(engine).oci, path, name, changes)
    return str(ref), digest


def _running_root(engine, ref: str) -> tuple[dict, str]:
    """(state, /proc/PID/root) of a running container: its writable layer is a tmpfs in its own
    mount namespace, so its files are read through its root (see runtime/images/diff.py)."""
    from ..runtime.errors import Conflict
    from ..runtime.state import Status, alive

    cid = engine.store.resolve(ref)
    state = engine.store.read(cid) or {}
    if state.get("status") != Status.RUNNING or not alive(state.get("pid"), state.get("pid_start")):
        raise Conflict(f"container {ref} is not running: its writable layer went with it; "
                       "commit or export a running container (e.g. one started with -d ... sleep 1d)")
    return state, f"/proc/{state['pid']}/root"


def _config_object(store, name: str) -> dict:
    """The `config` object of a stored image's configuration (docker's keys)."""
    import json

    from ..runtime.images.catalog import find

    digest, _, _ = find(store.oci, name)
    manifest = json.loads(store.oci.blobs.read(digest))
    return json.loads(store.oci.blobs.read(manifest["config"]["digest"])).get("config") or {}


def commit(engine, ref: str, name: str, change_lines=(), comment: str = "") -> tuple[str, str]:
    """A new image: the container's image plus what it changed; (name, manifest digest).
    change_lines: `--change` instructions (CMD, ENV, ...) applied on the parent's config."""
    from ..runtime.images.containerfile import config_changes

    import shutil
    import tempfile

    from ..runtime.images import commit as committer
    from ..runtime.images import diff

    _not_builtin(name, "commit")
    _checked_ref(name)
    state, root = _running_root(engine, ref)
    parent = state.get("image") or (state.get("spec") or {}).get("image")
    if parent in BUILTIN:
        raise SpecError(f"commit {ref}: its image {parent} is built from this host and cannot be a parent; "
                        "commit a container of a pulled, loaded or built image (or `export` it and `import`)")
    store = _store(engine)
    changes = config_changes(change_lines, _config_object(store, parent)) if change_lines else None
    work = tempfile.mkdtemp(prefix="commit-", dir=store.oci.blobs.tmp)
    try:
        os.chmod(work, 0o755)
        diff.changes(root, store.resolve(parent).layers, work)
        command = " ".join(state.get("command") or ())
        new, digest = committer.commit(store.oci, work, name, parent=parent,
                                       created_by=f"commit {state.get('name') or ref}: {command}"[:200],
                                       comment=comment, changes=changes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return str(new), digest


def export(engine, ref: str, path: str) -> int:
    """docker export: a running container's whole filesystem as a tar; the number of entries."""
    import tarfile

    from ..runtime.images import diff

    _, root = _running_root(engine, ref)
    count = 0
    try:
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
            for arc, st in diff.merged_entries(root):
                full = os.path.join(root, arc)
                info = tar.gettarinfo(full, arcname=arc)
                if info.isdev() or info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE,
                                                     tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE):
                    continue
                info.uname = info.gname = ""
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
                count += 1
    except OSError as e:
        if os.path.isfile(path):
            os.unlink(path)  # no half-written tar left behind
        raise SpecError(f"export {ref}: cannot write {path}: {e.strerror}") from None
    return count


# ---------------------------------------------------------------- build


def read_containerfile(context: str, file: str | None) -> tuple[str, str]:
    """(text, name for errors) of -f FILE, else CONTEXT/Containerfile, else CONTEXT/Dockerfile."""
    candidates = [file] if file else [os.path.join(context, "Containerfile"), os.path.join(context, "Dockerfile")]
    for path in candidates:
        if path and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    return f.read(), os.path.basename(path)
            except (OSError, UnicodeDecodeError) as e:
                raise SpecError(f"build: cannot read {path}: {e}: give a UTF-8 Containerfile") from None
    raise SpecError(f"build: no {file or 'Containerfile or Dockerfile'} "
                    f"{'found' if file else 'in ' + context}: give one with -f FILE")


def build(engine, context: str, text: str, tag: str | None = None, *, build_args: dict | None = None,
          say=None, on_output=None, limits=None, network: str = "none", where: str = "Containerfile") -> str:
    """Build an image from Containerfile `text` and the `context` folder; its manifest digest.
    say(line): the steps as they go; on_output(stream, data): RUN's output, live."""
    from ..runtime.images.build import Build

    if tag:
        _not_builtin(tag, "build -t")
        _checked_ref(tag)
    options = {"network": network}
    if limits is not None:
        options["limits"] = limits
    builder = Build(engine, _store(engine), context, text, build_args=build_args, say=say, on_output=on_output,
                    spec_options=options, where=where)
    return builder.run(tag)


def parse_build_args(items) -> dict:
    """--build-arg K=V (a bare K takes this shell's value, as docker)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise SpecError(f"invalid --build-arg {item!r}: write NAME=VALUE")
        out[key] = value if sep else os.environ.get(key, "")
    return out
