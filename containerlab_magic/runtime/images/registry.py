"""A client of the OCI distribution API (distribution-spec spec.md), on httpx.

Endpoints used: `GET /v2/` (ping, auth challenge), `GET|HEAD|PUT
/v2/NAME/manifests/REF`, `GET|HEAD /v2/NAME/blobs/DIGEST` (with `Range` to
resume), `POST /v2/NAME/blobs/uploads/` (`?mount=&from=` for a cross-repository
mount), `PATCH` chunks and a closing `PUT ...?digest=`.

Trust nothing the registry says: a manifest's bytes must hash to the digest
asked for (or to the `Docker-Content-Digest` it announced), a blob must have
the size and sha256 of its descriptor (blobs.py checks both before keeping
it).  Plain HTTP is used only for loopback registries (as docker allows for
127.0.0.0/8 and localhost) and those listed in CONTAINERLAB_INSECURE_REGISTRIES.
Redirects (blob storage often lives elsewhere) are followed by hand: to
another origin without the Authorization header, and never from https down to
http.
"""

from __future__ import annotations

import base64
import os
from urllib.parse import urljoin

import httpx

from ..errors import ContainerError
from . import auth
from .blobs import DigestMismatch, sha256_bytes
from .manifest import ACCEPT, MAX_MANIFEST, Descriptor
from .reference import is_loopback

REDIRECTS = (301, 302, 303, 307, 308)
CHUNK = 1 << 20


class RegistryError(ContainerError):
    """The registry could not be reached, refused us, or has no such image."""


class Interrupted(RegistryError):
    """A blob's download broke off; what arrived is kept in its `.part` to resume from."""


def chunks(response: httpx.Response, desc: Descriptor, host: str, start: int = 0):
    """The body of a blob response in pieces; a broken connection becomes Interrupted."""
    done = start
    try:
        for chunk in response.iter_raw():  # as it arrives: a break keeps all that came
            done += len(chunk)
            yield chunk
    except httpx.HTTPError as e:
        raise Interrupted(f"the download of {desc.digest} from {host} broke off after {done} of {desc.size} bytes "
                          f"({e or type(e).__name__}): pull again to resume") from None


def insecure_hosts() -> set[str]:
    return {h.strip() for h in os.environ.get("CONTAINERLAB_INSECURE_REGISTRIES", "").split(",") if h.strip()}


