// DeepSpeed's engine timers (`wall_clock_breakdown`, src/engine/wall_clock.h): the lines rank 0 prints, the values
// Engine::wall_clock_timers() returns, and the csv monitor's elapsed-time events.
#include "engine/wall_clock.h"

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "zerotrain/engine.h"

namespace zerotrain {
namespace {

// A regression whose forward takes at least `sleep_ms` of wall time.
struct SlowImpl : torch::nn::Module {
  explicit SlowImpl(int sleep_ms) : sleep_ms(sleep_ms) { fc = register_module("fc", torch::nn::Linear(4, 1)); }
  at::Tensor forward(const at::Tensor& x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
    return fc->forward(x).pow(2).mean();
  }
  int sleep_ms;
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Slow);

Engine make_engine(Slow& model, const std::string& extra) {
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  return initialize(model.ptr(), R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2,
      "gradient_clipping": 0, "optimizer": {"type": "SGD", "params": {"lr": 0.01}})" + extra + "}", o);
}

TEST(WallClock, TimesHostPhasesAndResetsOnLog) {
  detail::WallClock clock(c10::Device(c10::kCPU), /*micro=*/true);
  clock.start(detail::WallClock::kForward);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  clock.stop(detail::WallClock::kForward);
  clock.start(detail::WallClock::kForward);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  clock.stop(detail::WallClock::kForward);
  auto ms = clock.elapsed_ms();
  ASSERT_EQ(ms.size(), 2u);  // fwd_microstep and fwd: only timers that ran
  EXPECT_GE(ms.at("fwd_microstep"), 30.0);
  EXPECT_LT(ms.at("fwd_microstep"), 1000.0);
  EXPECT_NEAR(ms.at("fwd_microstep"), ms.at("fwd"), 1.0);  // two timers, read one after the other
  const std::string micro = clock.log(/*global=*/false);
  EXPECT_TRUE(std::regex_match(micro, std::regex(R"(time \(ms\) \| fwd_microstep: \d+\.\d\d)"))) << micro;
  EXPECT_EQ(clock.elapsed_ms().count("fwd_microstep"), 0u);  // reset by the log
  EXPECT_GE(clock.elapsed_ms().at("fwd"), 30.0);             // the global timer keeps counting until its own log
  EXPECT_NE(clock.log(/*global=*/true).find("| fwd: "), std::string::npos);
  EXPECT_TRUE(clock.elapsed_ms().empty());
  EXPECT_EQ(clock.log(false), "");
}

// On a GPU the timers are events on the current stream: they time the device's work, not the launches.
TEST(WallClock, CudaEventsTimeTheDeviceWork) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const c10::Device dev(c10::kCUDA, 0);
  const auto sync = [&] { c10::impl::getDeviceGuardImpl(c10::kCUDA)->synchronizeDevice(0); };
  const at::Tensor a = at::randn({4096, 4096}, at::TensorOptions().device(dev));
  at::Tensor b;
  sync();
  detail::WallClock clock(dev, /*micro=*/true);
  const auto t0 = std::chrono::steady_clock::now();
  clock.start(detail::WallClock::kForward);
  for (int i = 0; i < 20; ++i) b = at::mm(a, a);
  clock.stop(detail::WallClock::kForward);
  sync();
  const double total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double event_ms = clock.elapsed_ms().at("fwd_microstep");
  EXPECT_GE(event_ms, 0.5 * total_ms) << "the device work is most of the wall time here";
  EXPECT_LE(event_ms, total_ms + 0.5);
}

