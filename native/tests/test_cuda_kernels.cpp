// CUDA kernels against their CPU twins on random inputs, GPU run-to-run bit identity, cuBLASLt
// GEMMs against the CPU GEMM, and whole forwards GPU vs CPU (wan-tiny; wan2.1-t2v-1.3b at
// grid [2,8,8] too when DITPOC_CUDA_TEST_BIG=1). Built only with the CUDA backend; exits 77
// (ctest: skipped) when no device is visible.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "../../kernels/cuda_check.h"
#include "../../kernels/kernels.h"
#include "backend.h"
#include "backend_factory.h"
#include "bf16.h"
#include "check.h"
#include "cpu/gemm.h"
#include "cpu/ops.h"
#include "cuda/cuda_backend.h"
#include "cuda/lt_gemm.h"
#include "seeding.h"
#include "weight_transforms.h"
#include "weights.h"

using namespace ditpoc;

namespace {

std::mt19937 rng(4321);
cudaStream_t stream = nullptr;

std::vector<float> randn(size_t n, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = round_bf16(x);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}

std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = bf16_to_f32(v[i]);
  return o;
}

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    DITPOC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(1, n) * sizeof(T)));
    DITPOC_CUDA_CHECK(cudaMemset(p, 0xff, std::max<size_t>(1, n) * sizeof(T)));  // poison (NaN for floats)
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) { up(v); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  // Re-poisons before a buffer is reused, so an element a kernel fails to write cannot pass with
  // the previous call's value (run-to-run checks would otherwise compare a buffer with itself).
  void poison() { DITPOC_CUDA_CHECK(cudaMemsetAsync(p, 0xff, std::max<size_t>(1, n) * sizeof(T), stream)); }
  void up(const std::vector<T>& v) {
    DITPOC_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> down() const {
    DITPOC_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<T> v(n);
    DITPOC_CUDA_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

// max |a − b| / max |b|, infinite when a has a non-finite value.
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return num / den;
}

// ‖a − b‖ / ‖b‖.
double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 1e-300;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Largest difference in bf16 units in the last place (values that are bf16 already), ignoring
// differences within 1e-6·max|b|: near-zero results of a cancellation (GELU's 1 + tanh in the
// negative tail, RoPE's a·c − b·s, ±0) differ by many ulps when device and host libm or FMA
// contraction differ by one fp32 ulp, which is not a kernel bug.
int max_bf16_ulps(const std::vector<float>& a, const std::vector<float>& b) {
  double tiny = 0;
  for (float v : b) tiny = std::max(tiny, 1e-6 * std::fabs(double(v)));
  int worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return 1 << 20;
    if (std::fabs(double(a[i]) - b[i]) <= tiny) continue;
    const int ia = static_cast<int16_t>(f32_to_bf16(a[i])), ib = static_cast<int16_t>(f32_to_bf16(b[i]));
    worst = std::max(worst, std::abs(ia - ib));
  }
  return worst;
}

void test_seeding() {
  const int64_t n = 100003;
  const uint32_t seed = 0x9e3779b9u;
  Dev<float> d(n);
  cuda::fill_uniform(seed, n, d.p, stream);
  std::vector<float> ref(n);
  uniform(seed, n, ref.data());
  CHECK_MSG(same_bits(d.down(), ref), "device U differs from the CPU's bits");

  d.poison();
  cuda::fill_normal(seed, n, d.p, stream);
  normal(seed, n, ref.data());
  const auto g = d.down();
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(g[i])) {  // std::max would drop a NaN (an unwritten, poisoned element)
      worst = INFINITY;
      break;
    }
    worst = std::max(worst, std::fabs(double(g[i]) - ref[i]) / std::max(1.0, std::fabs(double(ref[i]))));
  }
  CHECK_MSG(worst < 2e-6, "device N differs from the CPU's by %g", worst);

  std::array<uint32_t, 8> words;
  for (int t = 0; t < 8; ++t) words[t] = mm(t, seed);
  const int64_t n8 = 77777;
  Dev<float> d8(n8);
  cuda::fill_normal8(words.data(), n8, d8.p, stream);
  std::vector<float> ref8(n8);
  normal8(words, n8, ref8.data());
  CHECK_MSG(rel_err(d8.down(), ref8) < 2e-6, "device N8 err %g", rel_err(d8.down(), ref8));

  // SPEC §6 weights: bf16(μ + σ·N); a flip of one bf16 rounding is possible where N differs by an ulp.
  const float mu = 1.0f, sigma = 0.02f;
  Dev<uint16_t> wb(n);
  cuda::fill_normal_bf16(seed, n, mu, sigma, wb.p, stream);
  const auto gw = wb.down();
  int64_t flips = 0;
  int worst_ulps = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(mu + sigma * ref[i]);
    if (h != gw[i]) ++flips, worst_ulps = std::max(worst_ulps, std::abs(int(h) - int(gw[i])));
  }
  CHECK_MSG(flips <= n / 1000 && worst_ulps <= 1, "bf16 weights: %lld flips, worst %d ulps", (long long)flips, worst_ulps);
  Dev<float> wf(n);
  cuda::fill_normal_bf16_as_f32(seed, n, mu, sigma, wf.p, stream);
  CHECK(same_bits(wf.down(), from_bf16(gw)));
}

