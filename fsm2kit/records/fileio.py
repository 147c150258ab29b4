"""Small file helpers: atomic writes (never a half-written file, folder or pair) and file hashes.

The one atomic save of an output folder is :func:`save_output_folder` (``ExperimentResult.save``,
``run_study``, the notebooks, ``run``, ``inspect``); it builds the folder in a hidden temporary
sibling, fsyncs the files and the folder, swaps it in (:func:`atomic_folder`), and replaces only
an empty folder or an fsm2kit output of the same kind (:func:`check_replaceable`: its record,
``provenance.json`` or ``inspect.json``, says so). On start it restores an ``.old`` left by a
crash between the two renames of a replacement and removes stale temporaries of the same output
(:func:`recover_output`); :func:`output_lock` keeps two processes from writing one output.
"""

from __future__ import annotations

import errno
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

__all__ = ["atomic_write", "atomic_write_group", "atomic_folder", "check_can_create", "file_sha256",
           "file_sha256_cached", "folder_digest", "fsync_tree", "RECORD_FILES", "output_kind", "check_replaceable",
           "recover_output", "output_lock", "save_output_folder", "holds_working_folder", "check_output_dir",
           "folder_sha256", "links_outside", "recover_group", "input_record", "explain_write_error"]

#: The record files that mark a folder as an fsm2kit output, and its kind (their ``"kind"`` field).
RECORD_FILES = ("provenance.json", "inspect.json")
_MAX_RECORD_BYTES = 64 << 20

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


