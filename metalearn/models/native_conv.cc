// A 3x3, stride-1, SAME convolution and its kernel gradient computed
// directly, without the nine-times-larger im2col windows in memory.
//
// Conv:       x [outer..., inner..., H, W, C], w [outer..., 3, 3, C, D]
//             -> y [outer..., inner..., H, W, D]
// KernelGrad: x [outer..., inner..., H, W, C], g [outer..., inner..., H, W, D]
//             -> dw [outer..., 3, 3, C, D] (summed over inner... and pixels)
//
// The outer axes are tasks (vmap's), each with its own kernel; the inner axes
// are that task's images. Both work on one zero-bordered copy of an image,
// [H + 2, W + 2, C], read "flat": output position p = i (W + 2) + j reads
// tap (dy, dx) at p + dy (W + 2) + dx, so every tap of a run of consecutive
// positions is a run of consecutive input rows. The two right-hand columns
// of each output row are junk and not stored. A block of R positions by NV
// vectors of output channels is accumulated in registers over the taps and
// input channels (one broadcast and NV fused multiply-adds per input
// element): what a GEMM kernel does with the windows, reading the image in
// place of them. The kernel gradient swaps the roles: a block of (tap,
// channel) rows by NV vectors of D, accumulated over positions.
//
// float32 and float64; work is spread over XLA's intra-op threads. Built by
// metalearn/models/native_windows.py with -march=native.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// 64-byte vectors (one AVX-512 register) of float or double.
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
constexpr int64_t kLanes = 64 / sizeof(T);

// Slack after a padded image: a block's reads run up to R + 2 positions
// past its end.
constexpr int64_t kSlack = 32;

template <typename T>
inline Vec<T> Load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void Store(T* p, const Vec<T>& v) {
  std::memcpy(p, &v, sizeof(v));
}

// Runs body(item) for item in [0, items) on the calling thread and the
// pool's threads; returns when every item is done. Items are claimed from a
// shared counter, so a pool thread that starts late finds nothing to do.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t items, F body) {
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), items - 1);
  if (helpers <= 0) {
    for (int64_t i = 0; i < items; ++i) body(i);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  auto shared = std::make_shared<Shared>();
  auto work = [shared, items, &body] {
    int64_t i;
    while ((i = shared->next.fetch_add(1)) < items) {
      body(i);
      shared->done.fetch_add(1, std::memory_order_release);
    }
  };
  // Pool threads hold the shared counters but only touch ``body`` (on the
  // caller's stack) while an item is unfinished, so the caller outlives it.
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(work)(work));
  work();
  while (shared->done.load(std::memory_order_acquire) < items) {
    std::this_thread::yield();
  }
}

// Copies image src [h, w, c] into dst [h + 2, w + 2, c] with a zero border,
// then kSlack zero positions (the buffer is reused across shapes).
template <typename T>
void PadImage(const T* src, T* dst, int64_t h, int64_t w, int64_t c) {
  const int64_t pw = w + 2, row = pw * c;
  std::memset(dst, 0, row * sizeof(T));
  for (int64_t i = 0; i < h; ++i) {
    T* out = dst + (i + 1) * row;
    std::memset(out, 0, c * sizeof(T));
    std::memcpy(out + c, src + i * w * c, w * c * sizeof(T));
    std::memset(out + (w + 1) * c, 0, c * sizeof(T));
  }
  std::memset(dst + (h + 1) * row, 0, (row + kSlack * c) * sizeof(T));
}

