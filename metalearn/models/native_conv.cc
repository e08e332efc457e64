// A 3x3, stride-1, SAME convolution and its kernel gradient computed
// directly, without the nine-times-larger im2col windows in memory.
//
// Conv:       x [outer..., inner..., H, W, C], w [outer..., 3, 3, C, D]
//             -> y [outer..., inner..., H, W, D]; with ``flipped``,
//             w [outer..., 3, 3, D, C] mirrored in space and transposed in
//             channels (the convolution's transpose, read in place)
// KernelGrad: x [outer..., inner..., H, W, C], g [outer..., inner..., H, W, D]
//             -> dw [outer..., 3, 3, C, D] (summed over inner... and pixels)
//
// The outer axes are tasks (vmap's), each with its own kernel; the inner axes
// are that task's images. Both work on a zero-bordered copy of a few images
// stacked one above the other (a Stack, below), read "flat": output
// position p = i (W + 2) + j reads tap (dy, dx) at p + dy (W + 2) + dx, so
// every tap of a run of pixels in one row is a run of consecutive input
// pixels. A block of R pixels of a row by NV vectors of output channels is
// accumulated in registers over the taps and input channels (one broadcast
// and NV fused multiply-adds per input element): what a GEMM kernel does
// with the windows, reading the image in place of them. R divides the row
// as evenly as it can, so little is computed and thrown away. The kernel
// gradient swaps the roles: a block of (tap, channel) rows by NV vectors of
// D, accumulated over every pixel.
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