void test_elementwise(ThreadPool& pool) {
  const int64_t rows = 37, cols = 300, stride = 320;
  auto x = randn(rows * stride, 2.0f);
  Dev<float> dx(x);
  Dev<uint16_t> out(rows * cols);
  cuda::f32_to_bf16(dx.p, stride, rows, cols, out.p, stream);
  std::vector<uint16_t> ref(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ref[r * cols + c] = f32_to_bf16(x[r * stride + c]);
  CHECK(same_bits(out.down(), ref));

  out.poison();
  cuda::gelu_tanh_to_bf16(dx.p, stride, rows, cols, out.p, stream);
  std::vector<float> gref(rows * cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) gref[r * cols + c] = x[r * stride + c];
  cpu::gelu_tanh_inplace(gref.data(), rows * cols, pool);
  CHECK_MSG(max_bf16_ulps(from_bf16(out.down()), gref) <= 1, "gelu: %d ulps", max_bf16_ulps(from_bf16(out.down()), gref));

  auto s = randn(1000, 3.0f);
  Dev<float> ds(s);
  cuda::silu_inplace(ds.p, 1000, stream);
  cpu::silu_inplace(s.data(), 1000, pool);
  CHECK_MSG(rel_err(ds.down(), s) < 1e-6, "silu err %g", rel_err(ds.down(), s));

  auto a = randn(96), b = randn(3 * 100);
  Dev<float> da(a), db(b), dab(3 * 96);
  cuda::add_broadcast(da.p, db.p, 100, 3, 96, dab.p, stream);
  std::vector<float> abref(3 * 96);
  for (int g = 0; g < 3; ++g)
    for (int i = 0; i < 96; ++i) abref[g * 96 + i] = a[i] + b[g * 100 + i];
  CHECK(same_bits(dab.down(), abref));

  // Patchify: latent [C, F·1, 2H, 2W] → [F·H·W, C·4], (c, pt, ph, pw) with c slowest.
  const int C = 16, Fr = 2, H = 3, W = 5;
  auto lat = randn(size_t(C) * Fr * 2 * H * 2 * W);
  Dev<float> dl(lat);
  Dev<uint16_t> dp(size_t(Fr) * H * W * C * 4);
  cuda::patchify_bf16(dl.p, C, Fr, H, W, 1, 2, 2, dp.p, stream);
  std::vector<uint16_t> pref;
  for (int f = 0; f < Fr; ++f)
    for (int h = 0; h < H; ++h)
      for (int w = 0; w < W; ++w)
        for (int c = 0; c < C; ++c)
          for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 2; ++j)
              pref.push_back(f32_to_bf16(lat[((size_t(c) * Fr + f) * 2 * H + 2 * h + i) * 2 * W + 2 * w + j]));
  CHECK(same_bits(dp.down(), pref));

  // float8 groups: GPU value · scale equals the CPU's rounded value exactly.
  const int64_t groups = 3, per = 41, w = 256;
  auto q = randn(groups * per * w, 1.5f);
  Dev<float> dq(q);
  Dev<uint16_t> dq8(groups * per * w);
  Dev<float> scales(groups), partial(cuda::fp8_partial_floats(groups));
  cuda::quantize_fp8_groups(dq.p, w, per, w, groups, dq8.p, scales.p, partial.p, stream);
  auto qref = q;
  cpu::round_fp8_groups_inplace(qref.data(), groups, per * w, pool);
  const auto q8 = from_bf16(dq8.down());
  const auto sc = scales.down();
  std::vector<float> qg(q8.size());
  for (int64_t i = 0; i < int64_t(q8.size()); ++i) qg[i] = q8[i] * sc[i / (per * w)];
  CHECK_MSG(same_bits(qg, qref), "fp8 quantisation differs from the CPU's");
}

