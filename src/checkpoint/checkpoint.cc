#include "checkpoint/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "checkpoint/safetensors.h"

#ifdef ZEROTRAIN_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAContext.h>
#endif

namespace zerotrain::detail {
namespace {

namespace fs = std::filesystem;
constexpr const char* kFormat = "zerotrain-checkpoint";
constexpr int kVersion = 1;

std::string shard_file(int rank, int world) {
  return "shard-" + std::to_string(rank) + "-of-" + std::to_string(world) + ".safetensors";
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": missing");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// index.json of the checkpoint at `path`, checked to be this format.
nlohmann::json read_index(const std::string& path) {
  const std::string index_path = (fs::path(path) / "index.json").string();
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_text(index_path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(index_path + ": corrupt: " + e.what());
  }
  if (index.value("format", "") != kFormat || index.value("version", 0) != kVersion) {
    throw std::runtime_error(index_path + ": not a zerotrain checkpoint of format version " +
                             std::to_string(kVersion));
  }
  return index;
}

// Removes a directory of plain files (std::filesystem::remove_all crashes in programs linked to the torch wheel).
void remove_flat_dir(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  for (const auto& entry : fs::directory_iterator(path)) ::unlink(entry.path().c_str());
  ::rmdir(path.c_str());
}

void sync_dir(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// "NAME@OFFSET/what" -> (NAME, OFFSET); false when `key` is not a piece key.
bool parse_piece_key(const std::string& key, const std::string& what, std::string& name, int64_t& offset) {
  const std::string suffix = "/" + what;
  if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  const std::string head = key.substr(0, key.size() - suffix.size());
  const size_t at = head.rfind('@');
  if (at == std::string::npos) return false;
  name = head.substr(0, at);
  offset = std::stoll(head.substr(at + 1));
  return true;
}

std::string piece_key(const std::string& name, int64_t offset, const std::string& what) {
  return name + "@" + std::to_string(offset) + "/" + what;
}

at::Tensor cpu_rng_state() { return at::detail::getDefaultCPUGenerator().get_state(); }

// Runs `fn` on every rank and agrees on the outcome: when it throws on any rank, every rank throws (the failing
// ones their own error, the others one that names the failing step), so no rank waits in a later collective for
// a rank that gave up.
void on_all_ranks(Comm& comm, c10::Device device, const std::string& what, const std::function<void()>& fn) {
  std::exception_ptr error;
  try {
    fn();
  } catch (...) {
    error = std::current_exception();
  }
  at::Tensor flag = at::full({1}, error ? 1.0f : 0.0f, at::TensorOptions(at::kFloat).device(device));
  comm.all_reduce(flag, ReduceOp::kMax);
  if (error) std::rethrow_exception(error);
  if (flag.item<float>() > 0) {
    throw std::runtime_error(what + " failed on another rank (that rank printed or raised the reason)");
  }
}

}  // namespace

std::string save_checkpoint(const std::string& dir, const std::string& tag, const ShardState& state,
                            const SaveInfo& info, Comm& comm) {
  if (tag.empty() || tag.find('/') != std::string::npos || tag[0] == '.') {
    throw std::invalid_argument("save_checkpoint: tag \"" + tag +
                                "\" is not a directory name (non-empty, no '/', not starting with '.')");
  }
  const int rank = comm.rank(), world = comm.world_size();
  const std::string final_dir = (fs::path(dir) / tag).string();
  const std::string partial = (fs::path(dir) / ("." + tag + ".partial")).string();
  if (rank == 0) {
    fs::create_directories(dir);
    remove_flat_dir(partial);  // left by a save that did not finish
    fs::create_directories(partial);
  }
  comm.barrier();

  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const ShardSegment& seg : state.layout->shard_segments()) {
    const std::string& name = state.names[seg.param_index];
    tensors.emplace_back(piece_key(name, seg.param_offset, "master"), state.master.narrow(0, seg.offset, seg.numel));
    for (const auto& [sname, st] : state.optimizer_state) {
      tensors.emplace_back(piece_key(name, seg.param_offset, sname), st.narrow(0, seg.offset, seg.numel));
    }
  }
  tensors.emplace_back("rng/cpu", cpu_rng_state());
#ifdef ZEROTRAIN_WITH_CUDA
  if (state.device.is_cuda()) {
    auto gen = at::cuda::detail::getDefaultCUDAGenerator(state.device.index());
    tensors.emplace_back("rng/cuda", gen.get_state());
  }
#endif
  on_all_ranks(comm, state.device, "save_checkpoint: writing " + partial, [&] {
    write_safetensors((fs::path(partial) / shard_file(rank, world)).string(), tensors,
                      {{"rank", std::to_string(rank)}, {"world_size", std::to_string(world)}});
  });

