"""Shared fixtures: a scoped float64 switch and synthetic labelled features.

Also turns on JAX's persistent compilation cache for the test run (and, via
the environment, for the entry points the tests start as subprocesses): the
suite compiles the same few hundred kernels on every run, and on this 2-core
machine compilation is most of the fast subset's time. The cache lives in
``<repo>/.jax_cache`` (git-ignored); ``SFDA_JAX_TEST_CACHE=off`` disables
it, ``SFDA_JAX_TEST_CACHE=<dir>`` moves it. Cache keys cover the program,
the jax/jaxlib version, the backend and the XLA flags, so a stale entry is
never reused; a cold cache only costs time (BUILD_NOTES.md "Tests" has both
timings).
"""

import contextlib
import fcntl
import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)

_CACHE = os.environ.get("SFDA_JAX_TEST_CACHE",
                        os.path.join(REPO_ROOT, ".jax_cache"))
if _CACHE != "off":
  # Before jax is imported, so this process and its subprocesses agree.
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, TESTS_DIR)   # `from conftest import ...` in every subfolder

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


@contextlib.contextmanager
def _x64_on():
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64():
  """Runs a test with ``jax_enable_x64`` on, restoring the previous value."""
  with _x64_on():
    yield


@pytest.fixture
def x64_scope():
  """A context manager factory: ``with x64_scope(): ...`` turns
  ``jax_enable_x64`` on for part of a test only."""
  return _x64_on


def make_features(n, d, k, seed=0, separation=2.0, unbalanced=True,
                  label_ids=None, dtype=np.float64):
  """Gaussian classes with random means; optionally unbalanced counts and
  non-contiguous ids. Every class gets at least 2 samples."""
  rng = np.random.default_rng(seed)
  if unbalanced:
    weights = rng.uniform(0.3, 1.0, size=k)
  else:
    weights = np.ones(k)
  counts = np.maximum(2, np.floor(n * weights / weights.sum())).astype(int)
  counts[0] += n - counts.sum()
  assert counts.min() >= 2, counts
  codes = rng.permutation(np.repeat(np.arange(k), counts))
  means = rng.normal(size=(k, d)) * separation / np.sqrt(min(d, k) + 1.0)
  scales = rng.uniform(0.5, 1.5, size=d)
  x = means[codes] + rng.normal(size=(n, d)) * scales
  x = 0.5 + 0.7 * x
  if label_ids is None:
    label_ids = np.sort(rng.choice(np.arange(-50, 10 * k + 50), size=k,
                                   replace=False))
  return x.astype(dtype), np.asarray(label_ids)[codes]


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
  """A data_dir with TFDS fashion_mnist prepared from the Debian files.

  Prepared once per test run: pytest-xdist workers share it (under a lock).
  """
  if not os.path.isdir(FMNIST_DIR):
    pytest.skip(f"{FMNIST_DIR} absent: apt-get install -y "
                "dataset-fashion-mnist")
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # Shared by all workers of this run.
  data_dir = root / "tfds_fashion_mnist"
  with open(root / "tfds_fashion_mnist.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    # Not prepared there yet: `load` prepares it from the Debian files.
    from sfda_jax import data
    data.load("fashion_mnist", split="test", data_dir=str(data_dir))
  return str(data_dir)


def run_entry_point(args, cwd, timeout=300):
  """Runs ``python -m <args>`` in ``cwd``; a run past ``timeout`` s fails.

  No retry: the XLA:CPU hang that once needed one (concurrent batched LAPACK
  calls, see ``sfda_jax.metrics.stats``) is fixed and has its own test.
  """
  import subprocess
  return subprocess.run([sys.executable, "-m", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout)


def fast_subset(params, fast_ids):
  """Marks every ``pytest.param`` of an exhaustive grid whose id is not in
  ``fast_ids`` slow.

  The edit-test loop (``-m "not slow"``) runs one representative case per
  behaviour; ``.ci/run`` runs the whole grid. Parity and property claims are
  made by the whole grid, so the fast subset is a smoke test, not a proof.
  """
  unknown = set(fast_ids) - {p.id for p in params}
  assert not unknown, f"fast ids not in the grid: {sorted(unknown)}"
  return [p if p.id in fast_ids else
          pytest.param(*p.values, id=p.id, marks=(*p.marks, pytest.mark.slow))
          for p in params]


def slow_for(values, slow):
  """``values`` as ``pytest.param``s (id ``str(value)``), those in ``slow``
  marked slow: a parametrized test keeps its cheap cases in the fast loop."""
  unknown = set(slow) - set(values)
  assert not unknown, f"slow values not in the list: {sorted(unknown)}"
  return [pytest.param(v, id=str(v),
                       marks=pytest.mark.slow if v in slow else ())
          for v in values]


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops JAX's in-memory compiled programs after each test module.

  A test worker compiles thousands of programs over the whole suite; each
  keeps memory mappings, and with the metrics of issue 13 one long-lived
  worker crossed the kernel's per-process mapping limit (vm.max_map_count
  = 65530 here): LLVM failed with "Cannot allocate memory" and the worker
  segfaulted. Programs still needed are reloaded from the persistent cache
  (``.jax_cache``), so this costs little time.
  """
  yield
  jax.clear_caches()
  for fn in (_lru_cached()):
    fn.cache_clear()


def _lru_cached():
  """The package's memoised jit wrappers (they hold compiled programs)."""
  from sfda_jax import ranking, uncertainty  # pylint: disable=import-outside-toplevel
  from sfda_jax.metrics import _runner  # pylint: disable=import-outside-toplevel
  return (_runner.jitted, ranking._batched_fn, uncertainty._resampled_fn)