void test_norms(ThreadPool& pool) {
  const double eps = 1e-6;
  const int64_t rows = 45, per_group = 15, groups = 3;
  const int dim = 512;
  auto x = randn(rows * dim, 3.0f, 0.5f), y = randn(rows * dim), mod = randn(groups * 6 * dim, 0.3f);
  auto w = randn(dim, 0.1f, 1.0f), bvec = randn(dim, 0.1f);
  Dev<float> dx(x), dy(y), dmod(mod), dw(w), db(bvec);
  Dev<uint16_t> ob(rows * dim);
  Dev<float> of(rows * dim);
  std::vector<float> ref(rows * dim);

  cuda::layernorm_modulate_bf16(dx.p, rows, dim, eps, dmod.p, dmod.p + dim, 6 * dim, per_group, ob.p, stream);
  cpu::layernorm_modulate(x.data(), rows, dim, eps, mod.data(), mod.data() + dim, 6 * dim, per_group, ref.data(), pool);
  CHECK_MSG(max_bf16_ulps(from_bf16(ob.down()), ref) <= 1, "ln_mod bf16 %d ulps", max_bf16_ulps(from_bf16(ob.down()), ref));
  cuda::layernorm_modulate_f32(dx.p, rows, dim, eps, dmod.p, dmod.p + dim, 6 * dim, per_group, of.p, stream);
  CHECK_MSG(rel_err(of.down(), ref) < 1e-6, "ln_mod f32 err %g", rel_err(of.down(), ref));

  ob.poison();
  cuda::layernorm_affine_bf16(dx.p, rows, dim, eps, dw.p, db.p, ob.p, stream);
  cpu::layernorm_affine(x.data(), rows, dim, eps, w.data(), bvec.data(), ref.data(), pool);
  CHECK(max_bf16_ulps(from_bf16(ob.down()), ref) <= 1);

  // residual (gated) + affine LN
  {
    Dev<float> xx(x);
    ob.poison();
    cuda::residual_layernorm_affine_bf16(xx.p, dy.p, dmod.p + 2 * dim, 6 * dim, per_group, rows, dim, eps, dw.p, db.p,
                                         ob.p, stream);
    auto xr = x;
    cpu::residual_add(xr.data(), y.data(), mod.data() + 2 * dim, 6 * dim, rows, dim, per_group, pool);
    cpu::layernorm_affine(xr.data(), rows, dim, eps, w.data(), bvec.data(), ref.data(), pool);
    CHECK_MSG(rel_err(xx.down(), xr) < 1e-6, "residual x err %g", rel_err(xx.down(), xr));
    CHECK(max_bf16_ulps(from_bf16(ob.down()), ref) <= 1);
  }
  // ungated residual + modulated LN
  {
    Dev<float> xx(x);
    ob.poison();
    cuda::residual_layernorm_modulate_bf16(xx.p, dy.p, nullptr, 0, per_group, rows, dim, eps, dmod.p + 3 * dim,
                                           dmod.p + 4 * dim, 6 * dim, ob.p, stream);
    auto xr = x;
    cpu::residual_add(xr.data(), y.data(), nullptr, 0, rows, dim, per_group, pool);
    cpu::layernorm_modulate(xr.data(), rows, dim, eps, mod.data() + 3 * dim, mod.data() + 4 * dim, 6 * dim, per_group,
                            ref.data(), pool);
    CHECK(rel_err(xx.down(), xr) < 1e-6);
    CHECK(max_bf16_ulps(from_bf16(ob.down()), ref) <= 1);
  }
  // gated residual + Householder reflection
  {
    Dev<float> xx(x);
    const auto hh = householder_vector(77, dim);
    Dev<float> dh(hh);
    cuda::residual_reflect(xx.p, dy.p, dmod.p + 5 * dim, 6 * dim, per_group, rows, dim, dh.p, stream);
    auto xr = x;
    cpu::residual_add(xr.data(), y.data(), mod.data() + 5 * dim, 6 * dim, rows, dim, per_group, pool);
    cpu::reflect_rows(xr.data(), rows, dim, hh.data(), pool);
    CHECK_MSG(rel_err(xx.down(), xr) < 1e-6, "residual_reflect err %g", rel_err(xx.down(), xr));
    const auto first = xx.down();
    Dev<float> x2(x);
    cuda::residual_reflect(x2.p, dy.p, dmod.p + 5 * dim, 6 * dim, per_group, rows, dim, dh.p, stream);
    CHECK(same_bits(first, x2.down()));
  }
  // QK RMSNorm + RoPE over a strided input (the fused qkv GEMM output), grid [1,3,5] → 15 tokens.
  {
    const int heads = 4, hd = 128, D = heads * hd;
    const int64_t n = 30, stride = 3 * D;
    auto in = randn(n * stride, 2.0f);
    auto nw = randn(D, 0.1f, 1.0f);
    const cpu::RopeTable table = cpu::make_rope_table(1, 3, 5, hd);
    std::vector<float> cs(table.cos.size() * 2);
    for (size_t i = 0; i < table.cos.size(); ++i) cs[2 * i] = table.cos[i], cs[2 * i + 1] = table.sin[i];
    Dev<float> din(in), dnw(nw), drope(cs), outf(n * D);
    Dev<uint16_t> outb(n * D);
    cuda::rmsnorm_rope(din.p + D, stride, n, heads, hd, eps, dnw.p, reinterpret_cast<const float2*>(drope.p),
                       table.tokens, outb.p, outf.p, stream);
    std::vector<float> r(n * D);
    for (int64_t i = 0; i < n; ++i) std::memcpy(&r[i * D], &in[i * stride + D], sizeof(float) * D);
    cpu::rmsnorm_inplace(r.data(), n, D, eps, nw.data(), pool);
    cpu::rope_inplace(r.data(), n, heads, hd, table, pool);
    CHECK_MSG(rel_err(outf.down(), r) < 2e-6, "rmsnorm_rope err %g", rel_err(outf.down(), r));
    CHECK(max_bf16_ulps(from_bf16(outb.down()), r) <= 1);
    // Without RoPE (cross-attention q and k): the norm alone.
    outf.poison();
    cuda::rmsnorm_rope(din.p + D, stride, n, heads, hd, eps, dnw.p, nullptr, 0, nullptr, outf.p, stream);
    for (int64_t i = 0; i < n; ++i) std::memcpy(&r[i * D], &in[i * stride + D], sizeof(float) * D);
    cpu::rmsnorm_inplace(r.data(), n, D, eps, nw.data(), pool);
    CHECK_MSG(rel_err(outf.down(), r) < 2e-6, "rmsnorm (no rope) err %g", rel_err(outf.down(), r));
  }
  // Reflection alone (a skipped layer: no residual).
  {
    Dev<float> xx(x);
    const auto hh = householder_vector(78, dim);
    Dev<float> dh(hh);
    cuda::residual_reflect(xx.p, nullptr, nullptr, 0, per_group, rows, dim, dh.p, stream);
    auto xr = x;
    cpu::reflect_rows(xr.data(), rows, dim, hh.data(), pool);
    CHECK_MSG(rel_err(xx.down(), xr) < 1e-6, "reflect err %g", rel_err(xx.down(), xr));
  }
}