// 64-byte vectors (one AVX-512 register) of float or double, and of
// integers with as many lanes (for comparisons and selects).
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t ints __attribute__((vector_size(64)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef int64_t ints __attribute__((vector_size(64)));
};
template <typename T>
using Vec = typename VecOf<T>::type;
template <typename T>
using IntVec = typename VecOf<T>::ints;
template <typename T>
constexpr int64_t kLanes = 64 / sizeof(T);

// Zero positions after a stack: the last row's last block of R pixels
// reads up to R + 2 positions past the row.
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

// A stack of n images in one zero-bordered buffer: a zero row, then each
// image's h rows followed by a zero row, every row [w + 2, c] with a zero
// column on either side, then kSlack zero positions. The output pixel (i, j)
// of image k is at position p = (k (h + 1) + i) (w + 2) + j and reads tap
// (dy, dx) at p + dy (w + 2) + dx: the zero row between two images is the
// bottom border of one and the top border of the next.
struct Stack {
  int64_t n, h, w, pw;
  Stack(int64_t n, int64_t h, int64_t w) : n(n), h(h), w(w), pw(w + 2) {}
  int64_t elements(int64_t c) const {
    return ((n * (h + 1) + 1) * pw + kSlack) * c;
  }
  // The position of image k's pixel (i, 0).
  int64_t row(int64_t k, int64_t i) const { return (k * (h + 1) + i) * pw; }
};

// src [n, h, w, c] -> dst, the stack's layout (every element written).
template <typename T>
void StackImages(const T* src, T* dst, const Stack& s, int64_t c) {
  const int64_t row = s.pw * c;
  std::memset(dst, 0, row * sizeof(T));
  dst += row;
  for (int64_t k = 0; k < s.n; ++k) {
    for (int64_t i = 0; i < s.h; ++i, dst += row) {
      std::memset(dst, 0, c * sizeof(T));
      std::memcpy(dst + c, src + (k * s.h + i) * s.w * c,
                  s.w * c * sizeof(T));
      std::memset(dst + (s.w + 1) * c, 0, c * sizeof(T));
    }
    std::memset(dst, 0, row * sizeof(T));
    dst += row;
  }
  std::memset(dst, 0, kSlack * c * sizeof(T));
}

// How many images one stack holds: about 64 Ki elements of input (and of
// output gradient), so that a stack stays in the core's L2 cache, and at
// most a share of a group's images that leaves ``parts`` stacks a group.
int64_t ImagesPerStack(int64_t h, int64_t w, int64_t width, int64_t images,
                       int64_t parts) {
  const int64_t cached = (int64_t{1} << 16) / ((h + 1) * (w + 2) * width);
  const int64_t shared = (images + parts - 1) / parts;
  return std::max<int64_t>(1, std::min(cached, shared));
}

// Items for the pool: a few per thread, so that uneven items even out.
int64_t PartsPerGroup(ffi::ThreadPool& pool, int64_t groups) {
  const int64_t items = 4 * std::max<int64_t>(1, pool.num_threads());
  return (items + groups - 1) / groups;
}

// R output pixels of one row from stack position p0 by channels [d0, d0 +
// NV lanes), of which the first ``count`` are stored at out (pixel r at
// out + r d): xp the stack, wp the padded kernel [9, c, dp].
template <typename T, int NV, int R>
void ConvBlock(const T* xp, const T* wp, T* out, int64_t p0, int64_t count,
               int64_t d0, int64_t pw, int64_t c, int64_t dp, int64_t d) {
  constexpr int64_t L = kLanes<T>;
  Vec<T> acc[R][NV] = {};
  for (int64_t tap = 0; tap < 9; ++tap) {
    const T* xs = xp + (p0 + (tap / 3) * pw + tap % 3) * c;
    const T* wt = wp + tap * c * dp + d0;
    for (int64_t ci = 0; ci < c; ++ci) {
      Vec<T> wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = Load(wt + ci * dp + v * L);
      for (int r = 0; r < R; ++r) {
        const T x = xs[r * c + ci];
        for (int v = 0; v < NV; ++v) acc[r][v] += x * wv[v];
      }
    }
  }
  const int64_t width = std::min<int64_t>(NV * L, d - d0);
  for (int r = 0; r < count; ++r) {
    T* at = out + r * d + d0;
    if (width == NV * L) {
      for (int v = 0; v < NV; ++v) Store(at + v * L, acc[r][v]);
    } else {
      T lanes[NV * L];
      std::memcpy(lanes, acc[r], sizeof(lanes));
      std::memcpy(at, lanes, width * sizeof(T));
    }
  }
}

// Every row of the stack in blocks of R pixels; y [n, h, w, d].
template <typename T, int NV, int R>
void ConvRows(const T* xp, const T* wp, T* y, int64_t d0, const Stack& s,
              int64_t c, int64_t dp, int64_t d) {
  for (int64_t k = 0; k < s.n; ++k) {
    for (int64_t i = 0; i < s.h; ++i) {
      T* out = y + (k * s.h + i) * s.w * d;
      for (int64_t j = 0; j < s.w; j += R) {
        ConvBlock<T, NV, R>(xp, wp, out + j * d, s.row(k, i) + j,
                            std::min<int64_t>(R, s.w - j), d0, s.pw, c, dp,
                            d);
      }
    }
  }
}

// ConvRows with the R of ``r`` (1 <= r <= Rmax), a compile-time constant.
template <typename T, int NV, int Rmax>
void ConvRowsOf(int64_t r, const T* xp, const T* wp, T* y, int64_t d0,
                const Stack& s, int64_t c, int64_t dp, int64_t d) {
  if constexpr (Rmax >= 1) {
    if (r == Rmax) return ConvRows<T, NV, Rmax>(xp, wp, y, d0, s, c, dp, d);
    ConvRowsOf<T, NV, Rmax - 1>(r, xp, wp, y, d0, s, c, dp, d);
  }
}

// Blocks of at most 24 / NV pixels, 7 for NV = 4 (the accumulators and the
// kernel vectors fill the 32 vector registers; the pixel is broadcast from
// memory inside the multiply-add), as even as a row allows: 14 = 7 + 7, and
// a row of 7 one block, not 4 + 4 with one pixel thrown away.
template <typename T, int NV>
void ConvStackBlocks(const T* xp, const T* wp, T* y, int64_t d0,
                     const Stack& s, int64_t c, int64_t dp, int64_t d) {
  constexpr int64_t kMax = NV == 4 ? 7 : 24 / NV;
  const int64_t blocks = (s.w + kMax - 1) / kMax;
  const int64_t r = (s.w + blocks - 1) / blocks;
  ConvRowsOf<T, NV, kMax>(r, xp, wp, y, d0, s, c, dp, d);
}

template <typename T>
void ConvStack(const T* xp, const T* wp, T* y, const Stack& s, int64_t c,
               int64_t dp, int64_t d) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t d0 = 0; d0 < d; d0 += 4 * L) {
    switch (std::min<int64_t>(4, (dp - d0) / L)) {
      case 1: ConvStackBlocks<T, 1>(xp, wp, y, d0, s, c, dp, d); break;
      case 2: ConvStackBlocks<T, 2>(xp, wp, y, d0, s, c, dp, d); break;
      case 3: ConvStackBlocks<T, 3>(xp, wp, y, d0, s, c, dp, d); break;
      default: ConvStackBlocks<T, 4>(xp, wp, y, d0, s, c, dp, d); break;
    }
  }
}

