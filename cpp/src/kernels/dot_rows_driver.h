// Row blocking shared by the dot_rows_* kernels of every ISA: rows go to a block kernel R at a
// time (R rows in flight share each query load and one combined horizontal sum), the rest one
// at a time. `block(std::integral_constant<int, B>{}, q, rows, d, out)` scores B rows, given
// as B pointers. With prefetch_bytes > 0, the rows about that many bytes ahead (at least one
// block) are prefetched a block at a time; prefetches never fault and stop at the last row.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#if defined(__GNUC__)
#define PICOFACE_PREFETCH(p) __builtin_prefetch(p)
#else
#define PICOFACE_PREFETCH(p) ((void)(p))
#endif

namespace picoface {

// Bytes ahead that dot_rows_f32 prefetches. Visiting R rows side by side breaks the single
// ascending stream that the hardware prefetchers follow best; measured on AMD EPYC (AVX-512,
// 100k rows, a gallery far larger than L3) dot_rows_f32 without it ran up to 2-3x slower than
// a dot per row at d = 128 and about 15% slower at d = 512, and with it at par or better.
// dot_rows_s8 gained nothing clear from it (-5% at d = 512, +12% at d = 128), so it uses 0.
constexpr std::size_t kDotRowsF32PrefetchBytes = 1024;

template <int R, typename T, typename Out, typename Block>
inline void dot_rows_blocked(const T* q, const T* rows, std::size_t n_rows, std::size_t d, std::ptrdiff_t row_stride,
                             Out* out, std::size_t prefetch_bytes, Block block) {
  const std::size_t row_bytes = d * sizeof(T);
  const std::size_t ahead = prefetch_bytes ? std::max<std::size_t>(R, (prefetch_bytes + row_bytes - 1) / row_bytes) : 0;
  std::size_t j = 0;
  for (; j + R <= n_rows; j += R) {
    const T* r[R];
    for (int t = 0; t < R; ++t) r[t] = rows + static_cast<std::ptrdiff_t>(j + t) * row_stride;
    if (ahead) {
      for (std::size_t p = j + ahead; p < j + ahead + R && p < n_rows; ++p) {
        const char* pr = reinterpret_cast<const char*>(rows + static_cast<std::ptrdiff_t>(p) * row_stride);
        for (std::size_t off = 0; off < row_bytes; off += 64) PICOFACE_PREFETCH(pr + off);
      }
    }
    block(std::integral_constant<int, R>{}, q, r, d, out + j);
  }
  for (; j < n_rows; ++j) {
    const T* r[1] = {rows + static_cast<std::ptrdiff_t>(j) * row_stride};
    block(std::integral_constant<int, 1>{}, q, r, d, out + j);
  }
}

}  // namespace picoface
