// Each ISA file exports one function that overrides the kernel-table entries it accelerates.
// The table it receives already holds the level below it, so an ISA file implements only
// what pays off on that level.
#pragma once

#include "picoface/kernels.h"

namespace picoface {

void fill_reference(KernelTable* table);
#if defined(PICOFACE_HAVE_SSE41)
void fill_sse41(KernelTable* table);
#endif
#if defined(PICOFACE_HAVE_AVX2)
void fill_avx2(KernelTable* table);
#endif
#if defined(PICOFACE_HAVE_AVX512)
void fill_avx512(KernelTable* table);
#endif
#if defined(PICOFACE_HAVE_NEON)
void fill_neon(KernelTable* table);
#endif
#if defined(PICOFACE_HAVE_NEONDOT)
void fill_neondot(KernelTable* table);
#endif

}  // namespace picoface
