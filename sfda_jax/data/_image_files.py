"""Image files on disk: the formats the decoder reads, and a cheap check of one.

The input pipeline decodes with TensorFlow (:func:`sfda_jax.data._pipeline.
decode_image`), which reads JPEG, PNG, GIF, BMP, WebP and JPEG XL, recognised
by content whatever the extension. :func:`inspect` reads a file's header and,
where cheap, its last bytes (never the pixels) and either returns what it is
(:class:`ImageInfo`: format, size, EXIF orientation) or raises
:class:`BadImageFile` saying why the decoder would refuse it:

* it cannot be opened (permissions, a broken symbolic link), it is empty, or
  its content is no format the decoder reads (a text file named ``.jpg``, a
  TIFF or HEIC file renamed);
* it is cut short where the format makes that visible: a PNG without its
  ``IEND`` chunk, a JPEG without its end-of-image marker or ending inside its
  header, a WebP shorter than its RIFF header says, a BMP whose size is not
  the one its header implies (TensorFlow's BMP decoder refuses both shorter
  and longer files), a GIF without a complete header;
* a BMP with a bit depth or compression TensorFlow cannot decode, or with
  an 8-bit colour palette (TensorFlow ignores the palette and returns the
  indices as gray levels: wrong colours, no error); an
  animated WebP (TF 2.21 corrupts the heap decoding one in a tf.data
  pipeline: the process aborts);
* more than :data:`MAX_IMAGE_PIXELS` pixels (a decompression bomb, or an image
  that would take gigabytes once decoded).

Each of these is a file TensorFlow fails on (checked against TF 2.21 in
``tests/data/test_messy_folders.py``), so the check refuses nothing the
decoder reads, except the palette BMP, which it reads wrongly. It is not a full decode: damage inside the compressed pixels
(a flipped byte in a PNG's ``IDAT``, a corrupt JPEG scan) is only found when
the image is decoded.

No TensorFlow here: pure Python file reads.
"""

from __future__ import annotations

import dataclasses
import os
import struct

__all__ = ["ANIMATED_WEBP", "BadImageFile", "IMAGE_EXTENSIONS", "ImageInfo",
           "MAX_IMAGE_PIXELS", "inspect"]

# The extensions an image folder takes, lower case (matched in any case):
# every format tf.io.decode_image reads (TF 2.21).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp",
                    ".webp", ".jxl")

# Images with more pixels are refused before decoding: PIL's decompression
# bomb limit (2 x 89,478,485). Decoded and cast to float32 for resizing, such
# an image takes ~2.7 GB per image in flight.
MAX_IMAGE_PIXELS = 178_956_970

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")
# Formats the decoder does not read, by their first bytes (a better message
# than "unknown format").
_OTHER_FORMATS = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                  (b"%PDF", "PDF"), (b"8BPS", "Photoshop (PSD)"),
                  (b"\x00\x00\x01\x00", "ICO"), (b"qoif", "QOI"))
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF",
                b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
# JPEG start-of-frame markers (the frame header holds the image size).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_HEAD = 64
# TF 2.21 corrupts the heap decoding an animated WebP in a tf.data pipeline:
# refused here and, with the same message, by _pipeline.decode_image.
ANIMATED_WEBP = ("an animated WebP, which TensorFlow's WebP decoder crashes "
                  "on; save its first frame as a still image")


class BadImageFile(Exception):
  """A file the decoder would refuse; the message says why (no path)."""


@dataclasses.dataclass(frozen=True)
class ImageInfo:
  """What :func:`inspect` found in a file's header.

  Attributes:
    format: ``"JPEG"``, ``"PNG"``, ``"GIF"``, ``"BMP"``, ``"WebP"`` or
      ``"JPEG XL"``.
    width: pixels across (0: not read, JPEG XL).
    height: pixels down (0: not read, JPEG XL).
    orientation: EXIF orientation, 1 (upright) to 8; JPEG files only, 1
      otherwise.
  """
  format: str
  width: int
  height: int
  orientation: int = 1


def inspect(path: str) -> ImageInfo:
  """Checks that ``path`` looks decodable, reading only headers and ends.

  Args:
    path: an image file.

  Returns:
    Its :class:`ImageInfo`.

  Raises:
    BadImageFile: the decoder would refuse it; the message says why and is
      meant to follow the file's name.
  """
  if os.path.islink(path) and not os.path.exists(path):
    raise BadImageFile(f"broken symbolic link (its target "
                       f"{os.readlink(path)} does not exist)")
  try:
    with open(path, "rb") as f:
      size = os.fstat(f.fileno()).st_size
      head = f.read(_HEAD)
      info = _inspect_open(f, head, size)
  except OSError as e:
    raise BadImageFile(f"cannot be read ({e.strerror or e})") from None
  if info.width * info.height > MAX_IMAGE_PIXELS:
    raise BadImageFile(
        f"too large to decode safely: {info.width} x {info.height} pixels "
        f"(the limit is {MAX_IMAGE_PIXELS:,}); downscale it")
  if info.format != "JPEG XL" and not (info.width and info.height):
    raise BadImageFile(f"its {info.format} header declares an empty "
                       f"{info.width} x {info.height} image")
  return info


