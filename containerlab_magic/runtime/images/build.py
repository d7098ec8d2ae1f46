"""build: a Containerfile and a context directory -> an image in the store.

Each stage starts FROM a stored image, an earlier stage, `scratch`, or the
built-in `busybox` (made into a one-layer stored image from its rootfs, keyed
by its fingerprint, so a build works with no registry); `host` binds host
directories and cannot be a base.  Each instruction makes a new image state:

- RUN: a container through the Engine, from the current state (named for the
  while by a temporary reference), with the same isolation and limits as
  `run`: PID 1 is `/bin/sh -c 'read _'` on a stdin pipe, the RUN command is an
  `exec` in it with its output streamed live, then the changes are read
  through /proc/PID/root (diff.py) and committed as a layer; closing stdin
  ends PID 1.  (So RUN needs /bin/sh in the image, as its shell form does.)
- COPY / ADD: files from the context (or `--from` a stage's layers) laid out
  in a directory and committed as a layer; ADD unpacks a local tar through the
  safe layer unpacker.
- ENV, WORKDIR, USER, ENTRYPOINT, CMD, EXPOSE, LABEL, STOPSIGNAL: config only
  (an empty_layer history entry); ARG: a build variable.

The cache: sha256 of (parent manifest digest, the instruction as expanded,
the build args it sees, and for COPY/ADD the content of its sources) ->
the resulting manifest digest, in <store>/build-cache.json.  A hit is used only
while its blobs and layers are in the store (`image prune` and `rmi` free
unnamed results, and with them the cache).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field

from ..errors import ContainerError, SpecError
from . import commit as layers
from . import containerfile as grammar
from .build_cache import BuildCache
from .build_context import ignore_patterns as _ignore_patterns
from .build_context import walk as _walk
from .diff import image_view
from .oci import OciStore
from .reference import parse

TEMP_REPO = "localhost/clab-build-tmp"


@dataclass
class State:
    """An image being built: its config document, layer descriptors and manifest digest."""

    doc: dict
    layers: list[dict]
    digest: str = ""  # "" until written
    variables: dict = field(default_factory=dict)  # ARG and ENV values for $VAR
    own_cmd: bool = False


class Build:
    def __init__(self, engine, store, context: str, text: str, *, build_args: dict | None = None,
                 say=None, on_output=None, spec_options: dict | None = None, where: str = "Containerfile"):
        self.engine, self.images, self.oci = engine, store, store.oci
        self.context = os.path.abspath(context)
        self.instructions = grammar.parse(text, where)
        self.where = where
        self.build_args = dict(build_args or {})
        self.say = say or (lambda line: None)
        self.on_output = on_output
        self.spec_options = dict(spec_options or {})  # limits, network for RUN containers
        self.ignore = _ignore_patterns(self.context)
        self.stages: dict[str, State] = {}
        self.hits = self.misses = 0
        self.cache = BuildCache(self.oci)
        self._owner = _owner_tag()  # whose these names are: gc forgets them once it died
        self._temp = f"{TEMP_REPO}:{self._owner}-{id(self) & 0xffffff:x}"
        self._temps = {str(parse(self._temp))}  # names made for the while: removed at the end

    # ---------------------------------------------------------------- the whole file

    def run(self, tag: str | None) -> str:
        """Build every stage; name the last one `tag`; its manifest digest."""
        if not os.path.isdir(self.context):
            raise SpecError(f"build context {self.context} is not a directory: give the folder the COPY sources are in")
        global_args: dict[str, str] = {}
        state, index = None, 0
        total = len(self.instructions)
        try:
            for number, ins in enumerate(self.instructions, 1):
                self.say(f"Step {number}/{total} : {ins.text}")
                if ins.keyword == "ARG" and state is None:
                    for key, default in grammar.pairs(ins):
                        global_args[key] = self.build_args.get(key, default or "")
                    continue
                if ins.keyword == "FROM":
                    if state is not None:
                        self.stages[str(index)] = state
                        index += 1
                    state = self._from(ins, global_args, index)
                    continue
                state = self._step(state, ins)
            self.stages[str(index)] = state
            if not state.digest:
                state.digest = self._write(state)
            if tag:
                self.oci.set_ref(str(parse(tag)), state.digest)
            self.say(f"Successfully built {state.digest[7:19]} ({self.hits} cached, {self.misses} run)"
                     + (f"\nSuccessfully tagged {tag}" if tag else ""))
            return state.digest
        finally:
            refs = self.oci.refs()
            for name in self._temps & set(refs):
                self.oci.set_ref(name, None)

    def _from(self, ins, global_args: dict, index: int) -> State:
        words = grammar.substitute(ins.args, global_args).split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
            raise ins.fail("write FROM IMAGE or FROM IMAGE AS NAME", self.where)
        base = words[0]
        if base in self.stages:
            source = self.stages[base]
            state = State(json.loads(json.dumps(source.doc)), list(source.layers), source.digest)
        elif base == "scratch":
            state = State(*layers.image_docs(self.oci, None))
        elif base == "host":
            raise ins.fail("the host image binds host directories and cannot be a base: use busybox or a pulled image",
                           self.where)
        else:
            name = self._builtin_busybox() if base == "busybox" else base
            try:
                digest, _, _ = _find(self.oci, name)
            except ContainerError as e:
                raise ins.fail(f"{e}", self.where) from None
            doc, descs = layers.image_docs(self.oci, name)
            state = State(doc, descs, digest)
        state.variables = dict(global_args)
        state.variables.update(dict(item.partition("=")[::2] for item in state.doc.get("config", {}).get("Env") or ()))
        if len(words) == 3:
            self.stages[words[2]] = state  # later FROMs and COPY --from name it (the object is updated in place)
        return state

    def _builtin_busybox(self) -> str:
        """The built-in busybox as a stored one-layer image (made once per busybox binary)."""
        image = self.images.resolve("busybox")
        fingerprint = hashlib.sha256(image.layers[0].encode() + open(os.path.join(os.path.dirname(
            image.layers[0]), "fingerprint"), "rb").read()).hexdigest()[:16]
        name = f"localhost/builtin/busybox:{fingerprint}"
        if str(parse(name)) not in self.oci.refs():
            layers.commit(self.oci, image.layers[0], name, created_by="the built-in busybox image")
        return name

    # ---------------------------------------------------------------- one instruction

    def _step(self, state: State, ins) -> State:
        kw = ins.keyword
        if kw == "ARG":
            for key, default in grammar.pairs(ins):
                state.variables[key] = self.build_args.get(key, default or "")
            return state
        content = self._sources_hash(state, ins) if kw in ("COPY", "ADD") else ""
        expanded = ins.text if kw == "RUN" else grammar.substitute(ins.text, state.variables)
        if not state.digest:
            state.digest = self._write(state)
        key = hashlib.sha256(json.dumps([state.digest, expanded, content, sorted(self._run_args(state).items())
                                         if kw == "RUN" else []]).encode()).hexdigest()
        hit = self.cache.get(key)
        if hit:
            self.hits += 1
            self.say(" ---> Using cache")
            manifest = json.loads(self.oci.blobs.read(hit))
            doc, descs = json.loads(self.oci.blobs.read(manifest["config"]["digest"])), list(manifest["layers"])
            new = State(doc, descs, hit, state.variables, state.own_cmd or kw == "CMD")
            if kw in ("ENV",):
                self._apply(new, ins, dry=True)
            return self._renamed(state, new)
        self.misses += 1
        new = State(json.loads(json.dumps(state.doc)), list(state.layers), "", state.variables, state.own_cmd)
        if kw == "RUN":
            self._run(state, new, ins)
        elif kw in ("COPY", "ADD"):
            self._copy(state, new, ins)
        else:
            self._apply(new, ins)
        new.digest = self._write(new)
        self.cache.put(key, new.digest)
        self.say(f" ---> {new.digest[7:19]}")
        return self._renamed(state, new)

    def _renamed(self, old: State, new: State) -> State:
        for alias, value in list(self.stages.items()):
            if value is old:
                self.stages[alias] = new
        return new

    def _apply(self, state: State, ins, dry: bool = False) -> None:
        config = state.doc.setdefault("config", {})
        scratch = {} if dry else config
        grammar.apply_config(scratch if dry else config, ins, state.variables, state.own_cmd)
        if ins.keyword == "CMD":
            state.own_cmd = True
        if not dry:
            self._history(state, ins.text, empty=True)

    def _history(self, state: State, text: str, empty: bool) -> None:
        stamp = layers.now()
        state.doc["created"] = stamp
        entry = {"created": stamp, "created_by": text}
        if empty:
            entry["empty_layer"] = True
        state.doc.setdefault("history", []).append(entry)

    def _write(self, state: State) -> str:
        with self.oci.blobs.lock(shared=True):
            return layers.write_image(self.oci, state.doc, state.layers)

    def _add_layer(self, state: State, source: str, text: str) -> None:
        with self.oci.blobs.lock(shared=True):
            desc, diff_id = layers.store_layer(self.oci, source)
        state.layers.append(desc)
        state.doc.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
        self._history(state, text, empty=False)

    # ---------------------------------------------------------------- RUN

    def _run_args(self, state: State) -> dict:
        env = dict(item.partition("=")[::2] for item in state.doc.get("config", {}).get("Env") or ())
        return {k: v for k, v in state.variables.items() if k not in env}

    def _run(self, parent: State, new: State, ins) -> None:
        from ..spec import ContainerSpec
        from .diff import changes

        self.oci.set_ref(str(parse(self._temp)), parent.digest)
        spec = ContainerSpec(("/bin/sh", "-c", "read _"), image=self._temp, interactive=True,
                             **self.spec_options)
        box = self.engine.run(spec)
        work = tempfile.mkdtemp(prefix="build-", dir=self.oci.blobs.tmp)
        try:
            command = grammar.command_form(ins)
            show = self.on_output or (lambda stream, data: self.say(data.decode(errors="replace").rstrip("\n")))
            proc = self.engine.exec(box.id, command, env=self._run_args(parent), on_output=show)
            result = proc.wait()  # streams the output to `show` as it comes
            if result.exit_code != 0:
                raise SpecError(f"{self.where} line {ins.line}: RUN {ins.args[:60]}: "
                                f"{result.error or f'exited with code {result.exit_code}'}")
            os.chmod(work, 0o755)
            changes(f"/proc/{box.pid}/root", self.images.resolve(self._temp).layers, work)
            self._add_layer(new, work, ins.text)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            box.close_stdin()
            try:
                box.wait(timeout=10)
            except Exception:
                box.kill()
                box.wait(timeout=10)

    # ---------------------------------------------------------------- COPY and ADD

    def _sources(self, state: State, ins) -> tuple[list[tuple[str, str]], str]:
        """([(source path on disk, path relative to its root)], dest) for COPY/ADD."""
        words = grammar.substitute(ins.args, state.variables)
        try:
            items = json.loads(words) if words.startswith("[") else words.split()
        except ValueError:
            raise ins.fail('the JSON form is ["SRC", ..., "DEST"]', self.where) from None
        if len(items) < 2:
            raise ins.fail("write SRC... DEST", self.where)
        *sources, dest = items
        stage = ins.flag("from")
        found: list[tuple[str, str]] = []
        for src in sources:
            found += self._stage_files(stage, src, ins) if stage is not None else self._context_files(src, ins)
        return found, dest

    def _context_files(self, src: str, ins) -> list[tuple[str, str]]:
        rel = os.path.normpath(src.lstrip("/"))
        if rel.startswith(".."):
            raise ins.fail(f"{src} is outside the build context", self.where)
        matches = sorted(p for p in _walk(self.context, self.ignore) if fnmatch.fnmatch(p, rel) or p == rel
                         or p.startswith(rel + "/") or rel == ".")
        if not matches:
            raise ins.fail(f"no file {src} in the build context {self.context} (or .containerignore leaves it out)",
                           self.where)
        base = os.path.dirname(rel) if rel != "." and not os.path.isdir(os.path.join(self.context, rel)) else rel
        return [(os.path.join(self.context, p), os.path.relpath(p, base) if base not in ("", ".") else p)
                for p in matches]

    def _stage_files(self, stage: str, src: str, ins) -> list[tuple[str, str]]:
        if stage not in self.stages:
            raise ins.fail(f"--from={stage}: no earlier stage of that name (FROM ... AS {stage})", self.where)
        view = image_view(self.images.resolve(self._stage_name(stage)).layers)
        rel = os.path.normpath(src.lstrip("/"))
        found = [(path, os.path.relpath(p, rel) if p != rel else os.path.basename(p))
                 for p, path in sorted(view.items()) if p == rel or p.startswith(rel + "/")]
        if not found:
            raise ins.fail(f"--from={stage}: no {src} in that stage", self.where)
        return found

    def _stage_name(self, stage: str) -> str:
        state = self.stages[stage]
        if not state.digest:
            state.digest = self._write(state)
        name = f"{TEMP_REPO}:{self._owner}-stage-{hashlib.sha256(stage.encode()).hexdigest()[:8]}"
        self.oci.set_ref(str(parse(name)), state.digest)
        self._temps.add(str(parse(name)))
        return name

    def _sources_hash(self, state: State, ins) -> str:
        sha = hashlib.sha256()
        files, dest = self._sources(state, ins)
        for path, rel in files:
            st = os.lstat(path)
            sha.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0".encode())
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        sha.update(chunk)
            elif os.path.islink(path):
                sha.update(os.readlink(path).encode())
        return sha.hexdigest()

    def _copy(self, parent: State, new: State, ins) -> None:
        files, dest = self._sources(parent, ins)
        workdir = parent.doc.get("config", {}).get("WorkingDir") or "/"
        target = dest if dest.startswith("/") else os.path.join(workdir, dest)
        into_dir = dest.endswith("/") or len(files) > 1 or (len(files) == 1 and os.path.isdir(files[0][0]))
        work = tempfile.mkdtemp(prefix="build-", dir=self.oci.blobs.tmp)
        try:
            os.chmod(work, 0o755)
            root = os.path.join(work, target.lstrip("/"))
            for path, rel in files:
                out = os.path.join(root, rel) if into_dir else root
                os.makedirs(os.path.dirname(out) or work, 0o755, exist_ok=True)
                if ins.keyword == "ADD" and _is_tar(path):
                    from .layers import unpack
                    os.makedirs(out if into_dir and not dest.endswith("/") else root, 0o755, exist_ok=True)
                    with open(path, "rb") as blob:
                        unpack(blob, root)
                elif os.path.islink(path):
                    os.symlink(os.readlink(path), out)
                elif os.path.isdir(path):
                    os.makedirs(out, 0o755, exist_ok=True)
                else:
                    shutil.copy2(path, out)
                    os.chown(out, 0, 0)  # as docker: files land owned by root unless --chown
            self._add_layer(new, work, ins.text)
        finally:
            shutil.rmtree(work, ignore_errors=True)

def _owner_tag() -> str:
    """PID and start time of this process: a temporary name outlives a build killed with -9,
    and this says whether its builder is still there (forget_dead_builds)."""
    from ..state import proc_start_time

    return f"{os.getpid()}-{proc_start_time(os.getpid())}"


def forget_dead_builds(oci: OciStore) -> list[str]:
    """Forget the temporary names of builds whose process is gone (killed mid-RUN, say), so
    `image prune` can free what only they held.  (gc calls it.)"""
    from ..state import alive

    prefix = str(parse(TEMP_REPO + ":x"))[:-1]
    forgotten = []
    for name in list(oci.refs()):
        if not name.startswith(prefix):
            continue
        pid, _, rest = name[len(prefix):].partition("-")
        start, _, _ = rest.partition("-")
        if not (pid.isdigit() and start.isdigit()) or not alive(int(pid), int(start)):
            oci.set_ref(name, None)
            forgotten.append(name)
    return forgotten


def _find(store: OciStore, name: str):
    from .catalog import find

    return find(store, name)


def _is_tar(path: str) -> bool:
    import tarfile

    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd" or tarfile.is_tarfile(path)
