"""Messy image folders (issue 15): unreadable files named or skipped, every
format the decoder reads accepted, the rest reported, and the folder shapes a
user meets; TFDS records and arrays that cannot be used, named."""

import io
import logging
import os
import shutil
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps
import pytest

from sfda_jax import data
from sfda_jax import features
from sfda_jax.data import _image_files
from sfda_jax.data.preprocessing import Preprocessing

RAW = Preprocessing(8, 8, (0.0,) * 3, (1.0,) * 3)     # pixels / 255, 8 x 8
# An 8 x 8 RGB gradient as lossless JPEG XL (made with imagecodecs'
# jpegxl_encode(lossless=True, effort=9); PIL cannot write JPEG XL).
JXL_8X8 = bytes.fromhex(
    "ff0a4140240804010098004b386998ca83f72b28882dc5bb1d6370b363f0537707b01f3e"
    "c9dc40f957fb07b00091044e0b")


def _gradient(height=8, width=8):
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[..., 0] = np.arange(width) * 32 % 256
  pixels[..., 1] = (np.arange(height) * 32 % 256)[:, None]
  pixels[..., 2] = 200
  return pixels


def _encode(pixels, fmt, mode=None, **kwargs):
  image = Image.fromarray(pixels)
  if mode:
    image = image.convert(mode)
  out = io.BytesIO()
  image.save(out, fmt, **kwargs)
  return out.getvalue()


PNG = _encode(_gradient(), "PNG")
JPEG = _encode(_gradient(), "JPEG", quality=95)
# A photo-sized file for cutting: its pixel data outweighs its header.
_NOISE = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
BIG_PNG = _encode(_NOISE, "PNG")
BIG_JPEG = _encode(_NOISE, "JPEG", quality=90)


def _write(root, files):
  """``{relative path: bytes}`` under ``root``; returns ``str(root)``."""
  for rel, content in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
  return str(root)


def _tf_decodes(content):
  import tensorflow as tf
  from sfda_jax.data import _pipeline
  try:
    _pipeline.decode_image(tf.constant(content))
    return True
  except tf.errors.OpError:
    return False


def _with_pil_pixels(content):
  """``(content, the RGB pixels PIL decodes from it)``."""
  return content, np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def _png_with_size(width, height):
  """A PNG header declaring ``width x height`` (no real pixels)."""
  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body)))
  return (b"\x89PNG\r\n\x1a\n"
          + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0,
                                       0))
          + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _corrupt_idat(png):
  """The PNG with one byte of its compressed pixels flipped: the chunks
  are intact (the header check passes), the decoder fails."""
  damaged = bytearray(png)
  damaged[damaged.index(b"IDAT") + 10] ^= 0xFF
  return bytes(damaged)


# ------------------------------------------------------------ header check

BMP24 = _encode(_gradient(), "BMP")


def _animated_webp():
  frames = [Image.fromarray(_gradient()), Image.fromarray(255 - _gradient())]
  out = io.BytesIO()
  frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:],
                 lossless=True)
  return out.getvalue()


