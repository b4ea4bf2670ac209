// The vectorised body of the CPU kernel, written once against the lane operations of `Simd`
// (simd_generic.h, simd_avx2.h, simd_avx512.h) and compiled once per instruction set.
//
// Exactness: every number goes through resample.h's sequence of IEEE operations, one lane
// operation per scalar operation and in the same order (Philox in exact integer operations; the
// uniforms, Cephes log, Giles erfinv and the Perturb combination in single fmul / fadd / fsqrt,
// no FMA). Lanes never mix, so the bits do not depend on the lane count, on which of the two
// layouts below fills a row, or on how rows are split into work items.
//
// Included by resample_kernel.cpp inside namespace mlvgm::<isa>, after that set's Simd and
// inside its target region (no include guard).

using U = Simd::U;
using F = Simd::F;
constexpr int W = Simd::W;

MLVGM_LANES int32_t lanes_min(int64_t a, int64_t b) { return static_cast<int32_t>(a < b ? a : b); }

// Four vectors of lanes as one value: the four words of a Philox block go through the
// uniform -> log -> erfinv polynomials together, so the four dependent chains of multiplies and
// adds interleave (one chain at a time is latency-bound: the AVX2 kernel took 1.4x as long).
struct Quad {
  struct U {
    Simd::U v[4];
  };
  struct F {
    Simd::F v[4];
  };
  struct M {
    Simd::M v[4];
  };
#define MLVGM_QUAD(T, name, expr) \
  MLVGM_LANES static T name {     \
    T r;                          \
    for (int j = 0; j < 4; ++j) r.v[j] = expr; \
    return r;                     \
  }
  MLVGM_QUAD(U, splat(uint32_t a), Simd::splat(a))
  MLVGM_QUAD(U, add(const U& a, const U& b), Simd::add(a.v[j], b.v[j]))
  MLVGM_QUAD(U, band(const U& a, const U& b), Simd::band(a.v[j], b.v[j]))
  MLVGM_QUAD(U, bor(const U& a, const U& b), Simd::bor(a.v[j], b.v[j]))
  MLVGM_QUAD(U, as_bits(const F& a), Simd::as_bits(a.v[j]))
  MLVGM_QUAD(F, to_float(const U& a), Simd::to_float(a.v[j]))
  MLVGM_QUAD(F, as_float(const U& a), Simd::as_float(a.v[j]))
  MLVGM_QUAD(F, fsplat(float a), Simd::fsplat(a))
  MLVGM_QUAD(F, fmul(const F& a, const F& b), Simd::fmul(a.v[j], b.v[j]))
  MLVGM_QUAD(F, fadd(const F& a, const F& b), Simd::fadd(a.v[j], b.v[j]))
  MLVGM_QUAD(F, fsqrt(const F& a), Simd::fsqrt(a.v[j]))
  MLVGM_QUAD(F, neg(const F& a), Simd::neg(a.v[j]))
  MLVGM_QUAD(M, lt(const F& a, const F& b), Simd::lt(a.v[j], b.v[j]))
  MLVGM_QUAD(F, select(const M& m, const F& a, const F& b), Simd::select(m.v[j], a.v[j], b.v[j]))
#undef MLVGM_QUAD
  template <int S>
  MLVGM_LANES static U shr(const U& a) {
    U r;
    for (int j = 0; j < 4; ++j) r.v[j] = Simd::template shr<S>(a.v[j]);
    return r;
  }
  MLVGM_LANES static bool all(const M& m) {
    bool r = true;
    for (int j = 0; j < 4; ++j) r &= Simd::all(m.v[j]);
    return r;
  }
};

