#include "picoface/cpu.h"

#include <cstdint>
#include <cstdlib>

#include "picoface/error.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define PICOFACE_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace picoface {
namespace {

#if defined(PICOFACE_X86)
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  __cpuidex(reinterpret_cast<int*>(r), static_cast<int>(leaf), static_cast<int>(sub));
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

std::uint64_t xgetbv0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
#endif
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(PICOFACE_X86)
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1;
  f.sse41 = (r[2] >> 19) & 1;
  f.fma = (r[2] >> 12) & 1;
  // The OS must save the wide registers on context switch, or using them corrupts state.
  const std::uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    f.avx2 = os_avx && ((r[1] >> 5) & 1);
    f.fma = f.fma && os_avx;
    f.avx512f = os_avx512 && ((r[1] >> 16) & 1);
    f.avx512dq = os_avx512 && ((r[1] >> 17) & 1);
    f.avx512bw = os_avx512 && ((r[1] >> 30) & 1);
    f.avx512vl = os_avx512 && ((r[1] >> 31) & 1);
    f.avx512vnni = os_avx512 && ((r[2] >> 11) & 1);
  }
#elif defined(__aarch64__)
  f.neon = true;  // mandatory on AArch64
#if defined(__linux__)
  const unsigned long hwcap = getauxval(AT_HWCAP);
  f.dotprod = (hwcap & (1UL << 20)) != 0;  // HWCAP_ASIMDDP
#endif
#endif
  return f;
}

bool runnable(Isa isa, const CpuFeatures& f) {
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kSse41: return f.sse41;
    case Isa::kAvx2: return f.avx2 && f.fma;
    case Isa::kAvx512: return f.avx512f && f.avx512dq && f.avx512bw && f.avx512vl && f.avx512vnni;
    case Isa::kNeon: return f.neon;
    case Isa::kNeonDot: return f.neon && f.dotprod;
  }
  return false;
}

struct NamedIsa {
  Isa isa;
  const char* name;
};
constexpr NamedIsa kIsaNames[] = {
    {Isa::kScalar, "scalar"}, {Isa::kSse41, "sse41"}, {Isa::kAvx2, "avx2"},
    {Isa::kAvx512, "avx512"}, {Isa::kNeon, "neon"},   {Isa::kNeonDot, "neondot"},
};

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

const char* isa_name(Isa isa) {
  for (const auto& n : kIsaNames) {
    if (n.isa == isa) return n.name;
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  std::string valid;
  for (const auto& n : kIsaNames) {
    if (name == n.name) return n.isa;
    valid += valid.empty() ? n.name : std::string("|") + n.name;
  }
  throw Error(ErrorCode::kInvalidArgument,
              "unknown ISA '" + name + "': expected one of " + valid);
}

std::vector<Isa> compiled_isas() {
  std::vector<Isa> out{Isa::kScalar};
#if defined(PICOFACE_HAVE_SSE41)
  out.push_back(Isa::kSse41);
#endif
#if defined(PICOFACE_HAVE_AVX2)
  out.push_back(Isa::kAvx2);
#endif
#if defined(PICOFACE_HAVE_AVX512)
  out.push_back(Isa::kAvx512);
#endif
#if defined(PICOFACE_HAVE_NEON)
  out.push_back(Isa::kNeon);
#endif
#if defined(PICOFACE_HAVE_NEONDOT)
  out.push_back(Isa::kNeonDot);
#endif
  return out;
}

bool isa_supported(Isa isa) {
  for (Isa c : compiled_isas()) {
    if (c == isa) return runnable(isa, cpu_features());
  }
  return false;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa c : compiled_isas()) {
    if (runnable(c, cpu_features())) out.push_back(c);
  }
  return out;
}

Isa default_isa() {
  static const Isa chosen = [] {
    const std::vector<Isa> ok = supported_isas();
    const char* env = std::getenv("PICOFACE_ISA");
    if (env == nullptr || *env == '\0') return ok.back();
    const Isa wanted = isa_from_name(env);
    if (!isa_supported(wanted)) {
      throw Error(ErrorCode::kUnsupported, std::string("PICOFACE_ISA=") + env +
                                               " is not compiled in or not supported by this CPU");
    }
    return wanted;
  }();
  return chosen;
}

}  // namespace picoface
