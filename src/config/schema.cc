#include "config/schema.h"

#include <string>
#include <unordered_map>

namespace zerotrain::detail {
namespace {

struct Index {
  std::vector<KeySpec> specs;
  std::unordered_map<std::string_view, const KeySpec*> by_path;
};

const Index& index() {
  static const Index idx = [] {
    Index i;
    for (auto* section : {&schema_top_level, &schema_optimizer, &schema_precision, &schema_zero, &schema_io,
                          &schema_monitoring, &schema_features, &schema_compression}) {
      auto part = (*section)();
      i.specs.insert(i.specs.end(), part.begin(), part.end());
    }
    for (const auto& s : i.specs) i.by_path.emplace(s.path, &s);
    return i;
  }();
  return idx;
}

}  // namespace

std::span<const KeySpec> all_key_specs() { return index().specs; }

const KeySpec* find_key_spec(std::string_view path) {
  const auto& by_path = index().by_path;
  // Walk segment by segment so that user-named children of a kMap match its "*" spec.
  std::string normalized;
  const KeySpec* spec = nullptr;
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find('.', begin);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view seg = path.substr(begin, end - begin);
    std::string candidate = normalized.empty() ? std::string(seg) : normalized + "." + std::string(seg);
    auto it = by_path.find(candidate);
    if (it == by_path.end() && spec != nullptr && spec->type == KeyType::kMap) {
      candidate = normalized + ".*";
      it = by_path.find(candidate);
    }
    if (it == by_path.end()) return nullptr;
    normalized = std::move(candidate);
    spec = it->second;
    begin = end + 1;
  }
  return spec;
}

}  // namespace zerotrain::detail
