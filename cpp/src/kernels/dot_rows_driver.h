// Row blocking shared by the dot_rows_* kernels of every ISA: rows go to a block kernel R at a
// time (R rows in flight share each query load and one combined horizontal sum), the rest one
// at a time. `block(std::integral_constant<int, B>{}, q, rows, d, out)` scores B rows, given
// as B pointers.
#pragma once

#include <cstddef>
#include <type_traits>

namespace picoface {

template <int R, typename T, typename Out, typename Block>
inline void dot_rows_blocked(const T* q, const T* rows, std::size_t n_rows, std::size_t d, std::ptrdiff_t row_stride,
                             Out* out, Block block) {
  std::size_t j = 0;
  for (; j + R <= n_rows; j += R) {
    const T* r[R];
    for (int t = 0; t < R; ++t) r[t] = rows + static_cast<std::ptrdiff_t>(j + t) * row_stride;
    block(std::integral_constant<int, R>{}, q, r, d, out + j);
  }
  for (; j < n_rows; ++j) {
    const T* r[1] = {rows + static_cast<std::ptrdiff_t>(j) * row_stride};
    block(std::integral_constant<int, 1>{}, q, r, d, out + j);
  }
}

}  // namespace picoface
