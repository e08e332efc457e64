// The nine shifted 3x3 windows of a zero-padded image, stacked on the
// channel axis: x [..., H, W, C] -> [..., H, W, 9 C], window-major (dy, dx),
// any element type. The same function as metalearn.models.im2col.windows,
// written so that every output element is written once and every input
// element read nine times from cache: XLA's CPU backend builds it as eight
// pad-and-slice kernels and a concatenation, which writes and reads each
// window twice. TapMajorWindows writes the same values with the 9 C axis
// first, [outer..., 9 C, inner..., H, W]: the layout in which the kernel
// gradient's matmul reads them, which XLA otherwise makes with one more
// transposing copy. Built by metalearn/models/native_windows.py against the
// XLA FFI headers that jaxlib ships.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// One image: src [h, w, row bytes] -> dst [h, w, 9, row bytes].
void ImageWindows(const char* src, char* dst, int64_t h, int64_t w,
                  size_t row) {
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      for (int64_t dy = -1; dy <= 1; ++dy) {
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t si = i + dy, sj = j + dx;
          const bool inside = si >= 0 && si < h && sj >= 0 && sj < w;
          if (row == 4) {  // One float32 channel: a word, not a memcpy call.
            uint32_t v = 0;
            if (inside) std::memcpy(&v, src + (si * w + sj) * 4, 4);
            std::memcpy(dst, &v, 4);
          } else if (inside) {
            std::memcpy(dst, src + (si * w + sj) * row, row);
          } else {
            std::memset(dst, 0, row);
          }
          dst += row;
        }
      }
    }
  }
}

ffi::Error Windows(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out) {
  const auto dims = x.dimensions();
  const size_t rank = dims.size();
  if (rank < 3) {
    return ffi::Error::InvalidArgument("windows: x must be [..., H, W, C]");
  }
  const int64_t h = dims[rank - 3], w = dims[rank - 2];
  const size_t row = dims[rank - 1] * ffi::ByteWidth(x.element_type());
  int64_t images = 1;
  for (size_t i = 0; i + 3 < rank; ++i) images *= dims[i];
  const char* src = static_cast<const char*>(x.untyped_data());
  char* dst = static_cast<char*>(out->untyped_data());
  for (int64_t b = 0; b < images; ++b) {
    ImageWindows(src + b * h * w * row, dst + b * h * w * 9 * row, h, w, row);
  }
  return ffi::Error::Success();
}

// One group of images: src [n, h, w, c] -> dst [9, c, n, h, w]. The group
// is first transposed once, in blocks of a few pixels, into a zero-bordered
// channel-major copy [c, n, h + 2, w + 2] (a ninth of the output's size);
// then each output row of a tap and channel is copied out of it, so that the
// output is written once, front to back.
// Output rows are copied in whole vectors of this many elements.
constexpr int64_t kVector = 8;

template <typename T>
void GroupTapMajor(const T* src, T* dst, int64_t n, int64_t h, int64_t w,
                   int64_t c, std::vector<T>& padded) {
  constexpr int64_t kBlock = 16;
  const int64_t ph = h + 2, pw = w + 2, channel = n * ph * pw;
  // kVector more: the last row's whole-vector reads stay inside.
  padded.assign(c * channel + kVector, T(0));
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t i = 0; i < h; ++i) {
      const T* row = src + (k * h + i) * w * c;
      T* out = padded.data() + (k * ph + i + 1) * pw + 1;
      for (int64_t j0 = 0; j0 < w; j0 += kBlock) {
        const int64_t j1 = std::min(w, j0 + kBlock);
        for (int64_t ch = 0; ch < c; ++ch) {
          for (int64_t j = j0; j < j1; ++j) {
            out[ch * channel + j] = row[j * c + ch];
          }
        }
      }
    }
  }
  // Rows are copied in whole vectors of kVector elements: the few written
  // past a row's end belong to the next row and are overwritten by it; the
  // output's last rows, which have no next row, are copied exactly.
  const int64_t rounded = (w + kVector - 1) / kVector * kVector;
  T* const end = dst + 9 * c * n * h * w;
  for (int64_t tap = 0; tap < 9; ++tap) {
    const int64_t dy = tap / 3, dx = tap % 3;
    for (int64_t ch = 0; ch < c; ++ch) {
      const T* plane = padded.data() + ch * channel + dy * pw + dx;
      for (int64_t k = 0; k < n * ph; k += ph) {
        for (int64_t i = 0; i < h; ++i) {
          const T* in = plane + (k + i) * pw;
          if (end - dst >= rounded) {
            for (int64_t j = 0; j < rounded; j += kVector) {
              std::memcpy(dst + j, in + j, kVector * sizeof(T));
            }
          } else {
            std::memcpy(dst, in, w * sizeof(T));
          }
          dst += w;
        }
      }
    }
  }
}

template <typename T>
void TapMajor(const char* src, char* dst, int64_t groups, int64_t n,
              int64_t h, int64_t w, int64_t c) {
  const int64_t size = n * h * w * c;
  std::vector<T> padded;
  for (int64_t g = 0; g < groups; ++g) {
    GroupTapMajor(reinterpret_cast<const T*>(src) + g * size,
                  reinterpret_cast<T*>(dst) + g * 9 * size, n, h, w, c,
                  padded);
  }
}

// inner_rank: how many of x's leading axes come after the 9 C axis (the
// images one kernel-gradient matmul sums over); the axes before them (added
// by vmap) stay in front.
ffi::Error TapMajorWindows(ffi::AnyBuffer x, ffi::Result<ffi::AnyBuffer> out,
                           int64_t inner_rank) {
  const auto dims = x.dimensions();
  const int64_t rank = dims.size();
  if (rank < 3 || inner_rank < 0 || inner_rank > rank - 3) {
    return ffi::Error::InvalidArgument(
        "tap-major windows: x must be [outer..., inner..., H, W, C]");
  }
  const int64_t h = dims[rank - 3], w = dims[rank - 2], c = dims[rank - 1];
  int64_t groups = 1, n = 1;
  for (int64_t i = 0; i < rank - 3; ++i) {
    (i < rank - 3 - inner_rank ? groups : n) *= dims[i];
  }
  const char* src = static_cast<const char*>(x.untyped_data());
  char* dst = static_cast<char*>(out->untyped_data());
  switch (ffi::ByteWidth(x.element_type())) {
    case 1: TapMajor<uint8_t>(src, dst, groups, n, h, w, c); break;
    case 2: TapMajor<uint16_t>(src, dst, groups, n, h, w, c); break;
    case 4: TapMajor<uint32_t>(src, dst, groups, n, h, w, c); break;
    case 8: TapMajor<uint64_t>(src, dst, groups, n, h, w, c); break;
    default:
      return ffi::Error::InvalidArgument("tap-major windows: element size");
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnTapMajorWindows, TapMajorWindows,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Attr<int64_t>("inner_rank"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnWindows, Windows,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