void test_attention(ThreadPool& pool) {
  const int heads = 3, hd = 128, D = heads * hd;
  struct Case { int64_t groups, lq, lk; } cases[] = {{2, 100, 100}, {1, 64, 64}, {2, 37, 16}, {1, 130, 200}, {2, 1, 5}};
  for (const auto& c : cases) {
    auto q = rounded(randn(c.groups * c.lq * D, 1.5f));
    auto k = rounded(randn(c.groups * c.lk * D, 1.5f));
    auto v = rounded(randn(c.groups * c.lk * D));
    Dev<uint16_t> dq(to_bf16(q)), dk(to_bf16(k)), dv(to_bf16(v)), dout(c.groups * c.lq * D);
    Dev<float> dref(c.groups * c.lq * D);
    cuda::flash_attention(dq.p, dk.p, dv.p, c.groups, c.lq, c.lk, heads, hd, nullptr, nullptr, nullptr, dout.p, stream);
    const auto o1 = dout.down();
    std::vector<float> cpu_flash(c.groups * c.lq * D), cpu_exact(c.groups * c.lq * D);
    cpu::attention(q.data(), k.data(), v.data(), c.groups, c.lq, c.lk, heads, hd, cpu_flash.data(), pool, cpu::AttentionNumerics{true, true});
    cpu::attention(q.data(), k.data(), v.data(), c.groups, c.lq, c.lk, heads, hd, cpu_exact.data(), pool);
    const auto g = from_bf16(o1);
    CHECK_MSG(rel_err(g, cpu_flash) < 1e-2, "flash %lldx%lldx%lld vs CPU (P bf16): %g", (long long)c.groups,
              (long long)c.lq, (long long)c.lk, rel_err(g, cpu_flash));
    CHECK_MSG(rel_err(g, cpu_exact) < 2e-2, "flash vs CPU (P fp32): %g", rel_err(g, cpu_exact));
    cuda::attention_reference(dq.p, dk.p, dv.p, c.groups, c.lq, c.lk, heads, hd, dref.p, stream);
    CHECK_MSG(rel_err(dref.down(), cpu_exact) < 1e-5, "reference attention err %g", rel_err(dref.down(), cpu_exact));
    dout.poison();
    cuda::flash_attention(dq.p, dk.p, dv.p, c.groups, c.lq, c.lk, heads, hd, nullptr, nullptr, nullptr, dout.p, stream);
    CHECK_MSG(same_bits(o1, dout.down()), "flash attention is not run-to-run identical");
    // Scales (fp8 path): q·k scaled by 2·0.5 = 1 leaves scores alone; v scale 2 doubles outputs exactly.
    std::vector<float> s1(c.groups, 2.0f), s2(c.groups, 0.5f);
    Dev<float> dqs(s1), dks(s2), dvs(s1);
    dout.poison();
    cuda::flash_attention(dq.p, dk.p, dv.p, c.groups, c.lq, c.lk, heads, hd, dqs.p, dks.p, dvs.p, dout.p, stream);
    const auto g2 = from_bf16(dout.down());
    bool doubled = true;
    for (size_t i = 0; i < g2.size(); ++i) doubled &= g2[i] == 2.0f * g[i];
    CHECK_MSG(doubled, "flash attention scales not applied exactly");
  }
}

