#include "config/validate.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "config/suggest.h"

namespace zerotrain::detail {
namespace {

std::string fmt_num(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  Json j(v);
  return j.dump();
}

std::string type_name(KeyType t) {
  switch (t) {
    case KeyType::kBool: return "true or false";
    case KeyType::kInt: return "an integer";
    case KeyType::kNumber: return "a number";
    case KeyType::kString: return "a string";
    case KeyType::kList: return "a list";
    case KeyType::kObject:
    case KeyType::kMap: return "an object";
    case KeyType::kAny: return "any value";
  }
  return "?";
}

std::string json_kind(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "a list";
    case Json::value_t::object: return "an object";
    case Json::value_t::number_float: return as_integer(v) ? "a number" : "a fractional number";
    default: return "a number";
  }
}

bool type_matches(KeyType t, const Json& v) {
  switch (t) {
    case KeyType::kBool: return v.is_boolean();
    case KeyType::kInt: return as_integer(v).has_value();
    case KeyType::kNumber: return v.is_number();
    case KeyType::kString: return v.is_string();
    case KeyType::kList: return v.is_array();
    case KeyType::kObject:
    case KeyType::kMap: return v.is_object();
    case KeyType::kAny: return true;
  }
  return false;
}

std::vector<std::string> split_choices(std::string_view choices) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= choices.size()) {
    size_t end = choices.find('|', begin);
    if (end == std::string_view::npos) end = choices.size();
    out.emplace_back(choices.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

bool equal_maybe_ignore_case(std::string_view a, std::string_view b, bool ignore_case) {
  if (!ignore_case) return a == b;
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Children of a section, by key.
using ChildMap = std::map<std::string, KeySpec, std::less<>>;

const std::map<std::string, ChildMap, std::less<>>& static_children() {
  static const auto children = [] {
    std::map<std::string, ChildMap, std::less<>> out;
    for (const auto& spec : all_key_specs()) {
      const size_t dot = spec.path.rfind('.');
      const std::string parent = dot == std::string_view::npos ? "" : std::string(spec.path.substr(0, dot));
      const std::string key(dot == std::string_view::npos ? spec.path : spec.path.substr(dot + 1));
      out[parent].emplace(key, spec);
    }
    return out;
  }();
  return children;
}

// All leaf key names by where they live, to suggest "did you mean zero_optimization.stage" for a key written
// at the wrong level.
std::vector<std::string> paths_with_last_segment(std::string_view key) {
  std::vector<std::string> out;
  for (const auto& spec : all_key_specs()) {
    const size_t dot = spec.path.rfind('.');
    const std::string_view last = dot == std::string_view::npos ? spec.path : spec.path.substr(dot + 1);
    if (last == key && spec.path.find('*') == std::string_view::npos) out.emplace_back(spec.path);
  }
  return out;
}

class Validator {
 public:
  Validator(const JsonDocument& doc, Diagnostics& diag) : doc_(doc), diag_(diag) {}

  void run() {
    if (!doc_.root.is_object()) {
      diag_.error("", "the config must be a JSON object, got " + json_kind(doc_.root));
      return;
    }
    check_object(doc_.root, "", "", static_children().at(""));
  }

 private:
  // `path` is the real path; `norm` the schema path ("*" for user-named map keys).
  void check_object(const Json& obj, const std::string& path, const std::string& norm, const ChildMap& children) {
    for (const auto& [key, value] : obj.items()) {
      const std::string child_path = join_path(path, key);
      auto it = children.find(key);
      if (it == children.end()) it = children.find("*");
      if (it == children.end()) {
        unknown_key(key, child_path, norm, children);
        continue;
      }
      check_key(it->second, value, child_path);
    }
  }

  void unknown_key(const std::string& key, const std::string& child_path, const std::string& norm,
                   const ChildMap& children) {
    std::vector<std::string> names;
    for (const auto& [name, spec] : children) names.push_back(name);
    std::string msg = "unknown key \"" + key + "\"" + (norm.empty() ? "" : " in \"" + norm + "\"");
    if (auto near = closest_match(key, names)) {
      msg += "; did you mean \"" + *near + "\"?";
    } else if (auto elsewhere = paths_with_last_segment(key); !elsewhere.empty()) {
      msg += "; \"" + key + "\" is a key of \"" + elsewhere.front().substr(0, elsewhere.front().rfind('.')) +
             "\" (did you mean \"" + elsewhere.front() + "\"?)";
    } else if (names.size() <= 16) {
      msg += "; allowed keys: ";
      for (size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : "") + names[i];
    }
    diag_.error(child_path, msg);
  }

  void check_key(const KeySpec& spec, const Json& value, const std::string& path) {
    if (const std::string problem = check_value(spec, value); !problem.empty()) {
      diag_.error(path, problem);
      return;
    }
    if (!value.is_object()) return;
    // Descend into sections.
    for (const auto& dep : dependent_sections()) {
      if (dep.path != spec.path) continue;
      check_dependent(dep, value, path);
      return;
    }
    if (spec.type == KeyType::kObject || spec.type == KeyType::kMap ||
        (spec.rule.alt == KeyType::kObject)) {
      auto it = static_children().find(spec.path);
      if (it != static_children().end()) check_object(value, path, std::string(spec.path), it->second);
    }
  }

  void check_dependent(const DependentSection& dep, const Json& value, const std::string& path) {
    const Json* selector = resolve(dep.selector);
    if (selector == nullptr || !selector->is_string()) {
      if (!value.empty()) {
        diag_.error(path, "parameters given without \"" + std::string(dep.selector) +
                              "\"; set it to say which these parameters are for");
      }
      return;
    }
    const auto specs = dep.children(selector->get<std::string>());
    if (!specs) return;  // a type whose parameters are not modelled (and flagged elsewhere)
    ChildMap children;
    for (const auto& s : *specs) children.emplace(std::string(s.path.substr(dep.path.size() + 1)), s);
    for (const auto& [key, v] : value.items()) {
      const std::string child_path = join_path(path, key);
      auto it = children.find(key);
      if (it == children.end()) {
        std::vector<std::string> names;
        for (const auto& [n, s] : children) names.push_back(n);
        std::string msg = "unknown parameter \"" + key + "\" for " + std::string(dep.selector) + " \"" +
                          selector->get<std::string>() + "\"";
        if (auto near = closest_match(key, names)) msg += "; did you mean \"" + *near + "\"?";
        msg += "; allowed: ";
        for (size_t i = 0; i < names.size(); ++i) msg += (i ? ", " : "") + names[i];
        diag_.error(child_path, msg);
        continue;
      }
      check_key(it->second, v, child_path);
    }
  }

  const Json* resolve(std::string_view dotted) const {
    const Json* cur = &doc_.root;
    size_t begin = 0;
    while (begin <= dotted.size()) {
      size_t end = dotted.find('.', begin);
      if (end == std::string_view::npos) end = dotted.size();
      const std::string key(dotted.substr(begin, end - begin));
      if (!cur->is_object() || !cur->contains(key)) return nullptr;
      cur = &(*cur)[key];
      begin = end + 1;
    }
    return cur;
  }

  const JsonDocument& doc_;
  Diagnostics& diag_;
};

}  // namespace

bool is_auto(const Json& value) { return value.is_string() && value.get_ref<const std::string&>() == "auto"; }

std::optional<int64_t> as_integer(const Json& value) {
  if (value.is_number_integer()) {
    if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return value.get<int64_t>();
  }
  if (value.is_number_float()) {
    const double d = value.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9.2e18) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

std::string describe_allowed(const KeySpec& spec) {
  const Rule& r = spec.rule;
  std::string out;
  if (spec.type == KeyType::kString && !r.choices.empty()) {
    out = "one of ";
    const auto choices = split_choices(r.choices);
    for (size_t i = 0; i < choices.size(); ++i) out += (i ? ", \"" : "\"") + choices[i] + "\"";
  } else if (spec.type == KeyType::kInt || spec.type == KeyType::kNumber) {
    out = type_name(spec.type);
    const bool lo = std::isfinite(r.min), hi = std::isfinite(r.max);
    if (lo && hi && !r.min_exclusive) {
      out += " from " + fmt_num(r.min) + " to " + fmt_num(r.max);
    } else {
      if (lo) out += (r.min_exclusive ? " > " : " >= ") + fmt_num(r.min);
      if (hi) out += std::string(lo ? " and" : "") + " <= " + fmt_num(r.max);
    }
  } else if (spec.type == KeyType::kList && r.elem != KeyType::kAny) {
    out = "a list of " + type_name(r.elem) + (r.elem == KeyType::kBool ? " values" : "s");
    if (r.elem == KeyType::kInt) out = "a list of integers";
    if (r.elem == KeyType::kNumber) out = "a list of numbers";
    if (r.elem == KeyType::kString) out = "a list of strings";
    if (r.elem == KeyType::kString && !r.choices.empty()) {
      out += " from ";
      const auto choices = split_choices(r.choices);
      for (size_t i = 0; i < choices.size(); ++i) out += (i ? ", \"" : "\"") + choices[i] + "\"";
    }
  } else {
    out = type_name(spec.type);
  }
  if (r.alt != KeyType::kAny) out += ", or " + type_name(r.alt);
  if (r.allow_auto) out += ", or \"auto\"";
  if (r.nullable) out += ", or null";
  return out;
}

std::string check_value(const KeySpec& spec, const Json& value) {
  const Rule& r = spec.rule;
  if (value.is_null() && r.nullable) return "";
  if (r.allow_auto && is_auto(value)) return "";
  const std::string shown = show_value(value);
  const std::string allowed = "; allowed: " + describe_allowed(spec);
  if (!type_matches(spec.type, value) && !(r.alt != KeyType::kAny && type_matches(r.alt, value))) {
    if (is_auto(value)) return "\"auto\" is not accepted here" + allowed;
    return shown + " is " + json_kind(value) + allowed;
  }
  if (spec.type == KeyType::kInt || spec.type == KeyType::kNumber) {
    if (value.is_number()) {
      const double d = value.get<double>();
      if (!std::isfinite(d)) return shown + " is not finite" + allowed;
      if (d < r.min || (r.min_exclusive && d <= r.min) || d > r.max) return shown + " is out of range" + allowed;
    }
  }
  if (spec.type == KeyType::kString && !r.choices.empty() && value.is_string()) {
    const auto& s = value.get_ref<const std::string&>();
    const auto choices = split_choices(r.choices);
    const bool ok = std::any_of(choices.begin(), choices.end(), [&](const std::string& c) {
      return equal_maybe_ignore_case(s, c, r.choices_ignore_case);
    });
    if (!ok) {
      std::string msg = shown + " is not a valid choice";
      if (auto near = closest_match(s, choices)) msg += " (did you mean \"" + *near + "\"?)";
      return msg + allowed;
    }
  }
  if (spec.type == KeyType::kList && r.elem != KeyType::kAny && value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) {
      if (!type_matches(r.elem, value[i])) {
        return "element " + std::to_string(i) + " (" + show_value(value[i]) + ") is " + json_kind(value[i]) + allowed;
      }
      if (r.elem == KeyType::kString && !r.choices.empty()) {
        const auto choices = split_choices(r.choices);
        const auto& s = value[i].get_ref<const std::string&>();
        if (std::none_of(choices.begin(), choices.end(), [&](const std::string& c) {
              return equal_maybe_ignore_case(s, c, r.choices_ignore_case);
            })) {
          return "element " + std::to_string(i) + " (" + show_value(value[i]) + ") is not a valid choice" + allowed;
        }
      }
    }
  }
  return "";
}

std::string show_value(const Json& value) {
  std::string s;
  if (value.is_object()) {
    s = value.empty() ? "{}" : "{...}";
  } else {
    s = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

std::string Diagnostics::where(std::string_view path) const {
  std::string out = path.empty() ? std::string("<config>") : std::string(path);
  if (doc != nullptr) {
    auto it = doc->positions.find(std::string(path));
    if (it != doc->positions.end()) {
      out += " (line " + std::to_string(it->second.line) + ", column " + std::to_string(it->second.column) + ")";
    }
  }
  return out;
}

void validate_document(const JsonDocument& doc, Diagnostics& diag) { Validator(doc, diag).run(); }

}  // namespace zerotrain::detail