DAMAGED = {
    "first 100 bytes of a PNG": (BIG_PNG[:100], "truncated PNG: the file "
                                 "ends inside its IDAT chunk"),
    "PNG without IEND": (BIG_PNG[:-12], "truncated PNG: the file ends before "
                         "its IEND chunk"),
    "JPEG cut in half": (BIG_JPEG[:len(BIG_JPEG) // 2], "truncated JPEG: no "
                         "end-of-image marker"),
    "JPEG without its end marker": (BIG_JPEG[:-2], "truncated JPEG: no "
                                    "end-of-image marker"),
    "JPEG header only": (BIG_JPEG[:20], "truncated JPEG: the file ends "
                         "inside its header"),
    "JPEG without markers": (BIG_JPEG[:4] + b"\0" * (len(BIG_JPEG) - 4),
                             "damaged JPEG: no marker after byte 4"),
    "empty file": (b"", "empty file (0 bytes)"),
    "text named .jpg": (b"hello world", "not an image the decoder reads (it "
                        "starts with b'hello wo'"),
    "TIFF renamed": (_encode(_gradient(), "TIFF"), "a TIFF file, which the "
                     "decoder cannot read"),
    "truncated WebP": (_encode(_gradient(), "WEBP")[:40], "truncated WebP"),
    "truncated BMP": (BMP24[:-1], "truncated BMP"),
    "BMP with bytes after its pixels": (BMP24 + b"\0" * 4, "BMP with 4 bytes "
                                        "after its pixels"),
    "1-bit BMP": (_encode(_gradient(), "BMP", mode="1"), "a 1-bit BMP, which "
                  "the decoder cannot read"),
    "GIF header only": (_encode(_gradient(), "GIF")[:10], "truncated GIF"),
    # TF 2.21 aborts the process decoding it in tf.data: refused, and
    # refused by decode_image too (its own check, before TensorFlow's).
    "animated WebP": (_animated_webp(), "an animated WebP, which "
                      "TensorFlow's WebP decoder crashes on"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_header_check_refuses_only_what_tensorflow_refuses(name, tmp_path):
  content, reason = DAMAGED[name]
  path = tmp_path / "x"
  path.write_bytes(content)
  with pytest.raises(_image_files.BadImageFile) as caught:
    _image_files.inspect(str(path))
  assert str(caught.value).startswith(reason), str(caught.value)
  assert not _tf_decodes(content)          # the check refuses no good file


@pytest.mark.parametrize("content", [
    PNG + b"trailing bytes", JPEG + b"\0" * 300, PNG, JPEG, BMP24, JXL_8X8,
    _encode(_gradient(), "GIF")[:-1],       # no trailer: decoded all the same
    # Stray bytes inside the header: the decoder skips them (a warning).
    JPEG[:4] + b"\0" * 16 + JPEG[20:],
    _encode(_gradient(6, 10), "WEBP"),                 # VP8 (lossy)
    _encode(_gradient(6, 10), "WEBP", lossless=True),  # VP8L
    _encode(np.dstack([_gradient(6, 10), np.ones((6, 10), np.uint8)]),
            "WEBP"),                                   # VP8X (alpha)
], ids=["png+trailing", "jpeg+padding", "png", "jpeg", "bmp", "jxl",
        "gif-without-trailer", "jpeg-stray-bytes", "webp-vp8", "webp-vp8l",
        "webp-vp8x"])
def test_header_check_passes_what_tensorflow_decodes(content, tmp_path):
  path = tmp_path / "x"
  path.write_bytes(content)
  info = _image_files.inspect(str(path))
  if info.format == "WebP":
    assert (info.width, info.height) == (10, 6)
  elif info.format == "JPEG XL":                       # size not read
    assert (info.width, info.height) == (0, 0)
  else:
    assert info.format in ("PNG", "JPEG", "BMP", "GIF")
    assert (info.width, info.height) == (8, 8)
  assert _tf_decodes(content)


def test_palette_bmp_is_refused_as_tensorflow_reads_it_wrong(tmp_path):
  import tensorflow as tf
  content = _encode(_gradient(), "BMP", mode="P")
  path = tmp_path / "x.bmp"
  path.write_bytes(content)
  with pytest.raises(_image_files.BadImageFile, match="an 8-bit BMP with a "
                     "colour palette, which the decoder reads as gray levels"):
    _image_files.inspect(str(path))
  # Why: TensorFlow returns the palette indices, not the colours.
  wrong = tf.io.decode_image(content, channels=3).numpy()
  right = np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))
  assert np.abs(wrong.astype(int) - right).max() > 100


def test_oversized_and_unreadable_files_are_refused_before_decoding(
    tmp_path):
  huge = tmp_path / "huge.png"
  huge.write_bytes(_png_with_size(20000, 20000))
  with pytest.raises(_image_files.BadImageFile,
                     match=r"too large to decode safely: 20000 x 20000 pixels "
                     r"\(the limit is 178,956,970\); downscale it"):
    _image_files.inspect(str(huge))
  broken = tmp_path / "broken.png"
  os.symlink(tmp_path / "gone.png", broken)
  with pytest.raises(_image_files.BadImageFile,
                     match=r"broken symbolic link \(its target .*gone\.png "
                     "does not exist"):
    _image_files.inspect(str(broken))
  locked = tmp_path / "locked.png"
  locked.write_bytes(PNG)
  if os.geteuid() != 0:                     # root reads any file
    locked.chmod(0)
    with pytest.raises(_image_files.BadImageFile, match="cannot be read"):
      _image_files.inspect(str(locked))


# ------------------------------------------------ unreadable files in folders


def _pets(tmp_path, extra=None, per_class=5):
  files = {f"{c}/{i:02d}.png": _encode(
      np.full((8, 8, 3), 10 * k + i, np.uint8), "PNG")
           for k, c in enumerate(["cat", "dog", "emu"])
           for i in range(per_class)}
  files.update(extra or {})
  return _write(tmp_path / "pets", files)


def test_truncated_png_is_named_before_any_work(tmp_path):
  root = _pets(tmp_path, {"cat/bad.png": BIG_PNG[:100]})
  with pytest.raises(data.UnreadableImageError) as caught:
    data.load(root)
  message = str(caught.value)
  assert message.startswith("cat/bad.png: truncated PNG: the file ends inside "
                            "its IDAT chunk (100 bytes"), message
  assert f"In image folder {root}: delete or replace it" in message
  assert "skip_unreadable=True (on the command line: --skip_unreadable)" in (
      message)
  assert "\n" not in message and caught.value.records == ["cat/bad.png"]
  assert isinstance(caught.value, ValueError)     # one `error:` line in CLIs
  # Several: the first named, the others listed and counted.
  _write(tmp_path / "pets", {"dog/empty.jpg": b"", "emu/x.gif": b"GIF89a"})
  with pytest.raises(data.UnreadableImageError) as caught:
    data.load(root)
  assert str(caught.value).startswith(
      "cat/bad.png: truncated PNG: the file ends inside its IDAT chunk")
  assert ("; 2 more unreadable files: dog/empty.jpg (empty file (0 bytes)); "
          "emu/x.gif (truncated GIF: 6 bytes, shorter than its header). "
          "In image folder") in str(caught.value)
  assert caught.value.records == ["cat/bad.png", "dog/empty.jpg",
                                  "emu/x.gif"]


def test_skip_unreadable_logs_each_file_and_keys_like_deleting(tmp_path,
                                                               caplog):
  bad = {"cat/bad.png": BIG_PNG[:100],
         "dog/sub/idat.png": _corrupt_idat(PNG),
         "emu/empty.jpg": b""}
  root = _pets(tmp_path, bad)
  with caplog.at_level(logging.WARNING):
    ds = data.load(root, skip_unreadable=True)
  assert len(ds) == 15 and ds.num_classes == 3
  assert ds.describe()["per_class"] == {"cat": 5, "dog": 5, "emu": 5}
  assert ds.describe()["skipped_unreadable"] == sorted(bad)
  log = caplog.text
  assert "skipped cat/bad.png: truncated PNG" in log
  # Found by decoding (the header is intact), with the decoder's reason.
  assert ("skipped dog/sub/idat.png: cannot be decoded (Invalid PNG data, "
          "size") in log
  assert "skipped emu/empty.jpg: empty file (0 bytes)" in log
  assert ("skipped 3 unreadable files (skip_unreadable); using the other 15 "
          "images") in log
  pixels = np.rint(next(ds.batches(RAW, 15))[0][:, 0, 0, 0] * 255)
  np.testing.assert_array_equal(pixels, [10 * k + i for k in range(3)
                                         for i in range(5)])
  # The same files (an unchanged fingerprint, so cached features are found)
  # on every load; the same as deleting the skipped files.
  assert data.load(root, skip_unreadable=True).fingerprint == ds.fingerprint
  for rel in bad:
    os.unlink(os.path.join(root, rel))
  assert data.load(root).fingerprint == ds.fingerprint


def test_a_class_left_without_images_is_named(tmp_path):
  root = _pets(tmp_path, {"fox/a.png": BIG_PNG[:100], "fox/b.jpg": b""})
  with pytest.raises(ValueError, match=(
      r"Class folder 'fox' \(.*fox\) holds no usable images: its 2 image "
      r"files could not be read and were skipped \(fox/a\.png, fox/b\.jpg\)"
      r"\. Add images")):
    data.load(root, skip_unreadable=True)


def test_skip_unreadable_is_for_image_folders_only():
  with pytest.raises(ValueError, match="skip_unreadable leaves unreadable "
                     "files of an image folder out; 'digits' is not one"):
    data.load("digits", skip_unreadable=True)


def test_decode_failure_during_extraction_is_named_and_caches_nothing(
    tmp_path):
  """Damage the header check cannot see is named when it is decoded, by
  position in the stream (subsample and holdout included); the cache keeps
  no entry, and skipping it extracts and caches the rest."""
  import jax
  from sfda_jax.backbones.base import Backbone
  root = _pets(tmp_path, {"dog/03.png": _corrupt_idat(_encode(
      np.full((8, 8, 3), 13, np.uint8), "PNG"))})     # replaces a good one
  ds = data.load(root)
  batches = ds.batches(RAW, 4)
  assert next(batches)[0].shape == (4, 8, 8, 3)     # cat/00..03: fine
  with pytest.raises(data.UnreadableImageError) as caught:
    list(batches)
  assert str(caught.value).startswith(
      "dog/03.png: cannot be decoded (Invalid PNG data, size "), caught.value
  assert f"In image folder {root}: delete or replace it" in str(caught.value)
  for kwargs in ({"num_examples": 9, "seed": 3},
                 {"split": "train", "test_fraction": 0.2, "seed": 1},
                 {"split": "test", "test_fraction": 0.2, "seed": 1}):
    part = data.load(root, **kwargs)
    if not any(i.endswith("dog/03.png") for i in part.image_ids):
      list(part.batches(RAW, 2))               # the bad file is not in it
      continue
    with pytest.raises(data.UnreadableImageError, match=r"^dog/03\.png: "):
      list(part.batches(RAW, 2))
  backbone = Backbone(
      name="mean", preprocessing=RAW, feature_dim=3, num_source_classes=None,
      weights_id="mean", params=None,
      apply_fn=jax.jit(lambda p, x: (x.mean(axis=(1, 2)), None)))
  cache = tmp_path / "cache"
  with pytest.raises(data.UnreadableImageError, match=r"^dog/03\.png: "):
    features.extract(backbone, ds, batch_size=2, cache_dir=str(cache),
                     checkpoint_every=2, progress=False)
  entries = [f for _, _, files in os.walk(cache) for f in files]
  assert not [f for f in entries if f.endswith(".npz") and "part-" not in f]
  assert not [f for f in entries if f.startswith(".tmp-")]
  skipping = data.load(root, skip_unreadable=True)
  first = features.extract(backbone, skipping, batch_size=2,
                           cache_dir=str(cache), progress=False)
  assert first.features.shape == (14, 3) and not first.from_cache
  again = features.extract(backbone, data.load(root, skip_unreadable=True),
                           batch_size=2, cache_dir=str(cache), progress=False)
  assert again.from_cache
  np.testing.assert_array_equal(again.features, first.features)


def test_an_interrupted_skipping_extraction_resumes(tmp_path, caplog):
  import jax
  from sfda_jax.backbones.base import Backbone
  root = _pets(tmp_path, {"cat/bad.png": BIG_PNG[:100]}, per_class=8)
  calls, interrupted = [], []

  def apply(params, images):
    calls.append(images.shape[0])
    if len(calls) == 5 and not interrupted:
      interrupted.append(True)
      raise KeyboardInterrupt
    return images.mean(axis=(1, 2)), None

  backbone = Backbone(name="mean", preprocessing=RAW, feature_dim=3,
                      num_source_classes=None, weights_id="mean",
                      params=None, apply_fn=apply)
  cache = str(tmp_path / "cache")
  with pytest.raises(features.ExtractionInterrupted,
                     match="interrupted at 8/24 images of mean; 8 are "
                     "checkpointed"):
    features.extract(backbone, data.load(root, skip_unreadable=True),
                     batch_size=2, cache_dir=cache, checkpoint_every=4,
                     progress=False)
  calls.clear()
  with caplog.at_level(logging.INFO):
    result = features.extract(backbone, data.load(root, skip_unreadable=True),
                              batch_size=2, cache_dir=cache,
                              checkpoint_every=4, progress=False)
  assert "resuming mean on" in caplog.text and "at 8/24 images" in caplog.text
  assert len(calls) == 8 and result.features.shape == (24, 3)


# --------------------------------------------------------- formats and files


def test_every_format_the_decoder_reads_is_used_and_others_reported(
    tmp_path, caplog):
  pixels = _gradient()
  rgba = np.concatenate([pixels, np.full((8, 8, 1), 7, np.uint8)], axis=-1)
  gray = pixels[..., 0]
  lossless = {   # relative path: (bytes, expected RGB pixels)
      "a/png_rgb.png": (PNG, pixels),
      "a/png_rgba.PNG": (_encode(rgba, "PNG"), pixels),
      "a/png_gray.png": (_encode(gray, "PNG"), np.repeat(gray[..., None], 3,
                                                         -1)),
      "a/png_16bit.png": (_encode((gray.astype(np.uint16) * 257), "PNG"),
                          np.repeat(gray[..., None], 3, -1)),
      "a/png_palette.png": _with_pil_pixels(_encode(pixels, "PNG", mode="P")),
      "a/bmp24.Bmp": (BMP24, pixels),
      "a/bmp32.bmp": (_encode(rgba, "BMP"), pixels),
      "a/bmp8_gray.bmp": (_encode(gray, "BMP"), np.repeat(gray[..., None], 3,
                                                          -1)),
      "b/gif.GIF": _with_pil_pixels(_encode(pixels, "GIF")),
      "b/webp_rgb.webp": (_encode(pixels, "WEBP", lossless=True), pixels),
      "b/webp_rgba.WEBP": (_encode(rgba, "WEBP", lossless=True), pixels),
      "b/jxl.jxl": (JXL_8X8, pixels),
  }
  lossy = {"b/jpeg.JPG": JPEG, "b/jpeg.jpeg": JPEG, "b/jpeg.jfif": JPEG,
           "b/jpeg_gray.jpe": _encode(gray, "JPEG", quality=95)}
  others = {"a/scan.tif": _encode(pixels, "TIFF"), "a/notes.txt": b"notes",
            "b/phone.heic": b"\0\0\0\x18ftypheic", "b/README": b"read me",
            "a/.DS_Store": b"\0", "b/._jpeg.jpg": b"\0",       # hidden
            "a/.hidden/x.png": PNG}
  root = _write(tmp_path / "formats", {
      **{rel: content for rel, (content, _) in lossless.items()}, **lossy,
      **others, "stray.jpg": JPEG})
  with caplog.at_level(logging.WARNING):
    ds = data.load(root)
    data.load(root)                             # reported once
  expected_names = sorted(list(lossless) + list(lossy))
  assert sorted(os.path.relpath(p, root) for p in ds.image_ids) == (
      expected_names)
  warnings = [r.getMessage() for r in caplog.records]
  unsupported = [w for w in warnings if "unsupported extensions" in w]
  assert unsupported == [
      f"Image folder {root}: ignored 4 files with unsupported extensions: "
      "(no extension) (1: b/README), .heic (1: b/phone.heic), .tif (1: "
      "a/scan.tif), .txt (1: a/notes.txt). Images are read from .jpg, .jpeg,"
      " .jpe, .jfif, .png, .gif, .bmp, .webp, .jxl files (any case); convert "
      "the others to use them."]
  assert [w for w in warnings if "outside the class" in w] == [
      f"Image folder {root}: ignored 1 file outside the class sub-folders: "
      ".jpg (1: stray.jpg)."]
  images, _ = next(ds.batches(RAW, len(ds)))
  by_name = dict(zip(sorted(expected_names), images))
  for rel, (_, want) in lossless.items():
    np.testing.assert_array_equal(np.rint(by_name[rel] * 255), want,
                                  err_msg=rel)
  for rel, content in lossy.items():
    want = np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))
    # TensorFlow's JPEG decoder (fast integer DCT) is not PIL's.
    assert np.abs(by_name[rel] * 255 - want).max() < 24, rel


