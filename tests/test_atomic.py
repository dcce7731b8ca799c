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