void test_gemms(ThreadPool& pool) {
  struct Case { int64_t m, n, k; } cases[] = {{1, 300, 256}, {37, 512, 256}, {200, 64, 1024}, {5, 1536, 1536}};
  for (const auto& c : cases) {
    auto a = randn(c.m * c.k);
    auto wf = randn(c.n * c.k, 1.0f / std::sqrt(float(c.k)));
    auto wb = to_bf16(wf);
    auto bias = rounded(randn(c.n, 0.02f));
    auto W = cpu::PackedWeight::pack(wb.data(), c.n, c.k);
    std::vector<float> ref(c.m * c.n), ref_r(c.m * c.n);
    cpu::gemm(a.data(), c.k, c.m, W, bias.data(), ref.data(), c.n, false, pool);
    cpu::gemm(a.data(), c.k, c.m, W, bias.data(), ref_r.data(), c.n, true, pool);
    Dev<float> da(a), dbias(bias), dc(c.m * c.n);
    Dev<uint16_t> dw(wb);
    cuda::linear_f32(da.p, c.k, c.m, dw.p, dbias.p, c.n, c.k, dc.p, c.n, stream);
    CHECK_MSG(rel_err(dc.down(), ref) < 1e-5, "linear_f32 %lldx%lldx%lld err %g", (long long)c.m, (long long)c.n,
              (long long)c.k, rel_err(dc.down(), ref));
    // cuBLASLt: A rounded to bf16, fp32 accumulation and output, bias epilogue.
    cuda::LtGemm lt(stream);
    Dev<uint16_t> dab(to_bf16(a)), dcb(c.m * c.n);
    Dev<float> scratch(c.m * c.n);
    dc.poison();
    lt.run(dab.p, c.k, c.m, dw.p, c.n, c.k, dbias.p, dc.p, c.n, cuda::LtGemm::Out::F32, cuda::LtGemm::Epilogue::Bias);
    const auto g1 = dc.down();
    CHECK_MSG(rel_err(g1, ref_r) < 1e-4, "cuBLASLt %lldx%lldx%lld err %g", (long long)c.m, (long long)c.n,
              (long long)c.k, rel_err(g1, ref_r));
    dc.poison();
    lt.run(dab.p, c.k, c.m, dw.p, c.n, c.k, dbias.p, dc.p, c.n, cuda::LtGemm::Out::F32, cuda::LtGemm::Epilogue::Bias);
    CHECK_MSG(same_bits(g1, dc.down()), "cuBLASLt GEMM is not run-to-run identical");
    lt.run(dab.p, c.k, c.m, dw.p, c.n, c.k, dbias.p, dcb.p, c.n, cuda::LtGemm::Out::Bf16,
           cuda::LtGemm::Epilogue::Bias, scratch.p);
    CHECK_MSG(max_bf16_ulps(from_bf16(dcb.down()), ref_r) <= 2, "bf16-out GEMM %d ulps",
              max_bf16_ulps(from_bf16(dcb.down()), ref_r));
    auto gel = ref_r;
    cpu::gelu_tanh_inplace(gel.data(), c.m * c.n, pool);
    dcb.poison();
    lt.run(dab.p, c.k, c.m, dw.p, c.n, c.k, dbias.p, dcb.p, c.n, cuda::LtGemm::Out::Bf16,
           cuda::LtGemm::Epilogue::GeluBias, scratch.p);
    CHECK_MSG(rel_err(from_bf16(dcb.down()), gel) < 1e-2, "GELU GEMM err %g", rel_err(from_bf16(dcb.down()), gel));
  }
}

