#include "zero/swap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace zerotrain::detail {

struct SwapFile::Mapping {
  int fd = -1;
  void* base = nullptr;
  int64_t bytes = 0;
  ~Mapping() {
    if (base != nullptr && base != MAP_FAILED) munmap(base, static_cast<size_t>(bytes));
    if (fd >= 0) close(fd);
  }
};

namespace {

std::runtime_error swap_error(const std::string& key, const std::string& dir, const std::string& what, int err) {
  return std::runtime_error(key + " \"" + dir + "\": " + what + ": " + std::strerror(err) +
                            " (it must be a writable directory on a drive with room for the optimizer's state)");
}

int64_t page_size() {
  static const int64_t size = sysconf(_SC_PAGESIZE);
  return size;
}

}  // namespace

SwapFile::SwapFile(const std::string& dir, const std::string& key, const std::string& name, int64_t numel,
                   at::ScalarType dtype)
    : mapping_(std::make_shared<Mapping>()), numel_(numel), element_size_(c10::elementSize(dtype)) {
  TORCH_CHECK(numel >= 0, "SwapFile: numel ", numel);
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0) throw swap_error(key, dir, "cannot use it", errno);
  if (!S_ISDIR(st.st_mode)) throw swap_error(key, dir, "not a directory", ENOTDIR);
  static std::atomic<int64_t> counter{0};
  const std::string path = dir + "/zerotrain-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
                           name + ".swap";
  mapping_->fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (mapping_->fd < 0) throw swap_error(key, dir, "cannot create " + path, errno);
  unlink(path.c_str());  // the open descriptor keeps the file: nothing stays behind, whatever happens to the process
  mapping_->bytes = std::max<int64_t>(numel * element_size_, 1);
  // Reserve the space now: writing through a mapping into a full drive is a SIGBUS, not an error.
  if (const int err = posix_fallocate(mapping_->fd, 0, mapping_->bytes); err != 0) {
    throw swap_error(key, dir, "cannot reserve " + std::to_string(mapping_->bytes) + " bytes for " + name, err);
  }
  mapping_->base = mmap(nullptr, static_cast<size_t>(mapping_->bytes), PROT_READ | PROT_WRITE, MAP_SHARED,
                        mapping_->fd, 0);
  if (mapping_->base == MAP_FAILED) throw swap_error(key, dir, "cannot map " + path, errno);
  std::shared_ptr<Mapping> keep = mapping_;
  tensor_ = at::from_blob(
      mapping_->base, {numel}, [keep](void*) mutable { keep.reset(); }, at::TensorOptions(dtype).device(at::kCPU));
}

SwapFile::~SwapFile() = default;

std::pair<int64_t, int64_t> SwapFile::pages(int64_t begin, int64_t end) const {
  const int64_t page = page_size();
  const int64_t mapped = (mapping_->bytes + page - 1) / page * page;
  const int64_t lo = std::clamp<int64_t>(begin, 0, numel_) * element_size_ / page * page;
  const int64_t hi = std::min(mapped, (std::clamp<int64_t>(end, 0, numel_) * element_size_ + page - 1) / page * page);
  return {lo, hi};
}

void SwapFile::prefetch(int64_t begin, int64_t end) const {
  const auto [lo, hi] = pages(begin, end);
  if (hi <= lo) return;
  madvise(static_cast<char*>(mapping_->base) + lo, static_cast<size_t>(hi - lo), MADV_WILLNEED);  // a hint
}

void SwapFile::write_back(int64_t begin, int64_t end) const {
  const auto [lo, hi] = pages(begin, end);
  if (hi <= lo) return;
  sync_file_range(mapping_->fd, lo, hi - lo, SYNC_FILE_RANGE_WRITE);  // a start: evict waits and reports errors
}

void SwapFile::evict(int64_t begin, int64_t end) const {
  const auto [lo, hi] = pages(begin, end);
  if (hi <= lo) return;
  char* at = static_cast<char*>(mapping_->base) + lo;
  // Written back first (only clean pages leave the page cache), then dropped from this mapping and from the cache.
  TORCH_CHECK(msync(at, static_cast<size_t>(hi - lo), MS_SYNC) == 0, "NVMe offload: writing the optimizer's state ",
              "back to its swap file failed: ", std::strerror(errno));
  madvise(at, static_cast<size_t>(hi - lo), MADV_DONTNEED);
  posix_fadvise(mapping_->fd, lo, hi - lo, POSIX_FADV_DONTNEED);
}

int64_t SwapFile::resident_bytes(int64_t begin, int64_t end) const {
  const auto [lo, hi] = pages(begin, end);
  if (hi <= lo) return 0;
  const int64_t page = page_size();
  std::vector<unsigned char> in((hi - lo) / page);
  TORCH_CHECK(mincore(static_cast<char*>(mapping_->base) + lo, static_cast<size_t>(hi - lo), in.data()) == 0,
              "mincore: ", std::strerror(errno));
  int64_t bytes = 0;
  for (unsigned char c : in) bytes += (c & 1) ? page : 0;
  return bytes;
}

}  // namespace zerotrain::detail
