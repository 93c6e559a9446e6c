// CPU feature detection and the instruction-set levels picoface dispatches between.
#pragma once

#include <string>
#include <vector>

namespace picoface {

// Ordered within each architecture: a level implies every lower level of its family.
enum class Isa : int {
  kScalar = 0,
  kSse41,    // x86: SSE4.1
  kAvx2,     // x86: AVX2 + FMA
  kAvx512,   // x86: AVX-512 F/DQ/BW/VL/VNNI
  kNeon,     // ARM: Advanced SIMD (baseline on AArch64)
  kNeonDot,  // ARM: Advanced SIMD + dot-product extension (SDOT/UDOT)
};

struct CpuFeatures {
  bool sse41 = false, avx2 = false, fma = false;
  bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false, avx512vnni = false;
  bool neon = false, dotprod = false;
};

// Features of the running CPU, read once with cpuid/xgetbv (x86) or getauxval (ARM Linux);
// compiler builtins are avoided because some toolchains (zig) report nothing through them.
const CpuFeatures& cpu_features();

const char* isa_name(Isa isa);
// Parses a PICOFACE_ISA-style name; throws Error(kInvalidArgument) listing the valid names.
Isa isa_from_name(const std::string& name);

// Levels compiled into this binary, lowest first.
std::vector<Isa> compiled_isas();
// Levels compiled in that this CPU can execute, lowest first.
std::vector<Isa> supported_isas();
bool isa_supported(Isa isa);

// The highest supported level, lowered to PICOFACE_ISA when that is set (read once).
// Throws Error(kUnsupported) if PICOFACE_ISA names a level this machine cannot run.
Isa default_isa();

}  // namespace picoface