// Group g's kernel as ConvStack reads it, [9, c, dp]: w itself where its
// rows are whole vectors and it is not flipped, else written into buffer,
// rows padded with zeros; ``flipped``: w holds [3, 3, d, c], mirrored in
// both spatial axes and transposed in channels (the kernel of the
// convolution's transpose).
template <typename T>
const T* GroupKernel(const T* w, int64_t g, int64_t c, int64_t d, int64_t dp,
                     bool flipped, std::vector<T>& buffer) {
  const T* wg = w + g * 9 * c * d;
  if (!flipped && d == dp) return wg;
  if (static_cast<int64_t>(buffer.size()) < 9 * c * dp) {
    buffer.resize(9 * c * dp);
  }
  T* out = buffer.data();
  for (int64_t tap = 0; tap < 9; ++tap) {
    if (!flipped) {
      for (int64_t ci = 0; ci < c; ++ci) {
        T* row = out + (tap * c + ci) * dp;
        std::memcpy(row, wg + (tap * c + ci) * d, d * sizeof(T));
        std::fill(row + d, row + dp, T(0));
      }
      continue;
    }
    // Transposed in blocks of 16 x 16, for whole cache lines both ways.
    const T* mirrored = wg + (8 - tap) * d * c;  // [d, c]
    T* rows = out + tap * c * dp;                 // [c, dp]
    for (int64_t ci0 = 0; ci0 < c; ci0 += 16) {
      const int64_t ci1 = std::min<int64_t>(c, ci0 + 16);
      for (int64_t co0 = 0; co0 < d; co0 += 16) {
        const int64_t co1 = std::min<int64_t>(d, co0 + 16);
        for (int64_t ci = ci0; ci < ci1; ++ci) {
          for (int64_t co = co0; co < co1; ++co) {
            rows[ci * dp + co] = mirrored[co * c + ci];
          }
        }
      }
      for (int64_t ci = ci0; ci < ci1; ++ci) {
        std::fill(rows + ci * dp + d, rows + (ci + 1) * dp, T(0));
      }
    }
  }
  return out;
}

// The 2x2 max-pool that follows a convolution, as a choice of one corner of
// each window per channel: corner 2 dy + dx. ``sign`` [d] (or null): choose
// the first corner in row-major order where sign * y is largest, written to
// ``found``; else read the choice from ``given``.
template <typename T>
struct Pooling {
  const T* sign = nullptr;
  const int8_t* given = nullptr;
  int8_t* found = nullptr;
  bool on() const { return sign != nullptr || given != nullptr; }
};

// Channels [e, e + L) of one window: a, b, c, d are its corners in
// row-major order; returns the chosen corner's values and sets ``corner``.
template <typename T>
inline Vec<T> PickCorner(const T* const at[4], int64_t e,
                         const Pooling<T>& pooling, int64_t code_at,
                         IntVec<T>& corner) {
  constexpr int64_t L = kLanes<T>;
  const Vec<T> a = Load(at[0] + e), b = Load(at[1] + e), c = Load(at[2] + e),
               d = Load(at[3] + e);
  if (pooling.sign != nullptr) {
    const Vec<T> s = Load(pooling.sign + e);
    const Vec<T> ka = s * a, kb = s * b, kc = s * c, kd = s * d;
    const IntVec<T> zero = {}, one = zero + 1, two = zero + 2,
                    three = zero + 3;
    corner = ((ka >= kb) & (ka >= kc) & (ka >= kd))
                 ? zero
                 : ((kb >= kc) & (kb >= kd)) ? one : (kc >= kd) ? two : three;
  } else {
    for (int64_t l = 0; l < L; ++l) corner[l] = pooling.given[code_at + l];
  }
  return corner == 0 ? a : corner == 1 ? b : corner == 2 ? c : d;
}

