#include "llm/cpu_kernels.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

// GCC 12 warns inside its own AVX-512 intrinsics (_mm512_undefined_*): false positives.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <atomic>
#include <cmath>

#include "util/error.h"

namespace flame::llm {

namespace {

std::atomic<bool> g_enabled{true};

bool cpu_supports_avx512() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool supported = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                                  __builtin_cpu_supports("avx512vl");
  return supported;
#else
  return false;
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
#define FLAME_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

// exp(x) for 16 floats: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its Taylor
// series to r^7 / 7! (relative error < 1e-8), times 2^n with vscalefps.
FLAME_AVX512 inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2 split in two for accuracy
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

FLAME_AVX512 inline __m512 load_bf16(const c10::BFloat16* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Round to nearest even, as c10::BFloat16; NaN stays NaN.
FLAME_AVX512 inline void store_bf16(c10::BFloat16* p, __m512 v, __mmask16 m) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(rounded));
}

FLAME_AVX512 inline __m512 silu16(__m512 g) {
  return _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
}

inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1); }

FLAME_AVX512 void silu_mul_row_bf16(const c10::BFloat16* g, const c10::BFloat16* u, c10::BFloat16* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    // torch rounds silu(gate) to bf16 before multiplying: so do we.
    c10::BFloat16 s[16];
    store_bf16(s, silu16(load_bf16(g + i, m)), 0xFFFF);
    store_bf16(out + i, _mm512_mul_ps(load_bf16(s, 0xFFFF), load_bf16(u + i, m)), m);
  }
}

FLAME_AVX512 void silu_mul_row_f32(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 s = silu16(_mm512_maskz_loadu_ps(m, g + i));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i)));
  }
}

// Lanes whose bool is true, among the lanes of m.
FLAME_AVX512 inline __mmask16 load_mask(const bool* p, __mmask16 m) {
  const __m128i bytes = _mm_maskz_loadu_epi8(m, p);
  return static_cast<__mmask16>(_mm_test_epi8_mask(bytes, _mm_set1_epi8(1)) & m);
}

FLAME_AVX512 void masked_softmax_row(float* x, const bool* allowed, int64_t n) {
  const __m512 neg_inf = _mm512_set1_ps(-INFINITY);
  __m512 vmax = neg_inf;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 a = load_mask(allowed + i, tail_mask(n - i));
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(neg_inf, a, x + i));
  }
  const float top = _mm512_reduce_max_ps(vmax);
  if (top == -INFINITY) {  // nothing allowed (a padding query)
    for (int64_t i = 0; i < n; i += 16) _mm512_mask_storeu_ps(x + i, tail_mask(n - i), _mm512_setzero_ps());
    return;
  }
  const __m512 vtop = _mm512_set1_ps(top);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __mmask16 a = load_mask(allowed + i, m);
    const __m512 e = _mm512_maskz_mov_ps(a, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vtop)));
    vsum = _mm512_add_ps(vsum, e);
    _mm512_mask_storeu_ps(x + i, m, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}
#endif

}  // namespace

bool cpu_kernels_available() { return g_enabled.load() && cpu_supports_avx512(); }
void set_cpu_kernels_enabled(bool enabled) { g_enabled.store(enabled); }

torch::Tensor silu_mul(const torch::Tensor& gate, const torch::Tensor& up) {
  const auto dtype = gate.scalar_type();
  if (!cpu_kernels_available() || !gate.device().is_cpu() || gate.dim() != 2 || up.sizes() != gate.sizes() ||
      up.scalar_type() != dtype || gate.stride(1) != 1 || up.stride(1) != 1 ||
      (dtype != torch::kBFloat16 && dtype != torch::kFloat32)) {
    return torch::silu(gate).mul_(up);
  }
#if defined(__x86_64__) && defined(__GNUC__)
  const int64_t rows = gate.size(0), n = gate.size(1);
  torch::Tensor out = torch::empty({rows, n}, gate.options());
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, n));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (dtype == torch::kBFloat16) {
        silu_mul_row_bf16(gate.data_ptr<c10::BFloat16>() + r * gate.stride(0),
                          up.data_ptr<c10::BFloat16>() + r * up.stride(0), out.data_ptr<c10::BFloat16>() + r * n, n);
      } else {
        silu_mul_row_f32(gate.data_ptr<float>() + r * gate.stride(0), up.data_ptr<float>() + r * up.stride(0),
                         out.data_ptr<float>() + r * n, n);
      }
    }
  });
  return out;
#else
  return torch::silu(gate).mul_(up);
#endif
}

void masked_softmax_(torch::Tensor& scores, const torch::Tensor& allowed) {
  const int64_t N = scores.size(0), H = scores.size(1), Q = scores.size(2), S = scores.size(3);
  const bool kernel = cpu_kernels_available() && scores.device().is_cpu() && scores.is_contiguous() &&
                      scores.scalar_type() == torch::kFloat32 && allowed.scalar_type() == torch::kBool &&
                      allowed.stride(2) == 1;
  if (!kernel) {
    // lowest, not -inf: a fully masked row stays finite; then zero it like the kernel.
    const torch::Tensor blocked = allowed.logical_not().unsqueeze(1);
    scores.masked_fill_(blocked, std::numeric_limits<float>::lowest());
    at::_softmax_out(scores, scores, -1, false);
    scores.masked_fill_(blocked.all(-1, true), 0.0f);
    return;
  }
#if defined(__x86_64__) && defined(__GNUC__)
  float* x = scores.data_ptr<float>();
  const bool* a = allowed.data_ptr<bool>();
  const int64_t sn = allowed.stride(0), sq = allowed.stride(1);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, S));
  at::parallel_for(0, N * H * Q, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / (H * Q), q = row % Q;
      masked_softmax_row(x + row * S, a + n * sn + q * sq, S);
    }
  });
#endif
}

}  // namespace flame::llm