def test_exif_orientation_is_applied_like_pil(tmp_path):
  """A JPEG with EXIF orientation k decodes to what PIL's exif_transpose
  shows, for all 8 orientations; a non-square picture of four colours
  catches any wrong turn or mirror."""
  from sfda_jax.data._folder import FolderSource
  picture = np.zeros((16, 32, 3), np.uint8)
  picture[:8, :16] = (255, 0, 0)
  picture[:8, 16:] = (0, 255, 0)
  picture[8:, :16] = (0, 0, 255)
  picture[8:, 16:] = (255, 255, 255)
  files = {}
  for k in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = k
    files[f"c/{k}.jpg"] = _encode(picture, "JPEG", quality=100,
                                  exif=exif.tobytes())
  root = _write(tmp_path / "turned", files)
  source = FolderSource(root)
  decoded = [source.decode(raw).numpy() for raw, _ in source.records()]
  for k, image in zip(range(1, 9), decoded):
    want = np.asarray(ImageOps.exif_transpose(
        Image.open(os.path.join(root, "c", f"{k}.jpg"))).convert("RGB"))
    assert image.shape == want.shape, k
    assert np.abs(image - want.astype(np.float32)).max() < 16, k
  assert decoded[5].shape == (32, 16, 3)        # 6: turned 90 degrees


