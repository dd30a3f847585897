// cuBLASLt GEMM wrapper (see lt_gemm.h). Row-major C = A·Wᵀ is computed as the column-major
// product Cᵀ[N, M] = op(W)·Aᵀ: cuBLASLt's "A" is our W (stored K×N column-major, ld K,
// transposed), its "B" is our A (K×M column-major, ld lda), D is N×M (ld ldc); the bias
// epilogue adds bias[i] to row i of D, i.e. to column i of our C.
#include "lt_gemm.h"

#include <cublasLt.h>

#include <map>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "../../../kernels/cuda_check.h"
#include "../../../kernels/kernels.h"

#define DITPOC_CUBLAS_CHECK(call)                                                                   \
  do {                                                                                              \
    const cublasStatus_t st_ = (call);                                                              \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                               \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #call + \
                               ": " + cublasLtGetStatusName(st_) + " (" + cublasLtGetStatusString(st_) + ")"); \
  } while (0)

namespace ditpoc::cuda {

namespace {

using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int, int>;  // M N K lda ldc out ep

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;  // an algorithm was found
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;  // why not, when !ok
  void destroy() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
    desc = nullptr;
    a = b = d = nullptr;
  }
};

}  // namespace

struct LtGemm::Impl {
  cublasLtHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [k, p] : plans) p.destroy();
    if (workspace) cudaFree(workspace);
    if (handle) cublasLtDestroy(handle);
  }

  Plan& plan(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldc, Out out, Epilogue ep) {
    const Key key{M, N, K, lda, ldc, static_cast<int>(out), static_cast<int>(ep)};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Plan p;
    try {
      DITPOC_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
      DITPOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
      DITPOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
      const cublasLtEpilogue_t e = ep == Epilogue::GeluBias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
      DITPOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
      const cudaDataType_t bias_type = CUDA_R_32F;
      DITPOC_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
      const cudaDataType_t dt = out == Out::F32 ? CUDA_R_32F : CUDA_R_16BF;
      DITPOC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, K, N, K));
      DITPOC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, K, M, lda));
      DITPOC_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, dt, N, M, ldc));
      cublasLtMatmulPreference_t pref = nullptr;
      DITPOC_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      const uint64_t ws = workspace_bytes;
      cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                               sizeof(ws));
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(handle, p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      // Any failure here means "no algorithm for this combination" (NOT_SUPPORTED, or
      // INVALID_VALUE for an unsupported bias/output type pair): run() then takes the unfused
      // path, or reports the status when there is none.
      p.ok = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS;
      p.status = st == CUBLAS_STATUS_SUCCESS ? (found > 0 ? result.state : CUBLAS_STATUS_NOT_SUPPORTED) : st;
      if (p.ok) p.algo = result.algo;
    } catch (...) {
      p.destroy();
      throw;
    }
    return plans.emplace(key, p).first->second;
  }
};

LtGemm::LtGemm(cudaStream_t stream, size_t workspace_bytes) : impl_(new Impl) {
  impl_->stream = stream;
  impl_->workspace_bytes = workspace_bytes;
  DITPOC_CUBLAS_CHECK(cublasLtCreate(&impl_->handle));
  if (workspace_bytes) DITPOC_CUDA_CHECK(cudaMalloc(&impl_->workspace, workspace_bytes));
}

LtGemm::~LtGemm() = default;

size_t LtGemm::workspace_bytes() const { return impl_->workspace_bytes; }
size_t LtGemm::plans() const { return impl_->plans.size(); }

bool LtGemm::fused_supported(int64_t M, int64_t N, int64_t K, Out out, Epilogue ep) {
  return impl_->plan(M, N, K, K, N, out, ep).ok;
}

