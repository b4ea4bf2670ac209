// The lane operations of the CPU kernel without intrinsics: GCC/Clang vector extensions of 16
// lanes, the AVX-512 shape, so this path runs the vector kernel's control flow (row tails,
// sample groups, lane counts) exactly as the AVX-512 path does, on any CPU; the compiler lowers
// it to the baseline ISA (SSE2 on x86-64, NEON on aarch64). Arithmetic on these vectors is the
// scalar IEEE operation per lane (no FMA: -ffp-contract=off), so this path is also the
// definition the intrinsic paths must match.
//
// Included by resample_kernel.cpp inside namespace mlvgm::generic (no include guard).

struct Simd {
  static constexpr int W = 16;
  typedef uint32_t U __attribute__((vector_size(64)));
  typedef float F __attribute__((vector_size(64)));
  typedef int32_t M __attribute__((vector_size(64)));  // -1 where true (vector comparisons)
  typedef uint64_t U64 __attribute__((vector_size(64)));  // the same lanes in pairs

  MLVGM_LANES static U splat(uint32_t a) { return U{} + a; }
  MLVGM_LANES static U iota() { return U{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}; }
  MLVGM_LANES static U loadu(const uint32_t* p) {
    U r;
    std::memcpy(&r, p, sizeof(r));
    return r;
  }
  MLVGM_LANES static U add(U a, U b) { return a + b; }
  MLVGM_LANES static U bxor(U a, U b) { return a ^ b; }
  MLVGM_LANES static U band(U a, U b) { return a & b; }
  MLVGM_LANES static U bor(U a, U b) { return a | b; }
  template <int S>
  MLVGM_LANES static U shr(U a) { return a >> S; }
  // High and low words of the 64-bit products a * m, as on AVX2/AVX-512: 32x32->64 products of
  // the even and the odd lanes (the masked form is the one compilers turn into pmuludq/umull),
  // then the words back in lane order.
  MLVGM_LANES static void mulhilo(U a, U m, U& hi, U& lo) {
    const U64 low = U64{} + 0xFFFFFFFFu;
    const U64 a2 = (U64)a, m2 = (U64)m;
    const U64 even = (a2 & low) * (m2 & low);
    const U64 odd = (a2 >> 32) * (m2 >> 32);
    lo = (U)((even & low) | (odd << 32));
    hi = (U)((even >> 32) | (odd & ~low));
  }

  // Int32 lanes to float (exact for |value| < 2^24, which is all the kernel converts).
  MLVGM_LANES static F to_float(U a) { return __builtin_convertvector((M)a, F); }
  MLVGM_LANES static F as_float(U a) { return (F)a; }
  MLVGM_LANES static U as_bits(F a) { return (U)a; }
  MLVGM_LANES static F fsplat(float a) { return F{} + a; }
  MLVGM_LANES static F loadf(const float* p) {
    F r;
    std::memcpy(&r, p, sizeof(r));
    return r;
  }
  MLVGM_LANES static void store(float* p, F a) { std::memcpy(p, &a, sizeof(a)); }
  MLVGM_LANES static F fmul(F a, F b) { return a * b; }
  MLVGM_LANES static F fadd(F a, F b) { return a + b; }
  // No vector square root in the extensions; it is on the rare erfinv tail only.
  MLVGM_LANES static F fsqrt(F a) {
    for (int i = 0; i < W; ++i) a[i] = mlvgm::fsqrt(a[i]);
    return a;
  }
  MLVGM_LANES static F neg(F a) { return -a; }
  MLVGM_LANES static M lt(F a, F b) { return a < b; }
  // m ? a : b, per lane, by bit masks (GCC lowers a vector ?: wider than the ISA to branches).
  MLVGM_LANES static F select(M m, F a, F b) {
    const U mask = (U)m;
    return (F)(((U)a & mask) | ((U)b & ~mask));
  }
  MLVGM_LANES static bool all(M m) {
    int32_t r = -1;
    for (int i = 0; i < W; ++i) r &= m[i];
    return r != 0;
  }
};
