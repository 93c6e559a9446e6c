// Builds one kernel table per compiled ISA level, each starting from the level below it.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "isa_fill.h"
#include "picoface/error.h"

namespace picoface {
namespace {

struct Tables {
  KernelTable scalar{}, sse41{}, avx2{}, avx512{}, neon{}, neondot{};

  // A fill function lives in its ISA's file and is compiled with that ISA's flags, so the
  // compiler may use the ISA's instructions in the fill itself (AVX-512 stores of the
  // pointer table): a level this CPU cannot run is never filled (its table stays a copy of
  // the level below, and kernels_for refuses it), else building the tables dies of SIGILL
  // on an older CPU or under valgrind, whose emulated CPU has no AVX-512.
  Tables() {
    fill_reference(&scalar);
    sse41 = avx2 = avx512 = neon = neondot = scalar;
#if defined(PICOFACE_HAVE_SSE41)
    if (isa_supported(Isa::kSse41)) {
      fill_sse41(&sse41);
      sse41.isa = Isa::kSse41;
    }
    avx2 = avx512 = sse41;
#endif
#if defined(PICOFACE_HAVE_AVX2)
    if (isa_supported(Isa::kAvx2)) {
      fill_avx2(&avx2);
      avx2.isa = Isa::kAvx2;
    }
    avx512 = avx2;
#endif
#if defined(PICOFACE_HAVE_AVX512)
    if (isa_supported(Isa::kAvx512)) {
      fill_avx512(&avx512);
      avx512.isa = Isa::kAvx512;
    }
#endif
#if defined(PICOFACE_HAVE_NEON)
    if (isa_supported(Isa::kNeon)) {
      fill_neon(&neon);
      neon.isa = Isa::kNeon;
    }
    neondot = neon;
#endif
#if defined(PICOFACE_HAVE_NEONDOT)
    if (isa_supported(Isa::kNeonDot)) {
      fill_neondot(&neondot);
      neondot.isa = Isa::kNeonDot;
    }
#endif
  }

  const KernelTable& get(Isa isa) const {
    switch (isa) {
      case Isa::kScalar: return scalar;
      case Isa::kSse41: return sse41;
      case Isa::kAvx2: return avx2;
      case Isa::kAvx512: return avx512;
      case Isa::kNeon: return neon;
      case Isa::kNeonDot: return neondot;
    }
    return scalar;
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

std::atomic<const KernelTable*>& active() {
  static std::atomic<const KernelTable*> table{&kernels_for(default_isa())};
  return table;
}

}  // namespace

const KernelTable& kernels_for(Isa isa) {
  if (!isa_supported(isa)) {
    throw Error(ErrorCode::kUnsupported, std::string("ISA '") + isa_name(isa) +
                                             "' is not compiled in or not supported by this CPU");
  }
  return tables().get(isa);
}

const KernelTable& kernels() { return *active().load(std::memory_order_acquire); }

void force_isa(Isa isa) { active().store(&kernels_for(isa), std::memory_order_release); }

Isa active_isa() { return kernels().isa; }

void dwconv3x3_plane_f32(const KernelTable& k, const float* src, int in_h, int in_w, const float* w, int stride,
                         float* dst, int out_h, int out_w, const BiasActParams& p, float* ring) {
  const std::size_t len = dw_row_floats(in_w, out_w, stride);
  std::fill(ring, ring + 3 * len, 0.0f);  // pads stay zero: copies only write columns 1..in_w
  int held[3] = {-1, -1, -1};
  for (int oy = 0; oy < out_h; ++oy) {
    const float* rows[3];
    for (int ky = 0; ky < 3; ++ky) {
      const int iy = oy * stride - 1 + ky;
      rows[ky] = nullptr;
      if (iy < 0 || iy >= in_h) continue;
      float* slot = ring + static_cast<std::size_t>(iy % 3) * len;  // three consecutive rows never share one
      if (held[iy % 3] != iy) {
        held[iy % 3] = iy;
        std::memcpy(slot + 1, src + static_cast<std::ptrdiff_t>(iy) * in_w, static_cast<std::size_t>(in_w) * sizeof(float));
      }
      rows[ky] = slot;
    }
    k.dwconv3x3_row_f32(rows, w, stride, dst + static_cast<std::ptrdiff_t>(oy) * out_w, out_w, p);
  }
}

void dwconv3x3_plane_s8(const KernelTable& k, const std::int8_t* src, int in_h, int in_w, const std::int8_t* w,
                        std::int32_t bias, int stride, std::int8_t z_in, std::int8_t* dst, int out_h, int out_w,
                        const RequantParams& q, std::int8_t* ring) {
  const std::size_t len = dw_row_bytes(in_w, out_w, stride);
  std::fill(ring, ring + 4 * len, z_in);  // pads stay z_in: copies only write columns 1..in_w
  const std::int8_t* pad_row = ring + 3 * len;
  int held[3] = {-1, -1, -1};
  for (int oy = 0; oy < out_h; ++oy) {
    const std::int8_t* rows[3];
    for (int ky = 0; ky < 3; ++ky) {
      const int iy = oy * stride - 1 + ky;
      rows[ky] = pad_row;
      if (iy < 0 || iy >= in_h) continue;
      std::int8_t* slot = ring + static_cast<std::size_t>(iy % 3) * len;
      if (held[iy % 3] != iy) {
        held[iy % 3] = iy;
        std::memcpy(slot + 1, src + static_cast<std::ptrdiff_t>(iy) * in_w, static_cast<std::size_t>(in_w));
      }
      rows[ky] = slot;
    }
    k.dwconv3x3_row_s8(rows, w, bias, stride, dst + static_cast<std::ptrdiff_t>(oy) * out_w, out_w, q);
  }
}

}  // namespace picoface