def _fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file under ``folder``, then every folder (deepest first): on disk before a rename publishes it."""
    dirs = []
    for root, _, files in os.walk(folder):
        dirs.append(root)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                _fsync_file(p)
    for d in reversed(dirs):
        _fsync_dir(d)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, keep_suffix: bool = False,
                 mode: int | None = None, fsync: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file gets the usual permissions (umask; ``mode``: exactly that mode, whatever
    the umask), is fsynced (``fsync``) and renamed, then the folder is fsynced; it is removed
    if ``write`` fails, so ``path`` is either the old file or the complete new one.
    ``keep_suffix`` ends the temporary name with ``path``'s suffixes (for writers that look at
    them, e.g. ``.nii.gz``).
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
        os.chmod(tmp, _umask_mode(0o666) if mode is None else mode)
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        err = explain_write_error(e, path)
        if err is not e:
            raise err from e
        raise
    if fsync:
        _fsync_dir(path.parent)
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
    suffixes), and is fsynced; a failure or an interrupt there removes the temporary files and
    leaves every file as it was. Then the old ``marker``, the old companions and the ``remove``
    files step aside (hidden ``.old`` siblings, the marker first), the other files are renamed
    into place, ``marker`` (one of ``writes``) is renamed last, and the ``.old`` files are
    deleted. So the marker is there only beside the files written with it: an old marker never
    sits beside new files, nor a new marker beside old ones. Between the renames (microseconds)
    a reader may see the new companions without the marker, i.e. no result yet; an interrupt
    there puts the old group back, and so does :func:`recover_group` after a kill.

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
    olds: list[Path] = []
    try:
        for path, fn in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes),
                                       dir=path.parent)
            os.close(fd)
            tmps.append((tmp, path))
            fn(tmp)
            os.chmod(tmp, _umask_mode(0o666))
            _fsync_file(tmp)
        written = [p for _, p in tmps]
        # the old files step aside (the marker first): a kill from here until the new marker is
        # in place leaves the marker missing beside its .old, and recover_group puts the old group back
        olds = [o for o in (_aside(p) for p in (marker, *(q for q in written if q != marker),
                                                 *(Path(r) for r in remove if Path(r) not in written)))
                if o is not None]
        for tmp, path in sorted(tmps, key=lambda t: t[1] == marker):  # the marker last
            if path == marker:
                _fsync_dir(path.parent)  # the companions are in place before the marker says so
            _rename_in(tmp, path)
        _fsync_dir(marker.parent)
    except BaseException as e:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)
        if olds and not marker.exists():  # stopped between the renames: the old group back
            recover_group(marker, [p for p, _ in items if p != marker] + [Path(r) for r in remove])
        err = explain_write_error(e, tmps[-1][1] if tmps else marker)
        if err is not e:
            raise err from e
        raise
    for o in olds:
        o.unlink(missing_ok=True)
    return sorted((p for _, p in tmps), key=lambda q: q == marker)


def _rename_in(tmp: str, path: Path) -> None:
    """One rename of a group write (a function of its own: tests interrupt it)."""
    os.replace(tmp, path)


def _aside(path: Path) -> Path | None:
    """Rename an existing file to a hidden ``.<name>.<random>.old`` sibling (None: there was none)."""
    if not (path.exists() or path.is_symlink()):
        return None
    fd, old = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
    os.close(fd)
    os.replace(path, old)
    return Path(old)


def recover_group(marker: str | os.PathLike, companions: Sequence[str | os.PathLike]) -> list[str]:
    """Repair what a kill left of a group write (:func:`atomic_write_group`): with the marker
    missing beside its ``.old``, the old group is put back (new companions without an old one
    removed); with the marker in place, leftover ``.old`` files are removed. Stale ``.tmp`` files
    of every file are removed (:func:`recover_output`). Returns one line per repair; call it
    holding :func:`output_lock` of ``marker``."""
    marker = Path(marker).absolute()
    files = [marker, *(Path(c).absolute() for c in companions)]
    olds = {}
    for f in files:
        found = [q for q in f.parent.iterdir() if _sibling_re(f.name, "old").match(q.name)] if f.parent.is_dir() else []
        olds[f] = sorted(found, key=lambda q: q.stat().st_mtime, reverse=True)
    notes = []
    broken = not (marker.exists() or marker.is_symlink()) and olds[marker]
    for f in files:
        if broken and olds[f]:
            os.replace(olds[f][0], f)
            notes.append(f"restored {f} from {olds[f][0].name}, left by a replacement that was interrupted")
            rest = olds[f][1:]
        elif broken and f.exists():
            f.unlink()
            notes.append(f"removed {f}: written by a replacement that was interrupted before it finished")
            rest = olds[f]
        else:
            rest = olds[f]
        for q in rest:
            q.unlink(missing_ok=True)
            notes.append(f"removed {q.name}: the old file of a replacement that finished")
    for f in files:
        notes += recover_output(f, olds=False)
    return notes


def output_kind(folder: str | os.PathLike) -> str | None:
    """The kind of fsm2kit output ``folder`` holds (``"experiment"``, ``"inspect"``, ...), read
    from its record (:data:`RECORD_FILES`: ``"tool": "fsm2kit"`` and ``"kind"``); None: no record."""
    folder = Path(folder)
    for name in RECORD_FILES:
        p = folder / name
        try:
            if not p.is_file() or p.is_symlink() or p.stat().st_size > _MAX_RECORD_BYTES:
                continue
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("tool") == "fsm2kit" and isinstance(d.get("kind"), str):
            return d["kind"]
    return None


def _listing(folder: Path, n: int = 3) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(repr(x) for x in names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def check_replaceable(path: str | os.PathLike, *, kind: str, overwrite: bool, what: str = "--out") -> None:
    """Whether the output folder ``path`` may be written: absent, an empty folder, or (with
    ``overwrite``) an fsm2kit output of ``kind`` (its record says so, :func:`output_kind`).

    Anything else is refused in one line naming what is in the way; no flag deletes it.

    Raises
    ------
    NotADirectoryError
        ``path`` is a file.
    FileExistsError
        ``path`` holds files fsm2kit did not write, another kind of output, or (without
        ``overwrite``) an earlier output of ``kind``.
    """
    p = Path(path)
    if p.is_symlink():
        raise FileExistsError(f"{what} {p} is a symbolic link (to {os.readlink(p)}); fsm2kit does not replace "
                              "links: give the folder itself or another name.")
    if not p.exists():
        return
    if not p.is_dir():
        raise NotADirectoryError(f"{what} {p} is a file, not a folder; fsm2kit does not replace it: choose another "
                                 "output folder.")
    if not any(p.iterdir()):
        return
    found = output_kind(p)
    if found == kind:
        if not overwrite:
            raise FileExistsError(f"{what} {p} holds an earlier fsm2kit {kind} output; pass --overwrite "
                                  "(overwrite=True) to replace it (all at once, when the new one has finished), "
                                  "or choose another folder.")
        return
    if found is not None:
        raise FileExistsError(f"{what} {p} holds an fsm2kit {found} output, not a {kind} output; fsm2kit "
                              f"replaces only its own {kind} outputs: choose another folder.")
    raise FileExistsError(f"{what} {p} is not empty and is not an fsm2kit output (it holds {_listing(p)}); "
                          "fsm2kit never replaces a folder it did not write, --overwrite included: choose a "
                          "new or empty folder.")


def _sibling_re(name: str, what: str) -> re.Pattern:
    # tempfile.mkdtemp/mkstemp names: prefix ".<name>.", 8 random [a-z0-9_], then the suffix
    return re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}\.{what}(\.[A-Za-z0-9]+)*$")


def recover_output(path: str | os.PathLike, *, olds: bool = True) -> list[str]:
    """Repair what a crash left beside the output ``path``; returns one line per repair.

    * An ``.old`` sibling (a replacement stopped between its two renames): restored to
      ``path`` when ``path`` is missing, else removed (the new output is in place).
    * Hidden ``.tmp`` siblings of ``path`` (a save that never finished): removed.

    Call it while holding :func:`output_lock` (no other process is saving ``path``).
    """
    path = Path(path).absolute()
    parent, name = path.parent, path.name
    if not parent.is_dir():
        return []
    notes = []
    found = sorted((q for q in parent.iterdir() if _sibling_re(name, "old").match(q.name)),
                   key=lambda q: q.stat().st_mtime, reverse=True) if olds else []
    for q in found:
        if not path.exists() and not path.is_symlink():
            os.replace(q, path)
            notes.append(f"restored {path} from {q.name}, left by a replacement that was interrupted "
                         "between its two renames")
        else:
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)
            notes.append(f"removed {q.name} beside {path}: the old output of a replacement that finished "
                         "but was interrupted before removing it")
    for q in parent.iterdir():
        if _sibling_re(name, "tmp").match(q.name):
            shutil.rmtree(q, ignore_errors=True) if q.is_dir() and not q.is_symlink() else q.unlink(missing_ok=True)
            notes.append(f"removed {q.name} beside {path}: an unfinished save interrupted earlier")
    return notes


_HELD: dict[str, list] = {}


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, *, what: str = "--out"):
    """Hold the lock of the output ``path`` (a hidden ``.<name>.lock`` sibling, ``flock``): a
    second process writing the same output is refused at once (re-entrant in one process).

    Raises
    ------
    BlockingIOError
        Another process holds it (one line, naming that process).
    """
    import fcntl

    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    lock = path.parent / f".{path.name}.lock"
    key = str(lock)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield lock
        finally:
            _HELD[key][1] -= 1
        return
    made = []  # folders made for the lock: removed again when left empty (a refused run leaves nothing)
    anc = path.parent
    while not anc.exists():
        made.append(anc)
        anc = anc.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            who = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            _remove_empty(made)
            raise BlockingIOError(f"{what} {path} is being written by another fsm2kit process ({who}); wait for it "
                                  "to finish, or choose another output.") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it between our open and lock: take the new one
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
    _HELD[key] = [fd, 1]
    try:
        yield lock
    finally:
        _HELD.pop(key, None)
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)
        _remove_empty(made)


def _remove_empty(folders: list[Path]) -> None:
    for d in folders:  # deepest first
        try:
            d.rmdir()
        except OSError:
            return


def holds_working_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the process's working folder or one above it (it cannot be swapped)."""
    p = os.path.realpath(os.path.expanduser(os.fspath(path)))
    cwd = os.path.realpath(os.getcwd())
    return cwd == p or cwd.startswith(p.rstrip(os.sep) + os.sep)