// Output positions [p0, p0 + R) x channels [d0, d0 + NV lanes) of one
// image: xp the padded image, wp the padded kernel [9, c, dp].
template <typename T, int NV, int R>
void ConvBlock(const T* xp, const T* wp, T* y, int64_t p0, int64_t d0,
               int64_t positions, int64_t pw, int64_t w, int64_t c,
               int64_t dp, int64_t d) {
  constexpr int64_t L = kLanes<T>;
  Vec<T> acc[R][NV] = {};
  for (int64_t tap = 0; tap < 9; ++tap) {
    const T* xs = xp + (p0 + (tap / 3) * pw + tap % 3) * c;
    const T* wt = wp + tap * c * dp + d0;
    for (int64_t ci = 0; ci < c; ++ci) {
      Vec<T> wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = Load(wt + ci * dp + v * L);
      for (int r = 0; r < R; ++r) {
        const T s = xs[r * c + ci];
        for (int v = 0; v < NV; ++v) acc[r][v] += s * wv[v];
      }
    }
  }
  const int64_t width = std::min<int64_t>(NV * L, d - d0);
  for (int r = 0; r < R; ++r) {
    const int64_t p = p0 + r;
    if (p >= positions) break;
    const int64_t i = p / pw, j = p % pw;
    if (j >= w) continue;
    T* out = y + (i * w + j) * d + d0;
    if (width == NV * L) {
      for (int v = 0; v < NV; ++v) Store(out + v * L, acc[r][v]);
    } else {
      T lanes[NV * L];
      std::memcpy(lanes, acc[r], sizeof(lanes));
      std::memcpy(out, lanes, width * sizeof(T));
    }
  }
}

template <typename T, int NV>
void ConvImageBlocks(const T* xp, const T* wp, T* y, int64_t d0, int64_t h,
                     int64_t w, int64_t c, int64_t dp, int64_t d) {
  constexpr int R = 24 / NV;
  const int64_t pw = w + 2, positions = h * pw;
  for (int64_t p0 = 0; p0 < positions; p0 += R) {
    ConvBlock<T, NV, R>(xp, wp, y, p0, d0, positions, pw, w, c, dp, d);
  }
}

template <typename T>
void ConvImage(const T* xp, const T* wp, T* y, int64_t h, int64_t w,
               int64_t c, int64_t dp, int64_t d) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t d0 = 0; d0 < d; d0 += 4 * L) {
    switch (std::min<int64_t>(4, (dp - d0) / L)) {
      case 1: ConvImageBlocks<T, 1>(xp, wp, y, d0, h, w, c, dp, d); break;
      case 2: ConvImageBlocks<T, 2>(xp, wp, y, d0, h, w, c, dp, d); break;
      case 3: ConvImageBlocks<T, 3>(xp, wp, y, d0, h, w, c, dp, d); break;
      default: ConvImageBlocks<T, 4>(xp, wp, y, d0, h, w, c, dp, d); break;
    }
  }
}

template <typename T>
void Conv(ffi::ThreadPool& pool, const T* x, const T* w, T* y, int64_t groups,
          int64_t images, int64_t h, int64_t wd, int64_t c, int64_t d) {
  constexpr int64_t L = kLanes<T>;
  const int64_t dp = (d + L - 1) / L * L;
  std::vector<T> wp(groups * 9 * c * dp, T(0));
  for (int64_t k = 0; k < groups * 9 * c; ++k) {
    std::memcpy(wp.data() + k * dp, w + k * d, d * sizeof(T));
  }
  const int64_t padded = (h + 2) * (wd + 2) * c + kSlack * c;
  ParallelFor(pool, groups * images, [&](int64_t item) {
    thread_local std::vector<T> xp;
    if (static_cast<int64_t>(xp.size()) < padded) xp.resize(padded);
    const int64_t g = item / images;
    PadImage(x + item * h * wd * c, xp.data(), h, wd, c);
    ConvImage(xp.data(), wp.data() + g * 9 * c * dp, y + item * h * wd * d, h,
              wd, c, dp, d);
  });
}