def test_large_image_is_resized_on_its_own(tmp_path):
  """A 4000 x 3000 photo goes through with small ones: decoded and resized
  per image (memory follows the images in flight, not their number), as
  PIL resizes it; one declaring more than MAX_IMAGE_PIXELS is refused
  before decoding."""
  y, x = np.mgrid[0:3000, 0:4000]
  big = np.stack([x * 255 // 3999, y * 255 // 2999,
                  np.full_like(x, 90)], -1).astype(np.uint8)
  root = _write(tmp_path / "big", {"a/big.jpg": _encode(big, "JPEG",
                                                        quality=90),
                                   "a/small.png": PNG, "b/small.png": PNG})
  prep = Preprocessing(32, 32, (0.0,) * 3, (1.0,) * 3)
  images, labels = next(data.load(root).batches(prep, 8))
  assert images.shape == (3, 32, 32, 3) and list(labels) == [0, 0, 1]
  want = np.asarray(Image.fromarray(big).resize((42, 32), Image.BILINEAR))
  assert np.abs(images[0] * 255 - want[:, 5:37]).max() < 6
  _write(tmp_path / "big", {"b/bomb.png": _png_with_size(20000, 20000)})
  with pytest.raises(data.UnreadableImageError,
                     match=r"^b/bomb\.png: too large to decode safely"):
    data.load(root)