// A request like the coordinator builds: seeded inputs, per-nonce routing.
BatchRequest make_request(const ModelConfig& cfg, Grid grid, int ctx_len, int nonces, uint32_t salt) {
  BatchRequest req;
  req.grid = grid;
  req.ctx_len = ctx_len;
  for (int i = 0; i < cfg.num_layers; ++i) req.householder_seeds.push_back(seed32("test_layer_" + std::to_string(i)));
  for (int b = 0; b < nonces; ++b) {
    NonceInput n;
    n.latent_seed = mm(2 * b, salt);
    n.context_seed = mm(2 * b + 1, salt);
    n.timestep = static_cast<int>(mm(b, salt ^ 0x55u) % 1000);
    for (int i = 0; i < cfg.num_layers; ++i)
      n.experts.push_back(cfg.num_experts() == 1 ? 0 : static_cast<uint8_t>(mm(i, n.context_seed) >> 31));
    req.nonces.push_back(std::move(n));
  }
  return req;
}

// Per nonce: ‖v_gpu − v_cpu‖ with v = y/‖y‖ (the artifact is a rotated, renormalised subset of v).
void compare_forward(const char* what, Backend& gpu, Backend& cpu, const BatchRequest& req, double tol) {
  const int64_t n = gpu.output_size(req.grid), B = static_cast<int64_t>(req.nonces.size());
  std::vector<float> yg(B * n), yc(B * n), yg2(B * n);
  gpu.forward(req, yg.data());
  cpu.forward(req, yc.data());
  gpu.forward(req, yg2.data());
  CHECK_MSG(same_bits(yg, yg2), "%s: GPU forward not run-to-run identical", what);
  std::printf("%s: per-nonce ‖v_gpu − v_cpu‖:", what);
  for (int64_t b = 0; b < B; ++b) {
    const double d = rel_l2(yg.data() + b * n, yc.data() + b * n, n);
    std::printf(" %.2e", d);
    CHECK_MSG(d < tol, "%s nonce %lld: relative L2 %g", what, (long long)b, d);
  }
  std::printf("\n");
}

// The GPU's bf16 forward against the CPU's bf16-flash (same numerics) and bf16 (the CPU keeps
// P in fp32). Leaves req at Bf16.
void compare_bf16_modes(const std::string& what, Backend& gpu, Backend& cpu, BatchRequest& req) {
  req.precision = Precision::Bf16Flash;
  compare_forward((what + " bf16-flash").c_str(), gpu, cpu, req, 1e-2);
  req.precision = Precision::Bf16;
  compare_forward((what + " bf16 (cpu P fp32)").c_str(), gpu, cpu, req, 1e-2);
}