// Rows [k0, k0 + CB) of the flat kernel gradient [9 c, dp] (row k is tap
// k / c, channel k % c) by channels [d0, d0 + NV lanes), accumulated into
// dw over one image's positions. gp is the image's output gradient padded
// to [h, w + 2, dp] with zero junk columns.
template <typename T, int NV, int CB>
void GradBlock(const T* xp, const T* gp, T* dw, int64_t k0, int64_t rows,
               int64_t d0, int64_t positions, int64_t pw, int64_t c,
               int64_t dp) {
  constexpr int64_t L = kLanes<T>;
  const T* base[CB];
  for (int b = 0; b < CB; ++b) {
    const int64_t k = std::min(k0 + b, rows - 1);
    base[b] = xp + ((k / c) / 3 * pw + (k / c) % 3) * c + k % c;
  }
  Vec<T> acc[CB][NV];
  for (int b = 0; b < CB; ++b) {
    for (int v = 0; v < NV; ++v) acc[b][v] = Load(dw + (k0 + b) * dp + d0 + v * L);
  }
  for (int64_t p = 0; p < positions; ++p) {
    Vec<T> gv[NV];
    for (int v = 0; v < NV; ++v) gv[v] = Load(gp + p * dp + d0 + v * L);
    for (int b = 0; b < CB; ++b) {
      const T s = base[b][p * c];
      for (int v = 0; v < NV; ++v) acc[b][v] += s * gv[v];
    }
  }
  for (int b = 0; b < CB; ++b) {
    for (int v = 0; v < NV; ++v) Store(dw + (k0 + b) * dp + d0 + v * L, acc[b][v]);
  }
}

template <typename T, int NV>
void GradImageBlocks(const T* xp, const T* gp, T* dw, int64_t d0,
                     int64_t rows, int64_t positions, int64_t pw, int64_t c,
                     int64_t dp) {
  constexpr int CB = 24 / NV;
  for (int64_t k0 = 0; k0 < rows; k0 += CB) {
    GradBlock<T, NV, CB>(xp, gp, dw, k0, rows, d0, positions, pw, c, dp);
  }
}

// dw [rows rounded up to 24, dp] += the image's kernel gradient.
template <typename T>
void GradImage(const T* xp, const T* gp, T* dw, int64_t h, int64_t w,
               int64_t c, int64_t dp) {
  constexpr int64_t L = kLanes<T>;
  const int64_t pw = w + 2, positions = h * pw, rows = 9 * c;
  for (int64_t d0 = 0; d0 < dp; d0 += 4 * L) {
    switch (std::min<int64_t>(4, (dp - d0) / L)) {
      case 1: GradImageBlocks<T, 1>(xp, gp, dw, d0, rows, positions, pw, c, dp); break;
      case 2: GradImageBlocks<T, 2>(xp, gp, dw, d0, rows, positions, pw, c, dp); break;
      case 3: GradImageBlocks<T, 3>(xp, gp, dw, d0, rows, positions, pw, c, dp); break;
      default: GradImageBlocks<T, 4>(xp, gp, dw, d0, rows, positions, pw, c, dp); break;
    }
  }
}

template <typename T>
void KernelGrad(ffi::ThreadPool& pool, const T* x, const T* g, T* dw,
                int64_t groups, int64_t images, int64_t h, int64_t w,
                int64_t c, int64_t d) {
  constexpr int64_t L = kLanes<T>;
  const int64_t dp = (d + L - 1) / L * L, pw = w + 2, rows = 9 * c;
  const int64_t padded_rows = (rows + 23) / 24 * 24;
  // Each group's images are split into chunks; every chunk sums into a
  // partial gradient of its own, and the partials are added at the end.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads() + 1);
  const int64_t chunks = std::min<int64_t>(
      images, std::max<int64_t>(1, (2 * threads + groups - 1) / groups));
  const int64_t partial = padded_rows * dp;
  std::vector<T> partials(groups * chunks * partial, T(0));
  const int64_t xp_size = (h + 2) * pw * c + kSlack * c;
  ParallelFor(pool, groups * chunks, [&](int64_t item) {
    thread_local std::vector<T> xp, gp;
    if (static_cast<int64_t>(xp.size()) < xp_size) xp.resize(xp_size);
    gp.resize(h * pw * dp);
    const int64_t group = item / chunks, chunk = item % chunks;
    const int64_t first = chunk * images / chunks;
    const int64_t last = (chunk + 1) * images / chunks;
    T* out = partials.data() + item * partial;
    for (int64_t n = group * images + first; n < group * images + last; ++n) {
      PadImage(x + n * h * w * c, xp.data(), h, w, c);
      // Junk columns and the lanes past d stay zero.
      std::fill(gp.begin(), gp.end(), T(0));
      for (int64_t i = 0; i < h; ++i) {
        for (int64_t j = 0; j < w; ++j) {
          std::memcpy(gp.data() + (i * pw + j) * dp,
                      g + ((n * h + i) * w + j) * d, d * sizeof(T));
        }
      }
      GradImage(xp.data(), gp.data(), out, h, w, c, dp);
    }
  });
  for (int64_t group = 0; group < groups; ++group) {
    const T* first = partials.data() + group * chunks * partial;
    for (int64_t k = 0; k < rows; ++k) {
      T* row = dw + (group * rows + k) * d;
      for (int64_t e = 0; e < d; ++e) {
        T sum = T(0);
        for (int64_t s = 0; s < chunks; ++s) sum += first[s * partial + k * dp + e];
        row[e] = sum;
      }
    }
  }
}

