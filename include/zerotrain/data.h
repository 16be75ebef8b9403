// Byte-level training data: the corpus bundled in data/corpus/ (vocabulary 256, one token per byte) and a
// deterministic batcher whose samples depend only on (seed, global sample index), never on the world size.
//
// [Note: sample layout]
// The samples of one global (optimizer) step are laid out [micro_step][rank][j]: sample j of rank r at micro-step
// m of global step t has the global index
//
//     i = t * (grad_accum * world_size * micro_batch) + (m * world_size + r) * micro_batch + j
//
// so the world_size ranks together see, at each micro-step, exactly the samples that one process with
// micro_batch' = micro_batch * world_size sees (rank r's rows are its rows r * micro_batch ... + micro_batch - 1),
// and also exactly those of one process with grad_accum' = grad_accum * world_size (its micro-step m * world_size +
// r). A single-process reference run therefore trains on the same data in the same order as any world size.
//
// Sample i is the window of seq + 1 bytes starting at sample_offset(i): epoch e = i / W and position p = i % W
// over the W train windows; window permutation(seed, e)(p), a bijection of [0, W) (a keyed Feistel network), at
// stride seq from a shift in [0, seq) that also depends on (seed, e), so every epoch visits every window once and
// successive epochs cut the text at different places. The last eval_fraction of the bytes is held out: no train
// window reaches it.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace zerotrain {

// How a global batch is split (DeepSpeed's train_batch_size = micro_batch * grad_accum * world_size).
struct BatchGeometry {
  int64_t seq = 128;         // tokens per sample
  int64_t micro_batch = 1;   // samples per rank per micro-step (train_micro_batch_size_per_gpu)
  int64_t grad_accum = 1;    // micro-steps per global step (gradient_accumulation_steps)
  int64_t world_size = 1;    // data-parallel ranks
  uint64_t seed = 0;         // selects the window order; the same seed gives the same data everywhere
};

// One micro-batch for one rank.
struct Batch {
  at::Tensor tokens;   // (micro_batch, seq) int64, CPU: bytes 0..255
  at::Tensor targets;  // (micro_batch, seq) int64, CPU: the next byte of each token (tokens shifted left by one)
};

// The global index of sample j of `rank` at `micro_step` of `global_step` ([Note: sample layout]); throws
// std::invalid_argument naming any argument out of range.
int64_t global_sample_index(int64_t global_step, int micro_step, int rank, int64_t j, const BatchGeometry& g);

// A byte-level corpus held in memory, split into a train part and a held-out eval tail.
class ByteCorpus {
 public:
  // Reads `path`: a file, or a directory whose *.txt files are concatenated in file-name order. The last
  // eval_fraction (0 <= f < 1) of the bytes is held out. Throws std::invalid_argument / std::runtime_error naming
  // the path when it is missing, unreadable or empty.
  explicit ByteCorpus(const std::filesystem::path& path, double eval_fraction = 0.1);

  // A corpus over `bytes` held in memory (tests, generated data); `source` names it in messages.
  static ByteCorpus from_bytes(std::string bytes, double eval_fraction = 0.1, std::string source = "<memory>");

  // Rank `rank`'s micro-batch at `micro_step` of `global_step` ([Note: sample layout]); throws
  // std::invalid_argument on an argument out of range or a seq the train part cannot hold twice.
  Batch sample_batch(int64_t global_step, int micro_step, int rank, const BatchGeometry& g) const;

  // Byte offset of train sample `sample_index`'s window (seq + 1 bytes: tokens then the last target).
  int64_t sample_offset(int64_t sample_index, int64_t seq, uint64_t seed) const;

  // Train windows per epoch at this seq: (train_size - 2 seq) / seq + 1; throws when train_size < 2 seq.
  int64_t num_train_windows(int64_t seq) const;

  // Eval batch `index`: windows index * batch_size + j (mod num_eval_windows), stride seq over the eval tail.
  Batch eval_batch(int64_t index, int64_t batch_size, int64_t seq) const;

  // Non-overlapping eval windows at this seq: (size - train_size - 1) / seq (0 when nothing is held out).
  int64_t num_eval_windows(int64_t seq) const;

  int64_t size() const { return static_cast<int64_t>(bytes_.size()); }  // bytes in all
  int64_t train_size() const { return train_size_; }                    // bytes [0, train_size) train
  std::string_view bytes() const { return bytes_; }                     // the whole text
  const std::string& source() const { return source_; }                 // where it was read from

 private:
  ByteCorpus(std::string bytes, double eval_fraction, std::string source);
  // Copies rows of seq + 1 bytes at `offsets` into a Batch.
  Batch gather(const int64_t* offsets, int64_t rows, int64_t seq) const;

  std::string bytes_;      // (size,) the corpus, one token per byte
  int64_t train_size_ = 0;  // the eval tail starts here
  std::string source_;     // path or label, for messages
};

// The bundled corpus directory: $ZEROTRAIN_DATA_DIR/corpus when that variable is set; else data/corpus found next
// to the zerotrain library or the executable (an install's share/zerotrain/data, or a build tree inside the source
// tree); else the source tree's data/corpus recorded at build time. Throws std::runtime_error listing the places
// searched when none exists.
std::filesystem::path default_corpus_path();

}  // namespace zerotrain