class Registry:
    """One registry host; thread-safe enough for parallel blob downloads (httpx.Client is)."""

    def __init__(self, host: str, credentials: tuple[str, str] | None = None, timeout: float = 30.0):
        self.host = host
        self.creds = credentials if credentials is not None else auth.credentials(host)
        self.plain_ok = is_loopback(host) or host in insecure_hosts()
        # A loopback registry is never reached through a proxy from the environment.
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), follow_redirects=False,
                                 verify=not self.plain_ok, limits=httpx.Limits(max_connections=8),
                                 trust_env=not is_loopback(host))
        self._base: str | None = None
        self._basic = False  # the registry asked for Basic: send it pre-emptively
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transport -----------------------------------------------------------

    def base(self) -> str:
        """https://HOST, or http://HOST when allowed and the registry does not speak TLS."""
        if self._base is None:
            try:
                self.http.get(f"https://{self.host}/v2/").close()
                self._base = f"https://{self.host}"
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as e:
                if not self.plain_ok or _unresolved(e):
                    raise self._unreachable(e) from None
                self._base = f"http://{self.host}"
            except httpx.HTTPError as e:
                raise self._unreachable(e) from None
        return self._base

    def _unreachable(self, e: Exception) -> RegistryError:
        if _unresolved(e):
            return RegistryError(f"unknown registry host {self.host!r}: the name does not resolve "
                                 "(check the image name, or set CONTAINERLAB_REGISTRY)")
        return RegistryError(f"cannot reach registry {self.host}: {e or type(e).__name__}"
                             + ("" if self.plain_ok else " (plain HTTP is used only for loopback registries "
                                "and those in CONTAINERLAB_INSECURE_REGISTRIES)"))

    def send(self, method: str, path: str, scope: str, headers: dict | None = None,
             content=None, stream: bool = False) -> httpx.Response:
        """One request with auth (answering one 401 challenge) and safe redirects."""
        url = path if path.startswith("http") else self.base() + path
        for attempt in (1, 2):
            hdrs = dict(headers or {})
            hdrs.update(self._authorization(scope))
            response = self._follow(method, url, hdrs, content, stream)
            if response.status_code != 401 or attempt == 2:
                return response
            challenge = response.headers.get("www-authenticate", "")
            response.close()
            self._answer(challenge, scope)
        raise AssertionError("unreachable")

    def _follow(self, method, url, headers, content, stream) -> httpx.Response:
        origin = httpx.URL(url)
        for _ in range(6):
            try:
                request = self.http.build_request(method, url, headers=headers, content=content)
                response = self.http.send(request, stream=True)
            except httpx.HTTPError as e:
                raise self._unreachable(e) from None
            if response.status_code not in REDIRECTS:
                if not stream:
                    try:
                        response.read()
                    except httpx.HTTPError as e:
                        raise self._unreachable(e) from None
                return response
            response.close()
            target = httpx.URL(urljoin(str(url), response.headers.get("location", "")))
            if target.scheme != "https" and origin.scheme == "https":
                raise RegistryError(f"registry {self.host} redirected to plain HTTP ({target.host}): refused")
            if (target.scheme, target.host, target.port) != (origin.scheme, origin.host, origin.port):
                # Storage on another host: it gets no credentials of ours (docker does the same).
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = str(target)
            if response.status_code == 303:
                method, content = "GET", None
        raise RegistryError(f"registry {self.host} redirected too many times for {method} {url}")

    # -- auth ------------------------------------------------------------------

    def _authorization(self, scope: str) -> dict:
        if scope in self._tokens:
            return {"Authorization": "Bearer " + self._tokens[scope]}
        if self._basic and self.creds:
            return {"Authorization": "Basic " + _b64(self.creds)}
        return {}

    def _answer(self, challenge: str, scope: str) -> None:
        kind, params = auth.parse_challenge(challenge)
        if kind == "basic":
            if not self.creds:
                raise RegistryError(f"registry {self.host} wants a user name and password (401): "
                                    f"run `containerlab-magic login {self.host}`")
            self._basic = True
            return
        if kind != "bearer" or "realm" not in params:
            raise RegistryError(f"registry {self.host} asked for authentication we do not speak: {challenge!r:.80}")
        self._tokens[scope] = self._token(params, scope)

    def _token(self, params: dict, scope: str) -> str:
        realm = httpx.URL(params["realm"])
        if realm.scheme != "https" and not is_loopback(realm.host) and realm.host not in insecure_hosts():
            raise RegistryError(f"registry {self.host} sends us to a token server over plain HTTP "
                                f"({realm.host}): refused")
        query = [("service", params.get("service", ""))] + [("scope", s) for s in scope.split(" ") if s]
        headers = {"Authorization": "Basic " + _b64(self.creds)} if self.creds else {}
        try:
            r = self.http.get(realm, params=query, headers=headers)
        except httpx.HTTPError as e:
            raise RegistryError(f"cannot reach the token server {realm.host} of {self.host}: {e}") from None
        if r.status_code in (401, 403):
            who = f"the credentials of {self.creds[0]!r}" if self.creds else "anonymous access"
            raise RegistryError(f"the token server of {self.host} refused {who} for {scope} (HTTP {r.status_code}):"
                                f" run `containerlab-magic login {self.host}`")
        try:
            doc = r.json()
            return doc.get("token") or doc["access_token"]
        except (ValueError, KeyError, TypeError):
            raise RegistryError(f"the token server of {self.host} answered HTTP {r.status_code} without a token")
        finally:
            r.close()

    def check(self, response: httpx.Response, what: str, scope: str) -> None:
        """Raise the one-line error for a failed response."""
        code = response.status_code
        if code < 400:
            return
        errors = _error_codes(response)
        if code == 401:
            who = f"user {self.creds[0]!r}" if self.creds else "anonymous access"
            raise RegistryError(f"registry {self.host} refused {who} for {what} (401): "
                                f"run `containerlab-magic login {self.host}` with an account that may {_actions(scope)}")
        if code == 403:
            who = f"user {self.creds[0]!r}" if self.creds else "anonymous access"
            raise RegistryError(f"registry {self.host} forbids {who} to {_actions(scope)} {what} (403)")
        if code == 404 or "MANIFEST_UNKNOWN" in errors or "NAME_UNKNOWN" in errors:
            raise RegistryError(f"{what} not found on {self.host} ({', '.join(errors) or 'HTTP 404'}): "
                                "check the name and the tag")
        raise RegistryError(f"registry {self.host} answered HTTP {code} ({', '.join(errors) or response.reason_phrase})"
                            f" for {what}")

    # -- pull --------------------------------------------------------------------

    def manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, content type, digest) of a manifest or index, verified."""
        scope = f"repository:{repo}:pull"
        r = self.send("GET", f"/v2/{repo}/manifests/{reference}", scope, {"Accept": ACCEPT})
        self.check(r, f"manifest {repo}:{reference}" if ":" not in reference else f"{repo}@{reference}", scope)
        data = r.content
        if len(data) > MAX_MANIFEST:
            raise RegistryError(f"the manifest of {repo}:{reference} is larger than {MAX_MANIFEST} bytes: refused")
        actual = sha256_bytes(data)
        expected = reference if reference.startswith("sha256:") else r.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != actual:
            raise DigestMismatch(f"the manifest of {repo}@{reference} hashes to {actual}, not {expected}: refused")
        return data, r.headers.get("content-type", ""), actual

    def blob_bytes(self, repo: str, desc: Descriptor, limit: int = 16 << 20) -> bytes:
        if desc.size > limit:
            raise RegistryError(f"blob {desc.digest} of {repo} is {desc.size} bytes, over {limit}: refused")
        scope = f"repository:{repo}:pull"
        r = self.send("GET", f"/v2/{repo}/blobs/{desc.digest}", scope)
        self.check(r, f"blob {desc.digest} of {repo}", scope)
        if sha256_bytes(r.content) != desc.digest or len(r.content) != desc.size:
            raise DigestMismatch(f"blob {desc.digest} of {repo} arrived with other content: refused")
        return r.content

    def open_blob(self, repo: str, desc: Descriptor) -> httpx.Response:
        """A streaming response of the whole blob (the caller closes it)."""
        scope = f"repository:{repo}:pull"
        r = self.send("GET", f"/v2/{repo}/blobs/{desc.digest}", scope, stream=True)
        try:
            self.check(r, f"blob {desc.digest} of {repo}", scope)
        except BaseException:
            r.close()
            raise
        return r

    def download(self, repo: str, desc: Descriptor, part: str, progress=None) -> None:
        """Stream a blob into `part`, resuming from what it holds; the caller verifies it."""
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if have >= desc.size:
            have = 0 if have > desc.size else have
            if have:
                return
        scope = f"repository:{repo}:pull"
        headers = {"Range": f"bytes={have}-"} if have else {}
        r = self.send("GET", f"/v2/{repo}/blobs/{desc.digest}", scope, headers, stream=True)
        try:
            self.check(r, f"blob {desc.digest} of {repo}", scope)
            if r.status_code != 206:
                have = 0
            done = have
            with open(part, "ab" if have else "wb") as f:
                for chunk in chunks(r, desc, self.host, have):
                    done += len(chunk)
                    if done > desc.size:
                        raise DigestMismatch(f"blob {desc.digest} of {repo} is longer than its {desc.size} "
                                             "bytes: refused")
                    f.write(chunk)
                    if progress:
                        progress(desc.digest, done, desc.size)
        finally:
            r.close()

    # -- push --------------------------------------------------------------------

    def has_blob(self, repo: str, digest: str) -> bool:
        scope = f"repository:{repo}:pull,push"
        r = self.send("HEAD", f"/v2/{repo}/blobs/{digest}", scope)
        if r.status_code == 404:
            return False
        self.check(r, f"blob {digest} of {repo}", scope)
        return True

    def mount(self, repo: str, digest: str, source: str) -> str | None:
        """Cross-repository mount; None when done, else the upload URL to use instead."""
        scope = f"repository:{repo}:pull,push repository:{source}:pull"
        r = self.send("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}", scope)
        self.check(r, f"a mount of {digest} from {source} into {repo}", scope)
        return None if r.status_code == 201 else urljoin(self.base() + "/", r.headers["location"])

    def upload(self, repo: str, path: str, digest: str, location: str | None = None,
               chunk: int = 8 << 20, progress=None) -> None:
        """Chunked upload: PATCH each chunk with its Content-Range, then PUT ?digest=."""
        scope = f"repository:{repo}:pull,push"
        if location is None:
            r = self.send("POST", f"/v2/{repo}/blobs/uploads/", scope)
            self.check(r, f"an upload to {repo}", scope)
            location = urljoin(self.base() + "/", r.headers["location"])
        size, offset = os.path.getsize(path), 0
        with open(path, "rb") as f:
            while data := f.read(chunk):
                r = self.send("PATCH", location, scope, {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(data) - 1}"}, content=data)
                self.check(r, f"a chunk of {digest} to {repo}", scope)
                location = urljoin(self.base() + "/", r.headers["location"])
                offset += len(data)
                if progress:
                    progress(digest, offset, size)
        final = str(httpx.URL(location).copy_merge_params({"digest": digest}))
        r = self.send("PUT", final, scope, {"Content-Type": "application/octet-stream"}, content=b"")
        self.check(r, f"the upload of {digest} to {repo}", scope)

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        scope = f"repository:{repo}:pull,push"
        r = self.send("PUT", f"/v2/{repo}/manifests/{reference}", scope, {"Content-Type": media_type}, content=data)
        self.check(r, f"the manifest {repo}:{reference}", scope)
        digest = sha256_bytes(data)
        announced = r.headers.get("docker-content-digest")
        if announced and announced != digest:
            raise DigestMismatch(f"registry {self.host} stored the manifest as {announced}, we sent {digest}")
        return digest

    def ping(self) -> None:
        """GET /v2/ with our credentials (login checks them this way)."""
        r = self.send("GET", "/v2/", "")
        self.check(r, "the API root /v2/", "")


def _b64(creds: tuple[str, str]) -> str:
    return base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


def _unresolved(e: Exception) -> bool:
    text = str(e).lower()
    return any(s in text for s in ("name or service not known", "temporary failure in name resolution",
                                   "nodename nor servname", "no address associated", "name resolution"))


def _error_codes(response: httpx.Response) -> list[str]:
    try:
        if not response.is_stream_consumed:
            response.read()
        return [str(e.get("code")) for e in response.json().get("errors", ())]
    except (ValueError, AttributeError, TypeError, httpx.HTTPError):
        return []


def _actions(scope: str) -> str:
    return "push to" if "push" in scope else "pull" if scope else "use"