# ---------------------------------------------------------- folder shapes


def test_folder_shapes_a_user_meets(tmp_path):
  # Nested sub-folders, upper-case extensions, non-ASCII and non-UTF-8
  # names: all found, ordered by relative path, decoded.
  odd = os.fsdecode(b"caf\xe9-latin1.png")       # not valid UTF-8
  root = _write(tmp_path / "mixed", {
      "Ñandú/2 日本.PNG": PNG, "Ñandú/a/b/c/deep.JpEg": JPEG,
      f"Ñandú/{odd}": PNG, "cat/x.png": PNG, "cat/y.png": PNG})
  ds = data.load(root)
  assert ds.class_names == ["cat", "Ñandú"]
  assert [os.path.relpath(p, root) for p in ds.image_ids] == [
      "cat/x.png", "cat/y.png", "Ñandú/2 日本.PNG", "Ñandú/a/b/c/deep.JpEg",
      f"Ñandú/{odd}"]
  images, labels = next(ds.batches(RAW, 8))
  assert images.shape == (5, 8, 8, 3) and list(labels) == [0, 0, 1, 1, 1]
  # A damaged file with such a name is still named on one printable line.
  bad_name = "cat/" + os.fsdecode(b"bad-\xff.png")
  _write(tmp_path / "mixed", {bad_name: BIG_PNG[:100]})
  with pytest.raises(data.UnreadableImageError,
                     match=r"^cat/bad-\\udcff\.png: truncated PNG"):
    data.load(root)


