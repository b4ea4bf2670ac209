// CPU kernels of mlvgm_data::resample_ and mlvgm_data::uniform_.
// Parallel over (group, sample) rows with at::parallel_for. Each row is produced in three
// vectorisable passes (Philox words, words -> truncated normals, rule application); on x86-64
// Linux the passes are compiled for AVX-512, AVX2 and baseline and picked at load time. The
// arithmetic is resample.h's, so the bits do not depend on the ISA or the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../resample_host.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MLVGM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MLVGM_CLONES
#endif

namespace mlvgm {
namespace {

struct RowKey {
  uint32_t seed, stream, step, sample, domain, view, slot;
};

// words[lane * nb + block] = word `lane` of Philox block `block`. The key is taken by value:
// through a reference it could alias `words` and the loop would not vectorise.
MLVGM_CLONES void fill_words(const RowKey k, int32_t nb, uint32_t* __restrict__ words) {
  const uint32_t w3 = counter_word3(k.domain, k.view, k.slot);
  const uint32_t sample = k.sample, step = k.step, seed = k.seed, stream = k.stream;
  for (int32_t b = 0; b < nb; ++b) {
    const Words4 w = philox4x32_10(Words4{static_cast<uint32_t>(b), sample, step, w3}, seed, stream);
    words[b] = w.x;
    words[nb + b] = w.y;
    words[2 * nb + b] = w.z;
    words[3 * nb + b] = w.w;
  }
}

MLVGM_CLONES void words_to_normals(const uint32_t* words, int32_t n, float c, float* out) {
  for (int32_t e = 0; e < n; ++e) out[e] = truncated_normal(words[e], c);
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
  const int64_t rows = static_cast<int64_t>(groups.size()) * batch;
  // Rows are (group, sample); aim for ~16k output floats per task.
  const int64_t grain = std::max<int64_t>(1, (16384 * rows) / std::max<int64_t>(total, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    Scratch s;
    for (int64_t r = begin; r < end; ++r) {
      const GroupRule& g = groups[r / batch];
      const int64_t b = r % batch;
      const int32_t n = g.numel;
      const int32_t nb = blocks_of(n);
      s.fit(n);
      RowKey key{static_cast<uint32_t>(seed), static_cast<uint32_t>(stream),
                 static_cast<uint32_t>(step),
                 static_cast<uint32_t>(ids ? ids[b] : sample_offset + b), kDomainAnchor, 0,
                 static_cast<uint32_t>(g.slot)};
      fill_words(key, nb, s.words.data());
      words_to_normals(s.words.data(), n, g.c_anchor, s.anchor.data());
      key.domain = kDomainView;
      key.slot = static_cast<uint32_t>(g.index);
      for (int64_t v = 0; v < views; ++v) {
        float* row = dst + g.out_offset + (v * batch + b) * n;
        if ((include_anchor && v == 0) || g.kind == kKeep) {
          std::memcpy(row, s.anchor.data(), sizeof(float) * n);
          continue;
        }
        key.view = static_cast<uint32_t>(v);
        fill_words(key, nb, s.words.data());
        if (g.kind == kResample) {
          words_to_normals(s.words.data(), n, g.c_view, row);
        } else {
          // The normals go to the output row first, then are combined with the anchor in place.
          words_to_normals(s.words.data(), n, g.c_view, row);
          perturb_row(s.anchor.data(), row, n, g.mu, g.sigma, row);
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
