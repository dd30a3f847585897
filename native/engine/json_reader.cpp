#include "json_reader.h"

#include <cstdio>
#include <locale>
#include <set>
#include <sstream>
#include <stdexcept>

namespace ditpoc::json {

const char* type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Int: return "integer";
    case Type::Double: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

namespace {

const char* with_article(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Int: return "an integer";
    case Type::Double: return "a non-integer number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

[[noreturn]] void type_error(const char* wanted, Type found) {
  throw std::runtime_error(std::string("expected ") + wanted + ", found " + with_article(found));
}

}  // namespace

bool Value::as_bool() const {
  if (type_ != Type::Bool) type_error("a JSON boolean", type_);
  return bool_;
}

int64_t Value::as_int() const {
  if (type_ != Type::Int) type_error("a JSON integer", type_);
  return int_;
}

double Value::as_double() const {
  if (type_ == Type::Int) return static_cast<double>(int_);
  if (type_ != Type::Double) type_error("a JSON number", type_);
  return double_;
}

const std::string& Value::as_string() const {
  if (type_ != Type::String) type_error("a JSON string", type_);
  return string_;
}

const std::vector<Value>& Value::items() const {
  if (type_ != Type::Array && type_ != Type::Object) type_error("a JSON array or object", type_);
  return items_;
}

const std::vector<std::string>& Value::keys() const {
  if (type_ != Type::Object) type_error("a JSON object", type_);
  return keys_;
}

const Value* Value::find(std::string_view key) const {
  for (size_t i = 0; i < keys().size(); ++i)
    if (keys_[i] == key) return &items_[i];
  return nullptr;
}

class Parser {
 public:
  Parser(std::string_view text, const Limits& limits) : s_(text), lim_(limits) {}

  Value document() {
    Value v = value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("end of input after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& expected) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') { ++line; col = 1; } else { ++col; }
    }
    std::string found;
    if (pos_ >= s_.size()) {
      found = "end of input";
    } else {
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      char buf[16];
      if (c >= 0x20 && c < 0x7f) std::snprintf(buf, sizeof buf, "'%c'", c);
      else std::snprintf(buf, sizeof buf, "byte 0x%02x", c);
      found = buf;
    }
    throw std::runtime_error("JSON error at byte " + std::to_string(pos_) + " (line " +
                             std::to_string(line) + ", column " + std::to_string(col) +
                             "): expected " + expected + ", found " + found);
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) { ++pos_; return true; }
    return false;
  }

  void literal(const char* word) {
    const size_t start = pos_;
    for (const char* p = word; *p; ++p, ++pos_) {
      if (pos_ >= s_.size() || s_[pos_] != *p) {
        pos_ = start;
        fail("a JSON value");
      }
    }
  }

  Value value(int depth) {
    skip_ws();
    if (depth > lim_.max_depth) fail("at most " + std::to_string(lim_.max_depth) + " levels of nesting");
    if (++values_ > lim_.max_values)
      fail("at most " + std::to_string(lim_.max_values) + " values in the document");
    Value v;
    if (pos_ >= s_.size()) fail("a JSON value");
    switch (s_[pos_]) {
      case '{': object(v, depth); break;
      case '[': array(v, depth); break;
      case '"': v.type_ = Type::String; v.string_ = string(); break;
      case 't': literal("true"); v.type_ = Type::Bool; v.bool_ = true; break;
      case 'f': literal("false"); v.type_ = Type::Bool; break;
      case 'n': literal("null"); break;
      default: number(v);
    }
    return v;
  }

  void object(Value& v, int depth) {
    v.type_ = Type::Object;
    ++pos_;  // '{'
    skip_ws();
    if (eat('}')) return;
    std::set<std::string> seen;
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("a string key");
      if (v.keys_.size() == lim_.max_object_keys)
        fail("at most " + std::to_string(lim_.max_object_keys) + " members in an object");
      const size_t key_pos = pos_;
      std::string key = string();
      if (!seen.insert(key).second) {
        pos_ = key_pos;
        fail("a unique key (duplicate key \"" + key + "\")");
      }
      skip_ws();
      if (!eat(':')) fail("':' after an object key");
      v.items_.push_back(value(depth + 1));
      v.keys_.push_back(std::move(key));
      skip_ws();
      if (eat('}')) return;
      if (!eat(',')) fail("',' or '}' in an object");
    }
  }

