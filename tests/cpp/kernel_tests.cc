// Kernel test driver: every kernel of every ISA this machine runs, against the scalar
// reference (the specification), on ragged sizes, odd channel counts, unaligned pointers
// and hostile values. Uses only the public headers so it builds unchanged for x86 and ARM.
//
//   picoface_kernel_tests [isa ...]    # default: every ISA in supported_isas()
//
// Prints one line per failing case (kernel, ISA, parameters, first bad index) and a final
// "N passed, M failed" line; exits non-zero if anything failed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "picoface/cpu.h"
#include "picoface/error.h"
#include "picoface/kernels.h"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#define PICOFACE_TEST_GUARD_PAGES 1
#endif

namespace picoface {
namespace {

constexpr int kSizes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000};
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

int g_passed = 0;
int g_failed = 0;

// Records one case; `what` is only built into a message when the case failed.
void report(bool ok, const char* kernel, Isa isa, const std::string& params,
            const std::string& detail) {
  if (ok) {
    ++g_passed;
    return;
  }
  ++g_failed;
  std::printf("FAIL %s [%s] %s: %s\n", kernel, isa_name(isa), params.c_str(), detail.c_str());
}

std::string fmt(const char* f, double a, double b, double c) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), f, a, b, c);
  return buf;
}

// Bytes that end exactly at an inaccessible page (tail guard) or start exactly after one
// (head guard), so a kernel that reads past what the reference reads faults instead of
// passing by luck. Falls back to a plain vector where mmap is unavailable.
class GuardedBytes {
 public:
  GuardedBytes(std::size_t size, bool guard_head) : size_(size) {
#if defined(PICOFACE_TEST_GUARD_PAGES)
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t data_pages = (size + page - 1) / page + 1;
    map_size_ = (data_pages + 2) * page;
    void* m = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw Error(ErrorCode::kInternal, "mmap failed");
    base_ = static_cast<std::uint8_t*>(m);
    mprotect(base_, page, PROT_NONE);
    mprotect(base_ + map_size_ - page, page, PROT_NONE);
    data_ = guard_head ? base_ + page : base_ + map_size_ - page - size;
#else
    (void)guard_head;
    fallback_.resize(size + 1);
    data_ = fallback_.data();
#endif
  }
  ~GuardedBytes() {
#if defined(PICOFACE_TEST_GUARD_PAGES)
    munmap(base_, map_size_);
#endif
  }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  std::uint8_t* data() { return data_; }
  std::size_t size() const { return size_; }

 private:
  std::size_t size_;
  std::uint8_t* data_ = nullptr;
#if defined(PICOFACE_TEST_GUARD_PAGES)
  std::uint8_t* base_ = nullptr;
  std::size_t map_size_ = 0;
#else
  std::vector<std::uint8_t> fallback_;
#endif
};

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return a == b;
}

// |got - want| within `rel` of `scale` (the sum of absolute terms, so cancellation in the
// reference does not make the tolerance vanish). Infinities and NaN must match exactly.
bool close_float(float got, float want, double scale, double rel) {
  if (!std::isfinite(want) || !std::isfinite(got)) return same_float(got, want);
  return std::fabs(static_cast<double>(got) - want) <= rel * scale + 1e-30;
}

