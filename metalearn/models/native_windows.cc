// The nine shifted 3x3 windows of a zero-padded image, stacked on the
// channel axis: x [..., H, W, C] -> [..., H, W, 9 C], window-major (dy, dx),
// any element type. The same function as metalearn.models.im2col.windows,
// written so that every output element is written once and every input
// element read nine times from cache: XLA's CPU backend builds it as eight
// pad-and-slice kernels and a concatenation, which writes and reads each
// window twice. Built by metalearn/models/native_windows.py against the XLA
// FFI headers that jaxlib ships.
#include <cstdint>
#include <cstring>

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

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MetalearnWindows, Windows,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>());