  on_all_ranks(comm, state.device, "save_checkpoint: finishing " + final_dir, [&] {
  if (rank == 0) {
    nlohmann::ordered_json index;
    index["format"] = kFormat;
    index["version"] = kVersion;
    index["world_size"] = world;
    index["zero_stage"] = info.zero_stage;
    index["optimizer"] = info.optimizer;
    std::vector<std::string> states;
    for (const auto& [sname, st] : state.optimizer_state) states.push_back(sname);
    index["optimizer_state"] = states;
    nlohmann::ordered_json params = nlohmann::ordered_json::array();
    for (size_t i = 0; i < state.names.size(); ++i) {
      params.push_back({{"name", state.names[i]}, {"shape", state.shapes[i]}});
    }
    index["parameters"] = params;
    std::vector<std::string> files;
    std::map<std::string, std::vector<std::array<int64_t, 3>>> pieces;  // name -> [file, offset, numel]
    for (int r = 0; r < world; ++r) {
      files.push_back(shard_file(r, world));
      SafetensorsReader reader((fs::path(partial) / files.back()).string());
      for (const auto& key : reader.names()) {
        std::string name;
        int64_t offset = 0;
        if (!parse_piece_key(key, "master", name, offset)) continue;
        pieces[name].push_back({r, offset, reader.shape(key).at(0)});
      }
    }
    index["files"] = files;
    nlohmann::ordered_json piece_json = nlohmann::ordered_json::object();
    for (size_t i = 0; i < state.names.size(); ++i) {
      auto& list = pieces[state.names[i]];
      std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a[1] < b[1]; });
      int64_t numel = 1;
      for (int64_t d : state.shapes[i]) numel *= d;
      // Keep one piece per range: at stage 0 every rank holds (and wrote) every parameter.
      std::vector<std::array<int64_t, 3>> kept;
      int64_t covered = 0;
      for (const auto& p : list) {
        if (p[1] != covered) continue;
        kept.push_back(p);
        covered += p[2];
      }
      TORCH_INTERNAL_ASSERT(covered == numel, "checkpoint pieces of ", state.names[i], " cover ", covered, " of ",
                            numel, " elements");
      piece_json[state.names[i]] = kept;
    }
    index["pieces"] = piece_json;
    write_text_atomically((fs::path(partial) / "index.json").string(), index.dump(1));
    write_text_atomically((fs::path(partial) / "engine.json").string(), info.engine_json);
    sync_dir(partial);
    // Swap in the new directory; a previous one of the same tag goes to .TAG.old until the swap is done.
    const std::string old = (fs::path(dir) / ("." + tag + ".old")).string();
    remove_flat_dir(old);
    std::error_code ec;
    if (fs::exists(final_dir, ec) && std::rename(final_dir.c_str(), old.c_str()) != 0) {
      throw std::runtime_error(final_dir + ": cannot move aside: " + std::strerror(errno));
    }
    if (std::rename(partial.c_str(), final_dir.c_str()) != 0) {
      throw std::runtime_error(partial + ": cannot rename to " + final_dir + ": " + std::strerror(errno));
    }
    sync_dir(dir);
    write_text_atomically((fs::path(dir) / "latest").string(), tag + "\n");
    sync_dir(dir);
    remove_flat_dir(old);
  }
  });
  return final_dir;
}

