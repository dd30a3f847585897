// Native seeding vs the FIPS SHA-256 vectors and Gonka's golden vectors (conformance/rng.json
// values are copied in the TS tests in full; here the integer cases that pin the bit patterns).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "cpu/cpu_isa.h"
#include "seeding.h"
#include "seeding_kernels.h"
#include "sha256.h"
#include "simd_math.h"

using namespace ditpoc;

static std::string hex(const std::array<uint8_t, 32>& d) {
  static const char* k = "0123456789abcdef";
  std::string s;
  for (auto b : d) { s += k[b >> 4]; s += k[b & 15]; }
  return s;
}

int main() {
  CHECK(hex(sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(hex(sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  CHECK(hex(sha256(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // 55/56/64-byte messages exercise the one- vs two-block padding boundary.
  for (size_t len : {55u, 56u, 63u, 64u, 65u}) CHECK(sha256(std::string(len, 'x')).size() == 32);

  // conformance/rng.json: seed32 and murmur cases.
  CHECK(seed32("") == 3820012610u);
  CHECK(seed32("abc") == 3128432319u);
  CHECK(seed32("hello_world") == 889662490u);
  CHECK(seed32("\xc3\xbc" "n" "\xc3\xaf" "code_" "\xe2\x9c\x93") == 1797954325u);
  const uint32_t keys[] = {0, 1, 2, 15, 2147483647u, 123456789u, 65535u, 65536u};
  const uint32_t seed0[] = {4279838538u, 2277397642u, 1536518961u, 3853213317u,
                            600019664u, 1038576976u, 3930748297u, 440216085u};
  for (int i = 0; i < 8; ++i) CHECK(mm(keys[i], 0) == seed0[i]);
  CHECK(mm(0, 3735928559u) == 110687111u);
  // uniform f32 bits, seed 0.
  float u[4];
  uniform(0, 4, u);
  const uint32_t ubits[] = {1065294119u, 1057472085u, 1052191446u, 1064610949u};
  for (int i = 0; i < 4; ++i) {
    uint32_t b;
    std::memcpy(&b, &u[i], 4);
    CHECK(b == ubits[i]);
  }
  // normal: seed 0, n = 2 → golden bits; n = 7 first value.
  float nv[7];
  normal(0, 2, nv);
  CHECK(std::fabs(nv[0] - -0.08249538391828537f) < 1e-6f);
  CHECK(std::fabs(nv[1] - -0.015870099887251854f) < 1e-6f);
  normal(0, 7, nv);
  CHECK(std::fabs(nv[0] - 0.05297870561480522f) < 1e-6f);
  CHECK(std::fabs(nv[6] - -0.5411432385444641f) < 1e-6f);

  // A threaded fill gives the same bits as a serial one.
  ThreadPool pool(3);
  std::vector<float> a(300001), b(300001);
  normal(12345, static_cast<int64_t>(a.size()), a.data(), nullptr);
  normal(12345, static_cast<int64_t>(b.size()), b.data(), &pool);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
#ifdef DITPOC_SIMD_MATH
  // The 16-lane AVX-512 fill gives the 8-lane AVX2 fill's bits, at every size, offset and tail.
  const auto paths = cpu::supported_isas();
  if (std::find(paths.begin(), paths.end(), cpu::Isa::Avx512) != paths.end()) {
    int compared = 0;
    for (uint32_t seed : {0u, 1u, 7u, 12345u, 0xffffffffu}) {
      for (int64_t n : {1, 2, 3, 15, 16, 17, 31, 33, 1000, 65537, 300001}) {
        const int64_t m = (n + 1) / 2;
        for (int64_t begin : {int64_t(0), std::min<int64_t>(5, m)}) {
          std::vector<float> a(static_cast<size_t>(n), -7.0f), b(static_cast<size_t>(n), -7.0f);
          seeding_detail::normal_pairs_avx2(seed, n, m, begin, m, a.data());
          seeding_detail::normal_pairs_avx512(seed, n, m, begin, m, b.data());
          CHECK_MSG(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "seed %u n %ld begin %ld", seed, static_cast<long>(n), static_cast<long>(begin));
          ++compared;
        }
      }
    }
    CHECK(compared == 110);
  } else {
    std::printf("test_seeding: no AVX-512 here, the 16-lane fill is not compared\n");
  }
#endif
  return check::finish("test_seeding");
}
