// The JSON reader: positions, duplicate keys, hjson comments and trailing commas, and every syntax error.
#include "config/json_reader.h"

#include <gtest/gtest.h>

#include "config_test_util.h"

namespace zerotrain::detail {
namespace {

using zerotrain::testing::expect_contains;

std::string read_error(std::string_view text) {
  try {
    read_json(text, "cfg.json");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error for: " << text;
  return {};
}

TEST(JsonReader, ReadsValuesAndPositions) {
  const auto doc = read_json("{\n  \"a\": 1,\n  \"b\": {\"c\": [1.5, \"x\", true, null]}\n}", "cfg.json");
  EXPECT_EQ(doc.root["a"], 1);
  EXPECT_TRUE(doc.root["a"].is_number_integer());
  EXPECT_EQ(doc.root["b"]["c"][0], 1.5);
  EXPECT_EQ(doc.root["b"]["c"][1], "x");
  EXPECT_EQ(doc.positions.at("a").line, 2);
  EXPECT_EQ(doc.positions.at("a").column, 8);
  EXPECT_EQ(doc.positions.at("b.c").line, 3);
  EXPECT_EQ(doc.positions.at("b.c[1]").column, 20);
}

TEST(JsonReader, KeepsKeyOrder) {
  const auto doc = read_json(R"({"z": 1, "a": 2, "m": 3})", "x");
  std::string order;
  for (const auto& [k, v] : doc.root.items()) order += k;
  EXPECT_EQ(order, "zam");
}

TEST(JsonReader, AcceptsHjsonCommentsAndTrailingCommas) {
  const auto doc = read_json("// top\n{\n  # hash comment\n  \"a\": 1, /* block */\n  \"b\": [1, 2,],\n}\n", "x");
  EXPECT_EQ(doc.root["a"], 1);
  EXPECT_EQ(doc.root["b"].size(), 2u);
}

TEST(JsonReader, NumbersIntegersFloatsAndBigOnes) {
  const auto doc = read_json(R"({"i": -42, "f": 5e8, "g": 0.25, "big": 123456789012345678901234})", "x");
  EXPECT_TRUE(doc.root["i"].is_number_integer());
  EXPECT_TRUE(doc.root["f"].is_number_float());
  EXPECT_EQ(doc.root["f"].get<double>(), 5e8);
  EXPECT_TRUE(doc.root["big"].is_number_float());
}

TEST(JsonReader, StringEscapesAndUnicode) {
  const auto doc = read_json(R"({"s": "a\"b\\c\/\n\u00e9\ud83d\ude00"})", "x");
  EXPECT_EQ(doc.root["s"].get<std::string>(), "a\"b\\c/\n\xC3\xA9\xF0\x9F\x98\x80");
}

TEST(JsonReader, DuplicateKeyIsAnErrorWithPathAndPosition) {
  expect_contains(read_error("{\n \"zero_optimization\": {\"stage\": 1,\n  \"stage\": 2}}"),
                  {"cfg.json:3:3", "duplicate key \"stage\"", "\"zero_optimization\""});
  expect_contains(read_error(R"({"a": 1, "a": 1})"), {"cfg.json:1:10", "duplicate key \"a\""});
}

struct SyntaxCase {
  const char* text;
  const char* where;
  const char* what;
};

class JsonSyntaxError : public ::testing::TestWithParam<SyntaxCase> {};

TEST_P(JsonSyntaxError, GivesLineColumnAndReason) {
  const auto& c = GetParam();
  expect_contains(read_error(c.text), {std::string("cfg.json:") + c.where, "invalid JSON", c.what});
}

INSTANTIATE_TEST_SUITE_P(
    Cases, JsonSyntaxError,
    ::testing::Values(SyntaxCase{"", "1:1", "expected a value, found end of input"},
                      SyntaxCase{"{\"a\": 1", "1:8", "unterminated object"},
                      SyntaxCase{"{\"a\" 1}", "1:6", "expected ':'"},
                      SyntaxCase{"{\"a\": 1 \"b\": 2}", "1:9", "expected ',' or '}'"},
                      SyntaxCase{"{a: 1}", "1:2", "expected a quoted key"},
                      SyntaxCase{"{\"a\": 'x'}", "1:7", "double quotes"},
                      SyntaxCase{"{\"a\": [1, 2}", "1:12", "expected ',' or ']'"},
                      SyntaxCase{"{\"a\": [1,", "1:10", "unterminated array"},
                      SyntaxCase{"{\"a\": \"abc}", "1:7", "unterminated string"},
                      SyntaxCase{"{\"a\": \"\\q\"}", "1:9", "invalid escape"},
                      SyntaxCase{"{\"a\": \"\\u12\"}", "1:12", "hex digits"},
                      SyntaxCase{"{\"a\": \"\\ud800\"}", "1:14", "unpaired surrogate"},
                      SyntaxCase{"{\"a\": \"x\ty\"}", "1:9", "control character"},
                      SyntaxCase{"{\"a\": \"\xff\"}", "1:8", "invalid UTF-8"},
                      SyntaxCase{"{\"a\": 01}", "1:8", "invalid number"},
                      SyntaxCase{"{\"a\": 1.}", "1:9", "digit after '.'"},
                      SyntaxCase{"{\"a\": 1e}", "1:9", "exponent"},
                      SyntaxCase{"{\"a\": -}", "1:8", "digit after '-'"},
                      SyntaxCase{"{\"a\": 1e999}", "1:12", "out of range"},
                      SyntaxCase{"{\"a\": tru}", "1:7", "expected a value"},
                      SyntaxCase{"{\"a\": NaN}", "1:7", "expected a value"},
                      SyntaxCase{"{} {}", "1:4", "after the end"},
                      SyntaxCase{"/* open", "1:1", "unterminated /* comment"},
                      SyntaxCase{"{\n\n  \"a\": ,\n}", "3:8", "expected a value"}));

TEST(JsonReader, DeepNestingIsBounded) {
  std::string deep(kMaxJsonDepth + 5, '[');
  expect_contains(read_error(deep), {"nesting deeper than"});
  std::string ok(50, '[');
  ok += std::string(50, ']');
  EXPECT_NO_THROW(read_json(ok, "x"));
}

}  // namespace
}  // namespace zerotrain::detail
