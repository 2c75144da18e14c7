"""Find a data file locally or download it once, checked, into a cache folder.

A download streams into a temporary file next to its destination, is checked (length and
checksum, plus an optional validator), and only then renamed into place, so the cache never
holds a partial or corrupt file. Set MINIGAN_DATA to a folder of files you already have, or
MINIGAN_OFFLINE=1 to never touch the network.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

TIMEOUT_S = 30
CHUNK = 1 << 20
USER_AGENT = "minigan/0.1 (+urllib)"


class DataNotFoundError(FileNotFoundError):
    """A data file is neither on disk nor downloadable; the message says where we looked."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given, else $MINIGAN_DATA, else the user cache folder."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MINIGAN_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "minigan"


def offline() -> bool:
    """True when MINIGAN_OFFLINE asks us never to use the network."""
    return os.environ.get("MINIGAN_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    return {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}


def _check_existing(path: Path, sums: dict[str, str]) -> Path:
    for algorithm, want in sums.items():
        got = file_digest(path, algorithm)
        if got != want:
            raise ValueError(f"{path}: {algorithm} checksum mismatch (expected {want}, got "
                             f"{got}); the file is corrupt or a different file: delete or "
                             "replace it")
    return path


def _download(url: str, dest: Path, sums: dict[str, str], progress: bool,
              validate: Callable[[Path], None] | None) -> None:
    """Stream `url` into a temp file beside `dest`, check it, rename it; raise on any fault."""
    hashes = {a: hashlib.new(a, usedforsecurity=False) for a in sums}
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    # a fresh name opened with "xb": unique like mkstemp, but with the umask's permissions
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                while block := resp.read(CHUNK):
                    out.write(block)
                    for h in hashes.values():
                        h.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise OSError(f"truncated transfer: got {received} of {total} bytes")
        if received == 0:
            raise OSError("the server sent an empty file")
        for algorithm, want in sums.items():
            got = hashes[algorithm].hexdigest()
            if got != want:
                raise OSError(f"{algorithm} checksum mismatch: expected {want}, got {got}")
        if validate is not None:
            validate(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot connect ({e.reason})"
    if isinstance(e, http.client.IncompleteRead):
        return f"truncated transfer ({len(e.partial)} bytes before the connection closed)"
    return str(e) or type(e).__name__


def fetch(filename: str, urls: Sequence[str], root: str | os.PathLike | None = None,
          sha256: str | None = None, md5: str | None = None, progress: bool = True, *,
          also_look_in: Sequence[str | os.PathLike] = (), download: bool = True,
          validate: Callable[[Path], None] | None = None) -> Path:
    """Return the path of `filename` under `root`, downloading it from the first working URL.

    Folders in `also_look_in` are searched too (no download goes there). A known checksum is
    checked on the file found or downloaded; `validate(path)` may raise to reject a download
    before it enters the cache. When every mirror fails, DataNotFoundError lists where we looked
    and why each URL failed.
    """
    root = data_root(root)
    dest = root / filename
    places = [dest] + [Path(d).expanduser() / filename for d in also_look_in]
    sums = _expected(sha256, md5)
    for path in places:
        if path.is_file():
            return _check_existing(path, sums)

    failures: list[tuple[str, str]] = []
    if not download:
        failures = [(url, "not tried: download=False") for url in urls]
    elif offline():
        failures = [(url, "not tried: MINIGAN_OFFLINE is set") for url in urls]
    else:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            failures = [(url, f"not tried: cannot create {dest.parent} ({e})") for url in urls]
        else:
            for url in urls:
                try:
                    _download(url, dest, sums, progress, validate)
                    return dest
                except (OSError, ValueError, http.client.HTTPException) as e:
                    failures.append((url, _reason(e)))
    raise DataNotFoundError(_not_found_message(filename, places, failures))


def _not_found_message(filename: str, places: Sequence[Path],
                       failures: Sequence[tuple[str, str]]) -> str:
    lines = [f"cannot find data file {filename!r}.", "Looked for it at:"]
    lines += [f"  {p.absolute()}" for p in places]
    if failures:
        lines.append("Download attempts:")
        lines += [f"  {url}: {why}" for url, why in failures]
    else:
        lines.append("No download URL is known for it.")
    lines.append(f"Put the file in {places[0].parent.absolute()}, or set MINIGAN_DATA (or pass "
                 "root=) to a folder that holds it.")
    return "\n".join(lines)
