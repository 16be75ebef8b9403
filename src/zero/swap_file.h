// [Note: NVMe offload]
// With `offload_optimizer.device: "nvme"` the optimizer's fp32 master shard and its state (Adam's moments, ...) live
// in files on the NVMe drive (`nvme_path`), mapped into the host's address space: the host step reads and writes
// them piece by piece (ZeroOptimizer::step_offloaded), asking the kernel to read the next piece ahead
// (prefetch: madvise WILLNEED) and, once a piece is updated, to write it back and drop it from memory (evict:
// msync, madvise DONTNEED, posix_fadvise DONTNEED). Host memory then holds the pieces in work, not the shard.
// Everything else (checkpoints, the optimizer kernels, resharding on load) sees an ordinary (numel,) CPU tensor.
// Each file gets its space reserved when it is made (posix_fallocate: a full drive is an error naming the key at
// startup, not a SIGBUS in the middle of a step) and is unlinked at once, so nothing is left behind in nvme_path, even
// when the process is killed. This is the kernel's page I/O, not DeepSpeed's libaio engine: the `aio` section is
// accepted and has no effect.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>

namespace zerotrain::detail {

class SwapFile {
 public:
  // A new file of `numel` elements of `dtype` in directory `dir`, mapped. `key` is the config key that named dir (for
  // errors); `name` goes into the file's name. Its contents start as zeros.
  SwapFile(const std::string& dir, const std::string& key, const std::string& name, int64_t numel,
           at::ScalarType dtype);
  ~SwapFile();
  SwapFile(const SwapFile&) = delete;
  SwapFile& operator=(const SwapFile&) = delete;

  // The mapping as a (numel,) CPU tensor; it keeps the mapping alive.
  const at::Tensor& tensor() const { return tensor_; }
  // Elements [begin, end): read ahead without waiting / write back (waiting for the drive) and drop from memory.
  void prefetch(int64_t begin, int64_t end) const;
  // Starts writing elements [begin, end) back to the drive without waiting (evict then waits less).
  void write_back(int64_t begin, int64_t end) const;
  void evict(int64_t begin, int64_t end) const;
  void evict_all() const { evict(0, numel_); }
  // Of elements [begin, end), how many bytes' pages are in memory now (mincore).
  int64_t resident_bytes(int64_t begin, int64_t end) const;

 private:
  struct Mapping;
  // The byte range of elements [begin, end), widened to whole pages and clipped to the file.
  std::pair<int64_t, int64_t> pages(int64_t begin, int64_t end) const;

  std::shared_ptr<Mapping> mapping_;
  at::Tensor tensor_;
  int64_t numel_ = 0;
  int64_t element_size_ = 0;
};

}  // namespace zerotrain::detail
