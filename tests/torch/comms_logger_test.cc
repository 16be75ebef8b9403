// DeepSpeed's communication logger (include/zerotrain/comms_logging.h): records by operation and size, timing,
// nccl-tests bandwidths, prof_all / prof_ops, debug caller names, the printed table, and an engine's collectives.
#include "comm/comms_logger.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <chrono>
#include <regex>
#include <thread>

#include "zerotrain/comms_logging.h"
#include "zerotrain/engine.h"

namespace zerotrain {
namespace {

// A stand-in network of `world` ranks whose every collective takes `ms` milliseconds (the data is left alone).
class SlowComm final : public Comm {
 public:
  SlowComm(int world, int ms) : world_(world), ms_(ms) {}
  int rank() const override { return 0; }
  int world_size() const override { return world_; }
  std::string backend() const override { return "slow"; }
  void all_reduce(at::Tensor&, ReduceOp) override { sleep(); }
  std::unique_ptr<CommWork> reduce_scatter_async(at::Tensor&, const at::Tensor&, ReduceOp) override { return later(); }
  std::unique_ptr<CommWork> all_gather_async(at::Tensor&, const at::Tensor&) override { return later(); }
  std::unique_ptr<CommWork> all_reduce_async(at::Tensor&, ReduceOp) override { return later(); }
  void broadcast(at::Tensor&, int) override { sleep(); }
  void barrier() override {}
  int waits = 0;

 private:
  struct Work final : CommWork {
    explicit Work(SlowComm* c) : comm(c) {}
    void wait() override {
      if (!done) comm->sleep(), ++comm->waits;
      done = true;
    }
    SlowComm* comm;
    bool done = false;
  };
  void sleep() const { std::this_thread::sleep_for(std::chrono::milliseconds(ms_)); }
  std::unique_ptr<CommWork> later() { return std::make_unique<Work>(this); }
  int world_, ms_;
};

CommsLoggerConfig enabled() {
  CommsLoggerConfig c;
  c.enabled = true;
  return c;
}

class CommsLogger : public ::testing::Test {
 protected:
  void SetUp() override { comms_log_reset(); }
  void TearDown() override {
    configure_comms_logger(CommsLoggerConfig{});
    comms_log_reset();
  }
};

TEST_F(CommsLogger, SizeStringsAreDeepSpeeds) {
  EXPECT_EQ(comms_size_string(0), "0B");
  EXPECT_EQ(comms_size_string(512), "512.0 B");
  EXPECT_EQ(comms_size_string(1024), "1.0 KB");
  EXPECT_EQ(comms_size_string(1536), "1.5 KB");
  EXPECT_EQ(comms_size_string(int64_t{1} << 20), "1.0 MB");
  EXPECT_EQ(comms_size_string(711838720), "678.86 MB");
  EXPECT_EQ(comms_size_string(int64_t{3} << 30), "3.0 GB");
}

TEST_F(CommsLogger, RecordsTimesAndBandwidthsByOperationAndSize) {
  configure_comms_logger(enabled());
  auto slow = std::make_shared<SlowComm>(4, 20);
  auto comm = detail::make_logged_comm(slow);
  at::Tensor out = at::zeros({4 * 1024}, at::kFloat), in = at::zeros({1024}, at::kFloat);
  comm->all_gather_async(out, in);  // logged collectives complete before they return: no wait() needed
  comm->all_gather_async(out, in)->wait();
  EXPECT_EQ(slow->waits, 2);
  comm->reduce_scatter_async(in, out, ReduceOp::kSum);
  at::Tensor small = at::zeros({256}, at::kFloat);
  comm->all_reduce(small, ReduceOp::kSum);
  comm->all_reduce(out, ReduceOp::kSum);
  comm->barrier();
  testing::internal::CaptureStdout();
  const auto rows = comms_log_summary();
  const std::string table = testing::internal::GetCapturedStdout();
  ASSERT_EQ(rows.size(), 5u);
  // Operations in the order first seen, sizes ascending within one.
  EXPECT_EQ(rows[0].op, "all_gather_into_tensor");
  EXPECT_EQ(rows[0].msg_bytes, 16384);  // the gathered buffer: 4 ranks x 4 KB
  EXPECT_EQ(rows[0].count, 2);
  EXPECT_EQ(rows[1].op, "reduce_scatter_tensor");
  EXPECT_EQ(rows[1].msg_bytes, 16384);  // the buffer reduced
  EXPECT_EQ(rows[2].op, "all_reduce");
  EXPECT_EQ(rows[2].msg_bytes, 1024);
  EXPECT_EQ(rows[3].op, "all_reduce");
  EXPECT_EQ(rows[3].msg_bytes, 16384);
  EXPECT_EQ(rows[4].op, "barrier");
  EXPECT_EQ(rows[4].msg_bytes, 0);
  for (int i = 0; i < 4; ++i) {
    const auto& r = rows[i];
    EXPECT_GE(r.avg_latency_ms, 20.0) << r.op;
    EXPECT_LT(r.avg_latency_ms, 2000.0) << r.op;
    EXPECT_NEAR(r.total_latency_ms, r.avg_latency_ms * static_cast<double>(r.count), 0.5 * r.total_latency_ms);
  }
  // nccl-tests: algbw = size / time; busbw x (n-1)/n for gathers and scatters, x 2(n-1)/n for all-reduce (n = 4).
  const auto& ar = rows[3];
  EXPECT_NEAR(ar.algbw_gbps, 16384 * 8 / (ar.avg_latency_ms * 1e6), 1e-9);
  EXPECT_NEAR(ar.busbw_gbps, ar.algbw_gbps * 1.5, 1e-9);
  EXPECT_NEAR(rows[1].busbw_gbps, rows[1].algbw_gbps * 0.75, 1e-9);
  EXPECT_NEAR(rows[0].busbw_gbps, rows[0].algbw_gbps * 0.75, 1e-9);
  EXPECT_EQ(rows[4].busbw_gbps, 0.0);
  EXPECT_NE(table.find("Comm. Op            Message Size        Count               Total Latency(ms)   "
                       "Avg Latency(ms)     tput_avg (Gbps)     busbw_avg (Gbps)    \n"),
            std::string::npos) << table;
  EXPECT_TRUE(std::regex_search(table, std::regex(R"(\nall_gather_into_tensor\n {20}16\.0 KB {13}2 {19}[0-9]+\.[0-9]{2} +)")))
      << table;
  EXPECT_TRUE(std::regex_search(table, std::regex(R"(\nall_reduce\n {20}1\.0 KB .*\n {20}16\.0 KB )"))) << table;
  comms_log_reset();
  EXPECT_TRUE(comms_log_summary(false, false).empty());
}

TEST_F(CommsLogger, ProfOpsSelectsOperationsAndDebugNamesTheCaller) {
  CommsLoggerConfig c = enabled();
  c.prof_all = false;
  c.prof_ops = {"broadcast"};
  c.debug = true;
  configure_comms_logger(c);
  auto slow = std::make_shared<SlowComm>(2, 1);
  auto comm = detail::make_logged_comm(slow);
  at::Tensor t = at::zeros({8}, at::kFloat);
  {
    detail::CommCaller caller("Test::broadcast_twice");
    comm->broadcast(t, 0);
    comm->broadcast(t, 0);
  }
  comm->all_reduce(t, ReduceOp::kSum);  // not in prof_ops
  comm->broadcast(t, 0);                // outside the caller scope
  const auto rows = comms_log_summary(false, false);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].op, "broadcast | [Caller Func: Test::broadcast_twice]");
  EXPECT_EQ(rows[0].count, 2);
  EXPECT_EQ(rows[0].msg_bytes, 32);
  EXPECT_EQ(rows[1].op, "broadcast | [Caller Func: zerotrain]");
}

