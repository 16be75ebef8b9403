#include "autotune/search_space.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>

#include "config/validate.h"
#include "zerotrain/config.h"

namespace zerotrain::detail {
namespace {

const std::string kZero = "zero_optimization";

[[noreturn]] void bad(const std::string& source, const std::string& key, const Json& value, const std::string& allowed) {
  throw ConfigError({fmt::format("{}: {}: {} cannot be autotuned; allowed: {}", source, key, value.dump(), allowed)});
}

int64_t positive_integer(const std::string& source, const std::string& key, const Json& v) {
  const auto n = as_integer(v);
  if (!n || *n < 1) bad(source, key, v, "integers >= 1");
  return *n;
}

// Replaces every list in `node` (but lists that are values of keys DeepSpeed takes as lists, such as
// optimizer betas) by its first element.
void first_values(Json& node, const std::string& path, const std::string& source) {
  if (!node.is_object()) return;
  for (auto& [key, value] : node.items()) {
    const std::string child = path.empty() ? key : path + "." + key;
    if (value.is_array() && (child == "train_micro_batch_size_per_gpu" || child == kZero + ".stage" ||
                             (child.rfind(kZero + ".", 0) == 0 && child.find('.', kZero.size() + 1) == std::string::npos))) {
      if (value.empty()) bad(source, child, value, "a non-empty list of candidate values");
      value = Json(value.front());
    } else if (value.is_object()) {
      first_values(value, child, source);
    }
  }
}

}  // namespace

UserSpace read_user_space(const Json& config, const std::string& source) {
  if (!config.is_object()) throw ConfigError({source + ": the config is not a JSON object"});
  UserSpace space;
  space.base = config;
  first_values(space.base, "", source);

  const Json* zero = config.contains(kZero) ? &config.at(kZero) : nullptr;
  const Json stage = zero != nullptr && zero->is_object() && zero->contains("stage") ? zero->at("stage") : Json("all");
  auto add_stage = [&](const Json& v) {
    const auto s = as_integer(v);
    if (!s || *s < 0 || *s > 3) bad(source, kZero + ".stage", v, "0, 1, 2, 3, a list of them, or \"all\"");
    if (std::find(space.stages.begin(), space.stages.end(), static_cast<int>(*s)) == space.stages.end()) {
      space.stages.push_back(static_cast<int>(*s));
    }
  };
  if (stage.is_string() && stage.get<std::string>() == "all") {
    space.stages = {0, 1, 2, 3};
  } else if (stage.is_array()) {
    if (stage.empty()) bad(source, kZero + ".stage", stage, "0, 1, 2, 3, a list of them, or \"all\"");
    for (const auto& v : stage) add_stage(v);
  } else {
    add_stage(stage);
  }
  std::sort(space.stages.begin(), space.stages.end());

  if (config.contains("train_micro_batch_size_per_gpu")) {
    const Json& mbs = config.at("train_micro_batch_size_per_gpu");
    if (mbs.is_array()) {
      if (mbs.empty()) bad(source, "train_micro_batch_size_per_gpu", mbs, "a non-empty list of integers >= 1");
      std::vector<int64_t> list;
      for (const auto& v : mbs) list.push_back(positive_integer(source, "train_micro_batch_size_per_gpu", v));
      std::sort(list.begin(), list.end());
      list.erase(std::unique(list.begin(), list.end()), list.end());
      space.micro_batch_sizes = list;
    } else if (!(mbs.is_string() && mbs.get<std::string>() == "auto")) {
      space.micro_batch = positive_integer(source, "train_micro_batch_size_per_gpu", mbs);
    }
  }
  if (config.contains("gradient_accumulation_steps")) {
    const Json& gas = config.at("gradient_accumulation_steps");
    if (gas.is_array()) bad(source, "gradient_accumulation_steps", gas, "one integer (DeepSpeed tunes no list of it)");
    if (!(gas.is_string() && gas.get<std::string>() == "auto")) {
      space.gradient_accumulation_steps = positive_integer(source, "gradient_accumulation_steps", gas);
    }
  }
  if (zero != nullptr && zero->is_object()) {
    for (const auto& [key, value] : zero->items()) {
      if (key == "stage") continue;
      if (!value.is_array()) {
        space.fixed_zero_keys.push_back(kZero + "." + key);
        continue;
      }
      if (value.empty()) bad(source, kZero + "." + key, value, "a non-empty list of candidate values");
      space.zero_knobs.push_back({kZero + "." + key, std::vector<Json>(value.begin(), value.end())});
    }
  }
  return space;
}

std::vector<Knob> stage_knobs(int stage, const UserSpace& space) {
  const std::vector<Json> buckets{Json(50000000), Json(500000000), Json(1000000000)};
  std::vector<Knob> knobs;
  switch (stage) {
    case 1:
      knobs = {{kZero + ".reduce_bucket_size", buckets}, {kZero + ".allgather_bucket_size", buckets}};
      break;
    case 2:
      knobs = {{kZero + ".overlap_comm", {Json(true), Json(false)}},
               {kZero + ".reduce_bucket_size", buckets},
               {kZero + ".allgather_bucket_size", buckets}};
      break;
    case 3:
      knobs = {{kZero + ".overlap_comm", {Json(true), Json(false)}},
               {kZero + ".reduce_bucket_size", buckets},
               {kZero + ".stage3_prefetch_bucket_size", {Json(50000000), Json(500000000)}}};
      break;
    default:
      break;
  }
  std::erase_if(knobs, [&](const Knob& k) {
    return std::find(space.fixed_zero_keys.begin(), space.fixed_zero_keys.end(), k.key) != space.fixed_zero_keys.end();
  });
  for (const auto& user : space.zero_knobs) {
    auto it = std::find_if(knobs.begin(), knobs.end(), [&](const Knob& k) { return k.key == user.key; });
    if (it != knobs.end()) {
      it->values = user.values;
    } else {
      knobs.push_back(user);
    }
  }
  return knobs;
}

std::vector<std::vector<std::pair<std::string, Json>>> combinations(const std::vector<Knob>& knobs) {
  std::vector<std::vector<std::pair<std::string, Json>>> out{{}};
  for (const auto& knob : knobs) {
    std::vector<std::vector<std::pair<std::string, Json>>> next;
    for (const auto& partial : out) {
      for (const auto& v : knob.values) {
        auto c = partial;
        c.emplace_back(knob.key, v);
        next.push_back(std::move(c));
      }
    }
    out = std::move(next);
  }
  return out;
}

void set_path(Json& root, const std::string& dotted, Json value) {
  Json* node = &root;
  size_t start = 0;
  while (true) {
    const size_t dot = dotted.find('.', start);
    const std::string key = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (dot == std::string::npos) {
      (*node)[key] = std::move(value);
      return;
    }
    if (!node->contains(key) || !(*node)[key].is_object()) (*node)[key] = Json::object();
    node = &(*node)[key];
    start = dot + 1;
  }
}

std::string value_name(const Json& v) {
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) {
    const double d = v.get<double>();
    if (d >= 1e5 && std::abs(d) < 1e18) {
      const int exp = static_cast<int>(std::floor(std::log10(d)));
      const double mant = d / std::pow(10.0, exp);
      if (std::abs(mant - std::round(mant)) < 1e-9) return fmt::format("{}e{}", std::lround(mant), exp);
    }
    if (auto n = as_integer(v)) return std::to_string(*n);
    return fmt::format("{:g}", d);
  }
  std::string text = v.is_string() ? v.get<std::string>() : v.dump();
  // Names become file and directory names: anything but letters, digits, '.', '_', '-' becomes '-'.
  for (char& c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
  }
  return text;
}

std::string key_abbreviation(const std::string& dotted) {
  const std::string leaf = dotted.substr(dotted.rfind('.') + 1);
  std::string out;
  bool start = true;
  for (char c : leaf) {
    if (c == '_') {
      start = true;
    } else if (start) {
      out += c;
      start = false;
    }
  }
  return out;
}

}  // namespace zerotrain::detail
