"""Owner-only files in folders nobody else controls: plan files, secrets and state written safely.

:func:`write_private` never follows a symlink: it opens the folder with ``O_NOFOLLOW | O_DIRECTORY``,
writes a fresh temporary name in it (``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600) and renames that over
the target, so a symlink planted under the target's name is replaced, never written through, and a
reader sees the old file or the new one, never half of it.

:func:`check_private_folder` refuses an output folder (``--out``, a run's plan folder, the state folder)
that is a symlink, is not owned by the current user, or that group or others may write to: anyone who can
write to the folder can swap the files in it between the plan and the apply.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from scimflow.errors import ScimflowError

__all__ = ["UnsafePathError", "check_private_folder", "private_folder", "write_private"]

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafePathError(ScimflowError, PermissionError):
    """A folder or file scimflow will not use because others could control it; the message names it.

    A :class:`ScimflowError` (every verb prints it and exits 1) and a ``PermissionError`` (an ``OSError``).
    """


def check_private_folder(folder: Path | str) -> Path:
    """Refuse ``folder`` unless it is a real folder (not a symlink), ours, and not group/world-writable."""
    folder = Path(folder)
    try:
        st = os.lstat(folder)
    except OSError as exc:
        msg = f"output folder {folder}: cannot be used: {exc.strerror}"
        raise UnsafePathError(msg) from None
    if stat.S_ISLNK(st.st_mode):
        msg = f"output folder {folder} is a symlink: refused (give the real folder, {os.path.realpath(folder)})"
        raise UnsafePathError(msg)
    if not stat.S_ISDIR(st.st_mode):
        msg = f"output folder {folder} is not a folder"
        raise UnsafePathError(msg)
    if st.st_uid != os.getuid():
        msg = f"output folder {folder} belongs to uid {st.st_uid}, not to you (uid {os.getuid()}): refused"
        raise UnsafePathError(msg)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        msg = f"output folder {folder} is writable by group or others (mode {mode:04o}): refused; chmod 700 {folder}"
        raise UnsafePathError(msg)
    return folder


def private_folder(folder: Path | str) -> Path:
    """Create ``folder`` (0700) if needed, check it with :func:`check_private_folder`, make it owner-only."""
    folder = Path(folder)
    if not os.path.lexists(folder):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_folder(folder)
    folder.chmod(0o700)  # checked above: ours and not a symlink; drop read/search bits of group and others
    return folder


def write_private(path: Path | str, data: bytes | str, *, check_folder: bool = True) -> Path:
    """Write ``data`` to ``path`` as an owner-only (0600) file, atomically, following no symlink.

    The folder is created (0700) when missing and, with ``check_folder``, refused when it is a symlink,
    not ours, or writable by group or others (:class:`UnsafePathError`).
    """
    path = Path(path)
    folder = path.parent
    if not os.path.lexists(folder):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if check_folder:
        check_private_folder(folder)
    raw = data.encode() if isinstance(data, str) else data
    dir_fd = os.open(folder, _OPEN_DIR)  # O_NOFOLLOW: the folder itself cannot be a symlink either
    try:
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _CREATE, 0o600, dir_fd=dir_fd)
        try:
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, 0o600)  # whatever the umask
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
    return path
