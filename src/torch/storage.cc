#include "torch/storage.h"

#include <c10/core/DeviceGuard.h>

namespace zerotrain::detail {

void resize_storage(const at::Tensor& t, size_t nbytes) {
  c10::StorageImpl* s = t.storage().unsafeGetStorageImpl();
  const c10::Device device = t.device();
  if (nbytes == 0) {
    s->set_data_ptr_noswap(at::DataPtr(nullptr, device));
  } else {
    c10::DeviceGuard guard(device);
    s->set_data_ptr_noswap(s->allocator()->allocate(nbytes));
  }
  s->set_nbytes(nbytes);
}

bool holds_no_data(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 && t.has_storage() && t.storage().nbytes() == 0;
}

}  // namespace zerotrain::detail
