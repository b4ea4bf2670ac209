// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
// Plain C++ with __host__ __device__ markers: the CPU kernel, the CUDA kernel and (through the
// same constants) the pure-PyTorch reference in mlvgm_data/ops.py compute identical words.
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define MLVGM_HD __host__ __device__ __forceinline__
#else
#define MLVGM_HD inline __attribute__((always_inline))
#endif

namespace mlvgm {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

struct Words4 {
  uint32_t x, y, z, w;
};

MLVGM_HD uint32_t mulhi32(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

// Ten rounds; the key is bumped between rounds, as in Random123's philox4x32_R(10, ...).
MLVGM_HD Words4 philox4x32_10(Words4 c, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = kPhiloxM0 * c.x;
    const uint32_t hi0 = mulhi32(kPhiloxM0, c.x);
    const uint32_t lo1 = kPhiloxM1 * c.z;
    const uint32_t hi1 = mulhi32(kPhiloxM1, c.z);
    c = Words4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return c;
}

// Counter layout shared by every random draw of the library (see README, "Randomness"):
//   word 0: block index inside one (sample, group) row
//   word 1: sample id
//   word 2: step
//   word 3: domain (4 bits) | view (8 bits) | slot (20 bits)
// The key is (seed, stream). Element e of a row of n elements is word e / nb of block e % nb,
// nb = ceil(n / 4): each of the four words fills a contiguous quarter of the row, so stores stay
// contiguous on the CPU (vectorisable) and coalesced on the GPU.
constexpr uint32_t kDomainAnchor = 0;
constexpr uint32_t kDomainView = 1;

MLVGM_HD uint32_t counter_word3(uint32_t domain, uint32_t view, uint32_t slot) {
  return (domain << 28) | ((view & 0xFFu) << 20) | (slot & 0xFFFFFu);
}

MLVGM_HD uint32_t word_of(const Words4& w, int lane) {
  return lane == 0 ? w.x : lane == 1 ? w.y : lane == 2 ? w.z : w.w;
}

}  // namespace mlvgm
