// micro_bench comm: zerotrain's collectives against raw NCCL calls at zerotrain's sizes (see micro_bench.cc).
#include "micro_bench.h"

namespace zt_micro {

// ---- comm ---------------------------------------------------------------------------------------------------------

#ifdef ZEROTRAIN_BENCH_NCCL
// NCCL's entry points from the libnccl torch already loaded (no link-time dependency on where it lives).
template <typename F>
F nccl_fn(const char* name) {
  void* f = dlsym(RTLD_DEFAULT, name);
  TORCH_CHECK(f, "micro_bench: ", name, " not found in the loaded libraries (", dlerror(), ")");
  return reinterpret_cast<F>(f);
}
#endif

int bench_comm() {
  auto comm = zerotrain::make_comm();
  const int rank = comm->rank(), world = comm->world_size();
  const auto bf16 = at::TensorOptions(at::kBFloat16).device(at::kCUDA, c10::cuda::current_device());
#ifdef ZEROTRAIN_BENCH_NCCL
  auto get_id = nccl_fn<ncclResult_t (*)(ncclUniqueId*)>("ncclGetUniqueId");
  auto init_rank = nccl_fn<ncclResult_t (*)(ncclComm_t*, int, ncclUniqueId, int)>("ncclCommInitRank");
  auto reduce_scatter = nccl_fn<ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                                                 cudaStream_t)>("ncclReduceScatter");
  auto all_gather =
      nccl_fn<ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t)>("ncclAllGather");
  auto destroy = nccl_fn<ncclResult_t (*)(ncclComm_t)>("ncclCommDestroy");
  ncclUniqueId id{};
  if (rank == 0) TORCH_CHECK(get_id(&id) == ncclSuccess, "ncclGetUniqueId failed");
  at::Tensor id_t = at::from_blob(&id, {static_cast<int64_t>(sizeof(id))}, at::kByte).to(bf16.dtype(at::kByte));
  comm->broadcast(id_t, 0);
  std::memcpy(&id, id_t.cpu().data_ptr(), sizeof(id));
  ncclComm_t raw = nullptr;
  TORCH_CHECK(init_rank(&raw, world, id, rank) == ncclSuccess, "ncclCommInitRank failed");
