// The lane operations of the CPU kernel on AVX-512 (AVX512F only): 16 lanes. Same contract as
// simd_generic.h, whose 16-lane control flow this path shares; only these wrappers are specific
// to it. No FMA: GCC contracts _mm512_mul_ps + _mm512_add_ps into vfmadd unless built with
// -ffp-contract=off (setup.py), and tests/test_op_paths.py checks the built extension for it.
//
// Included by resample_kernel.cpp inside namespace mlvgm::avx512, in a region compiled for
// AVX512F (no include guard).

struct Simd {
  static constexpr int W = 16;
  using U = __m512i;
  using F = __m512;
  using M = __mmask16;

  MLVGM_LANES static U splat(uint32_t a) { return _mm512_set1_epi32(static_cast<int>(a)); }
  MLVGM_LANES static U iota() {
    return _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  }
  MLVGM_LANES static U loadu(const uint32_t* p) { return _mm512_loadu_si512(p); }
  MLVGM_LANES static U add(U a, U b) { return _mm512_add_epi32(a, b); }
  MLVGM_LANES static U bxor(U a, U b) { return _mm512_xor_si512(a, b); }
  MLVGM_LANES static U band(U a, U b) { return _mm512_and_si512(a, b); }
  MLVGM_LANES static U bor(U a, U b) { return _mm512_or_si512(a, b); }
  template <int S>
  MLVGM_LANES static U shr(U a) { return _mm512_srli_epi32(a, S); }
  // As on AVX2: vpmuludq on the even lanes and on the odd lanes shifted down, then blends.
  MLVGM_LANES static void mulhilo(U a, U m, U& hi, U& lo) {
    const __m512i even = _mm512_mul_epu32(a, m);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
    lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  }

  MLVGM_LANES static F to_float(U a) { return _mm512_cvtepi32_ps(a); }
  MLVGM_LANES static F as_float(U a) { return _mm512_castsi512_ps(a); }
  MLVGM_LANES static U as_bits(F a) { return _mm512_castps_si512(a); }
  MLVGM_LANES static F fsplat(float a) { return _mm512_set1_ps(a); }
  MLVGM_LANES static F loadf(const float* p) { return _mm512_loadu_ps(p); }
  MLVGM_LANES static void store(float* p, F a) { _mm512_storeu_ps(p, a); }
  MLVGM_LANES static F fmul(F a, F b) { return _mm512_mul_ps(a, b); }
  MLVGM_LANES static F fadd(F a, F b) { return _mm512_add_ps(a, b); }
  MLVGM_LANES static F fsqrt(F a) { return _mm512_sqrt_ps(a); }
  // Sign flip on the integer side: _mm512_xor_ps would need AVX512DQ.
  MLVGM_LANES static F neg(F a) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), splat(0x80000000u)));
  }
  MLVGM_LANES static M lt(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  // _mm512_mask_blend_ps takes its second operand where the mask bit is set.
  MLVGM_LANES static F select(M m, F a, F b) { return _mm512_mask_blend_ps(m, b, a); }
  MLVGM_LANES static bool all(M m) { return m == 0xFFFF; }
};
