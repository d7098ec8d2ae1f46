"""Registry credentials: where they are kept, and how a challenge is answered.

Credentials live in the user's own file, mode 0600, in docker's config.json
format (`{"auths": {"HOST": {"auth": base64("user:password")}}}`), by
default ~/.config/containerlab/auth.json (CONTAINERLAB_AUTH_FILE moves it);
docker's own ~/.docker/config.json (or $DOCKER_CONFIG/config.json) is read
as well, never written.

A registry says how to authenticate in its 401's `WWW-Authenticate` header
(RFC 7235; distribution's docs/spec/auth/token.md): `Basic realm=...` wants
the password on every request; `Bearer realm=URL,service=S,scope=...` wants a
token fetched from URL for that scope (anonymously, or with the password).
Tokens are kept per scope (`repository:NAME:pull`): one token per client is
what broke oras on its second repository.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import tempfile

from .reference import DOCKER_HUB

CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def auth_file() -> str:
    env = os.environ.get("CONTAINERLAB_AUTH_FILE")
    if env:
        return env
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(base, "containerlab", "auth.json")


def docker_config() -> str:
    return os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")


def _keys(host: str) -> tuple[str, ...]:
    if host in (DOCKER_HUB, "registry-1.docker.io"):
        return ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")
    return (host, "https://" + host, "http://" + host)


def _read(path: str) -> dict:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def credentials(host: str) -> tuple[str, str] | None:
    """(user, password) for a registry, from our file first, then docker's."""
    for path in (auth_file(), docker_config()):
        auths = _read(path).get("auths") or {}
        for key in _keys(host):
            entry = auths.get(key)
            if isinstance(entry, dict) and entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                return user, password
    return None


def save_credentials(host: str, user: str, password: str | None) -> str:
    """Write (or with password None, remove) a registry's entry; the file stays 0600."""
    path = auth_file()
    doc = _read(path)
    auths = doc.setdefault("auths", {})
    for key in _keys(host):
        auths.pop(key, None)
    if password is not None:
        auths[_keys(host)[0]] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=os.path.dirname(path))  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params