  void array(Value& v, int depth) {
    v.type_ = Type::Array;
    ++pos_;  // '['
    skip_ws();
    if (eat(']')) return;
    for (;;) {
      if (v.items_.size() == lim_.max_array_items)
        fail("at most " + std::to_string(lim_.max_array_items) + " elements in an array");
      v.items_.push_back(value(depth + 1));
      skip_ws();
      if (eat(']')) return;
      if (!eat(',')) fail("',' or ']' in an array");
    }
  }

  unsigned hex4() {
    unsigned u = 0;
    for (int i = 0; i < 4; ++i, ++pos_) {
      if (pos_ >= s_.size()) fail("4 hex digits after \\u");
      const char c = s_[pos_];
      u <<= 4;
      if (c >= '0' && c <= '9') u |= c - '0';
      else if (c >= 'a' && c <= 'f') u |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') u |= c - 'A' + 10;
      else fail("4 hex digits after \\u");
    }
    return u;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xc0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xe0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  std::string string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail("'\"' closing the string");
      const char c = s_[pos_];
      if (c == '"') { ++pos_; return out; }
      if (out.size() >= lim_.max_string_bytes)
        fail("a string of at most " + std::to_string(lim_.max_string_bytes) + " bytes");
      if (static_cast<unsigned char>(c) < 0x20) fail("an escaped control character in a string");
      if (c != '\\') { out += c; ++pos_; continue; }
      ++pos_;
      if (pos_ >= s_.size()) fail("an escape character after '\\'");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) { pos_ -= 6; fail("a high surrogate before a low one"); }
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (!(eat('\\') && eat('u'))) fail("a \\u low surrogate after a high surrogate");
            const unsigned lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) { pos_ -= 6; fail("a low surrogate (\\udc00-\\udfff)"); }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default: --pos_; fail("a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
      }
    }
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  void number(Value& v) {
    const size_t start = pos_;
    eat('-');
    if (pos_ >= s_.size() || !digit(s_[pos_])) { pos_ = start; fail("a JSON value"); }
    if (!eat('0')) while (pos_ < s_.size() && digit(s_[pos_])) ++pos_;
    bool integral = true;
    if (eat('.')) {
      integral = false;
      if (pos_ >= s_.size() || !digit(s_[pos_])) fail("a digit after '.'");
      while (pos_ < s_.size() && digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (!eat('+')) eat('-');
      if (pos_ >= s_.size() || !digit(s_[pos_])) fail("a digit in the exponent");
      while (pos_ < s_.size() && digit(s_[pos_])) ++pos_;
    }
    if (pos_ - start > lim_.max_number_chars) {
      pos_ = start;
      fail("a number of at most " + std::to_string(lim_.max_number_chars) + " characters");
    }
    const std::string text(s_.substr(start, pos_ - start));
    if (integral) {
      // Accumulate as negative so INT64_MIN fits; overflow falls back to a double.
      const bool neg = text[0] == '-';
      int64_t n = 0;
      bool overflow = false;
      for (size_t i = neg ? 1 : 0; i < text.size() && !overflow; ++i) {
        const int d = text[i] - '0';
        if (n < (INT64_MIN + d) / 10) overflow = true;
        else n = n * 10 - d;
      }
      if (!overflow && !(!neg && n == INT64_MIN)) {
        v.type_ = Type::Int;
        v.int_ = neg ? n : -n;
        return;
      }
    }
    // istringstream with the classic locale: strtod would honour a process-wide locale's comma.
    std::istringstream in(text);
    in.imbue(std::locale::classic());
    v.type_ = Type::Double;
    in >> v.double_;
    if (in.fail()) { pos_ = start; fail("a number within double range"); }
  }

  std::string_view s_;
  const Limits& lim_;
  size_t pos_ = 0;
  size_t values_ = 0;
};

Value parse(std::string_view text, const Limits& limits) { return Parser(text, limits).document(); }

std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace ditpoc::json