std::string checkpoint_path(const std::string& dir, const std::string& tag) {
  std::string t = tag;
  if (t.empty()) {
    const std::string latest = (fs::path(dir) / "latest").string();
    std::ifstream in(latest);
    if (!in) {
      throw std::runtime_error(latest + ": missing (no checkpoint was completed in " + dir +
                               "); pass a tag to load a specific one");
    }
    std::getline(in, t);
    while (!t.empty() && (t.back() == '\r' || t.back() == ' ')) t.pop_back();
    if (t.empty()) throw std::runtime_error(latest + ": empty");
  }
  std::string path = (fs::path(dir) / t).string();
  std::error_code ec;
  if (!fs::exists(fs::path(path) / "index.json", ec)) {
    // A save killed while replacing a checkpoint of the same tag leaves the previous one as .TAG.old.
    const std::string old = (fs::path(dir) / ("." + t + ".old")).string();
    if (fs::exists(fs::path(old) / "index.json", ec)) return old;
    throw std::runtime_error(path + ": no checkpoint here (index.json missing)");
  }
  return path;
}

std::string load_checkpoint(const std::string& dir, const std::string& tag, ShardState& state,
                            const std::string& optimizer, Comm& comm, std::string* loaded_path) {
  std::string engine_json;
  on_all_ranks(comm, state.device, "load_checkpoint from " + dir, [&] {
  const std::string path = checkpoint_path(dir, tag);
  if (loaded_path != nullptr) *loaded_path = path;
  const std::string index_path = (fs::path(path) / "index.json").string();
  const nlohmann::json index = read_index(path);
  // The optimizer must keep the same state tensors (Adam and AdamW do; SGD does not).
  const auto saved_states = index.value("optimizer_state", std::vector<std::string>{});
  std::vector<std::string> states;
  for (const auto& [sname, st] : state.optimizer_state) states.push_back(sname);
  if (saved_states != states) {
    auto join = [](const std::vector<std::string>& v) {
      std::string out;
      for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
      return out.empty() ? std::string("none") : out;
    };
    throw std::runtime_error(index_path + ": saved with optimizer " + index.value("optimizer", "?") +
                             " (state: " + join(saved_states) + "); this engine's optimizer " + optimizer +
                             " keeps " + join(states));
  }
  std::map<std::string, std::vector<int64_t>> saved_shapes;
  for (const auto& p : index.at("parameters")) {
    saved_shapes[p.at("name").get<std::string>()] = p.at("shape").get<std::vector<int64_t>>();
  }
  auto shape_str = [](const std::vector<int64_t>& s) {
    std::string out;
    for (int64_t d : s) out += (out.empty() ? "" : "x") + std::to_string(d);
    return "(" + out + ")";
  };
  for (size_t i = 0; i < state.names.size(); ++i) {
    auto it = saved_shapes.find(state.names[i]);
    if (it == saved_shapes.end()) {
      throw std::runtime_error(index_path + ": the model's parameter " + state.names[i] + " " +
                               shape_str(state.shapes[i]) + " is not in the checkpoint (a different model?)");
    }
    if (it->second != state.shapes[i]) {
      throw std::runtime_error(index_path + ": parameter " + state.names[i] + " has shape " +
                               shape_str(it->second) + " in the checkpoint but " + shape_str(state.shapes[i]) +
                               " in the model");
    }
    saved_shapes.erase(it);
  }
  if (!saved_shapes.empty()) {
    throw std::runtime_error(index_path + ": the checkpoint has parameter " + saved_shapes.begin()->first +
                             " that the model does not (a different model?)");
  }
  const auto files = index.at("files").get<std::vector<std::string>>();
  std::map<int64_t, std::unique_ptr<SafetensorsReader>> readers;
  auto reader = [&](int64_t f) -> SafetensorsReader& {
    auto& r = readers[f];
    if (!r) r = std::make_unique<SafetensorsReader>((fs::path(path) / files.at(static_cast<size_t>(f))).string());
    return *r;
  };
  const auto& pieces = index.at("pieces");
  at::NoGradGuard no_grad;
  for (const ShardSegment& seg : state.layout->shard_segments()) {
    const std::string& name = state.names[seg.param_index];
    const int64_t lo = seg.param_offset, hi = seg.param_offset + seg.numel;
    int64_t covered = 0;
    for (const auto& p : pieces.at(name)) {
      const int64_t f = p.at(0).get<int64_t>(), off = p.at(1).get<int64_t>(), n = p.at(2).get<int64_t>();
      const int64_t a = std::max(lo, off), e = std::min(hi, off + n);
      if (a >= e) continue;
      SafetensorsReader& r = reader(f);
      auto copy = [&](const std::string& what, at::Tensor& dest) {
        const std::string key = piece_key(name, off, what);
        if (!r.contains(key)) {
          throw std::runtime_error((fs::path(path) / files.at(static_cast<size_t>(f))).string() + ": no tensor \"" +
                                   key + "\" (corrupt or partial checkpoint)");
        }
        r.read_range(key, a - off, dest.narrow(0, seg.offset + (a - lo), e - a));
      };
      copy("master", state.master);
      for (auto& [sname, st] : state.optimizer_state) copy(sname, st);
      covered += e - a;
    }
    if (covered != seg.numel) {
      throw std::runtime_error(index_path + ": the pieces listed for " + name + " do not cover elements [" +
                               std::to_string(lo) + ", " + std::to_string(hi) + ")");
    }
  }
  // Generator states: this rank's, when the world size is the same.
  if (index.at("world_size").get<int>() == comm.world_size()) {
    SafetensorsReader& r = reader(comm.rank());
    if (r.contains("rng/cpu")) {
      at::Generator gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(r.get("rng/cpu"));
    }
#ifdef ZEROTRAIN_WITH_CUDA
    if (state.device.is_cuda() && r.contains("rng/cuda")) {
      at::Generator gen = at::cuda::detail::getDefaultCUDAGenerator(state.device.index());
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(r.get("rng/cuda"));
    }
#endif
  }
  engine_json = read_text((fs::path(path) / "engine.json").string());
  });
  return engine_json;
}

