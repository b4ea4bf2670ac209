// Per-element arithmetic of the resample and uniform ops, shared by the CPU kernel
// (cpu/resample_kernel.cpp) and the CUDA kernel (cuda/resample.cu).
//
// Every float operation here is a single IEEE-754 operation in round-to-nearest: products and
// sums go through fmul/fadd (never contracted into FMA: __fmul_rn/__fadd_rn on the device,
// -ffp-contract=off on the host), the logarithm is our own polynomial rather than a libm call,
// and the square root is correctly rounded everywhere. So the CPU, the GPU and the pure-PyTorch
// reference (mlvgm_data/ops.py) produce the same bits, not merely close values.
#pragma once
#include "philox.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif
#include <cmath>
#include <cstring>

namespace mlvgm {

MLVGM_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

MLVGM_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

MLVGM_HD float fsqrt(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

MLVGM_HD int32_t float_bits(float a) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(a);
#else
  int32_t i;
  std::memcpy(&i, &a, sizeof(i));
  return i;
#endif
}

MLVGM_HD float bits_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float a;
  std::memcpy(&a, &i, sizeof(a));
  return a;
#endif
}

// Uniform in (0, 1) from the top 23 bits: u = (2k + 1) / 2^24, exactly representable, symmetric
// about 1/2, never 0 or 1.
MLVGM_HD float unit_uniform(uint32_t word) {
  const int32_t k = static_cast<int32_t>(word >> 9);
  return fmul(static_cast<float>(2 * k + 1), 5.9604644775390625e-08f);  // 2^-24
}

// Uniform in (-1, 1) from the top 24 bits: v = (2k + 1 - 2^24) / 2^24, odd numerator, exact.
MLVGM_HD float signed_uniform(uint32_t word) {
  const int32_t k = static_cast<int32_t>(word >> 8);
  return fmul(static_cast<float>(2 * k + 1 - 16777216), 5.9604644775390625e-08f);
}

// Natural log for normal positive floats (Cephes logf polynomial, ~1 ulp), built only from
// exact bit operations, fmul and fadd so that it is bit-identical on every device.
MLVGM_HD float log_positive(float x) {
  const int32_t bits = float_bits(x);
  float e = static_cast<float>(((bits >> 23) & 0xFF) - 126);
  float m = bits_float((bits & 0x007FFFFF) | 0x3F000000);  // x = m * 2^e, m in [0.5, 1)
  const bool low = m < 0.707106781186547524f;
  e = low ? fadd(e, -1.0f) : e;
  m = low ? fadd(fadd(m, m), -1.0f) : fadd(m, -1.0f);
  const float z = fmul(m, m);
  float y = 7.0376836292e-2f;
  y = fadd(fmul(y, m), -1.1514610310e-1f);
  y = fadd(fmul(y, m), 1.1676998740e-1f);
  y = fadd(fmul(y, m), -1.2420140846e-1f);
  y = fadd(fmul(y, m), 1.4249322787e-1f);
  y = fadd(fmul(y, m), -1.6668057665e-1f);
  y = fadd(fmul(y, m), 2.0000714765e-1f);
  y = fadd(fmul(y, m), -2.4999993993e-1f);
  y = fadd(fmul(y, m), 3.3333331174e-1f);
  y = fmul(fmul(y, m), z);
  y = fadd(y, fmul(-2.12194440e-4f, e));
  y = fadd(y, fmul(-0.5f, z));
  float r = fadd(m, y);
  return fadd(r, fmul(0.693359375f, e));
}

// erfinv for |x| < 1: M. Giles, "Approximating the erfinv function", GPU Computing Gems (2011),
// single-precision coefficients, in its parts: the central branch for w < 5 and the tail (a
// square root) for the ~0.3 % of numbers beyond. erfinv_approx evaluates the tail only where it
// is taken: a GPU warp with no tail lane (~90 % of them) skips it, one with a tail lane runs
// both; the CPU kernel (cpu/resample_rows.h) does the same per vector.
MLVGM_HD float erfinv_w(float x) { return -log_positive(fmul(fadd(1.0f, -x), fadd(1.0f, x))); }

// Valid for w < 5 (|x| < 0.9966).