// philox4x32_10 of philox.h on K vectors of W counters (block words x[k], the other words
// shared), in lockstep: one Philox chain alone is latency-bound, two interleave (measured 10 %
// faster overall on AVX2). The four output words of vector k are out[k].
template <int K>
MLVGM_LANES void philox(const U* x_in, U y_in, U z_in, U w_in, uint32_t k0, uint32_t k1,
                        Quad::U* out) {
  const U m0 = Simd::splat(kPhiloxM0);
  const U m1 = Simd::splat(kPhiloxM1);
  U x[K], y[K], z[K], w[K];
  for (int k = 0; k < K; ++k) {
    x[k] = x_in[k];
    y[k] = y_in;
    z[k] = z_in;
    w[k] = w_in;
  }
  for (int round = 0; round < 10; ++round) {
    const U key0 = Simd::splat(k0);
    const U key1 = Simd::splat(k1);
    for (int k = 0; k < K; ++k) {
      U hi0, lo0, hi1, lo1;
      Simd::mulhilo(x[k], m0, hi0, lo0);
      Simd::mulhilo(z[k], m1, hi1, lo1);
      x[k] = Simd::bxor(Simd::bxor(hi1, y[k]), key0);
      z[k] = Simd::bxor(Simd::bxor(hi0, w[k]), key1);
      y[k] = lo1;
      w[k] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  for (int k = 0; k < K; ++k) out[k] = Quad::U{{x[k], y[k], z[k], w[k]}};
}

// resample.h's unit_uniform, signed_uniform, log_positive, erfinv_* and truncated_normal, lane
// by lane, operation for operation.
using QU = Quad::U;
using QF = Quad::F;

MLVGM_LANES QF unit_uniform(const QU& word) {
  const QU k = Quad::shr<9>(word);
  return Quad::fmul(Quad::to_float(Quad::add(Quad::add(k, k), Quad::splat(1))),
                    Quad::fsplat(5.9604644775390625e-08f));
}

MLVGM_LANES QF signed_uniform(const QU& word) {
  const QU k = Quad::shr<8>(word);
  // 2k + 1 - 2^24 in wrapping uint32 arithmetic: the int32 bits of the scalar expression.
  const QU num = Quad::add(Quad::add(k, k), Quad::splat(1u - 16777216u));
  return Quad::fmul(Quad::to_float(num), Quad::fsplat(5.9604644775390625e-08f));
}

MLVGM_LANES QF log_positive(const QF& x) {
  const QU bits = Quad::as_bits(x);
  QF e = Quad::to_float(
      Quad::add(Quad::band(Quad::shr<23>(bits), Quad::splat(0xFF)), Quad::splat(0u - 126u)));
  QF m = Quad::as_float(
      Quad::bor(Quad::band(bits, Quad::splat(0x007FFFFF)), Quad::splat(0x3F000000)));
  const Quad::M low = Quad::lt(m, Quad::fsplat(0.707106781186547524f));
  const QF minus_one = Quad::fsplat(-1.0f);
  e = Quad::select(low, Quad::fadd(e, minus_one), e);
  m = Quad::select(low, Quad::fadd(Quad::fadd(m, m), minus_one), Quad::fadd(m, minus_one));
  const QF z = Quad::fmul(m, m);
  QF y = Quad::fsplat(7.0376836292e-2f);
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(-1.1514610310e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(1.1676998740e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(-1.2420140846e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(1.4249322787e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(-1.6668057665e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(2.0000714765e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(-2.4999993993e-1f));
  y = Quad::fadd(Quad::fmul(y, m), Quad::fsplat(3.3333331174e-1f));
  y = Quad::fmul(Quad::fmul(y, m), z);
  y = Quad::fadd(y, Quad::fmul(Quad::fsplat(-2.12194440e-4f), e));
  y = Quad::fadd(y, Quad::fmul(Quad::fsplat(-0.5f), z));
  const QF r = Quad::fadd(m, y);
  return Quad::fadd(r, Quad::fmul(Quad::fsplat(0.693359375f), e));
}

MLVGM_LANES QF erfinv_w(const QF& x) {
  const QF one = Quad::fsplat(1.0f);
  return Quad::neg(log_positive(Quad::fmul(Quad::fadd(one, Quad::neg(x)), Quad::fadd(one, x))));
}

MLVGM_LANES QF erfinv_central(const QF& w) {
  const QF a = Quad::fadd(w, Quad::fsplat(-2.5f));
  QF p = Quad::fsplat(2.81022636e-08f);
  p = Quad::fadd(Quad::fsplat(3.43273939e-07f), Quad::fmul(p, a));
  p = Quad::fadd(Quad::fsplat(-3.5233877e-06f), Quad::fmul(p, a));
  p = Quad::fadd(Quad::fsplat(-4.39150654e-06f), Quad::fmul(p, a));
  p = Quad::fadd(Quad::fsplat(0.00021858087f), Quad::fmul(p, a));
  p = Quad::fadd(Quad::fsplat(-0.00125372503f), Quad::fmul(p, a));
  p = Quad::fadd(Quad::fsplat(-0.00417768164f), Quad::fmul(p, a));
  p = Quad::fadd(Quad::fsplat(0.246640727f), Quad::fmul(p, a));
  return Quad::fadd(Quad::fsplat(1.50140941f), Quad::fmul(p, a));
}

MLVGM_LANES QF erfinv_tail(const QF& w) {
  const QF b = Quad::fadd(Quad::fsqrt(w), Quad::fsplat(-3.0f));
  QF q = Quad::fsplat(-0.000200214257f);
  q = Quad::fadd(Quad::fsplat(0.000100950558f), Quad::fmul(q, b));
  q = Quad::fadd(Quad::fsplat(0.00134934322f), Quad::fmul(q, b));
  q = Quad::fadd(Quad::fsplat(-0.00367342844f), Quad::fmul(q, b));
  q = Quad::fadd(Quad::fsplat(0.00573950773f), Quad::fmul(q, b));
  q = Quad::fadd(Quad::fsplat(-0.0076224613f), Quad::fmul(q, b));
  q = Quad::fadd(Quad::fsplat(0.00943887047f), Quad::fmul(q, b));
  q = Quad::fadd(Quad::fsplat(1.00167406f), Quad::fmul(q, b));
  return Quad::fadd(Quad::fsplat(2.83297682f), Quad::fmul(q, b));
}

struct TruncatedNormal {
  float c;  // erf(t / sqrt 2), see truncated_normal
  MLVGM_LANES QF operator()(const QU& word) const {
    const QF x = Quad::fmul(Quad::fsplat(c), signed_uniform(word));
    const QF w = erfinv_w(x);
    QF r = erfinv_central(w);
    const Quad::M central = Quad::lt(w, Quad::fsplat(5.0f));
    // The tail branch (a square root; a number needs it with probability ~0.3 %) only when some
    // lane does. The selection is erfinv_approx's, so skipping it changes no bit.
    if (!Quad::all(central)) r = Quad::select(central, r, erfinv_tail(w));
    return Quad::fmul(Quad::fsplat(kSqrt2), Quad::fmul(r, x));
  }
};

struct UnitUniform {
  MLVGM_LANES QF operator()(const QU& word) const { return unit_uniform(word); }
};

// The first `lanes` lanes of f to p[0], p[stride], ... (lanes <= 0: nothing).
MLVGM_LANES void put(float* p, F f, int32_t lanes, int64_t stride) {
  if (lanes >= W && stride == 1) {
    Simd::store(p, f);
    return;
  }
  alignas(64) float tmp[W];
  Simd::store(tmp, f);
  for (int32_t i = 0; i < lanes; ++i) p[i * stride] = tmp[i];
}

// The four words of blocks b .. b + W - 1 of one row, each into its quarter of the row. The last
// 4 nb - n <= 3 slots of the layout are past the row (in the last quarters when 4 does not
// divide n): they are not stored.
MLVGM_LANES void store_blocks(const QF& f, float* row, int32_t n, int32_t nb, int32_t b) {
  const int32_t lanes = lanes_min(W, nb - b);
  for (int j = 0; j < 4; ++j) put(row + j * nb + b, f.v[j], lanes_min(lanes, n - j * nb - b), 1);
}

// The four words of block b of `lanes` consecutive rows starting at base.
MLVGM_LANES void store_samples(const QF& f, float* base, int32_t n, int32_t nb, int32_t b,
                               int32_t lanes) {
  for (int j = 0; j < 4; ++j) {
    if (j * nb + b < n) put(base + j * nb + b, f.v[j], lanes, n);
  }
}

// Rows in philox.h's layout: element e of a row of n is word e / nb of block e % nb of the
// counter (block, sample, step, w3). By block: the lanes are W consecutive blocks of one row, so
// each word is one contiguous store into its quarter of the row.
template <class T>
void rows_by_block(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, T t,
                   float* dst) {
  const int32_t nb = blocks_of(n);
  const U step = Simd::splat(key.step);
  const U w3 = Simd::splat(key.w3);
  const U lane = Simd::iota();
  for (int64_t r = 0; r < rows; ++r) {
    const U sample = Simd::splat(samples[r]);
    float* row = dst + r * n;
    int32_t b = 0;
    for (; b + 2 * W <= nb; b += 2 * W) {
      const U x[2] = {Simd::add(Simd::splat(static_cast<uint32_t>(b)), lane),
                      Simd::add(Simd::splat(static_cast<uint32_t>(b + W)), lane)};
      Quad::U words[2];
      philox<2>(x, sample, step, w3, key.seed, key.stream, words);
      store_blocks(t(words[0]), row, n, nb, b);
      store_blocks(t(words[1]), row, n, nb, b + W);
    }
    for (; b < nb; b += W) {
      const U x = Simd::add(Simd::splat(static_cast<uint32_t>(b)), lane);
      Quad::U words;
      philox<1>(&x, sample, step, w3, key.seed, key.stream, &words);
      store_blocks(t(words), row, n, nb, b);
    }
  }
}

// By sample, for rows too short to fill the lanes with blocks: the lanes are W consecutive rows
// at one block, stored with a stride of one row.
template <class T>
void rows_by_sample(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, T t,
                    float* dst) {
  const int32_t nb = blocks_of(n);
  const U step = Simd::splat(key.step);
  const U w3 = Simd::splat(key.w3);
  for (int64_t r0 = 0; r0 < rows; r0 += W) {
    const int32_t lanes = lanes_min(W, rows - r0);
    alignas(64) uint32_t ids[W] = {};
    for (int32_t i = 0; i < lanes; ++i) ids[i] = samples[r0 + i];
    const U sample = Simd::loadu(ids);
    float* base = dst + r0 * n;
    int32_t b = 0;
    for (; b + 2 <= nb; b += 2) {
      const U x[2] = {Simd::splat(static_cast<uint32_t>(b)), Simd::splat(static_cast<uint32_t>(b + 1))};
      Quad::U words[2];
      philox<2>(x, sample, step, w3, key.seed, key.stream, words);
      store_samples(t(words[0]), base, n, nb, b, lanes);
      store_samples(t(words[1]), base, n, nb, b + 1, lanes);
    }
    if (b < nb) {
      const U x = Simd::splat(static_cast<uint32_t>(b));
      Quad::U words;
      philox<1>(&x, sample, step, w3, key.seed, key.stream, &words);
      store_samples(t(words), base, n, nb, b, lanes);
    }
  }
}

// Fills rows [0, rows) of the [rows, n] block at dst; row r uses counter sample id samples[r].
template <class T>
void fill_rows(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, T t,
               float* dst) {
  // Lanes used by each layout; by sample also pays a scalar store per number.
  const int32_t nb = blocks_of(n);
  const int64_t by_block = (nb + W - 1) / W * W;
  const int64_t by_sample = (rows + W - 1) / W * W;
  if (4 * nb >= 3 * by_block || nb * by_sample >= rows * by_block) {
    rows_by_block(key, samples, rows, n, t, dst);
  } else {
    rows_by_sample(key, samples, rows, n, t, dst);
  }
}

void normals(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, float c,
             float* dst) {
  fill_rows(key, samples, rows, n, TruncatedNormal{c}, dst);
}

void uniforms(const RowKey& key, const uint32_t* samples, int64_t rows, int32_t n, float* dst) {
  fill_rows(key, samples, rows, n, UnitUniform{}, dst);
}

// z <- anchor + (mu + sigma * z): apply_rule's Perturb, in place over count floats.
void perturb(const float* anchor, float* z, int64_t count, float mu, float sigma) {
  const F m = Simd::fsplat(mu);
  const F s = Simd::fsplat(sigma);
  int64_t i = 0;
  for (; i + W <= count; i += W) {
    Simd::store(z + i, Simd::fadd(Simd::loadf(anchor + i), Simd::fadd(m, Simd::fmul(s, Simd::loadf(z + i)))));
  }
  for (; i < count; ++i) z[i] = mlvgm::fadd(anchor[i], mlvgm::fadd(mu, mlvgm::fmul(sigma, z[i])));
}

// truncated_normal of given words (the exhaustive exactness test feeds every input).
void normals_of_words(const uint32_t* words, int64_t count, float c, float* out) {
  const TruncatedNormal t{c};
  for (int64_t i = 0; i < count; i += 4 * W) {
    alignas(64) uint32_t w[4 * W] = {};
    const int32_t n = lanes_min(4 * W, count - i);
    for (int32_t j = 0; j < n; ++j) w[j] = words[i + j];
    const QF f = t(QU{{Simd::loadu(w), Simd::loadu(w + W), Simd::loadu(w + 2 * W), Simd::loadu(w + 3 * W)}});
    for (int j = 0; j < 4; ++j) put(out + i + j * W, f.v[j], lanes_min(W, n - j * W), 1);
  }
}

const Kernels kernels{normals, uniforms, perturb, normals_of_words};