def test_symbolic_links(tmp_path):
  outside = _write(tmp_path / "outside", {"pic.png": PNG, "more/m.png": PNG})
  root = tmp_path / "linked"
  _write(root, {"cat/real.png": PNG, "dog/d.png": PNG})
  os.symlink(os.path.join(outside, "pic.png"), root / "cat" / "link.png")
  os.symlink(os.path.join(outside, "more"), root / "cat" / "more")
  os.symlink(root / "cat", root / "cat" / "loop")      # a cycle: once
  os.symlink(outside, root / "emu")                   # a linked class
  ds = data.load(str(root))
  assert ds.class_names == ["cat", "dog", "emu"]
  assert [os.path.relpath(p, str(root)) for p in ds._source._paths] == [
      "cat/link.png", "cat/more/m.png", "cat/real.png", "dog/d.png",
      "emu/more/m.png", "emu/pic.png"]
  # Ids are real paths: a file reached through two links is one image.
  assert len(set(ds.image_ids)) == 4
  assert len(next(ds.batches(RAW, 8))[0]) == 6
  os.symlink(tmp_path / "gone.png", root / "dog" / "dangling.png")
  with pytest.raises(data.UnreadableImageError,
                     match=r"^dog/dangling\.png: broken symbolic link"):
    data.load(str(root))
  assert len(data.load(str(root), skip_unreadable=True)) == 6


