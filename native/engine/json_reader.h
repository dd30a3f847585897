// A small strict JSON reader (RFC 8259) for safetensors headers and checkpoint index files.
// Hand-written so the engine builds on GPU hosts with only a compiler and CMake (no extra dev packages).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ditpoc::json {

enum class Type { Null, Bool, Int, Double, String, Array, Object };
const char* type_name(Type t);

class Value {
 public:
  Type type() const { return type_; }
  bool is(Type t) const { return type_ == t; }

  // The accessors throw std::runtime_error ("expected a JSON string, found a number") when the
  // value has another type; callers add which file and field they were reading.
  bool as_bool() const;
  int64_t as_int() const;  // integer literals only (no fraction or exponent, within int64)
  double as_double() const;  // any number
  const std::string& as_string() const;

  // Arrays: the elements. Objects: the member values, in document order, parallel to keys().
  const std::vector<Value>& items() const;
  const std::vector<std::string>& keys() const;  // objects only
  size_t size() const { return items().size(); }
  const Value& operator[](size_t i) const { return items().at(i); }
  // Object member by key: nullptr when absent (linear scan: objects here are small or iterated).
  const Value* find(std::string_view key) const;

 private:
  friend class Parser;
  Type type_ = Type::Null;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<std::string> keys_;
  std::vector<Value> items_;
};

// Bounds on the work and memory one document may cost, checked while parsing: a hostile file
// under its byte limit (100 MB of "[0,0,0,..." is 50 million values) must fail at the bound,
// not after gigabytes and minutes. The defaults are generous; readers of a known format pass
// tighter ones.
struct Limits {
  int max_depth = 256;                      // nesting levels (bounds recursion)
  size_t max_values = size_t{1} << 22;      // values in the document, containers included
  size_t max_array_items = size_t{1} << 20; // elements of one array
  size_t max_object_keys = size_t{1} << 20; // members of one object
  size_t max_string_bytes = size_t{1} << 24;  // one string or key, decoded
  size_t max_number_chars = 512;            // one number literal
};

// Parses one JSON document (surrounding whitespace allowed, nothing else). Object keys must be
// unique. Throws std::runtime_error "JSON error at byte N (line L, column C): expected X, found Y",
// also when the document exceeds `limits` ("expected at most N array elements ...").
Value parse(std::string_view text, const Limits& limits = Limits{});

// `s` as a JSON string literal, quotes included (for writers).
std::string quote(std::string_view s);

}  // namespace ditpoc::json