// ---------------------------------------------------------------------------------------
void test_resample(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> wdist(-0.5f, 1.5f);
  for (int ch = 1; ch <= 4; ++ch) {
    for (int ntaps = 1; ntaps <= 5; ++ntaps) {
      for (int dst_w : kSizes) {
        for (int variant = 0; variant < 4; ++variant) {
          // variant 0: downscale with increasing offsets; 1: upscale with repeated offsets;
          // 2: 2:1 shrink, offsets stepping by exactly 2 (SIMD stride-2 blocks up to the last
          // tap of the row); 3: as 2 with every third offset moved by one, which breaks the
          // stride inside some blocks and leaves whole stride-2 blocks between them.
          const int src_w = variant == 0   ? dst_w * 3 + ntaps
                            : variant == 1 ? dst_w / 2 + ntaps
                                           : 2 * (dst_w - 1) + ntaps + (variant == 3 ? 1 : 0);
          std::vector<std::int32_t> xofs(dst_w);
          for (int x = 0; x < dst_w; ++x) {
            if (variant >= 2) {
              xofs[x] = 2 * x + (variant == 3 && x % 24 == 23 ? 1 : 0);
              continue;
            }
            xofs[x] = static_cast<std::int32_t>(
                static_cast<long long>(x) * (src_w - ntaps) / (dst_w > 1 ? dst_w - 1 : 1));
          }
          xofs[dst_w - 1] = src_w - ntaps;  // the row ends exactly at the last tap
          std::vector<float> weights(static_cast<std::size_t>(dst_w) * ntaps + 1);
          for (auto& w : weights) w = wdist(rng);
          for (int guard_head = 0; guard_head < 2; ++guard_head) {
            GuardedBytes src(static_cast<std::size_t>(src_w) * ch, guard_head != 0);
            for (std::size_t i = 0; i < src.size(); ++i) src.data()[i] = rng() & 0xFF;
            const float* wptr = weights.data() + 1;  // unaligned by one float
            std::vector<float> out_ref(static_cast<std::size_t>(ch) * (dst_w + 2), -7.0f);
            std::vector<float> out_got = out_ref;
            float* planes_ref[4];
            float* planes_got[4];
            for (int c = 0; c < ch; ++c) {
              planes_ref[c] = out_ref.data() + c * (dst_w + 2) + 1;
              planes_got[c] = out_got.data() + c * (dst_w + 2) + 1;
            }
            ref.resample_row_u8(src.data(), ch, xofs.data(), wptr, ntaps, dst_w, planes_ref);
            k.resample_row_u8(src.data(), ch, xofs.data(), wptr, ntaps, dst_w, planes_got);
            std::string detail;
            for (std::size_t i = 0; i < out_ref.size() && detail.empty(); ++i) {
              const int c = static_cast<int>(i) / (dst_w + 2);
              const int x = static_cast<int>(i) % (dst_w + 2) - 1;
              double scale = 0;
              if (x >= 0 && x < dst_w) {
                const std::uint8_t* p = src.data() + static_cast<std::size_t>(xofs[x]) * ch;
                for (int t = 0; t < ntaps; ++t)
                  scale += std::fabs(wptr[x * ntaps + t] * p[t * ch + c]);
              }
              const bool ok = (x >= 0 && x < dst_w)
                                  ? close_float(out_got[i], out_ref[i], scale, 1e-5)
                                  : same_float(out_got[i], out_ref[i]);
              if (!ok) detail = fmt("plane %g x %g got %.9g", c, x, out_got[i]) +
                                fmt(" want %.9g", out_ref[i], 0, 0);
            }
            report(detail.empty(), "resample_row_u8", k.isa,
                   fmt("channels=%g ntaps=%g dst_w=%g", ch, ntaps, dst_w) +
                       fmt(" src_w=%g guard_head=%g", src_w, guard_head, 0),
                   detail);
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
void test_blend(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> vdist(-300.0f, 300.0f);
  std::uniform_real_distribution<float> wdist(-0.5f, 1.5f);
  for (int ntaps = 1; ntaps <= 5; ++ntaps) {
    for (int n : kSizes) {
      for (int misalign = 0; misalign < 2; ++misalign) {
        std::vector<std::vector<float>> storage(ntaps, std::vector<float>(n + 1));
        std::vector<const float*> rows(ntaps);
        for (int t = 0; t < ntaps; ++t) {
          for (auto& v : storage[t]) v = vdist(rng);
          rows[t] = storage[t].data() + misalign * ((t & 1) ^ 1);
        }
        float w[6];
        for (float& v : w) v = wdist(rng);
        const float* wptr = w + misalign;
        std::vector<float> out_ref(n + 2, -7.0f), out_got(n + 2, -7.0f);
        ref.blend_rows_f32(rows.data(), wptr, ntaps, n, out_ref.data() + misalign);
        k.blend_rows_f32(rows.data(), wptr, ntaps, n, out_got.data() + misalign);
        std::string detail;
        for (int i = 0; i < n + 2 && detail.empty(); ++i) {
          const int x = i - misalign;
          double scale = 0;
          if (x >= 0 && x < n) {
            for (int t = 0; t < ntaps; ++t) scale += std::fabs(wptr[t] * rows[t][x]);
          }
          const bool ok = (x >= 0 && x < n) ? close_float(out_got[i], out_ref[i], scale, 1e-5)
                                            : same_float(out_got[i], out_ref[i]);
          if (!ok) detail = fmt("index %g got %.9g want %.9g", x, out_got[i], out_ref[i]);
        }
        report(detail.empty(), "blend_rows_f32", k.isa,
               fmt("ntaps=%g n=%g misaligned=%g", ntaps, n, misalign), detail);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
void test_pack(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> vdist(-20.0f, 275.0f);
  std::uniform_real_distribution<float> mdist(-2.0f, 2.0f);
  std::uniform_int_distribution<int> tie_dist(-140, 140);
  const float specials[] = {kNan, kInf, -kInf, 1e30f, -1e30f, 3e9f, -3e9f, 0.5f, -0.5f, 1.5f,
                            2.5f, -2.5f, 127.5f, -128.5f, 126.5f, 8388609.0f, -0.0f};
  for (int in_ch : {1, 3}) {
    for (int out_ch : {1, 3}) {
      for (int to_int8 = 0; to_int8 < 2; ++to_int8) {
        for (int nhwc = 0; nhwc < 2; ++nhwc) {
          // values 0: ordinary pixels; 1: exact .5 ties through an identity transform;
          // 2: ordinary pixels with specials (NaN, inf, huge) sprinkled in.
          for (int values = 0; values < 3; ++values) {
            for (int n : kSizes) {
              const int misalign = n & 1;
              PackParams p;
              p.in_channels = in_ch;
              p.out_channels = out_ch;
              p.to_int8 = to_int8 != 0;
              if (values == 1) {
                for (int c = 0; c < 3; ++c)
                  for (int j = 0; j < 3; ++j) p.matrix[c][j] = (c == j || in_ch == 1) ? 1.0f : 0.0f;
                p.inv_scale = 1.0f;
              } else {
                for (auto& row : p.matrix)
                  for (float& v : row) v = mdist(rng);
                for (float& b : p.bias) b = mdist(rng) * 50.0f;
                p.inv_scale = 0.25f + static_cast<float>(rng() % 100) / 50.0f;
              }
              p.zero_point = static_cast<int>(rng() % 21) - 10;
              if (nhwc) {
                p.channel_stride = 1;
                p.pixel_stride = out_ch;
              } else {
                p.channel_stride = n + 3;  // a gap between planes catches overruns
                p.pixel_stride = 1;
              }
              std::vector<std::vector<float>> planes(in_ch, std::vector<float>(n + 1));
              std::vector<const float*> in(in_ch);
              for (int c = 0; c < in_ch; ++c) {
                for (auto& v : planes[c]) {
                  if (values == 1) {
                    v = static_cast<float>(tie_dist(rng)) + ((rng() & 1) ? 0.5f : 0.0f);
                  } else if (values == 2 && rng() % 4 == 0) {
                    v = specials[rng() % (sizeof(specials) / sizeof(specials[0]))];
                  } else {
                    v = vdist(rng);
                  }
                }
                in[c] = planes[c].data() + misalign;
              }
              const std::size_t extent =
                  static_cast<std::size_t>(nhwc ? n * out_ch : out_ch * (n + 3)) + 2;
              std::string detail;
              if (p.to_int8) {
                std::vector<std::int8_t> ref_out(extent, 99), got_out(extent, 99);
                ref.pack_row(in.data(), n, p, ref_out.data() + misalign);
                k.pack_row(in.data(), n, p, got_out.data() + misalign);
                for (std::size_t i = 0; i < extent && detail.empty(); ++i) {
                  if (ref_out[i] != got_out[i]) {
                    detail = fmt("element %g got %g want %g", static_cast<double>(i) - misalign,
                                 got_out[i], ref_out[i]);
                  }
                }
              } else {
                std::vector<float> ref_out(extent, -7.0f), got_out(extent, -7.0f);
                ref.pack_row(in.data(), n, p, ref_out.data() + misalign);
                k.pack_row(in.data(), n, p, got_out.data() + misalign);
                for (std::size_t i = 0; i < extent && detail.empty(); ++i) {
                  const std::ptrdiff_t e = static_cast<std::ptrdiff_t>(i) - misalign;
                  // Recover (pixel, channel) of this element to bound the rounding error.
                  double scale = 0;
                  bool inside = false;
                  if (e >= 0) {
                    const int px = nhwc ? static_cast<int>(e / out_ch) : static_cast<int>(e % (n + 3));
                    const int c = nhwc ? static_cast<int>(e % out_ch) : static_cast<int>(e / (n + 3));
                    if (px < n && c < out_ch) {
                      inside = true;
                      scale = std::fabs(p.bias[c]);
                      for (int j = 0; j < in_ch; ++j) scale += std::fabs(p.matrix[c][j] * in[j][px]);
                    }
                  }
                  const bool ok = inside ? close_float(got_out[i], ref_out[i], scale, 1e-5)
                                         : same_float(got_out[i], ref_out[i]);
                  if (!ok) {
                    detail = fmt("element %g got %.9g want %.9g", static_cast<double>(e),
                                 got_out[i], ref_out[i]);
                  }
                }
              }
              report(detail.empty(), "pack_row", k.isa,
                     fmt("in=%g out=%g int8=%g", in_ch, out_ch, to_int8) +
                         (nhwc ? " NHWC" : " NCHW") + fmt(" values=%g n=%g", values, n, 0),
                     detail);
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
struct WarpCase {
  const char* name;
  int src_w, src_h, dst_w, dst_h;
  float m[6];
};

void test_warp(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::vector<WarpCase> cases;
  // Identity-ish and scaled maps that stay inside; rotations that cross every border;
  // maps fully outside; NaN and huge coefficients; a 1x1 and 2x2 source.
  for (int dst_w : kSizes) {
    const int dst_h = dst_w >= 100 ? 3 : 5;
    cases.push_back({"inside", 640, 48, dst_w, dst_h, {0.9f, 0.05f, 3.3f, -0.04f, 0.8f, 4.7f}});
    cases.push_back({"rotated", 41, 29, dst_w, dst_h,
                     {0.7071f, -0.7071f, 10.2f, 0.7071f, 0.7071f, -8.6f}});
    cases.push_back({"scaled_up", 37, 23, dst_w, dst_h,
                     {0.3f * 37 / static_cast<float>(dst_w), 0.0f, -4.25f, 0.0f, 6.0f, -3.5f}});
    cases.push_back({"integer", 40, 9, dst_w, dst_h, {1.0f, 0.0f, -2.0f, 0.0f, 1.0f, -1.0f}});
  }
  cases.push_back({"outside", 32, 32, 33, 4, {1.0f, 0.0f, 1000.0f, 0.0f, 1.0f, 0.0f}});
  cases.push_back({"outside_neg", 32, 32, 17, 4, {1.0f, 0.0f, -1.0f, 0.0f, 1.0f, -1e9f}});
  cases.push_back({"nan", 32, 32, 17, 4, {kNan, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f}});
  cases.push_back({"nan_offset", 32, 32, 9, 3, {1.0f, 0.0f, 1.0f, 0.0f, 1.0f, kNan}});
  cases.push_back({"inf", 32, 32, 9, 3, {kInf, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f}});
  cases.push_back({"src_1x1", 1, 1, 7, 5, {0.3f, 0.0f, -1.1f, 0.0f, 0.3f, -1.1f}});
  cases.push_back({"src_2x2", 2, 2, 17, 9, {0.13f, 0.0f, -0.6f, 0.0f, 0.2f, -0.6f}});
  cases.push_back({"edges", 16, 8, 65, 12, {0.25f, 0.0f, -0.5f, 0.0f, 0.75f, -0.9f}});
  // Every footprint inside, the last ones on the bottom-right source pixel: SIMD blocks must
  // not read past the image there.
  cases.push_back({"corner", 24, 12, 17, 4, {0.5f, 0.0f, 14.2f, 0.0f, 0.5f, 9.3f}});

  for (const WarpCase& wc : cases) {
    for (int ch = 1; ch <= 4; ++ch) {
      for (int layout = 0; layout < 2; ++layout) {
        // layout 0: packed rows, source ends at a guard page; 1: padded rows, head guard,
        // odd destination stride and offset.
        const std::ptrdiff_t src_stride = static_cast<std::ptrdiff_t>(wc.src_w) * ch + layout * 5;
        const std::size_t src_size =
            static_cast<std::size_t>(src_stride) * (wc.src_h - 1) + static_cast<std::size_t>(wc.src_w) * ch;
        GuardedBytes src(src_size, layout == 1);
        for (std::size_t i = 0; i < src_size; ++i) src.data()[i] = rng() & 0xFF;
        // Saturated neighbourhoods check the 255 clamp and the rounding at the top end.
        if (wc.src_w > 4) std::memset(src.data(), 255, static_cast<std::size_t>(4) * ch);
        const std::ptrdiff_t dst_stride = static_cast<std::ptrdiff_t>(wc.dst_w) * ch + layout * 3;
        const std::size_t dst_size = static_cast<std::size_t>(dst_stride) * wc.dst_h + 2;
        std::vector<std::uint8_t> dst_ref(dst_size, 0xA5), dst_got(dst_size, 0xA5);
        WarpParams p;
        p.src = src.data();
        p.src_w = wc.src_w;
        p.src_h = wc.src_h;
        p.channels = ch;
        p.src_stride = src_stride;
        std::memcpy(p.m, wc.m, sizeof(p.m));
        p.dst_w = wc.dst_w;
        p.dst_h = wc.dst_h;
        p.dst_stride = dst_stride;
        for (auto& b : p.border) b = static_cast<std::uint8_t>(rng() & 0xFF);
        p.dst = dst_ref.data() + layout;
        ref.warp_affine_u8(p);
        p.dst = dst_got.data() + layout;
        k.warp_affine_u8(p);
        std::string detail;
        for (std::size_t i = 0; i < dst_size && detail.empty(); ++i) {
          // Fixed point: every byte, written or not, must equal the reference's.
          const std::ptrdiff_t e = static_cast<std::ptrdiff_t>(i) - layout;
          if (dst_got[i] != dst_ref[i]) {
            detail = fmt("y %g x %g", static_cast<double>(e / dst_stride),
                         static_cast<double>((e % dst_stride) / ch), 0) +
                     fmt(" c %g got %g want %g", static_cast<double>((e % dst_stride) % ch),
                         dst_got[i], dst_ref[i]);
          }
        }
        report(detail.empty(), "warp_affine_u8", k.isa,
               std::string(wc.name) + fmt(" src=%gx%g channels=%g", wc.src_w, wc.src_h, ch) +
                   fmt(" dst=%gx%g layout=%g", wc.dst_w, wc.dst_h, layout),
               detail);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
void test_dot(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> fdist(-1.0f, 1.0f);
  std::vector<int> sizes(std::begin(kSizes), std::end(kSizes));
  sizes.insert(sizes.begin(), 0);
  sizes.push_back(4099);
  for (int n : sizes) {
    for (int misalign = 0; misalign < 2; ++misalign) {
      std::vector<float> a(n + 1), b(n + 1);
      for (auto& v : a) v = fdist(rng);
      for (auto& v : b) v = fdist(rng) * 100.0f;
      const float* pa = a.data() + misalign;
      const float* pb = b.data() + (misalign ^ (n & 1));
      const float want = ref.dot_f32(pa, pb, n);
      const float got = k.dot_f32(pa, pb, n);
      double scale = 0;
      for (int i = 0; i < n; ++i) scale += std::fabs(static_cast<double>(pa[i]) * pb[i]);
      report(close_float(got, want, scale, 1e-5), "dot_f32", k.isa,
             fmt("n=%g misaligned=%g", n, misalign, 0), fmt("got %.9g want %.9g", got, want, 0));

      std::vector<std::int8_t> sa(n + 1), sb(n + 1);
      for (auto& v : sa) v = static_cast<std::int8_t>(rng() & 0xFF);
      for (auto& v : sb) v = static_cast<std::int8_t>(rng() & 0xFF);
      const std::int8_t* qa = sa.data() + misalign;
      const std::int8_t* qb = sb.data() + (misalign ^ (n & 1));
      const std::int32_t swant = ref.dot_s8(qa, qb, n);
      const std::int32_t sgot = k.dot_s8(qa, qb, n);
      report(sgot == swant, "dot_s8", k.isa, fmt("n=%g misaligned=%g", n, misalign, 0),
             fmt("got %g want %g", sgot, swant, 0));
    }
  }
  // Extremes near the documented limit n*128*128 < 2^31: all -128 (largest products, and the
  // worst case for any unsigned-bias trick) and mixed signs.
  const std::size_t big = (1u << 31) / (128 * 128) - 7;
  for (int pattern = 0; pattern < 3; ++pattern) {
    std::vector<std::int8_t> a(big), b(big);
    for (std::size_t i = 0; i < big; ++i) {
      a[i] = pattern == 0 ? -128 : pattern == 1 ? 127 : static_cast<std::int8_t>(rng() & 0xFF);
      b[i] = pattern == 0 ? -128 : pattern == 1 ? -128 : (i & 1 ? -128 : 127);
    }
    const std::int32_t want = ref.dot_s8(a.data(), b.data(), big);
    const std::int32_t got = k.dot_s8(a.data(), b.data(), big);
    report(got == want, "dot_s8", k.isa, fmt("n=%g pattern=%g", static_cast<double>(big), pattern, 0),
           fmt("got %g want %g", got, want, 0));
  }
}

// Floats whose last element ends at a guard page (or, with guard_head, whose first one
// starts right after one), optionally offset by one float from the page boundary.
struct GuardedFloats {
  GuardedFloats(std::size_t n, bool guard_head) : bytes(n * sizeof(float), guard_head) {}
  float* data() { return reinterpret_cast<float*>(bytes.data()); }
  GuardedBytes bytes;
};

// ---------------------------------------------------------------------------------------
// dot_rows_f32 / dot_rows_s8: n_rows rows at row_stride (packed or padded) against one query;
// the rows end exactly at a guard page (or start right after one), and so does the query,
// so any read past the d elements of a row faults. out sits between sentinels. s8 is exact
// against the reference (and dot_s8); f32 is bit-identical to the same table's dot_f32 and
// within dot_f32's tolerance of the reference.

// Fills n int8 values: mode 1 only -128 (the largest products, the worst case of the
// unsigned-bias trick), mode 2 only -128/127, otherwise uniform over the whole range.
void fill_s8_extremes(std::int8_t* p, std::size_t n, int mode, std::mt19937& rng) {
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = mode == 1 ? std::int8_t(-128)
           : mode == 2 ? static_cast<std::int8_t>((rng() & 1) ? 127 : -128)
                       : static_cast<std::int8_t>(rng() & 0xFF);
  }
}

void run_dot_rows_s8(const KernelTable& k, const KernelTable& ref, std::mt19937& rng, std::size_t d,
                     std::size_t n_rows, std::ptrdiff_t pad, bool head, int mode) {
  const std::ptrdiff_t stride = static_cast<std::ptrdiff_t>(d) + pad;
  const std::size_t len = (n_rows - 1) * static_cast<std::size_t>(stride) + d;
  GuardedBytes gq(d, !head), gr(len, head);
  std::int8_t* q = reinterpret_cast<std::int8_t*>(gq.data());
  std::int8_t* rows = reinterpret_cast<std::int8_t*>(gr.data());
  fill_s8_extremes(q, d, mode, rng);
  fill_s8_extremes(rows, len, mode, rng);
  const std::int32_t sentinel = -123456789;
  std::vector<std::int32_t> want(n_rows + 2, sentinel), got(n_rows + 2, sentinel);
  ref.dot_rows_s8(q, rows, n_rows, d, stride, want.data() + 1);
  k.dot_rows_s8(q, rows, n_rows, d, stride, got.data() + 1);
  std::string detail;
  for (std::size_t j = 0; j < n_rows + 2 && detail.empty(); ++j) {
    const bool inside = j >= 1 && j <= n_rows;
    const std::int32_t single = inside ? ref.dot_s8(q, rows + static_cast<std::ptrdiff_t>(j - 1) * stride, d) : sentinel;
    if (got[j] != want[j] || want[j] != single) {
      detail = fmt("row %g: got %g want %g", double(j) - 1, got[j], want[j]) + (inside ? "" : " (written outside out)");
    }
  }
  report(detail.empty(), "dot_rows_s8", k.isa,
         fmt("d=%g n_rows=%g stride=%g", double(d), double(n_rows), double(stride)) +
             fmt(" guard_head=%g mode=%g", head, mode, 0),
         detail);
}

void run_dot_rows_f32(const KernelTable& k, const KernelTable& ref, std::mt19937& rng, std::size_t d,
                      std::size_t n_rows, std::ptrdiff_t pad, bool head) {
  std::uniform_real_distribution<float> fdist(-1.0f, 1.0f);
  const std::ptrdiff_t stride = static_cast<std::ptrdiff_t>(d) + pad;
  const std::size_t len = (n_rows - 1) * static_cast<std::size_t>(stride) + d;
  GuardedFloats gq(d, !head), gr(len, head);
  float* q = gq.data();
  float* rows = gr.data();
  for (std::size_t i = 0; i < d; ++i) q[i] = fdist(rng);
  for (std::size_t i = 0; i < len; ++i) rows[i] = fdist(rng) * 100.0f;
  std::vector<float> want(n_rows + 2, -7.0f), got(n_rows + 2, -7.0f);
  ref.dot_rows_f32(q, rows, n_rows, d, stride, want.data() + 1);
  k.dot_rows_f32(q, rows, n_rows, d, stride, got.data() + 1);
  std::string detail;
  for (std::size_t j = 0; j < n_rows + 2 && detail.empty(); ++j) {
    if (j == 0 || j == n_rows + 1) {
      if (!same_float(got[j], -7.0f)) detail = fmt("slot %g written outside out: %.9g", double(j) - 1, got[j], 0);
      continue;
    }
    const float* r = rows + static_cast<std::ptrdiff_t>(j - 1) * stride;
    double scale = 0;
    for (std::size_t i = 0; i < d; ++i) scale += std::fabs(static_cast<double>(q[i]) * r[i]);
    const float single = k.dot_f32(q, r, d);
    if (!same_float(got[j], single)) {
      detail = fmt("row %g: got %.9g, dot_f32 gives %.9g (must be bit-identical)", double(j) - 1, got[j], single);
    } else if (!close_float(got[j], want[j], scale, 1e-5)) {
      detail = fmt("row %g: got %.9g want %.9g", double(j) - 1, got[j], want[j]);
    }
  }
  report(detail.empty(), "dot_rows_f32", k.isa,
         fmt("d=%g n_rows=%g stride=%g", double(d), double(n_rows), double(stride)) + fmt(" guard_head=%g", head, 0, 0),
         detail);
}

void test_dot_rows(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::vector<std::size_t> dims;
  for (std::size_t d = 1; d <= 130; ++d) dims.push_back(d);
  for (std::size_t d : {255, 256, 257, 511, 512, 513}) dims.push_back(d);
  const std::size_t row_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 100};
  int idx = 0;
  for (std::size_t d : dims) {
    for (std::size_t n_rows : row_counts) {
      for (int head = 0; head < 2; ++head) {
        // Packed rows and two paddings (one odd, so rows start misaligned).
        for (std::ptrdiff_t pad : {std::ptrdiff_t(0), std::ptrdiff_t(3), std::ptrdiff_t(64)}) {
          run_dot_rows_f32(k, ref, rng, d, n_rows, pad, head != 0);
          run_dot_rows_s8(k, ref, rng, d, n_rows, pad, head != 0, idx++ % 3);
        }
      }
    }
  }
  // Extremes at the documented limit d*128*128 < 2^31.
  const std::size_t big = (1u << 31) / (128 * 128) - 7;
  for (int mode = 0; mode < 3; ++mode) run_dot_rows_s8(k, ref, rng, big, 5, 1, mode == 2, mode);
}

// ---------------------------------------------------------------------------------------
// Convolution kernels

void test_gemm(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> fdist(-1.0f, 1.0f);
  const int dims[] = {1, 5, 6, 7, 15, 16, 17, 33, 100};
  for (int m : dims) {
    for (int n : dims) {
      for (int kk : {0, 1, 5, 7, 16, 17, 100, 300}) {
        for (int variant = 0; variant < 2; ++variant) {
          // variant 0: dense, accumulate off; variant 1: padded leading dimensions, pointers
          // off by one float, accumulate on.
          const bool acc = variant == 1;
          const int pad = variant;
          const std::ptrdiff_t lda = kk + pad, ldb = n + pad * 3, ldc = n + pad * 2;
          GuardedFloats ga(std::size_t(m) * lda + pad, false), gb(std::size_t(kk) * ldb + pad, variant == 1);
          float* a = ga.data() + pad;
          float* b = gb.data() + pad;
          for (std::size_t i = 0; i < std::size_t(m) * lda; ++i) a[i] = fdist(rng);
          for (std::size_t i = 0; i < std::size_t(kk) * ldb; ++i) b[i] = fdist(rng) * 10.0f;
          std::vector<float> c0(std::size_t(m) * ldc + 1);
          for (auto& v : c0) v = fdist(rng);
          std::vector<float> c_ref = c0, c_got = c0;
          ref.gemm_f32(m, n, kk, a, lda, b, ldb, c_ref.data() + pad, ldc, acc);
          k.gemm_f32(m, n, kk, a, lda, b, ldb, c_got.data() + pad, ldc, acc);
          std::string detail;
          for (int i = 0; i < m && detail.empty(); ++i) {
            for (std::ptrdiff_t j = 0; j < ldc && detail.empty(); ++j) {
              const std::size_t e = std::size_t(i) * ldc + j + pad;
              if (j >= n) {
                if (c_got[e] != c0[e] && e < c0.size()) detail = fmt("wrote outside C at row %g col %g", i, j, 0);
                continue;
              }
              double scale = acc ? std::fabs(c0[e]) : 0.0;
              for (int p = 0; p < kk; ++p) scale += std::fabs(double(a[i * lda + p]) * b[p * ldb + j]);
              if (!close_float(c_got[e], c_ref[e], scale, 1e-5)) {
                detail = fmt("row %g col %g: got %.9g", i, j, c_got[e]) + fmt(" want %.9g", c_ref[e], 0, 0);
              }
            }
          }
          report(detail.empty(), "gemm_f32", k.isa, fmt("m=%g n=%g k=%g", m, n, kk) + fmt(" variant=%g", variant, 0, 0),
                 detail);
        }
      }
    }
  }
}

// conv_gemm_f32 against the reference GEMM + bias_act_f32 per row of the same ISA (the
// epilogue must be bit-identical to bias_act_f32 on the ISA's own sum), and that sum
// against the reference within gemm_f32's tolerance.
void test_conv_gemm(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> fdist(-1.0f, 1.0f);
  const int dims[] = {1, 5, 6, 7, 13, 16, 17, 33, 100};
  for (int m : dims) {
    for (int n : dims) {
      for (int kk : {0, 1, 3, 16, 27, 100, 300}) {
        for (int variant = 0; variant < 3; ++variant) {
          // variant 0: relu with bias, dense; 1: per-row slopes (prelu), padded leading
          // dimensions and pointers off by one float; 2: no bias, leaky + clip.
          const int pad = variant == 1 ? 1 : 0;
          const std::ptrdiff_t lda = kk + pad, ldb = n + pad * 3, ldc = n + pad * 2;
          GuardedFloats ga(std::size_t(m) * lda + pad, false), gb(std::size_t(kk) * ldb + pad, variant == 1);
          float* a = ga.data() + pad;
          float* b = gb.data() + pad;
          for (std::size_t i = 0; i < std::size_t(m) * lda; ++i) a[i] = fdist(rng);
          for (std::size_t i = 0; i < std::size_t(kk) * ldb; ++i) b[i] = fdist(rng) * 10.0f;
          std::vector<float> bias(m + 1), slopes(m + 1);
          for (auto& v : bias) v = fdist(rng);
          for (auto& v : slopes) v = fdist(rng);
          RowBiasAct e;
          if (variant == 0) {
            e.bias = bias.data();
            e.lo = 0.0f;
          } else if (variant == 1) {
            e.bias = bias.data() + 1;
            e.slopes = slopes.data() + 1;
          } else {
            e.neg_slope = 0.1f;
            e.lo = -1.0f;
            e.hi = 2.0f;
          }
          std::vector<float> c0(std::size_t(m) * ldc + 1);
          for (auto& v : c0) v = fdist(rng);
          std::vector<float> c_sum = c0, c_ref = c0, c_got = c0;
          k.gemm_f32(m, n, kk, a, lda, b, ldb, c_sum.data() + pad, ldc, false);
          ref.conv_gemm_f32(m, n, kk, a, lda, b, ldb, c_ref.data() + pad, ldc, e);
          k.conv_gemm_f32(m, n, kk, a, lda, b, ldb, c_got.data() + pad, ldc, e);
          std::string detail;
          for (int i = 0; i < m && detail.empty(); ++i) {
            BiasActParams p;
            p.bias = e.bias ? e.bias[i] : 0.0f;
            p.neg_slope = e.slopes ? e.slopes[i] : e.neg_slope;
            p.lo = e.lo;
            p.hi = e.hi;
            k.bias_act_f32(c_sum.data() + pad + std::size_t(i) * ldc, n, p);
            for (std::ptrdiff_t j = 0; j < ldc && detail.empty(); ++j) {
              const std::size_t el = std::size_t(i) * ldc + j + pad;
              if (j >= n) {
                if (c_got[el] != c0[el] && el < c0.size()) detail = fmt("wrote outside C at row %g col %g", i, j, 0);
                continue;
              }
              double scale = std::fabs(p.bias);
              for (int q = 0; q < kk; ++q) scale += std::fabs(double(a[i * lda + q]) * b[q * ldb + j]);
              if (!same_float(c_got[el], c_sum[el])) {
                detail = fmt("row %g col %g: got %.9g", i, j, c_got[el]) + fmt(" want %.9g (own sum)", c_sum[el], 0, 0);
              } else if (!close_float(c_got[el], c_ref[el], scale, 1e-5)) {
                detail = fmt("row %g col %g: got %.9g", i, j, c_got[el]) + fmt(" want %.9g", c_ref[el], 0, 0);
              }
            }
          }
          report(detail.empty(), "conv_gemm_f32", k.isa,
                 fmt("m=%g n=%g k=%g", m, n, kk) + fmt(" variant=%g", variant, 0, 0), detail);
        }
      }
    }
  }
}

void test_dwconv3x3(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> fdist(-1.0f, 1.0f);
  // Widths: ragged small ones and a few wide ones (the ring rows grow with them).
  std::vector<int> widths;
  for (int w = 1; w <= 37; w += (w < 18 ? 1 : 4)) widths.push_back(w);
  for (int w : {1030, 1033, 2070, 2085}) widths.push_back(w);
  for (int h = 1; h <= 37; h += (h < 9 ? 1 : 7)) {
    for (int w : widths) {
      for (int stride = 1; stride <= 2; ++stride) {
        for (int pad_end = 0; pad_end <= 1; ++pad_end) {
          const int out_h = (h + 1 + pad_end - 3) / stride + 1, out_w = (w + 1 + pad_end - 3) / stride + 1;
          if (h + 1 + pad_end < 3 || w + 1 + pad_end < 3) continue;
          for (int head = 0; head < 2; ++head) {
            GuardedFloats src(std::size_t(h) * w, head == 1);
            for (int i = 0; i < h * w; ++i) src.data()[i] = fdist(rng);
            float wt[9];
            for (float& v : wt) v = fdist(rng);
            std::vector<float> want(std::size_t(out_h) * out_w + 1, 7.0f), got = want;
            // Alternate the plain sum and a leaky, clipped epilogue (bit-identical on top of it).
            BiasActParams p;
            if ((h + w) % 2 == 1) p = {0.25f, 0.1f, -0.5f, 1.5f};
            // The row kernel reads its padded rows up to exactly dw_row_floats: the ring is
            // guarded right behind that (the input planes are read only by the ring copy).
            const std::size_t len = dw_row_floats(w, out_w, stride);
            GuardedFloats ring(3 * len, false);
            std::vector<float> ref_ring(3 * len);
            dwconv3x3_plane_f32(ref, src.data(), h, w, wt, stride, want.data(), out_h, out_w, p, ref_ring.data());
            dwconv3x3_plane_f32(k, src.data(), h, w, wt, stride, got.data(), out_h, out_w, p, ring.data());
            std::string detail;
            if (got.back() != 7.0f) detail = "wrote past the output";
            for (int i = 0; i < out_h * out_w && detail.empty(); ++i) {
              if (!close_float(got[i], want[i], 9.0, 1e-6)) {
                detail = fmt("at %g: got %.9g want %.9g", i, got[i], want[i]);
              }
            }
            report(detail.empty(), "dwconv3x3_row_f32", k.isa,
                   fmt("in=%gx%g stride=%g", h, w, stride) + fmt(" out=%gx%g guard_head=%g", out_h, out_w, head) +
                       fmt(" bias=%g", p.bias, 0, 0),
                   detail);
          }
        }
      }
    }
  }
}

void test_conv3x3(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> fdist(-1.0f, 1.0f);
  // Output sizes 1..37 both ways (the 16-column tile and ragged tails), a row wider than one
  // 256-column chunk, every input channel count, output channels around the register tiles.
  std::vector<std::pair<int, int>> outs;
  for (int oh : {1, 2, 3, 5, 8, 17, 37}) {
    for (int ow = 1; ow <= 37; ow += (ow < 18 ? 1 : 3)) outs.push_back({oh, ow});
  }
  outs.push_back({3, 300});
  outs.push_back({2, 517});
  int variant = 0;
  for (const auto& o : outs) {
    for (int stride = 1; stride <= 2; ++stride) {
      for (int cin = 1; cin <= kConv3x3MaxInChannels; ++cin) {
        for (int cout : {1, 2, 3, 5, 6, 7, 8, 13, 16, 17, 33}) {
          ++variant;
          if (variant % 3 != 0 && cout > 8 && o.second > 20) continue;  // keep the sweep quick
          const int out_h = o.first, out_w = o.second;
          // Input exactly covered by padding 1 on both sides, or one column/row short of it.
          const int short_by = variant % 2;
          const int in_h = std::max(1, (out_h - 1) * stride + 1 - short_by);
          const int in_w = std::max(1, (out_w - 1) * stride + 1 - short_by);
          const std::size_t in_n = std::size_t(cin) * in_h * in_w;
          GuardedFloats src(in_n + 1, variant % 4 < 2);
          float* x = src.data() + 1;  // off the guard page's alignment by one float
          for (std::size_t i = 0; i < in_n; ++i) x[i] = fdist(rng);
          std::vector<float> w(std::size_t(cout) * cin * 9), bias(cout), slopes(cout);
          for (auto& v : w) v = fdist(rng);
          for (auto& v : bias) v = fdist(rng);
          for (auto& v : slopes) v = fdist(rng);
          RowBiasAct e;
          switch (variant % 3) {
            case 0: e.bias = bias.data(); e.lo = 0.0f; break;
            case 1: e.bias = bias.data(); e.slopes = slopes.data(); break;
            default: e.neg_slope = 0.1f; e.lo = -1.0f; e.hi = 2.0f; break;
          }
          const std::size_t out_n = std::size_t(cout) * out_h * out_w;
          std::vector<float> want(out_n + 2, 7.0f), got = want;
          ref.conv3x3_f32(x, cin, in_h, in_w, w.data(), cout, stride, want.data() + 1, out_h, out_w, e);
          k.conv3x3_f32(x, cin, in_h, in_w, w.data(), cout, stride, got.data() + 1, out_h, out_w, e);
          std::string detail;
          if (got.front() != 7.0f || got.back() != 7.0f) detail = "wrote outside the output";
          for (std::size_t i = 0; i < out_n && detail.empty(); ++i) {
            // Scale: the sum of |w| * |x| bounds the terms (|x| <= 1), plus the bias.
            const int m = int(i / (std::size_t(out_h) * out_w));
            double scale = 1.0;
            for (int q = 0; q < cin * 9; ++q) scale += std::fabs(w[std::size_t(m) * cin * 9 + q]);
            if (!close_float(got[i + 1], want[i + 1], scale, 1e-5)) {
              detail = fmt("at %g: got %.9g want %.9g", double(i), got[i + 1], want[i + 1]);
            }
          }
          report(detail.empty(), "conv3x3_f32", k.isa,
                 fmt("out=%gx%g stride=%g", out_h, out_w, stride) + fmt(" cin=%g cout=%g in=%g", cin, cout, in_h) +
                     fmt("x%g variant=%g", in_w, variant % 3, 0),
                 detail);
        }
      }
    }
  }
}

void test_bias_act(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::uniform_real_distribution<float> fdist(-4.0f, 4.0f);
  const BiasActParams cases[] = {
      {0.5f, 1.0f, -kInf, kInf}, {-0.25f, 1.0f, 0.0f, kInf}, {0.1f, 0.01f, -kInf, kInf},
      {0.0f, 1.0f, 0.0f, 6.0f},  {1.5f, -0.3f, -1.0f, 2.0f}};
  for (int n : kSizes) {
    for (const BiasActParams& p : cases) {
      std::vector<float> x(n + 1);
      for (auto& v : x) v = fdist(rng);
      if (n > 3) {
        x[1] = kNan;
        x[2] = -0.0f;
        x[3] = -kInf;
      }
      std::vector<float> want = x, got = x;
      ref.bias_act_f32(want.data() + 1, n, p);
      k.bias_act_f32(got.data() + 1, n, p);
      std::string detail;
      for (int i = 0; i <= n && detail.empty(); ++i) {
        if (!same_float(got[i], want[i]) || std::signbit(got[i]) != std::signbit(want[i])) {
          detail = fmt("at %g: got %.9g want %.9g", i, got[i], want[i]);
        }
      }
      report(detail.empty(), "bias_act_f32", k.isa, fmt("n=%g bias=%g slope=%g", n, p.bias, p.neg_slope), detail);
    }
  }
}

// ---------------------------------------------------------------------------------------
// int8 kernels: bit-exact against the reference on every ISA.

// A random requantisation setup for `rows` output channels. mode 0: scales spreading typical
// sums over the int8 range, random zero point and activation bounds; 1: scales of 1/2, 1/4,
// 1/8 (exact .5 ties for half-to-even) and zero points -128/127; 2: extremes (scales that
// saturate both ways, zero, huge, tiny) with extreme zero points; 3: 2^-24, for sums near 2^31.
// Two setups in three also carry a PReLU neg_scale (scale times a slope in [-1, 1], exact
// values 0, 1/4, -1/2 and 1 among them), so every int8 kernel's epilogue is tested with and
// without it.
struct QuantSetup {
  std::vector<float> scale, neg;
  RequantParams q;
  QuantSetup(std::size_t rows, int mode, double typical_acc, std::mt19937& rng) : scale(rows + 1), neg(rows + 1) {
    for (std::size_t i = 0; i <= rows; ++i) {
      if (mode == 0) {
        scale[i] = static_cast<float>((0.5 + (rng() % 1000) / 1000.0) * 100.0 / typical_acc);
      } else if (mode == 1) {
        scale[i] = 1.0f / static_cast<float>(2 << (rng() % 3));
      } else if (mode == 3) {
        scale[i] = 1.0f / 16777216.0f;  // 2^31 - 1 -> 128: saturates high, a wrapped sum low
      } else {
        const float extremes[] = {1.0f, 3e38f, 0.0f, 1e-30f, 0.001f, 65536.0f};
        scale[i] = extremes[rng() % 6];
      }
    }
    const std::int32_t zps[] = {-128, 127, 0, -1};
    q.zero_point = mode == 0 ? static_cast<std::int32_t>(rng() % 256) - 128 : zps[rng() % 4];
    switch (rng() % 4) {
      case 0: q.lo = -128; q.hi = 127; break;
      case 1: q.lo = static_cast<std::int8_t>(q.zero_point); q.hi = 127; break;  // ReLU
      case 2: q.lo = static_cast<std::int8_t>(q.zero_point); q.hi = static_cast<std::int8_t>(std::min(127, q.zero_point + 60)); break;
      default: q.lo = -100; q.hi = 100; break;
    }
    q.scale = scale.data() + 1;  // unaligned by one float
    if (rng() % 3 != 0) {
      const float slopes[] = {0.0f, 0.25f, -0.5f, 1.0f};
      for (std::size_t i = 0; i <= rows; ++i) {
        const float slope = i % 2 ? slopes[rng() % 4] : static_cast<float>((rng() % 2001) / 1000.0 - 1.0);
        neg[i] = scale[i] * slope;
      }
      q.neg_scale = neg.data() + 1;
    }
  }
  std::string describe() const {
    return fmt(" zp=%g lo=%g hi=%g", q.zero_point, q.lo, q.hi) + (q.neg_scale ? " prelu" : "");
  }
};

void test_requant(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  // The rule itself, on the reference: half to even, saturation, fused bounds.
  {
    const float half = 0.5f;
    RequantParams q;
    q.scale = &half;
    const std::int32_t in[] = {1, 3, 5, -1, -3, -5, 255, 257, -255, -257, std::numeric_limits<std::int32_t>::max(),
                               std::numeric_limits<std::int32_t>::min()};
    const std::int8_t want[] = {0, 2, 2, 0, -2, -2, 127, 127, -128, -128, 127, -128};
    std::int8_t got[12];
    ref.requant_s32_s8(in, 12, q, got);
    std::string detail;
    for (int i = 0; i < 12 && detail.empty(); ++i) {
      if (got[i] != want[i]) detail = fmt("acc %g: got %g want %g", in[i], got[i], want[i]);
    }
    const float big = 3e38f;
    RequantParams relu;
    relu.scale = &big;
    relu.zero_point = 127;
    relu.lo = 5;
    relu.hi = 120;
    const std::int32_t in2[] = {1, -1, 0};
    std::int8_t got2[3];
    ref.requant_s32_s8(in2, 3, relu, got2);
    if (detail.empty() && (got2[0] != 120 || got2[1] != 5 || got2[2] != 120)) {
      detail = fmt("saturation/bounds: got %g %g %g", got2[0], got2[1], got2[2]);
    }
    // PReLU: negative sums take neg_scale (slope -1/2 and 1/4 here), zero and positive ones scale.
    const float neg[] = {-0.25f, 0.125f};
    RequantParams pr;
    pr.scale = &half;
    pr.neg_scale = &neg[0];
    const std::int32_t in3[] = {-6, -2, 0, 3, -257 * 4};
    std::int8_t got3[5];
    ref.requant_s32_s8(in3, 5, pr, got3);
    const std::int8_t want3[] = {2, 0, 0, 2, 127};  // 1.5 -> 2, 0.5 -> 0 (half to even)
    for (int i = 0; i < 5 && detail.empty(); ++i) {
      if (got3[i] != want3[i]) detail = fmt("prelu acc %g: got %g want %g", in3[i], got3[i], want3[i]);
    }
    pr.neg_scale = &neg[1];
    ref.requant_s32_s8(in3, 1, pr, got3);
    if (detail.empty() && got3[0] != -1) detail = fmt("prelu slope 1/4, acc -6: got %g want -1", got3[0], 0, 0);
    report(detail.empty(), "requant_s32_s8 (rule)", ref.isa, "spot values", detail);
  }
  for (int n : kSizes) {
    for (int mode = 0; mode < 3; ++mode) {
      QuantSetup qs(1, mode, 1e5, rng);
      std::vector<std::int32_t> x(n + 1);
      for (auto& v : x) {
        if (mode == 1) v = static_cast<std::int32_t>(rng() % 4001) - 2000;
        else v = static_cast<std::int32_t>(rng());
      }
      if (n > 2) {
        x[1] = std::numeric_limits<std::int32_t>::max();
        x[2] = std::numeric_limits<std::int32_t>::min();
      }
      GuardedBytes want(n, false), got(n, false);
      const std::int32_t* xp = x.data() + 1;
      ref.requant_s32_s8(xp, n, qs.q, reinterpret_cast<std::int8_t*>(want.data()));
      k.requant_s32_s8(xp, n, qs.q, reinterpret_cast<std::int8_t*>(got.data()));
      std::string detail;
      for (int i = 0; i < n && detail.empty(); ++i) {
        if (want.data()[i] != got.data()[i]) {
          detail = fmt("at %g (acc %g): got %g", i, xp[i], static_cast<std::int8_t>(got.data()[i])) +
                   fmt(" want %g scale %g", static_cast<std::int8_t>(want.data()[i]), qs.q.scale[0], 0);
        }
      }
      report(detail.empty(), "requant_s32_s8", k.isa, fmt("n=%g mode=%g", n, mode, 0) + qs.describe(), detail);
    }
  }
}

// Fills n int8 values: mode 2 only -128/127, mode 3 only -128 (the largest products),
// otherwise uniform over the whole range.
void fill_s8(std::int8_t* p, std::size_t n, int mode, std::mt19937& rng) {
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = mode == 3 ? std::int8_t(-128) : mode == 2 ? static_cast<std::int8_t>((rng() & 1) ? 127 : -128) : static_cast<std::int8_t>(rng() & 0xFF);
  }
}

void run_conv_gemm_s8(const KernelTable& k, const KernelTable& ref, std::mt19937& rng, int m, int n, int kk, int mode,
                      bool padded) {
  const int pad = padded ? 1 : 0;
  const std::ptrdiff_t lda = kk + 3 * pad, ldb = n + 5 * pad, ldc = n + 2 * pad;
  GuardedBytes ga(std::size_t(m) * lda + pad, false), gb(std::size_t(kk) * ldb + pad, padded);
  std::int8_t* a = reinterpret_cast<std::int8_t*>(ga.data()) + pad;
  std::int8_t* b = reinterpret_cast<std::int8_t*>(gb.data()) + pad;
  fill_s8(a, std::size_t(m) * lda, mode, rng);
  fill_s8(b, std::size_t(kk) * ldb, mode, rng);
  std::vector<std::int32_t> bias(m + 1);
  for (auto& v : bias) {
    if (mode == 2) v = (rng() & 1) ? (1 << 30) - 1 : -(1 << 30) + 1;
    else if (mode == 3) v = (1 << 30) - 1;
    else v = static_cast<std::int32_t>(rng() % 2000001) - 1000000;
  }
  if (mode == 1) {  // small operands so that the 1/2, 1/4, 1/8 scales land on ties in range
    for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(m) * lda; ++i) a[i] = static_cast<std::int8_t>(a[i] % 4);
    for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(kk) * ldb; ++i) b[i] = static_cast<std::int8_t>(b[i] % 4);
    for (auto& v : bias) v %= 100;
  }
  const double typical = 128.0 * 74.0 * std::sqrt(double(kk) + 1.0);
  QuantSetup qs(m, mode, typical, rng);
  const bool with_bias = mode == 3 || (m + n + kk) % 4 != 0;
  const std::int32_t* bp = with_bias ? bias.data() + 1 : nullptr;
  std::vector<std::int8_t> c0(std::size_t(m) * ldc + pad + 1);
  for (auto& v : c0) v = static_cast<std::int8_t>(rng() & 0xFF);
  std::vector<std::int8_t> want = c0, got = c0;
  ref.conv_gemm_s8(m, n, kk, a, lda, b, ldb, bp, want.data() + pad, ldc, qs.q);
  k.conv_gemm_s8(m, n, kk, a, lda, b, ldb, bp, got.data() + pad, ldc, qs.q);
  std::string detail;
  for (std::size_t e = 0; e < want.size() && detail.empty(); ++e) {
    if (want[e] != got[e]) {
      const std::ptrdiff_t rel = std::ptrdiff_t(e) - pad;
      const bool outside = rel < 0 || rel % ldc >= n;
      detail = fmt("row %g col %g: got %g", double(rel / ldc), double(rel % ldc), got[e]) +
               fmt(" want %g", want[e], 0, 0) + (outside ? " (written outside C)" : "");
    }
  }
  report(detail.empty(), "conv_gemm_s8", k.isa,
         fmt("m=%g n=%g k=%g", m, n, kk) + fmt(" mode=%g padded=%g bias=%g", mode, pad, with_bias) + qs.describe(),
         detail);
}

void test_conv_gemm_s8(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  const int dims[] = {1, 3, 5, 7, 15, 16, 17, 33, 100, 300};
  int idx = 0;
  for (int m : dims) {
    for (int n : dims) {
      for (int kk : {0, 1, 3, 5, 7, 15, 16, 17, 33, 100, 300}) {
        ++idx;
        if (std::size_t(m) * n * kk > 3000000 && idx % 4 != 0) continue;  // a quarter of the largest shapes
        run_conv_gemm_s8(k, ref, rng, m, n, kk, idx % 3, idx % 2 == 1);
      }
    }
  }
  // k past one packed block (512 on AVX2, more elsewhere) and its ragged ends.
  for (int kk : {1023, 1024, 1025, 2049, 4611}) {
    for (int mode = 0; mode < 3; ++mode) run_conv_gemm_s8(k, ref, rng, 5, 17 + 16 * mode, kk, mode, mode == 1);
  }
  // The largest k of the contract with -128/127 operands and |bias'| near 2^30: sums up to
  // 2^31 - 1 must stay exact (VNNI's +128 offset included).
  run_conv_gemm_s8(k, ref, rng, 3, 33, 65536, 2, false);
  run_conv_gemm_s8(k, ref, rng, 3, 33, 65536, 3, true);  // every sum exactly 2^31 - 1
  // Row blocks (128 rows) and their ragged end.
  run_conv_gemm_s8(k, ref, rng, 129, 40, 9, 0, true);
  run_conv_gemm_s8(k, ref, rng, 257, 3, 27, 2, false);
}

// dwconv3x3_row_s8 on three individually guarded padded rows (guard right after
// dw_row_bytes, or right before the left pad) and a guarded destination.
void test_dwconv3x3_s8(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  std::vector<int> widths;
  for (int w = 1; w <= 40; ++w) widths.push_back(w);
  for (int w : {63, 64, 65, 100, 127, 128, 129, 257, 1000}) widths.push_back(w);
  int idx = 0;
  for (int out_w : widths) {
    for (int stride = 1; stride <= 2; ++stride) {
      for (int mode = 0; mode < 3; ++mode) {
        ++idx;
        const bool head = idx % 2 == 0;
        const int in_w = (out_w - 1) * stride + 1 + (idx % 3 == 0 ? 1 : 0);
        const std::size_t len = dw_row_bytes(in_w, out_w, stride);
        const std::int8_t zps[] = {-128, 127, 0, 5};
        const std::int8_t z_in = mode == 0 ? static_cast<std::int8_t>(rng() & 0xFF) : zps[rng() % 4];
        GuardedBytes r0(len, head), r1(len, head), r2(len, head), dw(out_w, false), dr(out_w, false);
        GuardedBytes* gr[3] = {&r0, &r1, &r2};
        const std::int8_t* rows[3];
        for (int ky = 0; ky < 3; ++ky) {
          std::int8_t* r = reinterpret_cast<std::int8_t*>(gr[ky]->data());
          std::fill(r, r + len, z_in);
          fill_s8(r + 1, in_w, mode, rng);
          rows[ky] = r;
        }
        if (idx % 5 == 0) rows[0] = rows[2];  // vertical padding rows may repeat
        std::int8_t w[9];
        fill_s8(w, 9, mode, rng);
        const std::int32_t bias =
            mode == 2 ? ((rng() & 1) ? (1 << 30) - 1 : -(1 << 30) + 1) : static_cast<std::int32_t>(rng() % 20001) - 10000;
        QuantSetup qs(1, mode, 128.0 * 74.0 * 3.0, rng);
        std::int8_t* want = reinterpret_cast<std::int8_t*>(dr.data());
        std::int8_t* got = reinterpret_cast<std::int8_t*>(dw.data());
        ref.dwconv3x3_row_s8(rows, w, bias, stride, want, out_w, qs.q);
        k.dwconv3x3_row_s8(rows, w, bias, stride, got, out_w, qs.q);
        std::string detail;
        for (int i = 0; i < out_w && detail.empty(); ++i) {
          if (want[i] != got[i]) detail = fmt("at %g: got %g want %g", i, got[i], want[i]);
        }
        report(detail.empty(), "dwconv3x3_row_s8", k.isa,
               fmt("out_w=%g in_w=%g stride=%g", out_w, in_w, stride) +
                   fmt(" mode=%g z_in=%g guard_head=%g", mode, z_in, head) + qs.describe(),
               detail);
      }
    }
  }
}

// dwconv3x3_plane_s8 against a direct evaluation of the quantised convolution (taps outside
// the input read z_in), requantised by the reference's requant_s32_s8.
void test_dwconv3x3_plane_s8(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  int idx = 0;
  for (int h : {1, 2, 3, 5, 8}) {
    for (int w : {1, 2, 3, 7, 16, 17, 33, 70}) {
      for (int stride = 1; stride <= 2; ++stride) {
        for (int pad_end = 0; pad_end <= 1; ++pad_end) {
          if (h + 1 + pad_end < 3 || w + 1 + pad_end < 3) continue;
          ++idx;
          const int out_h = (h + 1 + pad_end - 3) / stride + 1, out_w = (w + 1 + pad_end - 3) / stride + 1;
          const int mode = idx % 3;
          const std::int8_t z_in = mode == 2 ? static_cast<std::int8_t>((idx & 4) ? 127 : -128)
                                             : static_cast<std::int8_t>(rng() & 0xFF);
          std::vector<std::int8_t> src(std::size_t(h) * w), wt(9);
          fill_s8(src.data(), src.size(), mode, rng);
          fill_s8(wt.data(), 9, mode, rng);
          const std::int32_t bias = static_cast<std::int32_t>(rng() % 20001) - 10000;
          QuantSetup qs(1, mode, 128.0 * 74.0 * 3.0, rng);
          std::vector<std::int8_t> want(std::size_t(out_h) * out_w), got(want.size() + 1, 99);
          for (int oy = 0; oy < out_h; ++oy) {
            for (int ox = 0; ox < out_w; ++ox) {
              std::int32_t acc = bias;
              for (int ky = 0; ky < 3; ++ky) {
                for (int kx = 0; kx < 3; ++kx) {
                  const int iy = oy * stride - 1 + ky, ix = ox * stride - 1 + kx;
                  const bool inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                  acc += wt[ky * 3 + kx] * (inside ? src[std::size_t(iy) * w + ix] : z_in);
                }
              }
              ref.requant_s32_s8(&acc, 1, qs.q, &want[std::size_t(oy) * out_w + ox]);
            }
          }
          std::vector<std::int8_t> ring(4 * dw_row_bytes(w, out_w, stride));
          dwconv3x3_plane_s8(k, src.data(), h, w, wt.data(), bias, stride, z_in, got.data(), out_h, out_w, qs.q,
                             ring.data());
          std::string detail;
          if (got.back() != 99) detail = "wrote past the output";
          for (std::size_t i = 0; i < want.size() && detail.empty(); ++i) {
            if (want[i] != got[i]) detail = fmt("at %g: got %g want %g", double(i), got[i], want[i]);
          }
          report(detail.empty(), "dwconv3x3_plane_s8", k.isa,
                 fmt("in=%gx%g stride=%g", h, w, stride) + fmt(" z_in=%g mode=%g", z_in, mode, 0) + qs.describe(),
                 detail);
        }
      }
    }
  }
}

// add_s8: the rule's spot values on the reference, then every ISA against it on guarded
// operands (ragged n, tails at a guard page), random and extreme parameters (zero points
// -128/127, a scale of 0 that requantises one operand, ratios that saturate), and in place.
void test_add_s8(const KernelTable& k, const KernelTable& ref, std::mt19937& rng) {
  {
    AddParams p;
    p.a_scale = 0.5f;
    p.b_scale = 0.25f;
    p.a_zero_point = 1;
    p.b_zero_point = -2;
    p.zero_point = 3;
    // (a - 1) / 2 + (b + 2) / 4 + 3, half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0,
    // 95.25 -> 95, -96 -> -96.
    const std::int8_t a[] = {2, 4, 6, 0, 127, -128};
    const std::int8_t b[] = {-2, -2, -2, -2, 127, -128};
    const std::int8_t want[] = {3, 5, 5, 3, 98, -93};
    std::int8_t got[6];
    ref.add_s8(a, b, 6, p, got);
    std::string detail;
    for (int i = 0; i < 6 && detail.empty(); ++i) {
      if (got[i] != want[i]) detail = fmt("at %g: got %g want %g", i, got[i], want[i]);
    }
    report(detail.empty(), "add_s8 (rule)", ref.isa, "spot values", detail);
  }
  int idx = 0;
  for (int n : kSizes) {
    for (int mode = 0; mode < 4; ++mode) {
      ++idx;
      AddParams p;
      const std::int32_t zps[] = {-128, 127, 0, -1};
      if (mode == 0) {
        p.a_scale = static_cast<float>((rng() % 2000) / 1000.0 + 0.01);
        p.b_scale = static_cast<float>((rng() % 2000) / 1000.0 + 0.01);
        p.a_zero_point = static_cast<std::int32_t>(rng() % 256) - 128;
        p.b_zero_point = static_cast<std::int32_t>(rng() % 256) - 128;
        p.zero_point = static_cast<std::int32_t>(rng() % 256) - 128;
      } else if (mode == 1) {  // exact ties
        p.a_scale = 0.5f;
        p.b_scale = 0.25f;
        p.a_zero_point = zps[rng() % 4];
        p.b_zero_point = zps[rng() % 4];
        p.zero_point = zps[rng() % 4];
      } else if (mode == 2) {  // requantise a alone
        p.a_scale = static_cast<float>((rng() % 3000) / 1000.0 + 0.001);
        p.b_scale = 0.0f;
        p.a_zero_point = zps[rng() % 4];
        p.zero_point = zps[rng() % 4];
      } else {  // extremes: saturating ratios, a negative scale
        const float ex[] = {65536.0f, 1e-30f, -3.0f, 1.0f};
        p.a_scale = ex[rng() % 4];
        p.b_scale = ex[rng() % 4];
        p.a_zero_point = zps[rng() % 4];
        p.b_zero_point = zps[rng() % 4];
        p.zero_point = zps[rng() % 4];
      }
      if (idx % 3 == 0) {
        p.lo = static_cast<std::int8_t>(p.zero_point);  // a fused ReLU
      } else if (idx % 3 == 1) {
        p.lo = -100;
        p.hi = 90;
      }
      const bool head = idx % 2 == 0;
      GuardedBytes ga(n, head), gb(n, !head), gw(n, head), gg(n, !head);
      auto* a = reinterpret_cast<std::int8_t*>(ga.data());
      auto* b = reinterpret_cast<std::int8_t*>(gb.data());
      fill_s8(a, n, mode == 3 ? 2 : 0, rng);
      fill_s8(b, n, mode == 3 ? 2 : 0, rng);
      auto* want = reinterpret_cast<std::int8_t*>(gw.data());
      auto* got = reinterpret_cast<std::int8_t*>(gg.data());
      ref.add_s8(a, b, n, p, want);
      k.add_s8(a, b, n, p, got);
      std::string detail;
      for (int i = 0; i < n && detail.empty(); ++i) {
        if (want[i] != got[i]) detail = fmt("at %g (a %g b %g): ", i, a[i], b[i]) + fmt("got %g want %g", got[i], want[i], 0);
      }
      if (detail.empty()) {  // in place: y = a
        k.add_s8(a, b, n, p, a);
        for (int i = 0; i < n && detail.empty(); ++i) {
          if (want[i] != a[i]) detail = fmt("in place, at %g: got %g want %g", i, a[i], want[i]);
        }
      }
      report(detail.empty(), "add_s8", k.isa,
             fmt("n=%g mode=%g zp=%g", n, mode, p.zero_point) + fmt(" za=%g zb=%g", p.a_zero_point, p.b_zero_point, 0) +
                 fmt(" sa=%g sb=%g lo=%g", p.a_scale, p.b_scale, p.lo),
             detail);
    }
  }
}

}  // namespace
}  // namespace picoface

int main(int argc, char** argv) {
  using namespace picoface;
  // Line-buffered so the failures printed before a crash (an over-read hitting a guard page)
  // survive it.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::vector<Isa> isas;
  try {
    for (int i = 1; i < argc; ++i) isas.push_back(isa_from_name(argv[i]));
    if (isas.empty()) isas = supported_isas();
    const KernelTable& ref = kernels_for(Isa::kScalar);
    for (Isa isa : isas) {
      const KernelTable& k = kernels_for(isa);
      const int failed_before = g_failed;
      const int passed_before = g_passed;
      // The same seed for every ISA, so a failure reproduces with one ISA named on the command line.
      std::mt19937 rng(20240611u);
      test_resample(k, ref, rng);
      test_blend(k, ref, rng);
      test_pack(k, ref, rng);
      test_warp(k, ref, rng);
      test_dot(k, ref, rng);
      test_dot_rows(k, ref, rng);
      test_gemm(k, ref, rng);
      test_conv_gemm(k, ref, rng);
      test_dwconv3x3(k, ref, rng);
      test_conv3x3(k, ref, rng);
      test_bias_act(k, ref, rng);
      test_requant(k, ref, rng);
      test_conv_gemm_s8(k, ref, rng);
      test_dwconv3x3_s8(k, ref, rng);
      test_dwconv3x3_plane_s8(k, ref, rng);
      test_add_s8(k, ref, rng);
      std::printf("%s: %d passed, %d failed\n", isa_name(isa), g_passed - passed_before,
                  g_failed - failed_before);
    }
  } catch (const Error& e) {
    std::printf("error: %s\n", e.what());
    return 2;
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
