#include "launch/environment.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <charconv>

#include "launch/error.h"
#include "launch/text_file.h"

namespace zerotrain::detail {
namespace {

// DeepSpeed's runner: EXPORT_ENVS + the CUDA accelerator's export_envs() (prefixes).
constexpr std::array<std::string_view, 5> kExportPrefixes = {"NCCL", "PYTHON", "UCX", "MV2", "MLFLOW"};
// DeepSpeed's NEBULA_EXPORT_ENVS (also prefixes there).
constexpr std::array<std::string_view, 11> kNebulaExports = {
    "DLTS_JOB_ID",  "DLTS_NUM_WORKER",         "NEBULA_PERSISTENT_STORAGE_PATH",
    "NEBULA_PERSISTENT_TIME_INTERVAL", "AML_RUN_ID", "AZUREML_RUN_TOKEN", "AZUREML_WORKSPACE_SCOPE",
    "AZUREML_EXPERIMENT_SCOPE", "AZUREML_RUN_HISTORY_SERVICE_ENDPOINT", "AZUREML_RUN_ID",
    "NEBULA_MEMORY_BUFFER_SIZE"};

bool is_identifier(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

int env_int(const Environment& env, std::string_view name, std::string_view source, int min_value) {
  const auto it = env.find(std::string(name));
  if (it == env.end()) {
    throw LaunchError(fmt::format("{} did not set {}; zerotrain launch --from_launcher must run under it", source,
                                  name));
  }
  int v = 0;
  const auto& s = it->second;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v < min_value) {
    throw LaunchError(fmt::format("{}={}: expected an integer >= {}", name, s, min_value));
  }
  return v;
}

int env_int_either(const Environment& env, std::string_view a, std::string_view b, std::string_view source,
                   int min_value) {
  return env.count(std::string(a)) ? env_int(env, a, source, min_value) : env_int(env, b, source, min_value);
}

// The task count of node `node` in Slurm's compressed per-node list, e.g. "2(x3),1".
int slurm_tasks_on_node(std::string_view list, int node) {
  const auto bad = [&] {
    return LaunchError(fmt::format("SLURM_STEP_TASKS_PER_NODE={}: expected N[(xK)][,...] covering node {}", list,
                                   node));
  };
  int first_node = 0;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t end = list.find(',', pos);
    if (end == std::string_view::npos) end = list.size();
    const std::string_view item = list.substr(pos, end - pos);
    int tasks = 0;
    int repeat = 1;
    const auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), tasks);
    if (ec != std::errc() || tasks < 1) throw bad();
    const std::string_view rest(p, item.data() + item.size() - p);
    if (!rest.empty()) {
      if (!rest.starts_with("(x") || !rest.ends_with(")")) throw bad();
      const std::string_view n = rest.substr(2, rest.size() - 3);
      const auto [q, ec2] = std::from_chars(n.data(), n.data() + n.size(), repeat);
      if (ec2 != std::errc() || q != n.data() + n.size() || repeat < 1) throw bad();
    }
    if (node < first_node + repeat) return tasks;
    first_node += repeat;
    pos = end + 1;
  }
  throw bad();
}

}  // namespace

