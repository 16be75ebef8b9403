#include "config/json_reader.h"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <string>

#include "zerotrain/config.h"

namespace zerotrain::detail {
namespace {

class Reader {
 public:
  Reader(std::string_view text, std::string_view source, JsonDocument& doc)
      : text_(text), source_(source), doc_(doc) {}

  void read_document() {
    skip_blank();
    doc_.root = read_value("", 0);
    skip_blank();
    if (!at_end()) fail("unexpected text after the end of the JSON value");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos(), what); }
  [[noreturn]] void fail_at(TextPos p, const std::string& what) const {
    throw ConfigError({std::string(source_) + ":" + std::to_string(p.line) + ":" + std::to_string(p.column) +
                       ": invalid JSON: " + what});
  }

  bool at_end() const { return i_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[i_]; }
  TextPos pos() const { return {line_, static_cast<int>(i_ - line_start_) + 1}; }

  void advance() {
    if (text_[i_] == '\n') {
      ++line_;
      line_start_ = i_ + 1;
    }
    ++i_;
  }

  static std::string describe(char c) {
    if (c == '\0') return "end of input";
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned char>(c));
      return std::string("byte ") + buf;
    }
    return std::string("'") + c + "'";
  }

  // Whitespace and comments.
  void skip_blank() {
    while (!at_end()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance();
      } else if (c == '#' || (c == '/' && i_ + 1 < text_.size() && text_[i_ + 1] == '/')) {
        while (!at_end() && peek() != '\n') advance();
      } else if (c == '/' && i_ + 1 < text_.size() && text_[i_ + 1] == '*') {
        const TextPos start = pos();
        advance();
        advance();
        while (!at_end() && !(peek() == '*' && i_ + 1 < text_.size() && text_[i_ + 1] == '/')) advance();
        if (at_end()) fail_at(start, "unterminated /* comment");
        advance();
        advance();
      } else {
        return;
      }
    }
  }

  Json read_value(const std::string& path, int depth) {
    if (depth > kMaxJsonDepth) fail("nesting deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    doc_.positions[path] = pos();
    const char c = peek();
    if (c == '{') return read_object(path, depth);
    if (c == '[') return read_array(path, depth);
    if (c == '"') return Json(read_string());
    if (c == '-' || (c >= '0' && c <= '9')) return read_number();
    if (match_word("true")) return Json(true);
    if (match_word("false")) return Json(false);
    if (match_word("null")) return Json(nullptr);
    if (c == '\'') fail("strings must use double quotes");
    fail("expected a value, found " + describe(c));
  }

  bool match_word(std::string_view w) {
    if (text_.substr(i_, w.size()) != w) return false;
    const size_t end = i_ + w.size();
    if (end < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[end])) || text_[end] == '_')) {
      return false;
    }
    for (size_t k = 0; k < w.size(); ++k) advance();
    return true;
  }

  Json read_object(const std::string& path, int depth) {
    Json obj = Json::object();
    advance();  // {
    skip_blank();
    while (peek() != '}') {
      if (peek() != '"') {
        fail(at_end() ? "unterminated object (missing '}')" : "expected a quoted key or '}', found " +
                                                                   describe(peek()));
      }
      const TextPos key_pos = pos();
      std::string key = read_string();
      if (obj.contains(key)) {
        fail_at(key_pos, "duplicate key \"" + key + "\"" + (path.empty() ? "" : " in \"" + path + "\""));
      }
      skip_blank();
      if (peek() != ':') fail("expected ':' after key \"" + key + "\", found " + describe(peek()));
      advance();
      skip_blank();
      std::string child = join_path(path, key);
      obj[key] = read_value(child, depth + 1);
      skip_blank();
      if (peek() == ',') {
        advance();
        skip_blank();  // a trailing comma before '}' is accepted (hjson)
      } else if (peek() != '}') {
        fail(at_end() ? "unterminated object (missing '}')" : "expected ',' or '}', found " + describe(peek()));
      }
    }
    advance();  // }
    return obj;
  }

  Json read_array(const std::string& path, int depth) {
    Json arr = Json::array();
    advance();  // [
    skip_blank();
    while (peek() != ']') {
      if (at_end()) fail("unterminated array (missing ']')");
      arr.push_back(read_value(path + "[" + std::to_string(arr.size()) + "]", depth + 1));
      skip_blank();
      if (peek() == ',') {
        advance();
        skip_blank();
      } else if (peek() != ']') {
        fail(at_end() ? "unterminated array (missing ']')" : "expected ',' or ']', found " + describe(peek()));
      }
    }
    advance();  // ]
    return arr;
  }

  unsigned read_hex4() {
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = peek();
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else fail("expected 4 hex digits after \\u");
      advance();
    }
    return v;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Validates one UTF-8 sequence starting at i_ and appends it; nlohmann's dump() throws on invalid UTF-8.
  void copy_utf8(std::string& out) {
    const auto b0 = static_cast<unsigned char>(peek());
    int extra = b0 >= 0xF0 && b0 <= 0xF4 ? 3 : b0 >= 0xE0 ? 2 : b0 >= 0xC2 && b0 < 0xE0 ? 1 : -1;
    if (b0 >= 0xF5 || extra < 0) fail("invalid UTF-8 in string");
    if (i_ + extra >= text_.size()) fail("truncated UTF-8 in string");
    unsigned cp = b0 & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(text_[i_ + k]);
      if ((b & 0xC0) != 0x80) fail("invalid UTF-8 in string");
      cp = (cp << 6) | (b & 0x3F);
    }
    const unsigned min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) fail("invalid UTF-8 in string");
    out.append(text_.substr(i_, extra + 1));
    for (int k = 0; k <= extra; ++k) advance();
  }

  std::string read_string() {
    const TextPos start = pos();
    advance();  // opening quote
    std::string out;
    while (true) {
      if (at_end()) fail_at(start, "unterminated string");
      const char c = peek();
      if (c == '"') {
        advance();
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character " + describe(c) + " in string");
      if (c != '\\') {
        if (static_cast<unsigned char>(c) < 0x80) {
          out += c;
          advance();
        } else {
          copy_utf8(out);
        }
        continue;
      }
      advance();
      const char e = peek();
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
          advance();
          unsigned cp = read_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (peek() != '\\' || i_ + 1 >= text_.size() || text_[i_ + 1] != 'u') fail("unpaired surrogate \\u escape");
            advance();
            advance();
            const unsigned lo = read_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid low surrogate \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate \\u escape");
          }
          append_utf8(out, cp);
          continue;
        }
        default: fail("invalid escape \\" + std::string(1, e == '\0' ? '?' : e));
      }
      advance();
    }
  }

  Json read_number() {
    const size_t begin = i_;
    bool is_float = false;
    if (peek() == '-') advance();
    if (peek() == '0') {
      advance();
      if (std::isdigit(static_cast<unsigned char>(peek()))) fail("invalid number (leading zero)");
    } else if (peek() >= '1' && peek() <= '9') {
      while (std::isdigit(static_cast<unsigned char>(peek()))) advance();
    } else {
      fail("expected a digit after '-'");
    }
    if (peek() == '.') {
      is_float = true;
      advance();
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a digit after '.'");
      while (std::isdigit(static_cast<unsigned char>(peek()))) advance();
    }
    if (peek() == 'e' || peek() == 'E') {
      is_float = true;
      advance();
      if (peek() == '+' || peek() == '-') advance();
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected a digit in the exponent");
      while (std::isdigit(static_cast<unsigned char>(peek()))) advance();
    }
    if (std::isalpha(static_cast<unsigned char>(peek())) || peek() == '.') {
      fail("invalid number (unexpected " + describe(peek()) + ")");
    }
    const std::string_view lit = text_.substr(begin, i_ - begin);
    if (!is_float) {
      int64_t v = 0;
      auto [p, ec] = std::from_chars(lit.data(), lit.data() + lit.size(), v);
      if (ec == std::errc() && p == lit.data() + lit.size()) return Json(v);
      // Too large for int64: keep it as a float, as Python's json would keep an exact big int.
    }
    double d = 0;
    auto [p, ec] = std::from_chars(lit.data(), lit.data() + lit.size(), d);
    if (ec == std::errc::result_out_of_range || !std::isfinite(d)) fail("number out of range: " + std::string(lit));
    return Json(d);
  }

  std::string_view text_;
  std::string_view source_;
  JsonDocument& doc_;
  size_t i_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
};

}  // namespace

std::string join_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  std::string out;
  out.reserve(parent.size() + 1 + key.size());
  out.append(parent).append(".").append(key);
  return out;
}

JsonDocument read_json(std::string_view text, std::string_view source) {
  JsonDocument doc;
  Reader reader(text, source, doc);
  reader.read_document();
  return doc;
}

}  // namespace zerotrain::detail
