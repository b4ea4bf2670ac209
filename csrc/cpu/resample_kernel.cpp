// CPU kernels of mlvgm_data::resample_ and mlvgm_data::uniform_.
// Parallel over (anchor set, sample) rows with at::parallel_for. Each row is produced in three
// vectorisable passes (Philox words, words -> truncated normals, rule application); on x86-64
// Linux the passes are compiled for AVX-512, AVX2 and baseline and picked at load time. The
// arithmetic is resample.h's, so the bits do not depend on the ISA or the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../resample_host.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MLVGM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLVGM_CLONES
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MLVGM_AVX2_PHILOX 1
#include <immintrin.h>
#endif

namespace mlvgm {
namespace {

struct RowKey {
  uint32_t seed, stream, step, sample, domain, view, slot;
};

void fill_words_scalar(const RowKey& k, int32_t first, int32_t nb, uint32_t* __restrict__ words) {
  const uint32_t w3 = counter_word3(k.domain, k.view, k.slot);
  for (int32_t b = first; b < nb; ++b) {
    const Words4 w =
        philox4x32_10(Words4{static_cast<uint32_t>(b), k.sample, k.step, w3}, k.seed, k.stream);
    words[b] = w.x;
    words[nb + b] = w.y;
    words[2 * nb + b] = w.z;
    words[3 * nb + b] = w.w;
  }
}

#ifdef MLVGM_AVX2_PHILOX
// Eight Philox blocks per iteration. GCC does not vectorise the 32x32->64 multiplies of the
// scalar round, so it is spelled out: _mm256_mul_epu32 multiplies the even lanes, the odd lanes
// go through a 32-bit shift, and blends reassemble the high and low words. Integer arithmetic
// only, so the words equal philox4x32_10's.
__attribute__((target("avx2"))) int32_t fill_words_avx2(const RowKey& k, int32_t nb,
                                                        uint32_t* __restrict__ words) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i y0 = _mm256_set1_epi32(static_cast<int>(k.sample));
  const __m256i z0 = _mm256_set1_epi32(static_cast<int>(k.step));
  const __m256i w0 = _mm256_set1_epi32(static_cast<int>(counter_word3(k.domain, k.view, k.slot)));
  int32_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    __m256i x = _mm256_add_epi32(_mm256_set1_epi32(b), lane), y = y0, z = z0, w = w0;
    uint32_t k0 = k.seed, k1 = k.stream;
    for (int round = 0; round < 10; ++round) {
      const __m256i pe0 = _mm256_mul_epu32(x, m0);
      const __m256i po0 = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m0);
      const __m256i pe1 = _mm256_mul_epu32(z, m1);
      const __m256i po1 = _mm256_mul_epu32(_mm256_srli_epi64(z, 32), m1);
      const __m256i lo0 = _mm256_blend_epi32(pe0, _mm256_slli_epi64(po0, 32), 0xAA);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(pe0, 32), po0, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(pe1, _mm256_slli_epi64(po1, 32), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(pe1, 32), po1, 0xAA);
      x = _mm256_xor_si256(_mm256_xor_si256(hi1, y), _mm256_set1_epi32(static_cast<int>(k0)));
      z = _mm256_xor_si256(_mm256_xor_si256(hi0, w), _mm256_set1_epi32(static_cast<int>(k1)));
      y = lo1;
      w = lo0;
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + b), x);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + nb + b), y);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 2 * nb + b), z);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 3 * nb + b), w);
  }
  return b;
}
#endif

// words[lane * nb + block] = word `lane` of Philox block `block`.
void fill_words(const RowKey& k, int32_t nb, uint32_t* __restrict__ words) {
  int32_t done = 0;
#ifdef MLVGM_AVX2_PHILOX
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) done = fill_words_avx2(k, nb, words);
#endif
  fill_words_scalar(k, done, nb, words);
}

// truncated_normal over a row in two passes: the central erfinv branch for every element
// (vectorised: no square root, no branch), then the exact per-element function for the ~1 %
// whose |x| could reach the tail. Elements with |x| <= kErfinvCentralBound have w < 5, where
// truncated_normal selects the central branch, so every output equals truncated_normal's bits.
MLVGM_CLONES void words_to_normals(const uint32_t* __restrict__ words, int32_t n, float c,
                                   float* __restrict__ out) {
  for (int32_t e = 0; e < n; ++e) {
    const float x = fmul(c, signed_uniform(words[e]));
    out[e] = fmul(kSqrt2, fmul(erfinv_central(erfinv_w(x)), x));
  }
  for (int32_t e = 0; e < n; ++e) {
    if (std::fabs(fmul(c, signed_uniform(words[e]))) > kErfinvCentralBound) {
      out[e] = truncated_normal(words[e], c);
    }
  }
}

MLVGM_CLONES void words_to_uniforms(const uint32_t* words, int32_t n, float* out) {
  for (int32_t e = 0; e < n; ++e) out[e] = unit_uniform(words[e]);
}

MLVGM_CLONES void perturb_row(const float* anchor, const float* z, int32_t n, float mu,
                              float sigma, float* out) {
  for (int32_t e = 0; e < n; ++e) out[e] = fadd(anchor[e], fadd(mu, fmul(sigma, z[e])));
}