def test_empty_single_image_and_single_class_folders(tmp_path):
  root = _pets(tmp_path)
  (tmp_path / "pets" / "fox").mkdir()
  with pytest.raises(ValueError, match=r"Class folder 'fox' \(.*\) holds no "
                     r"usable images: it is empty\. Add images"):
    data.load(root)
  shutil.rmtree(tmp_path / "pets" / "fox")
  _write(tmp_path / "pets", {"fox/only.png": PNG})
  assert len(data.load(root)) == 16          # fine unsplit
  with pytest.raises(ValueError, match="class 'fox' has only 1 image"):
    data.load(root, "test", test_fraction=0.2)
  import sfda_jax
  config = sfda_jax.RankConfig(dataset=root, models="pixels", num_examples=0,
                               resamples=0, ground_truth="none",
                               cache_dir=str(tmp_path / "cache"))
  with pytest.raises(ValueError, match=r"cannot be scored: .*\['fox'\] with "
                     r"counts \[1\]"):
    sfda_jax.rank_zoo(config)
  single = _write(tmp_path / "single", {"cat/a.png": PNG, "cat/b.png": PNG})
  ds = data.load(single)
  assert ds.num_classes == 1 and len(ds) == 2
  import dataclasses
  with pytest.raises(ValueError, match=r"at least 2 distinct classes, got 1 "
                     r"\(\['cat'\]\)"):
    sfda_jax.rank_zoo(dataclasses.replace(config, dataset=single))
  assert not (tmp_path / "cache").exists()       # nothing was extracted


# --------------------------------------------------------------- TFDS


def test_tfds_record_that_fails_to_decode_is_named(tmp_path):
  import tensorflow as tf
  import tensorflow_datasets as tfds

  def as_dataset(self, split, **kwargs):
    del self, split, kwargs
    examples = [{"image": b"not an image" if i == 3 else PNG, "label": i % 2,
                 "file_name": f"{i}.png"} for i in range(6)]
    return tf.data.Dataset.from_generator(
        lambda: iter(examples), output_signature={
            "image": tf.TensorSpec((), tf.string),
            "label": tf.TensorSpec((), tf.int64),
            "file_name": tf.TensorSpec((), tf.string)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    ds = data.load("oxford_flowers102", data_dir=str(tmp_path))
    assert len(ds) == 6
    batches = ds.batches(RAW, 2)
    assert len(next(batches)[0]) == 2
    with pytest.raises(data.UnreadableImageError) as caught:
      list(batches)
  message = str(caught.value)
  assert message.startswith(
      "TFDS dataset 'oxford_flowers102' split 'train', record 3: its image "
      "cannot be decoded (Unknown image file format"), message
  assert "the prepared files in" in message and "prepare the dataset again" \
      in message
  assert caught.value.records == [
      "TFDS dataset 'oxford_flowers102' split 'train', record 3"]