Environment environment_from(char** envp) {
  Environment env;
  for (char** e = envp; e && *e; ++e) {
    const std::string_view kv(*e);
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return env;
}

std::vector<std::string> environment_strings(const Environment& env) {
  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

Environment rank_environment(const WorldInfo& world, int node_rank, int local_index, const Rendezvous& rdzv) {
  int first_rank = 0;
  for (int n = 0; n < node_rank; ++n) first_rank += static_cast<int>(world[static_cast<size_t>(n)].slots.size());
  const NodeSlots& node = world.at(static_cast<size_t>(node_rank));
  const int num_local = static_cast<int>(node.slots.size());
  const auto num_nodes = std::to_string(world.size());
  return Environment{
      {"RANK", std::to_string(first_rank + local_index)},
      {"LOCAL_RANK", std::to_string(local_index)},
      {"WORLD_SIZE", std::to_string(world_size(world))},
      {"LOCAL_WORLD_SIZE", std::to_string(num_local)},
      {"LOCAL_SIZE", std::to_string(num_local)},
      {"CROSS_RANK", std::to_string(node_rank)},
      {"CROSS_SIZE", num_nodes},
      {"GROUP_RANK", std::to_string(node_rank)},
      {"GROUP_WORLD_SIZE", num_nodes},
      {"MASTER_ADDR", rdzv.master_addr},
      {"MASTER_PORT", std::to_string(rdzv.master_port)},
      {"CUDA_VISIBLE_DEVICES", fmt::format("{}", fmt::join(node.slots, ","))},
  };
}

Environment parse_env_file(std::string_view text, std::string_view path) {
  Environment env;
  int line_no = 0;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view raw = text.substr(pos, eol - pos);
    std::string_view line = trim(raw);
    pos = eol + 1;
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("export ")) line = trim(line.substr(7));
    const size_t eq = line.find('=');
    const std::string_view key = eq == std::string_view::npos ? line : trim(line.substr(0, eq));
    if (eq == std::string_view::npos || !is_identifier(key)) {
      throw LaunchError(fmt::format("environment file {}:{}: '{}': expected NAME=VALUE with NAME made of letters, "
                                    "digits and '_'",
                                    path, line_no, trim(raw)));
    }
    std::string_view value = trim(line.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    env[std::string(key)] = std::string(value);
  }
  return env;
}

Environment multinode_exports(const Environment& launcher_env, const std::string& cwd, const std::string& home) {
  Environment exports;
  const bool aisc = launcher_env.count("AISC_JOB_NAME") > 0;
  for (const auto& [name, value] : launcher_env) {
    bool wanted = false;
    for (auto prefix : kExportPrefixes) wanted = wanted || name.starts_with(prefix);
    for (auto prefix : kNebulaExports) wanted = wanted || name.starts_with(prefix);
    // On AISC each node sets these itself; rank 0's values would be wrong elsewhere (DeepSpeed's EXCLUDE_ENVS).
    if (aisc && (name == "NCCL_IB_HCA" || name == "UCX_NET_DEVICES")) wanted = false;
    if (wanted) exports[name] = value;
  }
  const auto pp = launcher_env.find("PYTHONPATH");
  exports["PYTHONPATH"] = pp == launcher_env.end() || pp->second.empty() ? cwd : cwd + ":" + pp->second;

  const auto name_it = launcher_env.find("DS_ENV_FILE");
  const std::string file_name = name_it == launcher_env.end() ? ".deepspeed_env" : name_it->second;
  for (const std::string& dir : {home, cwd}) {
    if (dir.empty()) continue;
    const std::string path = dir + "/" + file_name;
    if (const auto text = read_text_file(path, "environment file")) {
      for (auto& [k, v] : parse_env_file(*text, path)) exports[k] = v;
    }
  }
  return exports;
}

LauncherRank launcher_rank(RankSource source, const Environment& env) {
  LauncherRank r;
  switch (source) {
    case RankSource::kOpenMpi: {
      constexpr std::string_view s = "mpirun (OpenMPI)";
      r.rank = env_int(env, "OMPI_COMM_WORLD_RANK", s, 0);
      r.world_size = env_int(env, "OMPI_COMM_WORLD_SIZE", s, 1);
      r.local_rank = env_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", s, 0);
      r.local_world_size = env_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", s, 1);
      break;
    }
    case RankSource::kMpich: {
      constexpr std::string_view s = "mpirun (MPICH)";
      r.rank = env_int_either(env, "PMI_RANK", "PMIX_RANK", s, 0);
      r.world_size = env_int(env, "PMI_SIZE", s, 1);
      r.local_rank = env_int_either(env, "MPI_LOCALRANKID", "PALS_LOCAL_RANKID", s, 0);
      r.local_world_size = env_int(env, "MPI_LOCALNRANKS", s, 1);
      break;
    }
    case RankSource::kSlurm: {
      constexpr std::string_view s = "srun";
      r.rank = env_int(env, "SLURM_PROCID", s, 0);
      r.world_size = env_int(env, "SLURM_NTASKS", s, 1);
      r.local_rank = env_int(env, "SLURM_LOCALID", s, 0);
      r.node_rank = env_int(env, "SLURM_NODEID", s, 0);
      r.num_nodes = env_int(env, "SLURM_NNODES", s, 1);
      const auto it = env.find("SLURM_STEP_TASKS_PER_NODE");
      if (it == env.end()) throw LaunchError("srun did not set SLURM_STEP_TASKS_PER_NODE");
      r.local_world_size = slurm_tasks_on_node(it->second, *r.node_rank);
      break;
    }
  }
  if (r.rank >= r.world_size || r.local_rank >= r.local_world_size) {
    throw LaunchError(fmt::format("launcher variables are inconsistent: rank {} of {}, local rank {} of {}", r.rank,
                                  r.world_size, r.local_rank, r.local_world_size));
  }
  return r;
}

Environment launcher_rank_environment(const LauncherRank& place, const WorldInfo* world, const Rendezvous& rdzv) {
  if (world && world_size(*world) == place.world_size) {
    int first = 0;
    for (size_t n = 0; n < world->size(); ++n) {
      const int count = static_cast<int>((*world)[n].slots.size());
      if (place.rank < first + count) {
        if (place.rank - first == place.local_rank && count == place.local_world_size) {
          return rank_environment(*world, static_cast<int>(n), place.local_rank, rdzv);
        }
        break;
      }
      first += count;
    }
  }
  Environment env{
      {"RANK", std::to_string(place.rank)},
      {"LOCAL_RANK", std::to_string(place.local_rank)},
      {"WORLD_SIZE", std::to_string(place.world_size)},
      {"LOCAL_WORLD_SIZE", std::to_string(place.local_world_size)},
      {"LOCAL_SIZE", std::to_string(place.local_world_size)},
      {"MASTER_ADDR", rdzv.master_addr},
      {"MASTER_PORT", std::to_string(rdzv.master_port)},
  };
  if (place.node_rank && place.num_nodes) {
    env["CROSS_RANK"] = env["GROUP_RANK"] = std::to_string(*place.node_rank);
    env["CROSS_SIZE"] = env["GROUP_WORLD_SIZE"] = std::to_string(*place.num_nodes);
  }
  return env;
}

}  // namespace zerotrain::detail