// y [n, h, w, d] of one stack -> out [n, h / 2, w / 2, d] at each window's
// corner; corners at [n, h / 2, w / 2, d] offset by ``first`` pooled pixels.
template <typename T>
void PoolStack(const T* y, T* out, int64_t n, int64_t h, int64_t w,
               int64_t d, const Pooling<T>& pooling, int64_t first) {
  constexpr int64_t L = kLanes<T>;
  const int64_t ph = h / 2, pw = w / 2, whole = d / L * L;
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t i = 0; i < ph; ++i) {
      for (int64_t j = 0; j < pw; ++j) {
        const int64_t q = (k * ph + i) * pw + j, code_at = (first + q) * d;
        const T* at[4];
        for (int corner = 0; corner < 4; ++corner) {
          at[corner] = y + ((k * h + 2 * i + corner / 2) * w + 2 * j +
                            corner % 2) * d;
        }
        for (int64_t e = 0; e < whole; e += L) {
          IntVec<T> corner;
          Store(out + q * d + e,
                PickCorner(at, e, pooling, code_at + e, corner));
          if (pooling.found != nullptr) {
            for (int64_t l = 0; l < L; ++l) {
              pooling.found[code_at + e + l] = static_cast<int8_t>(corner[l]);
            }
          }
        }
        for (int64_t e = whole; e < d; ++e) {
          int corner;
          if (pooling.sign != nullptr) {
            const T s = pooling.sign[e];
            const T a = s * at[0][e], b = s * at[1][e], c = s * at[2][e],
                    dd = s * at[3][e];
            corner = (a >= b && a >= c && a >= dd) ? 0
                     : (b >= c && b >= dd)         ? 1
                     : (c >= dd)                   ? 2
                                                   : 3;
            pooling.found[code_at + e] = static_cast<int8_t>(corner);
          } else {
            corner = pooling.given[code_at + e];
          }
          out[q * d + e] = at[corner][e];
        }
      }
    }
  }
}

template <typename T>
void Conv(ffi::ThreadPool& pool, const T* x, const T* w, T* y, int64_t groups,
          int64_t images, int64_t h, int64_t wd, int64_t c, int64_t d,
          bool flipped, Pooling<T> pooling = {}) {
  constexpr int64_t L = kLanes<T>;
  const int64_t dp = (d + L - 1) / L * L;
  int64_t per_stack =
      ImagesPerStack(h, wd, c, images, PartsPerGroup(pool, groups));
  if (pooling.on()) {  // The stack's convolution stays in the cache.
    per_stack = std::max<int64_t>(
        1, std::min(per_stack, (int64_t{1} << 16) / (h * wd * dp)));
  }
  const int64_t stacks = (images + per_stack - 1) / per_stack;
  const int64_t pooled = (h / 2) * (wd / 2) * d;
  ParallelFor(pool, groups * stacks, [&](int64_t item) {
    // Per thread, reused across calls: a fresh buffer would cost its page
    // faults every time.
    thread_local std::vector<T> xp, kernel, full;
    const int64_t g = item / stacks, first = item % stacks * per_stack;
    const Stack s(std::min(per_stack, images - first), h, wd);
    if (static_cast<int64_t>(xp.size()) < s.elements(c)) {
      xp.resize(s.elements(c));
    }
    const int64_t image = g * images + first;
    StackImages(x + image * h * wd * c, xp.data(), s, c);
    const T* wg = GroupKernel(w, g, c, d, dp, flipped, kernel);
    if (!pooling.on()) {
      ConvStack(xp.data(), wg, y + image * h * wd * d, s, c, dp, d);
      return;
    }
    if (static_cast<int64_t>(full.size()) < s.n * h * wd * d) {
      full.resize(s.n * h * wd * d);
    }
    ConvStack(xp.data(), wg, full.data(), s, c, dp, d);
    Pooling<T> group = pooling;
    if (group.sign != nullptr) group.sign += g * d;
    PoolStack(full.data(), y + image * pooled, s.n, h, wd, d, group,
              image * pooled / d);
  });
}