def _cut_short(name: str, where: str, size: int, detail: str = ""
               ) -> BadImageFile:
  return BadImageFile(f"truncated {name}: the file ends {where} ({size:,} "
                      f"bytes{detail})")


def _inspect_open(f, head: bytes, size: int) -> ImageInfo:
  if not head:
    raise BadImageFile("empty file (0 bytes)")
  if head.startswith(b"\xff\xd8\xff"):
    return _jpeg(f, size)
  if head.startswith(_PNG_SIGNATURE):
    return _png(f, head, size)
  if head[:6] in (b"GIF87a", b"GIF89a"):
    if size < 13:
      raise BadImageFile(f"truncated GIF: {size} bytes, shorter than its "
                         "header")
    width, height = struct.unpack("<HH", head[6:10])
    return ImageInfo("GIF", width, height)
  if head.startswith(b"BM"):
    return _bmp(f, head, size)
  if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
    return _webp(head, size)
  if head.startswith(_JXL_SIGNATURES):
    return ImageInfo("JPEG XL", 0, 0)
  raise BadImageFile(_not_an_image(head))


def _not_an_image(head: bytes) -> str:
  name = next((n for magic, n in _OTHER_FORMATS if head.startswith(magic)),
              None)
  if name is None and head[4:8] == b"ftyp":
    name = _FTYP_BRANDS.get(head[8:12])
  readable = "JPEG, PNG, GIF, BMP, WebP and JPEG XL"
  if name:
    return (f"a {name} file, which the decoder cannot read (it reads "
            f"{readable}); convert it to PNG or JPEG")
  return (f"not an image the decoder reads (it starts with {head[:8]!r}; "
          f"{readable} are read)")


def _jpeg(f, size: int) -> ImageInfo:
  """Walks the marker segments up to the first scan; checks the end marker."""
  pos, width, height, orientation = 2, 0, 0, 1
  while True:
    f.seek(pos)
    marker = f.read(4)
    if len(marker) < 2:
      raise _cut_short("JPEG", "inside its header", size)
    if marker[0] != 0xFF:
      # Stray bytes before a marker: the decoder skips them (with a
      # warning), so does this walk.
      f.seek(pos)
      skip = f.read(1 << 16).find(b"\xff")
      if skip < 0:
        raise BadImageFile(f"damaged JPEG: no marker after byte {pos:,} of "
                           "its header")
      pos += skip
      continue
    code = marker[1]
    if code == 0xFF:                       # fill byte
      pos += 1
      continue
    if code in (0x01, *range(0xD0, 0xD8)):  # markers without a length
      pos += 2
      continue
    if len(marker) < 4:
      raise _cut_short("JPEG", "inside its header", size)
    length = struct.unpack(">H", marker[2:4])[0]
    if code == 0xDA:                       # start of scan: header complete
      break
    segment = f.read(length - 2) if code in _JPEG_SOF or code == 0xE1 else b""
    if code in _JPEG_SOF and len(segment) >= 5:
      height, width = struct.unpack(">HH", segment[1:5])
    elif code == 0xE1 and segment.startswith(b"Exif\x00\x00"):
      orientation = _exif_orientation(segment[6:])
    pos += 2 + length
    if pos > size:
      raise _cut_short("JPEG", "inside its header", size)
  if not width:
    raise BadImageFile("damaged JPEG: no frame header before its image data")
  f.seek(max(size - 2, 0))
  if f.read(2) != b"\xff\xd9":
    # Data after the end marker is allowed (and decoded fine): look for it.
    f.seek(pos)
    if b"\xff\xd9" not in f.read():
      raise BadImageFile(f"truncated JPEG: no end-of-image marker, the file "
                         f"was cut short ({size:,} bytes)")
  return ImageInfo("JPEG", width, height, orientation)


