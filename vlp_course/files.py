"""Files on disk: the shipped data folder, the cache of generated data, atomic writes and SHA-256 checks.

**Shipped files** (the stand-in detector and the four scene checkpoints) live inside the package, in
``vlp_course/shipped/``, each listed with its SHA-256 in ``vlp_course/shipped/SHA256SUMS``; they are
package data (``pyproject.toml``), so a ``pip install`` (Colab's setup cell) has them too.
:func:`shipped_dir`, :func:`expected_sha256` and :func:`check_shipped` find and verify them. An
install that lacks them (a broken or trimmed copy) makes the loaders train the file once and cache it.

**Generated datasets and the trained stand-in detector are kept under :func:`cache_dir`:
``$VLP_COURSE_CACHE`` if set, else ``~/.cache/vlp_course``. Every file is written to a temporary
file in the same folder and moved into place with ``os.replace`` (atomic on POSIX and Windows), so
an interrupted run never leaves a half-written file under the final name. Each cache entry carries
a ``manifest.json`` with the SHA-256 of its files; a file whose hash differs is treated as missing
and regenerated.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "atomic_write_bytes", "atomic_write_text", "sha256_file", "write_manifest", "check_manifest",
           "shipped_dir", "expected_sha256", "check_shipped", "record_sha256"]

CACHE_ENV = "VLP_COURSE_CACHE"


def cache_dir() -> Path:
    """The cache root: ``$VLP_COURSE_CACHE`` or ``~/.cache/vlp_course`` (created on demand)."""
    root = os.environ.get(CACHE_ENV)
    p = Path(root) if root else Path.home() / ".cache" / "vlp_course"
    p.mkdir(parents=True, exist_ok=True)
    return p


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder, files: list[str], meta: dict | None = None) -> Path:
    """Write ``folder/manifest.json`` with the SHA-256 of each file (written last, atomically)."""
    folder = Path(folder)
    man = {"files": {f: sha256_file(folder / f) for f in files}, "meta": meta or {}}
    return atomic_write_text(folder / "manifest.json", json.dumps(man, indent=1, sort_keys=True))


def check_manifest(folder) -> dict | None:
    """The manifest's ``meta`` if every listed file exists with the recorded SHA-256, else ``None``."""
    folder = Path(folder)
    try:
        man = json.loads((folder / "manifest.json").read_text())
        for f, digest in man["files"].items():
            if sha256_file(folder / f) != digest:
                return None
    except (OSError, KeyError, ValueError, TypeError, AttributeError):
        # missing or unreadable files, bytes that are not UTF-8 JSON (ValueError covers both), a wrong layout
        return None
    return man.get("meta", {})


# --------------------------------------------------------------------------------------------------
# Shipped files: vlp_course/shipped/ and its SHA256SUMS
# --------------------------------------------------------------------------------------------------
def shipped_dir() -> Path:
    """The folder of the shipped files: ``vlp_course/shipped/`` of the imported package (the
    repository's copy, or the installed one after ``pip install``). The one place that names it."""
    return Path(__file__).resolve().parent / "shipped"


def expected_sha256(name: str, folder: Path | None = None) -> str | None:
    """The SHA-256 of ``name`` recorded in ``<folder>/SHA256SUMS`` (default :func:`shipped_dir`), or None."""
    sums = (folder or shipped_dir()) / "SHA256SUMS"
    if not sums.exists():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0]
    return None


def check_shipped(path, rebuild: str) -> Path:
    """``path`` if its SHA-256 equals the one in its folder's ``SHA256SUMS``.

    Args:
        path: a shipped file. rebuild: the command that reproduces it (named in the error).

    Raises:
        FileNotFoundError: if the file is missing. ValueError: if its SHA-256 differs or is not recorded.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; reproduce it with: {rebuild}")
    expected, got = expected_sha256(path.name, path.parent), sha256_file(path)
    if expected != got:
        raise ValueError(f"{path}: SHA-256 {got} differs from {path.parent / 'SHA256SUMS'} ({expected}); the file is "
                         f"damaged or not the shipped one: restore it from git or rebuild it with: {rebuild}")
    return path


def record_sha256(path) -> str:
    """Write ``path``'s SHA-256 into its folder's ``SHA256SUMS`` (replacing its old line); returns the digest."""
    path = Path(path)
    digest = sha256_file(path)
    sums = path.parent / "SHA256SUMS"
    lines = [ln for ln in (sums.read_text().splitlines() if sums.exists() else []) if ln.split()[-1:] != [path.name]]
    atomic_write_text(sums, "\n".join(sorted(lines + [f"{digest}  {path.name}"])) + "\n")
    return digest