// Rows [k0, k0 + CB) of the flat kernel gradient [9 c, dp] (row k is tap
// k / c, channel k % c) by channels [d0, d0 + NV lanes), accumulated into
// dw over the stack's pixels; gs the stack's output gradient [n, h, w,
// stride], stride >= d0 + NV lanes.
template <typename T, int NV, int CB>
void GradBlock(const T* xp, const T* gs, int64_t stride, T* dw, int64_t k0,
               int64_t rows, int64_t d0, const Stack& s, int64_t c,
               int64_t dp) {
  constexpr int64_t L = kLanes<T>;
  int64_t offset[CB];
  for (int b = 0; b < CB; ++b) {
    const int64_t k = std::min(k0 + b, rows - 1);
    offset[b] = ((k / c) / 3 * s.pw + (k / c) % 3) * c + k % c;
  }
  // Rows past the last (a short final block) are computed and not kept.
  const int valid = static_cast<int>(std::min<int64_t>(CB, rows - k0));
  Vec<T> acc[CB][NV] = {};
  for (int b = 0; b < valid; ++b) {
    for (int v = 0; v < NV; ++v) {
      acc[b][v] = Load(dw + (k0 + b) * dp + d0 + v * L);
    }
  }
  for (int64_t k = 0; k < s.n; ++k) {
    for (int64_t i = 0; i < s.h; ++i) {
      const T* xr = xp + s.row(k, i) * c;
      const T* gr = gs + (k * s.h + i) * s.w * stride + d0;
      for (int64_t j = 0; j < s.w; ++j) {
        Vec<T> gv[NV];
        for (int v = 0; v < NV; ++v) gv[v] = Load(gr + j * stride + v * L);
        for (int b = 0; b < CB; ++b) {
          const T x = xr[j * c + offset[b]];
          for (int v = 0; v < NV; ++v) acc[b][v] += x * gv[v];
        }
      }
    }
  }
  for (int b = 0; b < valid; ++b) {
    for (int v = 0; v < NV; ++v) {
      Store(dw + (k0 + b) * dp + d0 + v * L, acc[b][v]);
    }
  }
}

template <typename T, int NV>
void GradStackBlocks(const T* xp, const T* gs, int64_t stride, T* dw,
                     int64_t d0, int64_t rows, const Stack& s, int64_t c,
                     int64_t dp) {
  constexpr int CB = 24 / NV;
  for (int64_t k0 = 0; k0 < rows; k0 += CB) {
    GradBlock<T, NV, CB>(xp, gs, stride, dw, k0, rows, d0, s, c, dp);
  }
}

// dw [9 c, dp] += the stack's kernel gradient.
template <typename T>
void GradStack(const T* xp, const T* gs, int64_t stride, T* dw,
               const Stack& s, int64_t c, int64_t dp) {
  constexpr int64_t L = kLanes<T>;
  const int64_t rows = 9 * c;
  for (int64_t d0 = 0; d0 < dp; d0 += 4 * L) {
    switch (std::min<int64_t>(4, (dp - d0) / L)) {
      case 1: GradStackBlocks<T, 1>(xp, gs, stride, dw, d0, rows, s, c, dp); break;
      case 2: GradStackBlocks<T, 2>(xp, gs, stride, dw, d0, rows, s, c, dp); break;
      case 3: GradStackBlocks<T, 3>(xp, gs, stride, dw, d0, rows, s, c, dp); break;
      default: GradStackBlocks<T, 4>(xp, gs, stride, dw, d0, rows, s, c, dp); break;
    }
  }
}

