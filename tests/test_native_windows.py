"""The im2col windows as a C++ custom call: the same values as XLA's, for
every shape, dtype and batching the models use; a clear reason when it
cannot be built, and ``auto`` falling back to XLA's windows then."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metalearn as ml
from metalearn.models import im2col
from metalearn.models import native_windows


@pytest.mark.parametrize("shape", [(2, 6, 5, 3), (3, 28, 28, 1),
                                   (4, 1, 1, 2), (1, 2, 3, 4, 7, 5)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int8])
def test_windows_equal_xla_windows(shape, dtype):
  x = (10 * jax.random.normal(jax.random.key(0), shape)).astype(dtype)
  got = jax.jit(native_windows.windows)(x)
  assert got.shape == (*shape[:-1], 9 * shape[-1]) and got.dtype == dtype
  images = x.reshape(-1, *shape[-3:])  # XLA's windows take [B, H, W, C]
  np.testing.assert_array_equal(
      got, im2col.windows(images).reshape(got.shape))


def test_windows_in_float64():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(1), (2, 5, 4, 3), jnp.float64)
    np.testing.assert_array_equal(native_windows.windows(x),
                                  im2col.windows(x))


def test_windows_under_nested_vmap_match_a_loop():
  x = jax.random.normal(jax.random.key(2), (3, 2, 4, 6, 5, 2))
  batched = jax.jit(jax.vmap(jax.vmap(native_windows.windows)))(x)
  for t in range(3):
    for u in range(2):
      np.testing.assert_array_equal(batched[t, u], im2col.windows(x[t, u]))


@pytest.mark.parametrize("shape", [(2, 6, 5, 3), (3, 28, 28, 1),
                                   (4, 1, 1, 2), (2, 7, 7, 32),
                                   (1, 20, 9, 2), (1, 2, 3, 4, 7, 5)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int8])
def test_tap_major_windows_are_the_windows_moved_to_the_front(shape, dtype):
  # Widths below, at and above the kernel's 8-element row copies, and the
  # last rows of the output, which it copies exactly.
  x = (10 * jax.random.normal(jax.random.key(3), shape)).astype(dtype)
  got = jax.jit(native_windows.tap_major_windows)(x)
  assert got.shape == (9 * shape[-1], *shape[:-1]) and got.dtype == dtype
  np.testing.assert_array_equal(
      got, jnp.moveaxis(native_windows.windows(x), -1, 0))


def test_tap_major_windows_in_float64():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(4), (2, 5, 4, 3), jnp.float64)
    np.testing.assert_array_equal(native_windows.tap_major_windows(x),
                                  jnp.moveaxis(im2col.windows(x), -1, 0))


def test_tap_major_windows_under_nested_vmap_match_a_loop():
  # vmap's axes stay in front of the 9 C axis, the images' come after it.
  x = jax.random.normal(jax.random.key(5), (3, 2, 4, 6, 5, 2))
  batched = jax.jit(jax.vmap(jax.vmap(native_windows.tap_major_windows)))(x)
  assert batched.shape == (3, 2, 18, 4, 6, 5)
  for t in range(3):
    for u in range(2):
      np.testing.assert_array_equal(
          batched[t, u], jnp.moveaxis(im2col.windows(x[t, u]), -1, 0))


def test_windows_need_an_image_axis():
  with pytest.raises(ValueError, match=r"\[\.\.\., H, W, C\]"):
    native_windows.windows(jnp.zeros((4, 3)))
  with pytest.raises(ValueError, match=r"\[\.\.\., H, W, C\]"):
    native_windows.tap_major_windows(jnp.zeros((4, 3)))


def test_unbuildable_kernel_gives_a_reason(monkeypatch, tmp_path):
  monkeypatch.setenv(native_windows.NATIVE_DIR_ENV, str(tmp_path))
  monkeypatch.setenv("CXX", "no-such-compiler-here")
  assert "no C++ compiler (no-such-compiler-here)" in (
      native_windows.unavailable_reason.__wrapped__())
  monkeypatch.setenv("CXX", "false")  # found, and exits 1
  assert "failed" in native_windows.unavailable_reason.__wrapped__()
  assert not list(tmp_path.glob("*.so"))  # no half-written library left


def test_auto_falls_back_and_explicit_choice_says_why(monkeypatch):
  if jax.default_backend() != "cpu":
    pytest.skip("the native windows are a CPU kernel")
  monkeypatch.setattr(native_windows, "unavailable_reason",
                      lambda: "no C++ compiler (c++) on PATH")
  assert ml.models.resolve_conv_impl("auto") == "im2col_vjp"
  with pytest.raises(ValueError, match="im2col_native.*no C\\+\\+ compiler"
                     ".*'im2col_vjp'"):
    ml.models.conv4(5, conv_impl="im2col_native")


def test_windows_benchmark_binary_times_every_layer(tmp_path):
  root = pathlib.Path(__file__).resolve().parents[1]
  proc = subprocess.run(
      [sys.executable, str(root / "experiments" / "windows_benchmark.py"),
       "--images=2", "--tasks=2", "--filters=3", "--repeats=1",
       f"--output_dir={tmp_path}"],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = json.loads((tmp_path / "windows.json").read_text())
  assert [r["shape"] for r in rows] == [[2, 28, 28, 1], [2, 14, 14, 3],
                                        [2, 7, 7, 3], [2, 3, 3, 3]]
  for r in rows:
    assert min(r["xla_ms"], r["native_ms"], r["matmul_ms"],
               r["direct_conv_ms"], r["direct_grad_ms"]) > 0
    assert r["xla_over_native"] == pytest.approx(r["xla_ms"] / r["native_ms"])
    assert r["conv_im2col_over_direct"] == pytest.approx(
        r["im2col_conv_ms"] / r["direct_conv_ms"])
  assert "| 2x14x14x3 |" in (tmp_path / "windows.md").read_text()


def test_a_broken_cached_library_gives_a_reason(monkeypatch, tmp_path):
  monkeypatch.setenv(native_windows.NATIVE_DIR_ENV, str(tmp_path))
  compiler = native_windows._compiler()  # pylint: disable=protected-access
  if compiler is None:
    pytest.skip("no C++ compiler")
  path = native_windows._library_path(compiler)  # pylint: disable=protected-access
  path.write_bytes(b"not a shared library")
  assert "loading" in native_windows.unavailable_reason.__wrapped__()
