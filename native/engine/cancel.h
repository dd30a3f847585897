// Cooperative cancellation of a forward: the flag a caller sets, and the exception that ends the
// forward once the engine sees it.
#pragma once
#include <atomic>
#include <stdexcept>

namespace ditpoc {

// Thrown when a cancel flag stops a forward (between layers, or between chunks of a pool loop).
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("forward cancelled") {}
};

}  // namespace ditpoc
