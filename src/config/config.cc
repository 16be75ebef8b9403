// zerotrain::Config: read -> aliases -> validate -> resolve -> typed structs -> unsupported features.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "config/alias.h"
#include "config/config_data.h"
#include "config/validate.h"

namespace zerotrain {
namespace {

std::string join_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\n" : "") + lines[i];
  return out;
}

}  // namespace

ConfigError::ConfigError(std::vector<std::string> errors)
    : std::runtime_error(join_lines(errors)), errors_(std::move(errors)) {}

Config::Config(std::shared_ptr<const Data> data) : data_(std::move(data)) {}

Config Config::from_file(const std::string& path, const RunInfo& run) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError({path + ": cannot open the config file (" + std::strerror(errno) + ")"});
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError({path + ": cannot read the config file"});
  return from_string(text.str(), run, path);
}

Config Config::from_path_or_text(const std::string& config, const RunInfo& run) {
  const auto first = config.find_first_not_of(" \t\r\n");
  return first != std::string::npos && config[first] == '{' ? from_string(config, run) : from_file(config, run);
}

Config Config::from_string(std::string_view json_text, const RunInfo& run, std::string_view source) {
  detail::JsonDocument doc = detail::read_json(json_text, source);
  detail::Diagnostics diag;
  diag.doc = &doc;
  auto fail_if_errors = [&] {
    if (diag.errors.empty()) return;
    for (auto& e : diag.errors) e = std::string(source) + ": " + e;
    throw ConfigError(std::move(diag.errors));
  };
  if (run.world_size < 1) {
    throw ConfigError({"world size " + std::to_string(run.world_size) + " is invalid; allowed: an integer >= 1"});
  }
  detail::apply_aliases(doc, diag);
  detail::validate_document(doc, diag);
  fail_if_errors();

  auto data = std::make_shared<Data>();
  data->run = run;
  detail::resolve_effective(doc, *data, diag);
  detail::build_typed(doc, *data, diag);
  fail_if_errors();
  detail::find_unsupported_features(doc, *data);
  data->warnings = std::move(diag.warnings);
  return Config(std::move(data));
}

const BatchConfig& Config::batch() const { return data_->batch; }
const OptimizerConfig& Config::optimizer() const { return data_->optimizer; }
const SchedulerConfig& Config::scheduler() const { return data_->scheduler; }
Precision Config::precision() const { return data_->precision; }
const Fp16Config& Config::fp16() const { return data_->fp16; }
const Bf16Config& Config::bf16() const { return data_->bf16; }
const ZeroConfig& Config::zero() const { return data_->zero; }
const AioConfig& Config::aio() const { return data_->aio; }
const GradientConfig& Config::gradients() const { return data_->gradients; }
const LoggingConfig& Config::logging() const { return data_->logging; }
const AutotuningConfig& Config::autotuning() const { return data_->autotuning; }
const MonitorConfig& Config::monitor() const { return data_->monitor; }
const RunInfo& Config::run() const { return data_->run; }
const std::vector<std::string>& Config::unsupported_features() const { return data_->unsupported; }
const std::vector<std::string>& Config::warnings() const { return data_->warnings; }
const std::vector<EffectiveValue>& Config::effective_values() const { return data_->effective; }

std::string Config::to_json() const {
  return data_->effective_json.dump(2, ' ', false, detail::Json::error_handler_t::replace);
}

void Config::require_supported() const {
  if (data_->unsupported.empty()) return;
  std::vector<std::string> errors;
  for (const auto& f : data_->unsupported) {
    errors.push_back("zerotrain does not support " + f + " yet; remove the setting or set it to its default");
  }
  throw ConfigError(std::move(errors));
}

}  // namespace zerotrain
