"""The build cache: (parent, instruction, args, sources) key -> the manifest digest it made.

One JSON file, <store>/build-cache.json, rewritten by an atomic rename(2) under
an flock(2) on locks/build-cache.lock.  A hit counts only while its manifest,
config and layer blobs are still in the store (prune frees unnamed results).
"""

from __future__ import annotations

import fcntl
import json
import os


class BuildCache:
    def __init__(self, oci):
        self.oci = oci
        self.path = os.path.join(oci.root, "build-cache.json")

    def get(self, key: str) -> str | None:
        try:
            with open(self.path) as f:
                digest = json.load(f).get(key)
        except (OSError, ValueError):
            return None
        if not digest or not self.oci.blobs.has(digest):
            return None
        try:
            record = self.oci.record(digest)
        except (OSError, ValueError):
            return None
        if not all(self.oci.blobs.has(d.digest) for d in record.manifest.layers):
            return None
        return digest

    def put(self, key: str, digest: str) -> None:
        os.makedirs(os.path.join(self.oci.root, "locks"), exist_ok=True)
        with open(os.path.join(self.oci.root, "locks", "build-cache.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(self.path) as f:
                    cache = json.load(f)
            except (OSError, ValueError):
                cache = {}
            cache[key] = digest
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(cache, f)
            os.replace(tmp, self.path)