MLVGM_HD float erfinv_central(float w) {
  const float a = fadd(w, -2.5f);
  float p = 2.81022636e-08f;
  p = fadd(3.43273939e-07f, fmul(p, a));
  p = fadd(-3.5233877e-06f, fmul(p, a));
  p = fadd(-4.39150654e-06f, fmul(p, a));
  p = fadd(0.00021858087f, fmul(p, a));
  p = fadd(-0.00125372503f, fmul(p, a));
  p = fadd(-0.00417768164f, fmul(p, a));
  p = fadd(0.246640727f, fmul(p, a));
  return fadd(1.50140941f, fmul(p, a));
}

MLVGM_HD float erfinv_tail(float w) {
  const float b = fadd(fsqrt(w), -3.0f);
  float q = -0.000200214257f;
  q = fadd(0.000100950558f, fmul(q, b));
  q = fadd(0.00134934322f, fmul(q, b));
  q = fadd(-0.00367342844f, fmul(q, b));
  q = fadd(0.00573950773f, fmul(q, b));
  q = fadd(-0.0076224613f, fmul(q, b));
  q = fadd(0.00943887047f, fmul(q, b));
  q = fadd(1.00167406f, fmul(q, b));
  return fadd(2.83297682f, fmul(q, b));
}

MLVGM_HD float erfinv_approx(float x) {
  const float w = erfinv_w(x);
  return fmul(w < 5.0f ? erfinv_central(w) : erfinv_tail(w), x);
}

// Standard normal truncated to [-t, t] by inverse CDF: z = sqrt(2) erfinv(c v), v uniform in
// (-1, 1) and c = erf(t / sqrt(2)) (c = 1: no truncation). No rejection loop.
constexpr float kSqrt2 = 1.41421356237309505f;

MLVGM_HD float truncated_normal(uint32_t word, float c) {
  return fmul(kSqrt2, erfinv_approx(fmul(c, signed_uniform(word))));
}

enum RuleKind : int32_t { kKeep = 0, kPerturb = 1, kResample = 2 };

// One group of the spec as the kernels see it. Built on the host from ViewPolicy + LatentSpec
// (mlvgm_data/ops.py: _layout) and passed by value, so no device copy of metadata is needed.
struct GroupRule {
  int32_t numel;       // elements per sample
  int32_t slot;        // anchor slot: groups tied for style mixing share one
  int32_t index;       // the group's own slot for view noise
  int32_t kind;        // RuleKind
  int64_t out_offset;  // start of the group's [V, B, numel] block in the flat output
  float mu, sigma;     // Perturb: eps = mu + sigma * z
  float c_view;        // erf(trunc / sqrt 2) of the view rule (1: none)
  float c_anchor;      // erf(anchor_trunc / sqrt 2) (1: none); prior anchors only
  // Given anchor (ops.resample's anchors=): the group's [B, numel] anchor rows, in the memory of
  // the kernel's device, or null to draw the anchor from the prior. Tied groups share one.
  const float* anchor = nullptr;
};

// A given anchor takes the place of the drawn one and nothing else changes: the views are
// apply_rule of it with the same view-noise counters, so a Perturb view adds the very noise
// ε = mu + sigma * z to the given anchor that it adds to a drawn one.
MLVGM_HD bool has_given_anchor(const GroupRule& g) { return g.anchor != nullptr; }

MLVGM_HD Words4 row_block(uint32_t seed, uint32_t stream, uint32_t step, uint32_t sample,
                          uint32_t block, uint32_t domain, uint32_t view, uint32_t slot) {
  return philox4x32_10(Words4{block, sample, step, counter_word3(domain, view, slot)}, seed,
                       stream);
}

// View value from anchor value a and view noise word (ignored for Keep).
MLVGM_HD float apply_rule(const GroupRule& g, float a, uint32_t word) {
  if (g.kind == kKeep) return a;
  const float z = truncated_normal(word, g.c_view);
  if (g.kind == kResample) return z;
  return fadd(a, fadd(g.mu, fmul(g.sigma, z)));
}

MLVGM_HD int32_t blocks_of(int32_t n) { return (n + 3) / 4; }

}  // namespace mlvgm
