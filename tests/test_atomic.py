"""sfda_jax.atomic: complete files only, normal permissions, no leftovers."""

import os
import stat

import pytest

from sfda_jax import atomic


def test_write_bytes_replaces_whole_file_with_umask_permissions(tmp_path):
  path = tmp_path / "sub" / "out.json"
  old = os.umask(0o022)
  try:
    atomic.write_bytes(str(path), b"first")
    atomic.write_bytes(str(path), b"second")
  finally:
    os.umask(old)
  assert path.read_bytes() == b"second"
  assert stat.S_IMODE(path.stat().st_mode) == 0o644
  assert os.listdir(path.parent) == ["out.json"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
  path = tmp_path / "out.bin"
  atomic.write_bytes(str(path), b"old")

  def explode(f):
    f.write(b"partial")
    raise RuntimeError("disk full")

  with pytest.raises(RuntimeError, match="disk full"):
    atomic.write_with(str(path), explode)
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["out.bin"]


def test_check_writable_dir_creates_nothing_and_names_a_file_in_the_way(
    tmp_path):
  from sfda_jax import atomic
  target = tmp_path / "a" / "b"
  atomic.check_writable_dir(str(target))
  assert not (tmp_path / "a").exists()        # no empty directory left
  assert list(tmp_path.iterdir()) == []       # nor a probe file
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="is not writable: it is a file, not "
                     "a directory"):
    atomic.check_writable_dir(str(blocker), "output directory")
  with pytest.raises(ValueError, match=f"is not writable: {blocker} is a "
                     "file, not a directory; pass another"):
    atomic.check_writable_dir(str(blocker / "sub"), "cache", "; pass another")
  atomic.write_bytes(str(target / "f.txt"), b"ok")   # writers create it
  assert (target / "f.txt").read_bytes() == b"ok"