int64_t Product(ffi::Span<const int64_t> dims, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= dims[i];
  return p;
}

ffi::Error ConvHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                       ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y) {
  const auto xd = x.dimensions(), wdims = w.dimensions();
  const size_t xr = xd.size(), wr = wdims.size();
  if (xr < 3 || wr < 4 || xr < wr - 1 || wdims[wr - 4] != 3 ||
      wdims[wr - 3] != 3 || wdims[wr - 2] != xd[xr - 1] ||
      x.element_type() != w.element_type()) {
    return ffi::Error::InvalidArgument(
        "conv: x [outer..., inner..., H, W, C], w [outer..., 3, 3, C, D]");
  }
  const int64_t groups = Product(wdims, 0, wr - 4);
  for (size_t i = 0; i + 4 < wr; ++i) {
    if (xd[i] != wdims[i]) {
      return ffi::Error::InvalidArgument("conv: x and w outer axes differ");
    }
  }
  const int64_t images = Product(xd, wr - 4, xr - 3);
  const int64_t h = xd[xr - 3], wd = xd[xr - 2], c = xd[xr - 1];
  const int64_t d = wdims[wr - 1];
  switch (x.element_type()) {
    case ffi::DataType::F32:
      Conv(pool, x.typed_data<float>(), w.typed_data<float>(),
           y->typed_data<float>(), groups, images, h, wd, c, d);
      break;
    case ffi::DataType::F64:
      Conv(pool, x.typed_data<double>(), w.typed_data<double>(),
           y->typed_data<double>(), groups, images, h, wd, c, d);
      break;
    default:
      return ffi::Error::InvalidArgument("conv: float32 or float64 only");
  }
  return ffi::Error::Success();
}

// inner_rank: how many of x's leading axes are one group's images (summed
// over); the axes before them (vmap's) are the groups.
ffi::Error KernelGradHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                             ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> dw,
                             int64_t inner_rank) {
  const auto xd = x.dimensions(), gd = g.dimensions();
  const int64_t xr = xd.size();
  if (xr < 3 || inner_rank < 0 || inner_rank > xr - 3 ||
      static_cast<int64_t>(gd.size()) != xr ||
      x.element_type() != g.element_type()) {
    return ffi::Error::InvalidArgument(
        "kernel grad: x [outer..., inner..., H, W, C], g [..., H, W, D]");
  }
  for (int64_t i = 0; i < xr - 1; ++i) {
    if (xd[i] != gd[i]) {
      return ffi::Error::InvalidArgument("kernel grad: x and g shapes differ");
    }
  }
  const int64_t groups = Product(xd, 0, xr - 3 - inner_rank);
  const int64_t images = Product(xd, xr - 3 - inner_rank, xr - 3);
  const int64_t h = xd[xr - 3], w = xd[xr - 2], c = xd[xr - 1];
  const int64_t d = gd[xr - 1];
  switch (x.element_type()) {
    case ffi::DataType::F32:
      KernelGrad(pool, x.typed_data<float>(), g.typed_data<float>(),
                 dw->typed_data<float>(), groups, images, h, w, c, d);
      break;
    case ffi::DataType::F64:
      KernelGrad(pool, x.typed_data<double>(), g.typed_data<double>(),
                 dw->typed_data<double>(), groups, images, h, w, c, d);
      break;
    default:
      return ffi::Error::InvalidArgument("kernel grad: float32 or float64");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConv, ConvHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConvKernelGrad, KernelGradHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("inner_rank"));
