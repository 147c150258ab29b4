"""Small file helpers: atomic writes (never a half-written file, folder or pair) and file hashes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

__all__ = ["atomic_write", "atomic_write_group", "atomic_folder", "check_can_create", "file_sha256",
           "explain_write_error"]

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}


def explain_write_error(e: BaseException, path: str | os.PathLike) -> BaseException:
    """A disk-full or permission error while writing ``path``, as one that names it and the fix
    (the same OSError type and errno); any other exception unchanged."""
    if not isinstance(e, OSError) or e.errno not in _FULL | _DENIED or getattr(e, "fsm2kit_explained", False):
        return e
    where = Path(path)
    if e.errno in _FULL:
        msg = (f"No space left on the disk of {where} ({e.strerror or 'disk full'}) while writing it; nothing was "
               f"left half-written there. Free space on that disk (df -h {where.parent}) or write to another "
               "folder.")
    else:
        msg = (f"Cannot write {where}: {e.strerror or 'permission denied'}"
               f"{f' ({e.filename})' if e.filename and str(e.filename) != str(where) else ''}. Write to a folder "
               "you can write to, or fix the permissions of that one.")
    new = type(e)(msg)
    new.errno = e.errno
    new.fsm2kit_explained = True
    return new


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, keep_suffix: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file gets the usual permissions (umask) and is removed if ``write`` fails,
    so ``path`` is either the old file or the complete new one. ``keep_suffix`` ends the
    temporary name with ``path``'s suffixes (for writers that look at them, e.g. ``.nii.gz``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = ".tmp" + ("".join(path.suffixes) if keep_suffix else "")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise explain_write_error(e, path) from e
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        err = explain_write_error(e, path)
        if err is not e:
            raise err from e
        raise
    return path


def _umask_mode(mode: int) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write_group(
    writes: Mapping[str | os.PathLike, Callable[[str], None]],
    *,
    marker: str | os.PathLike,
    remove: Sequence[str | os.PathLike] = (),
) -> list[Path]:
    """Write several files that belong together (a label volume and its sidecar) all or nothing.

    Every ``write(tmp)`` runs first, in the order given, each on a temporary name next to its file (with the file's
    suffixes); a failure or an interrupt there removes the temporary files and leaves every
    file as it was. Then the old ``marker`` and the ``remove`` files are deleted, the other
    files are renamed into place, and ``marker`` (one of ``writes``) is renamed last. So the
    marker is there only beside the files written with it: an old marker never sits beside new
    files, nor a new marker beside old ones. Between the renames (microseconds) a reader may see
    the new companions without the marker, i.e. no result yet.

    Returns
    -------
    list of Path
        The files, marker last.
    """
    marker = Path(marker)
    items = [(Path(k), fn) for k, fn in writes.items()]
    if marker not in [p for p, _ in items]:
        raise ValueError(f"atomic_write_group: the marker {marker} is not one of the files written.")
    tmps: list[tuple[str, Path]] = []
    try:
        for path, fn in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes),
                                       dir=path.parent)
            os.close(fd)
            tmps.append((tmp, path))
            fn(tmp)
            os.chmod(tmp, _umask_mode(0o666))
        written = [p for _, p in tmps]
        for old in (marker, *(Path(r) for r in remove if Path(r) not in written)):
            old.unlink(missing_ok=True)
        for tmp, path in sorted(tmps, key=lambda t: t[1] == marker):  # the marker last
            os.replace(tmp, path)
    except BaseException as e:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)
        err = explain_write_error(e, tmps[-1][1] if tmps else marker)
        if err is not e:
            raise err from e
        raise
    return sorted((p for _, p in tmps), key=lambda q: q == marker)


def atomic_folder(path: str | os.PathLike, build: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Build a folder beside ``path`` (a hidden temporary sibling), then rename it to ``path``.

    ``build(tmp_dir)`` writes every file into an empty hidden folder next to ``path``; only when
    it returns is that folder renamed to ``path``, in one rename. A failure or an interrupt
    removes the temporary folder: ``path`` is untouched. An existing non-empty ``path`` is
    refused unless ``overwrite``; then it is first renamed aside (another hidden sibling) and
    removed after the new folder is in place, so ``path`` holds the complete old folder, nothing
    (between the two renames), or the complete new folder, never a mix.

    Raises
    ------
    FileExistsError
        ``path`` exists, is not an empty folder, and ``overwrite`` is False.
    NotADirectoryError
        ``path`` is a file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a folder; choose another output folder.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} already exists and is not empty; pass overwrite=True to replace it.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise explain_write_error(e, path) from e
    old = None
    try:
        os.chmod(tmp, _umask_mode(0o777))
        build(tmp)
        if path.is_dir():
            if any(path.iterdir()):
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old)
            else:
                path.rmdir()
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old, path)  # put the old folder back
        err = explain_write_error(e, path)  # the folder's name, not the hidden temporary one
        if err is not e:
            raise err from e
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def check_can_create(path: str | os.PathLike) -> None:
    """Fail early (before any work) when ``path`` could not be created: the nearest existing
    folder above it must be a writable folder.

    Raises
    ------
    PermissionError
        A file stands where a folder is needed, or the folder is not writable.
    """
    path = Path(path).absolute()
    anc = path.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise PermissionError(f"Cannot write {path}: {anc} is a file, not a folder. Choose another output path.")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write {path}: the folder {anc} is not writable. Choose another output folder or "
            "fix its permissions."
        )


# ----------------------------------------------------------------------------- checkpoints
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