void test_forward(ThreadPool& pool) {
  const ModelConfig& cfg = find_model("wan-tiny");
  auto w = std::make_shared<ModelWeights>(random_weights(cfg, "cuda-test", pool));
  auto cpu_b = make_cpu_backend(w, 0);
  auto gpu_b = make_cuda_backend(w, 0, 0);
  BatchRequest req = make_request(cfg, {2, 4, 4}, 16, 5, 99);
  compare_bf16_modes("wan-tiny", *gpu_b, *cpu_b, req);
  req.precision = Precision::Fp8Attention;
  compare_forward("wan-tiny fp8-attention", *gpu_b, *cpu_b, req, 3e-2);
  req.precision = Precision::Bf16;
  req.skip_layers.assign(cfg.num_layers, 0);
  req.skip_layers[1] = 1;
  compare_forward("wan-tiny skip layer 1", *gpu_b, *cpu_b, req, 1e-2);
  req.skip_layers.clear();

  // Odd grid (RoPE over three axes, attention tails), explicit host tensors.
  {
    BatchRequest r2 = make_request(cfg, {3, 5, 7}, 20, 2, 7);
    const int64_t lat = int64_t(cfg.in_channels) * 3 * 10 * 14;
    std::vector<float> z(lat), c(int64_t(20) * cfg.text_dim);
    normal(5, lat, z.data());
    normal(6, int64_t(c.size()), c.data());
    r2.nonces[1].latent = z.data();
    r2.nonces[1].context = c.data();
    compare_forward("wan-tiny grid [3,5,7]", *gpu_b, *cpu_b, r2, 1e-2);
  }

  // Independence from the batch (SPEC §8): nonce 3 alone vs in the batch, up to rounding.
  {
    const int64_t n = gpu_b->output_size(req.grid);
    std::vector<float> all(5 * n), one(n);
    gpu_b->forward(req, all.data());
    BatchRequest single = req;
    single.nonces = {req.nonces[3]};
    gpu_b->forward(single, one.data());
    const double d = rel_l2(one.data(), all.data() + 3 * n, n);
    std::printf("batch independence: relative L2 %.2e\n", d);
    CHECK_MSG(d < 1e-2, "nonce alone vs in batch: %g", d);
  }

  // Weights generated on the device vs uploaded host weights.
  {
    auto dev_b = make_cuda_backend_random(cfg, "cuda-test", 0, 0);
    compare_forward("wan-tiny device-generated weights", *dev_b, *gpu_b, req, 1e-2);
  }

  // Weights streamed in tensor by tensor (how checkpoints and transformed weights reach the GPU)
  // hold the same bits as uploaded host weights, so the outputs match bit for bit; a stream that
  // skips or repeats a tensor is refused.
  {
    const int64_t n = gpu_b->output_size(req.grid);
    auto same_output = [&](Backend& a, Backend& b) {
      std::vector<float> ya(5 * n, std::nanf("")), yb(5 * n, std::nanf(""));
      a.forward(req, ya.data());
      b.forward(req, yb.data());
      return std::memcmp(ya.data(), yb.data(), ya.size() * sizeof(float)) == 0;
    };
    auto streamed = make_cuda_backend_streamed(
        cfg, "streamed", [&](const TensorSink& up) { stream_random_weights(cfg, "cuda-test", pool, up); }, 0, 0);
    CHECK(same_output(*streamed, *gpu_b));
    const WeightTransform fp8 = parse_weight_transform("fp8");
    auto host_fp8 = std::make_shared<ModelWeights>(*w);
    apply_weight_transform(*host_fp8, fp8, pool);
    auto uploaded_fp8 = make_cuda_backend(host_fp8, 0, 0);
    auto streamed_fp8 = make_backend_random("cuda", 0, cfg, "cuda-test", 0, fp8);
    CHECK(same_output(*streamed_fp8, *uploaded_fp8));
    CHECK(!same_output(*streamed_fp8, *gpu_b));
    auto faulty = [&](int skip, int repeat) {
      return [&, skip, repeat](const TensorSink& up) {
        int k = 0;
        stream_random_weights(cfg, "cuda-test", pool, [&](int x, const std::string& key, Tensor& t) {
          if (k != skip) up(x, key, t);
          if (k++ == repeat) up(x, key, t);
        });
      };
    };
    CHECK_THROWS_WITH(make_cuda_backend_streamed(cfg, "s", faulty(3, -1), 0, 0), "ended without tensor");
    CHECK_THROWS_WITH(make_cuda_backend_streamed(cfg, "s", faulty(-1, 5), 0, 0), "sent twice");
  }

  // The denoiser forward (SPEC §13 step 4): GPU vs CPU bf16-flash for two contexts on each
  // expert; each context alone within rounding of the batched pass.
  {
    const int64_t lat = int64_t(cfg.in_channels) * 3 * 4 * 6, Lc = 24;
    std::vector<float> z(lat), ca(Lc * cfg.text_dim), cb(ca.size());
    normal(21, lat, z.data());
    normal(22, int64_t(ca.size()), ca.data());
    normal(23, int64_t(cb.size()), cb.data());
    DenoiseRequest d;
    d.latent_shape = {cfg.in_channels, 3, 4, 6};
    d.latent = z.data();
    d.ctx_len = static_cast<int>(Lc);
    d.contexts = {ca.data(), cb.data()};
    d.timestep = 900;
    const int64_t n = gpu_b->denoise_output_size(d);
    for (int expert = 0; expert < cfg.num_experts(); ++expert) {
      d.expert = expert;
      d.precision = Precision::Bf16Flash;
      std::vector<float> yc(2 * n), yg(2 * n, std::nanf("")), one(n, std::nanf(""));
      cpu_b->denoise(d, yc.data());
      d.precision = Precision::Bf16;
      gpu_b->denoise(d, yg.data());
      for (int k = 0; k < 2; ++k) {
        const double e = rel_l2(yg.data() + k * n, yc.data() + k * n, n);
        std::printf("denoise expert %d context %d: relative L2 gpu vs cpu bf16-flash %.2e\n", expert, k, e);
        CHECK_MSG(e < 1e-2, "denoise expert %d context %d: %g", expert, k, e);
      }
      DenoiseRequest alone = d;
      alone.contexts = {cb.data()};
      gpu_b->denoise(alone, one.data());
      const double e1 = rel_l2(one.data(), yg.data() + n, n);
      CHECK_MSG(e1 < 1e-2, "denoise context alone vs batched: %g", e1);
    }
  }

  // Errors: fp32 is CPU-only; an impossible batch names the largest that fits.
  {
    auto* cb = dynamic_cast<CudaBackend*>(gpu_b.get());
    CHECK(cb != nullptr);
    BatchRequest r = req;
    r.precision = Precision::Fp32;
    std::vector<float> y(5 * gpu_b->output_size(r.grid));
    CHECK_THROWS_WITH(gpu_b->forward(r, y.data()), "not supported by the cuda backend");
    CHECK_THROWS_WITH(cb->reserve({64, 64, 64}, 512, 1 << 20), "largest batch");
    CHECK(cb->max_batch(req.grid, 16) > 100);
    std::vector<float> ok(5 * gpu_b->output_size(req.grid));
    gpu_b->forward(req, ok.data());  // still usable after the refused reservation
    CHECK(std::isfinite(ok[0]));
  }
  CHECK(cuda_activation_bytes(cfg, {2, 4, 4}, 16, 4) < cuda_activation_bytes(cfg, {2, 4, 4}, 16, 8));
  CHECK(max_batch_for_free_memory(cfg, {2, 4, 4}, 16, cuda_activation_bytes(cfg, {2, 4, 4}, 16, 7), 0) == 7);

  if (const char* big = std::getenv("DITPOC_CUDA_TEST_BIG"); big && std::string(big) == "1") {
    const ModelConfig& c13 = find_model("wan2.1-t2v-1.3b");
    auto w13 = std::make_shared<ModelWeights>(random_weights(c13, "cuda-test", pool));
    auto cpu13 = make_cpu_backend(w13, 0);
    auto gpu13 = make_cuda_backend(w13, 0, 0);
    BatchRequest r13 = make_request(c13, {2, 8, 8}, 512, 4, 3);
    compare_bf16_modes("wan2.1-t2v-1.3b [2,8,8]", *gpu13, *cpu13, r13);
  }
}

}  // namespace

int main() {
  if (cuda_device_count() == 0) {
    std::printf("test_cuda_kernels: no CUDA device visible, skipped\n");
    return 77;
  }
  try {
    DITPOC_CUDA_CHECK(cudaSetDevice(0));
    DITPOC_CUDA_CHECK(cudaStreamCreate(&stream));
    std::printf("device: %s\n", cuda_device_description(0).c_str());
    ThreadPool pool(0);
    test_seeding();
    test_elementwise(pool);
    test_norms(pool);
    test_attention(pool);
    test_gemms(pool);
    test_forward(pool);
  } catch (const std::exception& e) {
    std::printf("test_cuda_kernels: exception: %s\n", e.what());
    return 1;
  }
  return check::finish("test_cuda_kernels");
}
