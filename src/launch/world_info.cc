#include "launch/world_info.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "launch/error.h"

namespace zerotrain::detail {
namespace {

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int alphabet_index(char c) {
  const size_t i = kAlphabet.find(c);
  return i == std::string_view::npos ? -1 : static_cast<int>(i);
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) |
                       uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string base64url_decode(std::string_view text, std::string_view what) {
  if (text.size() % 4 != 0) {
    throw LaunchError(fmt::format("{}: length {} is not a multiple of 4, so it is not base64", what, text.size()));
  }
  std::string out;
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      int d = 0;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
      } else if (pad > 0 || (d = alphabet_index(c)) < 0) {
        throw LaunchError(fmt::format("{}: character '{}' at offset {} is not URL-safe base64", what, c, i + k));
      }
      v = (v << 6) | uint32_t(d);
    }
    out += char((v >> 16) & 0xff);
    if (pad < 2) out += char((v >> 8) & 0xff);
    if (pad < 1) out += char(v & 0xff);
  }
  return out;
}

std::string encode_world_info(const WorldInfo& world) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  for (const auto& node : world) json[node.host] = node.slots;
  return base64url_encode(json.dump());
}

WorldInfo decode_world_info(std::string_view encoded) {
  const std::string text = base64url_decode(encoded, "--world_info");
  const auto bad = [&](std::string_view why) {
    return LaunchError(fmt::format("--world_info decodes to '{}': {}; expected a JSON object "
                                   "{{\"HOST\": [SLOT, ...], ...}}",
                                   text, why));
  };
  nlohmann::ordered_json json;
  try {
    json = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw bad("not JSON");
  }
  if (!json.is_object() || json.empty()) throw bad("not a non-empty object");
  WorldInfo world;
  for (const auto& [host, slots] : json.items()) {
    if (!slots.is_array() || slots.empty()) throw bad(fmt::format("the slots of {} are not a non-empty list", host));
    NodeSlots node{host, {}};
    for (const auto& s : slots) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0 || s.get<int64_t>() > 1 << 20) {
        throw bad(fmt::format("slot {} of {} is not a non-negative integer", s.dump(), host));
      }
      node.slots.push_back(s.get<int>());
    }
    world.push_back(std::move(node));
  }
  return world;
}

}  // namespace zerotrain::detail
