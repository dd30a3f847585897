// The CPU attention driver (attention.h): splits the call into slices (group, head) and items
// of QB query rows, packs each slice's keys/values once for the chosen path's kernels
// (attention_unit.inc) and runs the items on the pool. Packing is exact (a layout change, or the
// bf16 rounding the path's arithmetic defines), so no bit depends on how slices are grouped.
#include "attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <new>

#include "attention_kernels.h"

namespace ditpoc::cpu {

using namespace attention_detail;

namespace {

// Packed keys/values of at most this many bytes at a time (slices are packed in chunks; one
// slice may exceed it alone).
constexpr int64_t kPackBudget = int64_t(16) << 20;

const Kernels& kernels_for(Isa isa) {
  switch (isa) {
#if defined(__x86_64__)
    case Isa::Avx512Bf16: return kernels_avx512bf16;
    case Isa::Avx512: return kernels_avx512;
    case Isa::Avx2: return kernels_avx2;
#endif
    default: return kernels_portable;
  }
}

// The calling thread's packing buffer (64-byte aligned, grown on demand, kept for later calls).
struct PackBuffer {
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> buf;
  int64_t cap = 0;
  char* get(int64_t bytes) {
    if (bytes > cap) {
      const int64_t rounded = (bytes + 63) / 64 * 64;
      buf.reset(static_cast<char*>(std::aligned_alloc(64, static_cast<size_t>(rounded))));
      if (!buf) {
        cap = 0;
        throw std::bad_alloc();
      }
      cap = rounded;
    }
    return buf.get();
  }
};

}  // namespace

void attention(const float* q, const float* k, const float* v, int64_t groups, int64_t lq,
               int64_t lk, int heads, int head_dim, float* out, ThreadPool& pool,
               AttentionNumerics numerics, Isa isa) {
  if (groups <= 0 || lq <= 0 || heads <= 0) return;
  const bool simd_shape = head_dim % 32 == 0 && head_dim <= kMaxHd && lk > 0;
  if (!simd_shape) isa = Isa::Portable;
  const Kernels& kern = kernels_for(isa);
  Call call{};
  call.width = static_cast<int64_t>(heads) * head_dim;
  call.lk = lk;
  call.hd = head_dim;
  call.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  call.round_p = numerics.round_p_bf16;
  call.qk_dot = isa == Isa::Avx512Bf16 && numerics.bf16_inputs;
  call.pv_dot = call.qk_dot && numerics.round_p_bf16;

  const int64_t slices = groups * heads, q_blocks = (lq + QB - 1) / QB;
  const int64_t slice_bytes = kern.packed_bytes(call);
  const int64_t chunk = slice_bytes == 0 ? slices : std::max<int64_t>(1, std::min(slices, kPackBudget / slice_bytes));
  static thread_local PackBuffer pack_buffer;
  char* packed = slice_bytes ? pack_buffer.get(chunk * slice_bytes) : nullptr;
  auto slice_offset = [&](int64_t s, int64_t rows_per_group) {
    return (s / heads) * rows_per_group * call.width + (s % heads) * head_dim;
  };
  for (int64_t s0 = 0; s0 < slices; s0 += chunk) {
    const int64_t n = std::min(chunk, slices - s0);
    if (slice_bytes) {
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const int64_t off = slice_offset(s0 + i, lk);
          kern.pack(call, k + off, v + off, packed + i * slice_bytes);
        }
      });
    }
    pool.parallel_for(n * q_blocks, [&](int64_t b, int64_t e) {
      for (int64_t it = b; it < e; ++it) {
        const int64_t i = it / q_blocks, i0 = (it % q_blocks) * QB;
        const int64_t kv = slice_offset(s0 + i, lk), qo = slice_offset(s0 + i, lq) + i0 * call.width;
        kern.rows(call, q + qo, k + kv, v + kv, packed ? packed + i * slice_bytes : nullptr,
                  std::min(QB, lq - i0), out + qo);
      }
    });
  }
}

}  // namespace ditpoc::cpu
