"""Atomic file writes: a temp file in the target directory, fsync, rename.

A crash or interruption never leaves a partial or corrupt file at ``path``;
readers see the old file or the complete new one. The file gets the
permissions a plain ``open(path, "wb")`` would give (``0o666`` minus the
umask), not the ``0o600`` of a temp file.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import BinaryIO, Callable

__all__ = ["write_with", "write_bytes", "check_writable_dir"]


def write_with(path: str, write: Callable[[BinaryIO], None]) -> None:
  """Calls ``write(f)`` on a temp file beside ``path``, then renames it.

  The directory is created if needed; on any error the temp file is removed
  and the error re-raised.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  # O_EXCL with mode 0o666: a new, unique file that the umask trims like any
  # other (tempfile.mkstemp would force 0o600 on the final file).
  while True:
    tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}-"
                       f"{os.path.basename(path)}")
    try:
      fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
      break
    except FileExistsError:
      continue
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_bytes(path: str, data: bytes) -> None:
  """Atomically writes ``data`` to ``path``."""
  write_with(path, lambda f: f.write(data))


def check_writable_dir(path: str, what: str = "output directory",
                       hint: str = "") -> None:
  """Proves ``path`` writable before any heavy work, without creating it:
  a file is created and removed in ``path`` or, when it does not exist yet,
  in its nearest existing ancestor (``os.access`` misjudges read-only mounts
  and ACLs). So a run that fails later leaves no empty directory behind;
  the writers (:func:`write_with`) create the directories they need.

  Raises:
    ValueError: ``"<what> <path> is not writable: <reason><hint>"``, e.g.
      ``"... is a file, not a directory"``.
  """
  full = os.path.abspath(path)
  probe_dir = full
  while not os.path.lexists(probe_dir):       # nearest existing ancestor
    parent = os.path.dirname(probe_dir)
    if parent == probe_dir:
      break
    probe_dir = parent
  if not os.path.isdir(probe_dir):
    which = "it" if probe_dir == full else probe_dir
    raise ValueError(f"{what} {path} is not writable: {which} is a file, "
                     f"not a directory{hint}")
  try:
    fd, probe = tempfile.mkstemp(dir=probe_dir, prefix=".write-test-")
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise ValueError(f"{what} {path} is not writable: {e}{hint}") from e