// corner (or null): g is [.., h / 2, w / 2, d], the gradient of the pool
// that picked each window's ``corner`` (PoolStack), put back in its place.
template <typename T>
void KernelGrad(ffi::ThreadPool& pool, const T* x, const T* g, T* dw,
                int64_t groups, int64_t images, int64_t h, int64_t w,
                int64_t c, int64_t d, const int8_t* corner = nullptr) {
  constexpr int64_t L = kLanes<T>;
  const int64_t dp = (d + L - 1) / L * L, rows = 9 * c;
  // Each group's images are split into chunks, one per item, so that a
  // few groups still keep every thread busy; every chunk sums into a
  // partial gradient of its own, stack by stack, and the partials are
  // added at the end.
  const int64_t chunks =
      std::min<int64_t>(images, PartsPerGroup(pool, groups));
  const int64_t partial = rows * dp;
  // One chunk a group, already in dw's layout: each item sums straight into
  // its group's dw, which it zeroes first. A fresh buffer as large as dw
  // costs its page faults at every call.
  const bool direct = chunks == 1 && d == dp;
  std::vector<T> partials(direct ? 0 : groups * chunks * partial, T(0));
  const int64_t per_stack = ImagesPerStack(h, w, c + dp, images, 1);
  ParallelFor(pool, groups * chunks, [&](int64_t item) {
    thread_local std::vector<T> xp, gp;
    const int64_t group = item / chunks, chunk = item % chunks;
    const int64_t last = group * images + (chunk + 1) * images / chunks;
    T* out = direct ? dw + item * partial : partials.data() + item * partial;
    if (direct) std::memset(out, 0, partial * sizeof(T));
    for (int64_t n = group * images + chunk * images / chunks; n < last;
         n += per_stack) {
      const Stack s(std::min(per_stack, last - n), h, w);
      if (static_cast<int64_t>(xp.size()) < s.elements(c)) {
        xp.resize(s.elements(c));
      }
      StackImages(x + n * h * w * c, xp.data(), s, c);
      const T* gs = g + n * h * w * d;
      if (corner != nullptr) {  // Each pooled value back at its corner.
        const int64_t ph = h / 2, pw = w / 2, pooled = ph * pw * d;
        gp.assign(s.n * h * w * dp, T(0));
        for (int64_t k = 0; k < s.n; ++k) {
          const T* gk = g + (n + k) * pooled;
          const int8_t* ck = corner + (n + k) * pooled;
          for (int64_t q = 0; q < ph * pw; ++q) {
            const int64_t i = q / pw, j = q % pw;
            for (int64_t e = 0; e < d; ++e) {
              const int at = ck[q * d + e];
              gp[((k * h + 2 * i + at / 2) * w + 2 * j + at % 2) * dp + e] =
                  gk[q * d + e];
            }
          }
        }
        gs = gp.data();
      } else if (d != dp) {  // Whole vectors: each pixel's row padded.
        gp.assign(s.n * h * w * dp, T(0));
        for (int64_t p = 0; p < s.n * h * w; ++p) {
          std::memcpy(gp.data() + p * dp, gs + p * d, d * sizeof(T));
        }
        gs = gp.data();
      }
      GradStack(xp.data(), gs, dp, out, s, c, dp);
    }
  });
  if (direct) return;
  for (int64_t group = 0; group < groups; ++group) {
    const T* first = partials.data() + group * chunks * partial;
    for (int64_t k = 0; k < rows; ++k) {
      T* row = dw + (group * rows + k) * d;
      for (int64_t e = 0; e < d; ++e) {
        T sum = T(0);
        for (int64_t s = 0; s < chunks; ++s) {
          sum += first[s * partial + k * dp + e];
        }
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

// The convolution's shapes: x [outer..., inner..., H, W, C], w [outer...,
// 3, 3, C, D] (flipped: [..., D, C]); an empty string, or what is wrong.
struct ConvShape {
  int64_t groups = 0, images = 0, h = 0, w = 0, c = 0, d = 0;
  const char* error = "";
};

ConvShape ParseConv(const ffi::AnyBuffer& x, const ffi::AnyBuffer& w,
                    bool flipped) {
  const auto xd = x.dimensions(), wdims = w.dimensions();
  const size_t xr = xd.size(), wr = wdims.size();
  ConvShape shape;
  const size_t in_axis = flipped ? wr - 1 : wr - 2;
  if (xr < 3 || wr < 4 || xr < wr - 1 || wdims[wr - 4] != 3 ||
      wdims[wr - 3] != 3 || wdims[in_axis] != xd[xr - 1] ||
      x.element_type() != w.element_type()) {
    shape.error = "conv: x [outer..., inner..., H, W, C], w [outer..., 3, "
                  "3, C, D] ([..., D, C] flipped)";
    return shape;
  }
  for (size_t i = 0; i + 4 < wr; ++i) {
    if (xd[i] != wdims[i]) {
      shape.error = "conv: x and w outer axes differ";
      return shape;
    }
  }
  shape.groups = Product(wdims, 0, wr - 4);
  shape.images = Product(xd, wr - 4, xr - 3);
  shape.h = xd[xr - 3];
  shape.w = xd[xr - 2];
  shape.c = xd[xr - 1];
  shape.d = wdims[flipped ? wr - 2 : wr - 1];
  return shape;
}

// Conv of the shapes' dtype (float32 or float64), pooled where ``sign`` or
// ``given`` is not null.
ffi::Error RunConv(ffi::ThreadPool& pool, const ffi::AnyBuffer& x,
                   const ffi::AnyBuffer& w, ffi::AnyBuffer out, bool flipped,
                   const ffi::AnyBuffer* sign, const int8_t* given,
                   int8_t* found) {
  const ConvShape v = ParseConv(x, w, flipped);
  if (*v.error) return ffi::Error::InvalidArgument(v.error);
  if ((sign != nullptr || given != nullptr) && (v.h % 2 || v.w % 2)) {
    return ffi::Error::InvalidArgument("conv pool: H and W must be even");
  }
  auto run = [&](auto zero) {
    using T = decltype(zero);
    Pooling<T> pooling;
    pooling.sign = sign != nullptr ? sign->typed_data<T>() : nullptr;
    pooling.given = given;
    pooling.found = found;
    Conv(pool, x.typed_data<T>(), w.typed_data<T>(), out.typed_data<T>(),
         v.groups, v.images, v.h, v.w, v.c, v.d, flipped, pooling);
  };
  switch (x.element_type()) {
    case ffi::DataType::F32: run(0.0f); break;
    case ffi::DataType::F64: run(0.0); break;
    default:
      return ffi::Error::InvalidArgument("conv: float32 or float64 only");
  }
  return ffi::Error::Success();
}

// flipped: w [outer..., 3, 3, D, C] is read mirrored and transposed.
ffi::Error ConvHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                       ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y,
                       bool flipped) {
  return RunConv(pool, x, w, *y, flipped, nullptr, nullptr, nullptr);
}

// The convolution, then each 2x2 window's corner where sign [outer..., D] *
// y is largest: pooled [outer..., inner..., H / 2, W / 2, D] and the
// corners (int8, 2 dy + dx) of the same shape.
ffi::Error ConvPoolHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                           ffi::AnyBuffer w, ffi::AnyBuffer sign,
                           ffi::Result<ffi::AnyBuffer> pooled,
                           ffi::Result<ffi::AnyBuffer> corner) {
  return RunConv(pool, x, w, *pooled, false, &sign, nullptr,
                 corner->typed_data<int8_t>());
}

// The convolution at the given corners of its 2x2 windows.
ffi::Error ConvTakeHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                           ffi::AnyBuffer w, ffi::AnyBuffer corner,
                           ffi::Result<ffi::AnyBuffer> pooled) {
  return RunConv(pool, x, w, *pooled, false, nullptr,
                 corner.typed_data<int8_t>(), nullptr);
}

// inner_rank: how many of x's leading axes are one group's images (summed
// over); the axes before them (vmap's) are the groups. With ``corner``, g
// [..., H / 2, W / 2, D] is put back at the corners first.
ffi::Error RunKernelGrad(ffi::ThreadPool& pool, const ffi::AnyBuffer& x,
                         const ffi::AnyBuffer& g, ffi::AnyBuffer dw,
                         int64_t inner_rank, const int8_t* corner) {
  const auto xd = x.dimensions(), gd = g.dimensions();
  const int64_t xr = xd.size();
  if (xr < 3 || inner_rank < 0 || inner_rank > xr - 3 ||
      static_cast<int64_t>(gd.size()) != xr ||
      x.element_type() != g.element_type()) {
    return ffi::Error::InvalidArgument(
        "kernel grad: x [outer..., inner..., H, W, C], g [..., H, W, D]");
  }
  const int64_t scale = corner != nullptr ? 2 : 1;
  for (int64_t i = 0; i < xr - 1; ++i) {
    const int64_t want = i < xr - 3 ? xd[i] : xd[i] / scale;
    if (gd[i] != want || (i >= xr - 3 && xd[i] % scale)) {
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
                 dw.typed_data<float>(), groups, images, h, w, c, d, corner);
      break;
    case ffi::DataType::F64:
      KernelGrad(pool, x.typed_data<double>(), g.typed_data<double>(),
                 dw.typed_data<double>(), groups, images, h, w, c, d, corner);
      break;
    default:
      return ffi::Error::InvalidArgument("kernel grad: float32 or float64");
  }
  return ffi::Error::Success();
}

ffi::Error KernelGradHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                             ffi::AnyBuffer g, ffi::Result<ffi::AnyBuffer> dw,
                             int64_t inner_rank) {
  return RunKernelGrad(pool, x, g, *dw, inner_rank, nullptr);
}

ffi::Error KernelGradPutHandler(ffi::ThreadPool pool, ffi::AnyBuffer x,
                                ffi::AnyBuffer g, ffi::AnyBuffer corner,
                                ffi::Result<ffi::AnyBuffer> dw,
                                int64_t inner_rank) {
  return RunKernelGrad(pool, x, g, *dw, inner_rank,
                       corner.typed_data<int8_t>());
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConv, ConvHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<bool>("flipped"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConvKernelGrad, KernelGradHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("inner_rank"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConvPool, ConvPoolHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConvTake, ConvTakeHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnConvKernelGradPut,
                              KernelGradPutHandler,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("inner_rank"));
