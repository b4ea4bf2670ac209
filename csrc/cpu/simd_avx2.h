// The lane operations of the CPU kernel on AVX2: 8 lanes. Same contract as simd_generic.h: every
// float operation is the single IEEE operation of resample.h per lane (vmulps, vaddps, vsqrtps
// are correctly rounded; no FMA is emitted, see -ffp-contract=off in setup.py), integer ones are
// exact.
//
// Included by resample_kernel.cpp inside namespace mlvgm::avx2, in a region compiled for AVX2
// (no include guard).

struct Simd {
  static constexpr int W = 8;
  using U = __m256i;
  using F = __m256;
  using M = __m256;  // all-ones lanes where true (vcmpps)

  MLVGM_LANES static U splat(uint32_t a) { return _mm256_set1_epi32(static_cast<int>(a)); }
  MLVGM_LANES static U iota() { return _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7); }
  MLVGM_LANES static U loadu(const uint32_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  MLVGM_LANES static U add(U a, U b) { return _mm256_add_epi32(a, b); }
  MLVGM_LANES static U bxor(U a, U b) { return _mm256_xor_si256(a, b); }
  MLVGM_LANES static U band(U a, U b) { return _mm256_and_si256(a, b); }
  MLVGM_LANES static U bor(U a, U b) { return _mm256_or_si256(a, b); }
  template <int S>
  MLVGM_LANES static U shr(U a) { return _mm256_srli_epi32(a, S); }
  // vpmuludq multiplies the even 32-bit lanes into 64-bit products; the odd lanes go through a
  // 64-bit shift, and blends put the high and low words back in lane order.
  MLVGM_LANES static void mulhilo(U a, U m, U& hi, U& lo) {
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  }

  MLVGM_LANES static F to_float(U a) { return _mm256_cvtepi32_ps(a); }
  MLVGM_LANES static F as_float(U a) { return _mm256_castsi256_ps(a); }
  MLVGM_LANES static U as_bits(F a) { return _mm256_castps_si256(a); }
  MLVGM_LANES static F fsplat(float a) { return _mm256_set1_ps(a); }
  MLVGM_LANES static F loadf(const float* p) { return _mm256_loadu_ps(p); }
  MLVGM_LANES static void store(float* p, F a) { _mm256_storeu_ps(p, a); }
  MLVGM_LANES static F fmul(F a, F b) { return _mm256_mul_ps(a, b); }
  MLVGM_LANES static F fadd(F a, F b) { return _mm256_add_ps(a, b); }
  MLVGM_LANES static F fsqrt(F a) { return _mm256_sqrt_ps(a); }
  MLVGM_LANES static F neg(F a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  MLVGM_LANES static M lt(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  MLVGM_LANES static F select(M m, F a, F b) { return _mm256_blendv_ps(b, a, m); }
  MLVGM_LANES static bool all(M m) { return _mm256_movemask_ps(m) == 0xFF; }
};