def _exif_orientation(tiff: bytes) -> int:
  """The Orientation tag (0x0112) of IFD0 of an EXIF TIFF block, or 1."""
  try:
    order = {b"II": "<", b"MM": ">"}[tiff[:2]]
    offset = struct.unpack(order + "I", tiff[4:8])[0]
    count = struct.unpack(order + "H", tiff[offset:offset + 2])[0]
    for i in range(count):
      entry = tiff[offset + 2 + 12 * i:offset + 14 + 12 * i]
      tag, kind = struct.unpack(order + "HH", entry[:4])
      if tag == 0x0112 and kind == 3:      # SHORT
        value = struct.unpack(order + "H", entry[8:10])[0]
        return value if 1 <= value <= 8 else 1
  except (KeyError, struct.error):
    pass
  return 1


def _png(f, head: bytes, size: int) -> ImageInfo:
  if len(head) < 24 or head[12:16] != b"IHDR":
    raise BadImageFile(f"truncated or damaged PNG: no image header "
                       f"({size} bytes)")
  width, height = struct.unpack(">II", head[16:24])
  f.seek(max(size - 12, 0))
  if f.read(12) != _PNG_IEND:
    # Walk the chunks: data after IEND is allowed (and decoded fine).
    pos = 8
    while True:
      f.seek(pos)
      chunk = f.read(8)
      if len(chunk) < 8:
        raise _cut_short("PNG", "before its IEND chunk", size)
      length, kind = struct.unpack(">I4s", chunk)
      if kind == b"IEND":
        break
      pos += 12 + length
      if pos > size:
        raise _cut_short("PNG", f"inside its {kind.decode('latin-1')} chunk",
                         size, f", the chunk ends at byte {pos:,}")
  return ImageInfo("PNG", width, height)


def _bmp(f, head: bytes, size: int) -> ImageInfo:
  if len(head) < 26:
    raise BadImageFile(f"truncated BMP: {size} bytes, shorter than its "
                       "header")
  offset, header_size = struct.unpack("<II", head[10:18])
  if header_size == 12:                    # OS/2 BITMAPCOREHEADER
    width, height, _, bits = struct.unpack("<HHHH", head[18:26])
    compression = 0
  elif len(head) >= 34:
    width, height, _, bits, compression = struct.unpack("<iiHHI", head[18:34])
  else:
    raise BadImageFile(f"truncated BMP: {size} bytes, shorter than its "
                       "header")
  if bits not in (8, 24, 32):
    raise BadImageFile(f"a {bits}-bit BMP, which the decoder cannot read (it "
                       "reads 8-, 24- and 32-bit BMPs); convert it to PNG")
  if compression not in (0, 3):            # BI_RGB, BI_BITFIELDS
    raise BadImageFile("a compressed (RLE) BMP, which the decoder cannot "
                       "read; convert it to PNG")
  if bits == 8 and header_size >= 40 and not _gray_palette(f, head,
                                                           header_size):
    raise BadImageFile("an 8-bit BMP with a colour palette, which the decoder "
                       "reads as gray levels (wrong colours); convert it to "
                       "PNG")
  height = abs(height)
  expected = offset + (bits * width + 31) // 32 * 4 * height
  if size < expected:
    raise BadImageFile(f"truncated BMP: {size:,} bytes, its header needs "
                       f"{expected:,}")
  if size > expected:
    raise BadImageFile(f"BMP with {size - expected:,} bytes after its pixels, "
                       "which the decoder refuses; re-save it")
  return ImageInfo("BMP", width, height)


def _gray_palette(f, head: bytes, header_size: int) -> bool:
  """Whether an 8-bit BMP's palette maps each index to that gray level
  (what TensorFlow assumes: it ignores the palette)."""
  used = struct.unpack("<I", head[46:50])[0] or 256
  f.seek(14 + header_size)
  palette = f.read(4 * used)
  return all(palette[4 * i:4 * i + 3] == bytes((i, i, i))
             for i in range(len(palette) // 4))


def _webp(head: bytes, size: int) -> ImageInfo:
  declared = 8 + struct.unpack("<I", head[4:8])[0]
  if size < declared or len(head) < 30:
    raise BadImageFile(f"truncated WebP: {size:,} bytes, its header says "
                       f"{declared:,}")
  kind = head[12:16]
  if kind == b"VP8 ":
    width, height = struct.unpack("<HH", head[26:30])
    width, height = width & 0x3FFF, height & 0x3FFF
  elif kind == b"VP8L":
    bits = struct.unpack("<I", head[21:25])[0]
    width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
  elif kind == b"VP8X":
    if head[20] & 0x02:
      raise BadImageFile(ANIMATED_WEBP)
    width = int.from_bytes(head[24:27], "little") + 1
    height = int.from_bytes(head[27:30], "little") + 1
  else:
    raise BadImageFile(f"damaged WebP: unknown first chunk {kind!r}")
  return ImageInfo("WebP", width, height)