void LtGemm::run(const uint16_t* A, int64_t lda, int64_t M, const uint16_t* W, int64_t N, int64_t K,
                 const float* bias, void* C, int64_t ldc, Out out, Epilogue ep, float* scratch) {
  if (M <= 0) return;
  if (!bias) throw std::invalid_argument("LtGemm::run: bias is required");
  const float alpha = 1.0f, beta = 0.0f;
  Plan& p = impl_->plan(M, N, K, lda, ldc, out, ep);
  if (p.ok) {
    DITPOC_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    DITPOC_CUBLAS_CHECK(cublasLtMatmul(impl_->handle, p.desc, &alpha, W, p.a, A, p.b, &beta, C, p.d, C, p.d, &p.algo,
                                       impl_->workspace, impl_->workspace_bytes, impl_->stream));
    return;
  }
  if (out == Out::F32 && ep == Epilogue::Bias)
    throw std::runtime_error("cuBLASLt has no bf16 GEMM algorithm for M=" + std::to_string(M) + " N=" +
                             std::to_string(N) + " K=" + std::to_string(K) + ": " +
                             cublasLtGetStatusName(p.status));
  if (!scratch)
    throw std::runtime_error("cuBLASLt has no fused algorithm for this GEMM and no scratch buffer was given");
  if (ldc != N) throw std::runtime_error("LtGemm: the unfused path needs ldc == N");
  // Unfused: fp32 product + bias, then GELU and/or bf16 rounding in a kernel.
  run(A, lda, M, W, N, K, bias, scratch, N, Out::F32, Epilogue::Bias);
  if (ep == Epilogue::GeluBias) {
    if (out == Out::Bf16) gelu_tanh_to_bf16(scratch, N, M, N, static_cast<uint16_t*>(C), impl_->stream);
    else throw std::runtime_error("LtGemm: GELU with an fp32 output is not used by the engine");
  } else {
    f32_to_bf16(scratch, N, M, N, static_cast<uint16_t*>(C), impl_->stream);
  }
}

double LtGemm::measure_dense_tflops(int64_t n, int reps) {
  uint16_t *a = nullptr, *b = nullptr, *c = nullptr;
  float* bias = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  double best = 1e30;
  auto cleanup = [&] {
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    cudaFree(bias);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
  };
  try {
    DITPOC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&a), sizeof(uint16_t) * n * n));
    DITPOC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&b), sizeof(uint16_t) * n * n));
    // bf16 out when cuBLASLt fuses it with the fp32 bias; else fp32 out (no scratch pass to time).
    const Out out = fused_supported(n, n, n, Out::Bf16, Epilogue::Bias) ? Out::Bf16 : Out::F32;
    DITPOC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&c), (out == Out::Bf16 ? 2 : 4) * n * n));
    DITPOC_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&bias), sizeof(float) * n));
    fill_normal_bf16(1, n * n, 0.0f, 1.0f, a, impl_->stream);
    fill_normal_bf16(2, n * n, 0.0f, 1.0f, b, impl_->stream);
    DITPOC_CUDA_CHECK(cudaMemsetAsync(bias, 0, sizeof(float) * n, impl_->stream));
    DITPOC_CUDA_CHECK(cudaEventCreate(&e0));
    DITPOC_CUDA_CHECK(cudaEventCreate(&e1));
    run(a, n, n, b, n, n, bias, c, n, out, Epilogue::Bias);  // warm-up (and plan)
    for (int r = 0; r < reps; ++r) {
      DITPOC_CUDA_CHECK(cudaEventRecord(e0, impl_->stream));
      run(a, n, n, b, n, n, bias, c, n, out, Epilogue::Bias);
      DITPOC_CUDA_CHECK(cudaEventRecord(e1, impl_->stream));
      DITPOC_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      DITPOC_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      if (ms > 0 && ms < best) best = ms;
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
  return 2.0 * double(n) * n * n / (best * 1e-3) * 1e-12;
}

std::string cublaslt_version() { return "cuBLASLt " + std::to_string(cublasLtGetVersion()); }

}  // namespace ditpoc::cuda