std::vector<std::pair<std::string, at::Tensor>> consolidate_checkpoint(const std::string& path) {
  const std::string index_path = (fs::path(path) / "index.json").string();
  const nlohmann::json index = read_index(path);
  const auto files = index.at("files").get<std::vector<std::string>>();
  std::map<int64_t, std::unique_ptr<SafetensorsReader>> readers;
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : index.at("parameters")) {
    const std::string name = p.at("name").get<std::string>();
    const auto shape = p.at("shape").get<std::vector<int64_t>>();
    at::Tensor flat = at::empty({c10::multiply_integers(shape)}, at::kFloat);
    int64_t covered = 0;
    for (const auto& piece : index.at("pieces").at(name)) {
      const int64_t f = piece.at(0).get<int64_t>(), off = piece.at(1).get<int64_t>(), n = piece.at(2).get<int64_t>();
      auto& r = readers[f];
      if (!r) r = std::make_unique<SafetensorsReader>((fs::path(path) / files.at(static_cast<size_t>(f))).string());
      flat.narrow(0, off, n).copy_(r->get(piece_key(name, off, "master")));
      covered += n;
    }
    if (covered != flat.numel()) {
      throw std::runtime_error(index_path + ": the pieces of " + name + " cover " + std::to_string(covered) + " of " +
                               std::to_string(flat.numel()) + " elements");
    }
    out.emplace_back(name, flat.view(shape));
  }
  return out;
}

}  // namespace zerotrain::detail