// Scratch for one row, reused across the rows a thread handles.
struct Scratch {
  std::vector<uint32_t> words;
  std::vector<float> anchor;
  void fit(int32_t n) {
    const size_t w = 4 * static_cast<size_t>(blocks_of(n));
    if (words.size() < w) words.resize(w);
    if (anchor.size() < static_cast<size_t>(n)) anchor.resize(n);
  }
};

at::Tensor& resample_cpu(at::Tensor& out, const c10::optional<at::Tensor>& sample_ids,
                         c10::IntArrayRef group_meta, c10::ArrayRef<double> group_params,
                         int64_t batch, int64_t views, bool include_anchor, int64_t seed,
                         int64_t stream, int64_t step, int64_t sample_offset) {
  const std::vector<GroupRule> groups = unpack_groups(group_meta, group_params);
  const int64_t total =
      check_resample_args(out, sample_ids, groups, batch, views, seed, stream, step, sample_offset);
  TORCH_CHECK(out.device().is_cpu(), "resample_cpu called with a non-CPU tensor");
  const int64_t* ids = sample_ids.has_value() ? sample_ids->data_ptr<int64_t>() : nullptr;
  float* dst = out.data_ptr<float>();
  // Groups tied to one anchor (style mixing) are handled together so the anchor is drawn once.
  std::vector<std::vector<const GroupRule*>> sets;
  for (const auto& g : groups) {
    auto it = std::find_if(sets.begin(), sets.end(), [&](const auto& set) { return set[0]->slot == g.slot; });
    if (it == sets.end()) sets.push_back({&g}); else it->push_back(&g);
  }
  const int64_t rows = static_cast<int64_t>(sets.size()) * batch;
  // Rows are (anchor set, sample); aim for ~16k output floats per task.
  const int64_t grain = std::max<int64_t>(1, (16384 * rows) / std::max<int64_t>(total, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    Scratch s;
    for (int64_t r = begin; r < end; ++r) {
      const auto& set = sets[r / batch];
      const int64_t b = r % batch;
      const int32_t n = set[0]->numel;  // tied groups share their shape (LatentSpec checks)
      const int32_t nb = blocks_of(n);
      s.fit(n);
      RowKey key{static_cast<uint32_t>(seed), static_cast<uint32_t>(stream),
                 static_cast<uint32_t>(step),
                 static_cast<uint32_t>(ids ? ids[b] : sample_offset + b), kDomainAnchor, 0,
                 static_cast<uint32_t>(set[0]->slot)};
      fill_words(key, nb, s.words.data());
      words_to_normals(s.words.data(), n, set[0]->c_anchor, s.anchor.data());
      key.domain = kDomainView;
      for (const GroupRule* g : set) {
        key.slot = static_cast<uint32_t>(g->index);
        for (int64_t v = 0; v < views; ++v) {
          float* row = dst + g->out_offset + (v * batch + b) * n;
          if ((include_anchor && v == 0) || g->kind == kKeep) {
            std::memcpy(row, s.anchor.data(), sizeof(float) * n);
            continue;
          }
          key.view = static_cast<uint32_t>(v);
          fill_words(key, nb, s.words.data());
          words_to_normals(s.words.data(), n, g->c_view, row);
          // Perturb combines the fresh normals with the anchor in place; Resample keeps them.
          if (g->kind == kPerturb) perturb_row(s.anchor.data(), row, n, g->mu, g->sigma, row);
        }
      }
    }
  });
  return out;
}

at::Tensor& uniform_cpu(at::Tensor& out, const c10::optional<at::Tensor>& sample_ids, int64_t seed,
                        int64_t stream, int64_t step, int64_t domain, int64_t view, int64_t slot,
                        int64_t sample_offset) {
  check_uniform_args(out, sample_ids, seed, stream, step, domain, view, slot, sample_offset);
  TORCH_CHECK(out.device().is_cpu(), "uniform_cpu called with a non-CPU tensor");
  const int64_t batch = out.size(0);
  const int32_t n = static_cast<int32_t>(out.size(1));
  if (batch == 0 || n == 0) return out;
  const int64_t* ids = sample_ids.has_value() ? sample_ids->data_ptr<int64_t>() : nullptr;
  float* dst = out.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 16384 / n);
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> words(4 * static_cast<size_t>(blocks_of(n)));
    for (int64_t b = begin; b < end; ++b) {
      const RowKey key{static_cast<uint32_t>(seed), static_cast<uint32_t>(stream),
                       static_cast<uint32_t>(step),
                       static_cast<uint32_t>(ids ? ids[b] : sample_offset + b),
                       static_cast<uint32_t>(domain), static_cast<uint32_t>(view),
                       static_cast<uint32_t>(slot)};
      fill_words(key, blocks_of(n), words.data());
      words_to_uniforms(words.data(), n, dst + b * n);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(mlvgm_data, CPU, m) {
  m.impl("resample_", &resample_cpu);
  m.impl("uniform_", &uniform_cpu);
}

}  // namespace mlvgm
