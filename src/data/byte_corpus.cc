// ByteCorpus: loading, the train/eval split, and the batcher of [Note: sample layout] (zerotrain/data.h).
#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "data/window_permutation.h"
#include "zerotrain/data.h"

namespace zerotrain {
namespace {

// Salts that keep the per-epoch permutation key and the per-epoch shift independent.
constexpr uint64_t kEpochSalt = 0x243F6A8885A308D3ULL;
constexpr uint64_t kShiftSalt = 0x13198A2E03707344ULL;

void require(bool ok, std::string_view what, const std::string& got, std::string_view allowed) {
  if (!ok) throw std::invalid_argument(fmt::format("{}: got {}; {}", what, got, allowed));
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("corpus: cannot open '{}'", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error(fmt::format("corpus: error reading '{}'", path.string()));
  return std::move(text).str();
}

std::string read_corpus(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) {
    throw std::invalid_argument(
        fmt::format("corpus path: got '{}', which does not exist; give a text file or a directory of *.txt files",
                    path.string()));
  }
  if (!fs::is_directory(path)) return read_file(path);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.is_regular_file() && entry.path().extension() == ".txt") files.push_back(entry.path());
  }
  // File-name order: the concatenation, and so every sample, is the same on every machine.
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) text += read_file(f);
  return text;
}

void check_geometry(const BatchGeometry& g) {
  require(g.seq >= 1, "seq", std::to_string(g.seq), "must be a positive integer");
  require(g.micro_batch >= 1, "micro_batch", std::to_string(g.micro_batch), "must be a positive integer");
  require(g.grad_accum >= 1, "grad_accum", std::to_string(g.grad_accum), "must be a positive integer");
  require(g.world_size >= 1, "world_size", std::to_string(g.world_size), "must be a positive integer");
}

}  // namespace

int64_t global_sample_index(int64_t global_step, int micro_step, int rank, int64_t j, const BatchGeometry& g) {
  check_geometry(g);
  require(global_step >= 0, "global_step", std::to_string(global_step), "must be 0 or more");
  require(micro_step >= 0 && micro_step < g.grad_accum, "micro_step", std::to_string(micro_step),
          fmt::format("must be in [0, grad_accum = {})", g.grad_accum));
  require(rank >= 0 && rank < g.world_size, "rank", std::to_string(rank),
          fmt::format("must be in [0, world_size = {})", g.world_size));
  require(j >= 0 && j < g.micro_batch, "sample j", std::to_string(j),
          fmt::format("must be in [0, micro_batch = {})", g.micro_batch));
  const int64_t per_step = g.grad_accum * g.world_size * g.micro_batch;
  return global_step * per_step + (micro_step * g.world_size + rank) * g.micro_batch + j;
}

ByteCorpus::ByteCorpus(const std::filesystem::path& path, double eval_fraction)
    : ByteCorpus(read_corpus(path), eval_fraction, path.string()) {}

ByteCorpus ByteCorpus::from_bytes(std::string bytes, double eval_fraction, std::string source) {
  return ByteCorpus(std::move(bytes), eval_fraction, std::move(source));
}

ByteCorpus::ByteCorpus(std::string bytes, double eval_fraction, std::string source)
    : bytes_(std::move(bytes)), source_(std::move(source)) {
  require(eval_fraction >= 0.0 && eval_fraction < 1.0, "eval_fraction", fmt::format("{}", eval_fraction),
          "must be in [0, 1)");
  if (bytes_.empty()) {
    throw std::invalid_argument(fmt::format("corpus '{}': got 0 bytes; needs text to train on", source_));
  }
  const auto held_out = static_cast<int64_t>(std::floor(static_cast<double>(bytes_.size()) * eval_fraction));
  train_size_ = size() - held_out;
}

int64_t ByteCorpus::num_train_windows(int64_t seq) const {
  require(seq >= 1, "seq", std::to_string(seq), "must be a positive integer");
  // Windows need seq + 1 bytes after a shift of up to seq - 1, so the train part must hold 2 seq bytes.
  require(train_size_ >= 2 * seq, "seq", std::to_string(seq),
          fmt::format("must be at most {} (half the {} train bytes of corpus '{}')", train_size_ / 2, train_size_,
                      source_));
  return (train_size_ - 2 * seq) / seq + 1;
}

int64_t ByteCorpus::sample_offset(int64_t sample_index, int64_t seq, uint64_t seed) const {
  require(sample_index >= 0, "sample_index", std::to_string(sample_index), "must be 0 or more");
  const int64_t windows = num_train_windows(seq);
  const auto epoch = static_cast<uint64_t>(sample_index / windows);
  const uint64_t key = detail::mix64(detail::mix64(seed ^ kEpochSalt) + epoch);
  const auto shift = static_cast<int64_t>(detail::mix64(key ^ kShiftSalt) % static_cast<uint64_t>(seq));
  // Largest offset: seq - 1 + (windows - 1) seq <= train_size - seq - 1, so the last target is a train byte.
  return shift + detail::permute_index(sample_index % windows, windows, key) * seq;
}

Batch ByteCorpus::sample_batch(int64_t global_step, int micro_step, int rank, const BatchGeometry& g) const {
  check_geometry(g);
  std::vector<int64_t> offsets(static_cast<size_t>(g.micro_batch));
  for (int64_t j = 0; j < g.micro_batch; ++j) {
    offsets[j] = sample_offset(global_sample_index(global_step, micro_step, rank, j, g), g.seq, g.seed);
  }
  return gather(offsets.data(), g.micro_batch, g.seq);
}

int64_t ByteCorpus::num_eval_windows(int64_t seq) const {
  require(seq >= 1, "seq", std::to_string(seq), "must be a positive integer");
  const int64_t eval_bytes = size() - train_size_;
  return eval_bytes > seq ? (eval_bytes - 1) / seq : 0;
}

Batch ByteCorpus::eval_batch(int64_t index, int64_t batch_size, int64_t seq) const {
  require(index >= 0, "eval batch index", std::to_string(index), "must be 0 or more");
  require(batch_size >= 1, "eval batch_size", std::to_string(batch_size), "must be a positive integer");
  const int64_t windows = num_eval_windows(seq);
  require(windows >= 1, "seq", std::to_string(seq),
          fmt::format("must be less than the {} held-out bytes of corpus '{}' (raise eval_fraction or lower seq)",
                      size() - train_size_, source_));
  std::vector<int64_t> offsets(static_cast<size_t>(batch_size));
  for (int64_t j = 0; j < batch_size; ++j) offsets[j] = train_size_ + ((index * batch_size + j) % windows) * seq;
  return gather(offsets.data(), batch_size, seq);
}

Batch ByteCorpus::gather(const int64_t* offsets, int64_t rows, int64_t seq) const {
  Batch batch;
  batch.tokens = at::empty({rows, seq}, at::kLong);   // (rows, seq) int64
  batch.targets = at::empty({rows, seq}, at::kLong);  // (rows, seq) int64
  int64_t* tokens = batch.tokens.data_ptr<int64_t>();
  int64_t* targets = batch.targets.data_ptr<int64_t>();
  const auto* text = reinterpret_cast<const unsigned char*>(bytes_.data());
  for (int64_t r = 0; r < rows; ++r) {
    const unsigned char* window = text + offsets[r];  // seq + 1 bytes
    for (int64_t s = 0; s < seq; ++s) {
      tokens[r * seq + s] = window[s];
      targets[r * seq + s] = window[s + 1];
    }
  }
  return batch;
}

}  // namespace zerotrain