#endif
  for (int64_t mb : {8, 32, 128, 512, 1024}) {
    const int64_t n = mb * (int64_t{1} << 20) / 2 / world * world;  // bf16 elements, a multiple of world
    at::Tensor full = at::randn({n}, bf16), part = at::empty({n / world}, bf16), gathered = at::empty({n}, bf16);
    const double bytes = 2.0 * n * (world - 1) / world;  // bus bytes per rank (nccl-tests' busbw)
    const int reps = mb >= 512 ? 5 : 20;
    const double zt_rs = time_cuda([&] { comm->reduce_scatter_async(part, full, zerotrain::ReduceOp::kSum)->wait(); }, reps);
    const double zt_ag = time_cuda([&] { comm->all_gather_async(gathered, part)->wait(); }, reps);
    double raw_rs = 0, raw_ag = 0;
#ifdef ZEROTRAIN_BENCH_NCCL
    const cudaStream_t s = c10::cuda::getCurrentCUDAStream();
    raw_rs = time_cuda([&] {
      TORCH_CHECK(reduce_scatter(full.data_ptr(), part.data_ptr(), n / world, ncclBfloat16, ncclSum, raw, s) ==
                  ncclSuccess);
    }, reps);
    raw_ag = time_cuda([&] {
      TORCH_CHECK(all_gather(part.data_ptr(), gathered.data_ptr(), n / world, ncclBfloat16, raw, s) == ncclSuccess);
    }, reps);
#endif
    if (rank == 0) {
      auto gbs = [&](double t) { return t > 0 ? bytes / t / 1e9 : 0.0; };
      fmt::print("RESULT {{\"bench\": \"comm\", \"world\": {}, \"MB\": {}, \"reducescatter_busbw\": {:.0f}, "
                 "\"raw_reducescatter_busbw\": {:.0f}, \"allgather_busbw\": {:.0f}, \"raw_allgather_busbw\": {:.0f}, "
                 "\"rs_of_raw\": {:.3f}, \"ag_of_raw\": {:.3f}}}\n",
                 world, mb, gbs(zt_rs), gbs(raw_rs), gbs(zt_ag), gbs(raw_ag), raw_rs > 0 ? raw_rs / zt_rs : 0.0,
                 raw_ag > 0 ? raw_ag / zt_ag : 0.0);
    }
  }
  // Host cost per collective (this thread's CPU time per call, the GPU never the limit: 1 MB each): zerotrain's
  // calls through c10d (launch and wait), coalesced over 5 tensors, and raw NCCL on the current stream and as a raw
  // communicator would run it (on its own stream, ordered by an event each way). What a collective costs the host
  // decides stage 3's engine time on many small units (docs/performance.md, session 10).
  {
    const int64_t n = (int64_t{1} << 19) / world * world;  // 1 MB of bf16
    constexpr int kParts = 5, kCalls = 200;
    std::vector<at::Tensor> ins, outs;
    for (int i = 0; i < kParts; ++i) {
      ins.push_back(at::randn({n / world}, bf16));
      outs.push_back(at::empty({n}, bf16));
    }
    auto per_call_us = [&](const std::function<void()>& fn) {
      for (int i = 0; i < 5; ++i) fn();
      c10::cuda::device_synchronize();
      comm->barrier();
      timespec a{}, b{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
      for (int i = 0; i < kCalls; ++i) fn();
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
      c10::cuda::device_synchronize();
      return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / kCalls;
    };
    const double zt_one = per_call_us([&] { comm->all_gather_async(outs[0], ins[0])->wait(); });
    const double zt_five = per_call_us([&] { comm->all_gather_coalesced_async(outs, ins)->wait(); });
    const double zt_rs = per_call_us([&] { comm->reduce_scatter_async(ins[0], outs[0], zerotrain::ReduceOp::kSum)->wait(); });
    double raw_one = 0, raw_side = 0, raw_side_five = 0;
#ifdef ZEROTRAIN_BENCH_NCCL
    auto group_start = nccl_fn<ncclResult_t (*)()>("ncclGroupStart");
    auto group_end = nccl_fn<ncclResult_t (*)()>("ncclGroupEnd");
    const cudaStream_t cur = c10::cuda::getCurrentCUDAStream();
    const cudaStream_t side = c10::cuda::getStreamFromPool(/*isHighPriority=*/true);
    cudaEvent_t before = nullptr, after = nullptr;
    cudaEventCreateWithFlags(&before, cudaEventDisableTiming);
    cudaEventCreateWithFlags(&after, cudaEventDisableTiming);
    raw_one = per_call_us([&] {
      TORCH_CHECK(all_gather(ins[0].data_ptr(), outs[0].data_ptr(), n / world, ncclBfloat16, raw, cur) == ncclSuccess);
    });
    auto on_side = [&](int parts) {
      cudaEventRecord(before, cur);
      cudaStreamWaitEvent(side, before, 0);
      if (parts > 1) group_start();
      for (int i = 0; i < parts; ++i) {
        TORCH_CHECK(all_gather(ins[i].data_ptr(), outs[i].data_ptr(), n / world, ncclBfloat16, raw, side) ==
                    ncclSuccess);
      }
      if (parts > 1) group_end();
      cudaEventRecord(after, side);
      cudaStreamWaitEvent(cur, after, 0);
    };
    raw_side = per_call_us([&] { on_side(1); });
    raw_side_five = per_call_us([&] { on_side(kParts); });
    cudaEventDestroy(before);
    cudaEventDestroy(after);
#endif
    if (rank == 0) {
      fmt::print("RESULT {{\"bench\": \"comm_host\", \"world\": {}, \"MB\": 1, \"zt_allgather_us\": {:.1f}, "
                 "\"zt_allgather_coalesced5_us\": {:.1f}, \"zt_reducescatter_us\": {:.1f}, \"raw_allgather_us\": {:.1f}, "
                 "\"raw_allgather_side_stream_us\": {:.1f}, \"raw_allgather_group5_side_stream_us\": {:.1f}}}\n",
                 world, zt_one, zt_five, zt_rs, raw_one, raw_side, raw_side_five);
    }
  }
#ifdef ZEROTRAIN_BENCH_NCCL
  c10::cuda::device_synchronize();
  destroy(raw);
#else
  if (rank == 0) fmt::print("micro_bench: built without nccl.h: no raw NCCL baseline\n");
#endif
  comm->barrier();
  return 0;
}


}  // namespace zt_micro