TEST_F(CommsLogger, VerbosePrintsEachOperation) {
  CommsLoggerConfig c = enabled();
  c.verbose = true;
  configure_comms_logger(c);
  auto comm = detail::make_logged_comm(std::make_shared<SlowComm>(2, 1));
  at::Tensor t = at::zeros({1024}, at::kFloat);
  testing::internal::CaptureStdout();
  comm->all_reduce(t, ReduceOp::kSum);
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_TRUE(std::regex_match(out, std::regex(R"(\[Rank 0\] comm op: all_reduce \| time \(ms\): [0-9.]+ \| msg size: )"
                                               R"(4\.0 KB \| algbw \(Gbps\): [0-9.]+ \| busbw \(Gbps\): [0-9.]+\n)")))
      << out;
}

TEST_F(CommsLogger, OffLogsNothing) {
  configure_comms_logger(CommsLoggerConfig{});
  auto comm = detail::make_logged_comm(std::make_shared<SlowComm>(2, 1));
  at::Tensor t = at::zeros({8}, at::kFloat);
  comm->all_reduce(t, ReduceOp::kSum);
  EXPECT_TRUE(comms_log_summary(false, false).empty());
}

struct RegImpl : torch::nn::Module {
  RegImpl() { fc = register_module("fc", torch::nn::Linear(16, 4)); }
  at::Tensor forward(const at::Tensor& x) { return fc->forward(x).pow(2).mean(); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Reg);

// The engine routes its collectives through the logger when the config says so, naming its functions with debug.
TEST_F(CommsLogger, EngineLogsItsCollectives) {
  Reg model;
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  auto engine = initialize(model.ptr(), R"({"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 1.0,
      "optimizer": {"type": "SGD", "params": {"lr": 0.01}}, "zero_optimization": {"stage": 1},
      "comms_logger": {"enabled": true, "debug": true}})", o);
  for (int step = 0; step < 3; ++step) {
    engine.backward(engine.forward(at::ones({2, 16})));
    engine.step();
  }
  std::map<std::string, int64_t> counts;
  for (const auto& r : comms_log_summary(false, false)) counts[r.op] += r.count;
  EXPECT_EQ(counts["broadcast | [Caller Func: Engine::Engine]"], 1) << "rank 0's parameters at start";
  EXPECT_EQ(counts["reduce_scatter_tensor | [Caller Func: GradReducer::launch]"], 3) << "a gradient bucket a step";
  // (one rank: the updated parameters need no all-gather; tests/cli and tests/python check it on two ranks)
}

}  // namespace
}  // namespace zerotrain
