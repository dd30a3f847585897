// Minimal assertions for the ctest executables: each test binary exits non-zero on failure.
// (Hand-written rather than a framework so the engine's tests build wherever CMake and a
// compiler do, GPU hosts included, with no extra packages.)
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace check {
inline int& failures() { static int n = 0; return n; }
inline int finish(const char* name) {
  if (failures()) { std::printf("%s: %d check(s) FAILED\n", name, failures()); return 1; }
  std::printf("%s: all checks passed\n", name);
  return 0;
}
}  // namespace check

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::printf("%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
      ++check::failures();                                                           \
    }                                                                                \
  } while (0)

#define CHECK_MSG(cond, ...)                                                         \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::printf("%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);           \
      std::printf(__VA_ARGS__);                                                      \
      std::printf("\n");                                                             \
      ++check::failures();                                                           \
    }                                                                                \
  } while (0)

// Runs `stmt`; passes when it throws an exception whose what() contains `needle`.
#define CHECK_THROWS_WITH(stmt, needle)                                              \
  do {                                                                               \
    bool thrown_ = false;                                                            \
    try { stmt; } catch (const std::exception& e_) {                                 \
      thrown_ = true;                                                                \
      if (std::string(e_.what()).find(needle) == std::string::npos) {                \
        std::printf("%s:%d: wrong error for %s: '%s' lacks '%s'\n", __FILE__, __LINE__, \
                    #stmt, e_.what(), needle);                                       \
        ++check::failures();                                                         \
      }                                                                              \
    }                                                                                \
    if (!thrown_) {                                                                  \
      std::printf("%s:%d: %s did not throw\n", __FILE__, __LINE__, #stmt);           \
      ++check::failures();                                                           \
    }                                                                                \
  } while (0)