def atomic_folder(path: str | os.PathLike, build: Callable[[Path], None], *, overwrite: bool = False,
                  kind: str | None = None, keep: Sequence[str] = ()) -> Path:
    """Build a folder beside ``path`` (a hidden temporary sibling), then rename it to ``path``.

    ``build(tmp_dir)`` writes every file into an empty hidden folder next to ``path``; only when
    it returns are its files and folders fsynced and the folder renamed to ``path``, in one
    rename. A failure or an interrupt removes the temporary folder: ``path`` is untouched. An
    existing non-empty ``path`` is replaced only with ``overwrite`` and when it is an fsm2kit
    output of ``kind`` (:func:`check_replaceable`; without ``kind`` never); it is first renamed
    aside (an ``.old`` sibling) and removed after the new folder is in place, so ``path`` holds
    the complete old folder, nothing (between the two renames: :func:`recover_output`, run
    first, restores the ``.old`` after a crash there), or the complete new folder, never a mix.
    The whole save holds :func:`output_lock`. Files named in ``keep`` (the user's own files a
    notebook saves beside an output, e.g. ``prompts.json``) are carried over from the replaced
    folder when the new one has none.

    Raises
    ------
    FileExistsError
        ``path`` is not empty and not a replaceable output (:func:`check_replaceable`).
    NotADirectoryError
        ``path`` is a file.
    """
    path = Path(path)
    with output_lock(path):
        for note in recover_output(path):
            warnings.warn(f"fsm2kit: {note}.", UserWarning, stacklevel=3)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file, not a folder; choose another output folder.")
        if path.is_dir() and any(path.iterdir()):
            if kind is None:
                raise FileExistsError(f"{path} already exists and is not empty; choose another folder.")
            check_replaceable(path, kind=kind, overwrite=overwrite, what="output folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        except OSError as e:
            raise explain_write_error(e, path) from e
        old = None
        try:
            os.chmod(tmp, _umask_mode(0o777))
            build(tmp)
            for name in keep:
                src = path / name
                if src.is_file() and not src.is_symlink() and not (tmp / name).exists():
                    shutil.copy2(src, tmp / name)
            fsync_tree(tmp)
            if path.is_dir():
                if any(path.iterdir()):
                    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                    os.replace(path, old)
                else:
                    path.rmdir()
            _swap_in(tmp, path)
            _fsync_dir(path.parent)
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


def _swap_in(tmp: Path, path: Path) -> None:
    """The rename that publishes a folder (a function of its own: tests interrupt it)."""
    os.replace(tmp, path)


def check_output_dir(folder: str | os.PathLike, *, kind: str = "experiment") -> None:
    """Before the compute: ``folder`` can take an output of ``kind`` (:func:`save_output_folder`):
    new, empty, an earlier output of ``kind``, or the working folder; its nearest existing folder
    writable (one-line errors)."""
    folder = Path(folder)
    if not holds_working_folder(folder):
        check_replaceable(folder, kind=kind, overwrite=True, what="output_dir")
    check_can_create(folder / "x")


def save_output_folder(folder: str | os.PathLike, files: Mapping[str, Callable[[str], None]], *, kind: str,
                       record: str, overwrite: bool = False, stale: Sequence[str] = ()) -> dict[str, Path]:
    """The one atomic save of an fsm2kit output folder (``ExperimentResult.save`` and the rest).

    ``files`` maps each file name to ``write(tmp_path)``; ``record`` (one of them) is the record
    that marks a finished output of ``kind``. The folder is built in a hidden temporary sibling
    and swapped in (:func:`atomic_folder`: fsync, an earlier output of ``kind`` replaced whole
    with ``overwrite``, anything else refused, a crash's ``.old`` restored first).

    The process's working folder (``output_dir="."`` in a notebook run by ``fsm2kit batch``)
    cannot be swapped: there the files are written as a group (:func:`atomic_write_group`: all
    temporaries first, the record renamed last, ``stale`` files of an earlier output removed),
    beside the folder's other files, which are kept; a file of the same name that no record of
    ``kind`` describes is refused.

    Returns
    -------
    dict
        ``{file name: path}``.
    """
    folder = Path(folder)
    if record not in files:
        raise ValueError(f"save_output_folder: the record {record!r} is not one of the files written.")
    if holds_working_folder(folder):
        with output_lock(folder / record, what="output"):
            found = output_kind(folder)
            clash = [n for n in (*files, *stale) if (folder / n).exists()]
            if found not in (None, kind) or (clash and found is None):
                raise FileExistsError(
                    f"output folder {folder} holds {', '.join(repr(n) for n in clash) or 'an output'} that no "
                    f"fsm2kit {kind} record describes; fsm2kit does not replace it: choose another folder.")
            if clash and not overwrite:
                check_replaceable(folder, kind=kind, overwrite=False, what="output folder")
            written = atomic_write_group({folder / n: fn for n, fn in files.items()}, marker=folder / record,
                                         remove=[folder / n for n in stale])
        return {p.name: p for p in written}

    def build(tmp: Path) -> None:
        for name, fn in files.items():
            fn(str(tmp / name))

    out = atomic_folder(folder, build, overwrite=overwrite, kind=kind)
    return {name: out / name for name in files}


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


_HASHES: dict[tuple, str] = {}


def file_sha256_cached(path: str | os.PathLike) -> str:
    """:func:`file_sha256`, remembered in this process by (real path, inode, size, mtime, ctime):
    a 150 MB checkpoint is hashed once per process, not once per run that names it. The ctime
    changes with every write and cannot be set back (``os.utime`` sets the mtime only)."""
    p = os.path.realpath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHES:
        _HASHES[key] = file_sha256(p)
    return _HASHES[key]


def folder_digest(path: str | os.PathLike) -> str:
    """sha256 of a folder's listing: every file's relative path and size (hidden files included;
    links recorded as links, not followed). Cheap on a data set of large scans."""
    root = Path(path)
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            p = os.path.join(dirpath, f)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                h.update(f"{rel}\0link\0{os.readlink(p)}\n".encode())
            else:
                h.update(f"{rel}\0{os.path.getsize(p)}\n".encode())
    return h.hexdigest()


def folder_sha256(folder: str | os.PathLike) -> str:
    """sha256 of a folder's content: every regular file's relative path and sha256, in name order
    (a DICOM series' content hash: the same slices give the same hash, whatever their mtimes)."""
    root = Path(folder)
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for f in sorted(files):
            p = Path(dirpath) / f
            if p.is_file():
                h.update(f"{p.relative_to(root)}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def links_outside(folder: str | os.PathLike) -> list[dict]:
    """Symbolic links in ``folder`` (any depth) that lead outside it: ``[{"name", "target"}]``
    (what an input folder's record lists: its content then comes from elsewhere)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    real = os.path.realpath(root)
    out = []
    for dirpath, dirnames, files in os.walk(root):
        for f in sorted(files + dirnames):
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                t = os.path.realpath(p)
                if not (t == real or t.startswith(real.rstrip(os.sep) + os.sep)):
                    out.append({"name": os.path.relpath(p, root), "target": t})
    return out


def input_record(path: str | os.PathLike) -> dict:
    """What an output's record says about one input: its absolute path and sha256 (a file), or
    for a folder (a DICOM series) its file count, content hash (:func:`folder_sha256`) and the
    links that lead out of it (:func:`links_outside`); a linked file's target."""
    p = Path(path)
    rec = {"path": str(p.absolute()), "sha256": file_sha256(p) if p.is_file() else None,
           "dicom_files": len(list(p.iterdir())) if p.is_dir() else None}
    if p.is_dir():
        rec["content_sha256"] = folder_sha256(p)
        rec["links_outside"] = links_outside(p)
    elif p.is_symlink():
        rec["link_target"] = os.path.realpath(p)
    return rec