TEST(WallClock, EnginePrintsMicroLinesEveryStepAndGlobalLinesAtTheBoundary) {
  Slow model(15);
  auto engine = make_engine(model, R"(, "wall_clock_breakdown": true)");
  testing::internal::CaptureStdout();
  std::vector<std::map<std::string, double>> seen;
  for (int micro = 0; micro < 4; ++micro) {
    engine.backward(engine.forward(at::ones({2, 4})));
    engine.step();
    seen.push_back(engine.wall_clock_timers());
  }
  const std::string out = testing::internal::GetCapturedStdout();
  const std::regex micro_line(R"(\[Rank 0\] time \(ms\) \| fwd_microstep: [0-9.]+ \| bwd_microstep: [0-9.]+ \| )"
                              R"(bwd_inner_microstep: [0-9.]+ \| bwd_allreduce_microstep: [0-9.]+ \| )"
                              R"(step_microstep: [0-9.]+\n)");
  const std::regex global_line(R"(\[Rank 0\] time \(ms\) \| fwd: [0-9.]+ \| bwd: [0-9.]+ \| bwd_inner: [0-9.]+ \| )"
                               R"(bwd_allreduce: [0-9.]+ \| step: [0-9.]+\n)");
  auto count = [&](const std::regex& re) {
    return std::distance(std::sregex_iterator(out.begin(), out.end(), re), std::sregex_iterator());
  };
  EXPECT_EQ(count(micro_line), 4) << out;   // every micro-step
  EXPECT_EQ(count(global_line), 2) << out;  // every optimizer step (gradient_accumulation_steps 2)
  for (const auto& t : seen) {
    EXPECT_GE(t.at("fwd_microstep"), 15.0);
    EXPECT_LT(t.at("fwd_microstep"), 1000.0);
    EXPECT_GE(t.at("bwd_microstep"), t.at("bwd_inner_microstep"));
    EXPECT_GE(t.at("bwd_microstep"), t.at("bwd_allreduce_microstep"));
  }
  // The global timers sum the micro-steps of an optimizer step: the second micro-step's fwd holds two forwards.
  EXPECT_GE(seen[1].at("fwd"), 30.0);
  EXPECT_NEAR(seen[1].at("fwd"), seen[0].at("fwd_microstep") + seen[1].at("fwd_microstep"), 2.0);
  EXPECT_NEAR(seen[3].at("fwd"), seen[2].at("fwd_microstep") + seen[3].at("fwd_microstep"), 2.0);
}

// memory_breakdown: DeepSpeed's see_memory_usage lines at each phase of a micro-step, on rank 0.
TEST(WallClock, MemoryBreakdownPrintsEachPhase) {
  Slow model(0);
  auto engine = make_engine(model, R"(, "memory_breakdown": true)");
  testing::internal::CaptureStdout();
  engine.backward(engine.forward(at::ones({2, 4})));
  engine.step();
  const std::string out = testing::internal::GetCapturedStdout();
  std::string expected;
  for (const char* phase : {"before forward", "after forward", "before backward", "after backward", "before step",
                            "after step"}) {
    expected += std::string("Engine ") + phase + R"(\nMA [0-9.]+ GB +Max_MA [0-9.]+ GB +CA [0-9.]+ GB +Max_CA [0-9.]+ GB \n)"
                R"(CPU Virtual Memory:  used = [0-9.]+ GB, percent = [0-9.]+%\n)";
  }
  EXPECT_TRUE(std::regex_match(out, std::regex(expected))) << out;
}

TEST(WallClock, OffByDefault) {
  Slow model(0);
  auto engine = make_engine(model, "");
  testing::internal::CaptureStdout();
  engine.backward(engine.forward(at::ones({2, 4})));
  engine.step();
  const std::string out = testing::internal::GetCapturedStdout();
  EXPECT_EQ(out.find("time (ms)"), std::string::npos);
  EXPECT_EQ(out.find("Engine before forward"), std::string::npos);
  EXPECT_TRUE(engine.wall_clock_timers().empty());
}

TEST(WallClock, CsvMonitorGetsTheElapsedTimesOfEveryOptimizerStep) {
  std::string tmpl = ::testing::TempDir() + "wallclock_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl.data());
  Slow model(5);
  auto engine = make_engine(model, R"(, "wall_clock_breakdown": true,
      "csv_monitor": {"enabled": true, "output_path": ")" + dir + R"(", "job_name": "job"})");
  testing::internal::CaptureStdout();
  for (int micro = 0; micro < 4; ++micro) {
    engine.backward(engine.forward(at::ones({2, 4})));
    engine.step();
  }
  testing::internal::GetCapturedStdout();
  for (const char* name : {"forward", "backward", "backward_inner", "backward_allreduce", "step"}) {
    std::ifstream in(dir + "/job/Train_Samples_elapsed_time_ms_" + name + ".csv");
    ASSERT_TRUE(in) << name;
    std::stringstream ss;
    ss << in.rdbuf();
    const std::regex file(std::string("step,elapsed_time_ms_") + name + R"(\n4,[0-9.e+-]+\n8,[0-9.e+-]+\n)");
    EXPECT_TRUE(std::regex_match(ss.str(), file)) << ss.str();
  }
}

}  // namespace
}  // namespace zerotrain
