// DeepSpeed's file monitors (src/engine/monitor.h): csv_monitor and tensorboard write the loss, learning rate and loss
// scale of every optimizer step on rank 0; the TensorBoard file is decoded here record by record (framing, CRCs, the
// Event protos' fields).
#include "engine/monitor.h"

#include <ATen/ATen.h>
#include <dirent.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "zerotrain/engine.h"

namespace zerotrain {
namespace {

struct RegImpl : torch::nn::Module {
  RegImpl() { fc = register_module("fc", torch::nn::Linear(4, 1)); }
  at::Tensor forward(const at::Tensor& x) { return fc->forward(x).pow(2).mean(); }
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Reg);

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string fresh_dir(const std::string& name) {
  std::string tmpl = ::testing::TempDir() + name + "_XXXXXX";
  return ::mkdtemp(tmpl.data());
}

TEST(Crc32c, KnownAnswer) {
  EXPECT_EQ(detail::crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value
}

// Reads a varint at data[pos], advancing pos.
uint64_t varint(const std::string& d, size_t& pos) {
  uint64_t v = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<unsigned char>(d[pos++]);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
}

struct Scalar {
  int64_t step;
  std::string tag;
  float value;
};

// Decodes an event file: checks each record's framing and CRCs; returns the scalar events and the file_version.
std::vector<Scalar> decode_events(const std::string& file, std::string& version) {
  std::vector<Scalar> out;
  size_t pos = 0;
  while (pos < file.size()) {
    uint64_t len;
    std::memcpy(&len, file.data() + pos, 8);
    uint32_t len_crc, data_crc;
    std::memcpy(&len_crc, file.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, detail::masked_crc32c(file.data() + pos, 8));
    const std::string event = file.substr(pos + 12, len);
    std::memcpy(&data_crc, file.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, detail::masked_crc32c(event.data(), event.size()));
    pos += 12 + len + 4;
    Scalar s{0, "", 0};
    size_t p = 0;
    while (p < event.size()) {
      const uint64_t key = varint(event, p);
      const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
      if (wire == 1) {
        p += 8;  // wall_time
      } else if (wire == 0) {
        s.step = static_cast<int64_t>(varint(event, p));
      } else if (wire == 2) {
        const uint64_t n = varint(event, p);
        const std::string body = event.substr(p, n);
        p += n;
        if (field == 3) version = body;
        if (field == 5) {  // Summary { Value { tag, simple_value } }
          size_t q = 0;
          varint(body, q);
          const uint64_t vn = varint(body, q);
          const std::string value = body.substr(q, vn);
          size_t r = 0;
          varint(value, r);
          const uint64_t tn = varint(value, r);
          s.tag = value.substr(r, tn);
          r += tn;
          EXPECT_EQ(varint(value, r), (2u << 3) | 5u);
          std::memcpy(&s.value, value.data() + r, 4);
        }
      } else {
        ADD_FAILURE() << "unexpected wire type " << wire;
        return out;
      }
    }
    if (!s.tag.empty()) out.push_back(s);
  }
  return out;
}

TEST(Monitor, CsvAndTensorboardGetTheLossLrAndLossScaleOfEveryStep) {
  const std::string dir = fresh_dir("monitor");
  Reg model;
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  auto engine = initialize(model.ptr(), R"({"train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 2,
      "fp16": {"enabled": true, "auto_cast": true, "initial_scale_power": 4}, "gradient_clipping": 0,
      "optimizer": {"type": "SGD", "params": {"lr": 0.01}},
      "scheduler": {"type": "WarmupLR", "params": {"warmup_min_lr": 0, "warmup_max_lr": 0.01, "warmup_num_steps": 3}},
      "csv_monitor": {"enabled": true, "output_path": ")" + dir + R"(", "job_name": "job"},
      "tensorboard": {"enabled": true, "output_path": ")" + dir + R"(", "job_name": "tb"}})", o);
  std::vector<double> losses, lrs;
  for (int step = 0; step < 3; ++step) {
    double sum = 0;
    for (int micro = 0; micro < 2; ++micro) {
      const at::Tensor loss = engine.forward(at::full({2, 4}, 0.1 * (step + micro + 1)));
      sum += loss.item<double>() / 2;
      engine.backward(loss);
      engine.step();
    }
    losses.push_back(sum);
    lrs.push_back(engine.get_lr());
  }
  const std::string loss_csv = read(dir + "/job/Train_Samples_train_loss.csv");
  std::istringstream rows(loss_csv);
  std::string line;
  std::getline(rows, line);
  EXPECT_EQ(line, "step,train_loss");
  for (int step = 0; step < 3; ++step) {
    ASSERT_TRUE(std::getline(rows, line)) << loss_csv;
    const auto comma = line.find(',');
    EXPECT_EQ(line.substr(0, comma), std::to_string(4 * step));  // samples trained before the step
    EXPECT_NEAR(std::stod(line.substr(comma + 1)), losses[step], 1e-3 * losses[step]);
  }
  const std::string lr_csv = read(dir + "/job/Train_Samples_lr.csv");
  EXPECT_EQ(lr_csv.substr(0, lr_csv.find('\n')), "step,lr");
  EXPECT_NE(lr_csv.find("\n12," + fmt::format("{}", lrs[2])), std::string::npos) << lr_csv;
  EXPECT_NE(read(dir + "/job/Train_Samples_loss_scale.csv").find("\n4,16\n"), std::string::npos);

  DIR* d = ::opendir((dir + "/tb").c_str());
  ASSERT_NE(d, nullptr);
  std::string event_file;
  while (dirent* e = ::readdir(d)) {
    if (std::string(e->d_name).rfind("events.out.tfevents.", 0) == 0) event_file = dir + "/tb/" + e->d_name;
  }
  ::closedir(d);
  ASSERT_FALSE(event_file.empty());
  std::string version;
  const auto scalars = decode_events(read(event_file), version);
  EXPECT_EQ(version, "brain.Event:2");
  ASSERT_EQ(scalars.size(), 9u);  // 3 steps x (train_loss, lr, loss_scale)
  EXPECT_EQ(scalars[3].tag, "Train/Samples/train_loss");
  EXPECT_EQ(scalars[3].step, 4);
  EXPECT_NEAR(scalars[3].value, losses[1], 1e-3 * losses[1]);
  EXPECT_EQ(scalars[4].tag, "Train/Samples/lr");
  EXPECT_EQ(scalars[4].step, 8);
  EXPECT_FLOAT_EQ(scalars[4].value, static_cast<float>(lrs[1]));
  EXPECT_EQ(scalars[5].tag, "Train/Samples/loss_scale");
}

// wandb / comet log through their Python clients: a program that brings a MonitorSink (the Python package) gets rank
// 0's events in it, the same events the file monitors write; one that does not is refused at startup, naming the key.
TEST(Monitor, WandbAndCometGoToTheProgramsSinkOrAreRefusedWithout) {
  const std::string config = R"({"train_micro_batch_size_per_gpu": 2, "gradient_clipping": 0,
      "optimizer": {"type": "SGD", "params": {"lr": 0.01}}, "wandb": {"enabled": true}, "comet": {"enabled": true}})";
  Reg model;
  EngineOptions o;
  o.comm = make_single_comm();
  o.device = c10::Device(c10::kCPU);
  try {
    initialize(model.ptr(), config, o);
    ADD_FAILURE() << "wandb without a sink was accepted";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    for (const char* part : {"wandb.enabled = true", "comet.enabled = true", "Python client", "zerotrain.initialize",
                             "tensorboard"}) {
      EXPECT_NE(what.find(part), std::string::npos) << part << " in: " << what;
    }
  }
  std::vector<MonitorEvent> received;
  o.monitor_sink = [&](const std::vector<MonitorEvent>& events) {
    received.insert(received.end(), events.begin(), events.end());
  };
  auto engine = initialize(model.ptr(), config, o);
  std::vector<double> losses;
  for (int step = 0; step < 3; ++step) {
    const at::Tensor loss = engine.forward(at::full({2, 4}, 0.1 * (step + 1)));
    losses.push_back(loss.item<double>());
    engine.backward(loss);
    engine.step();
  }
  ASSERT_EQ(received.size(), 6u);  // per step: the loss at the samples before it, the lr at the samples after it
  for (int step = 0; step < 3; ++step) {
    EXPECT_EQ(received[2 * step].name, "Train/Samples/train_loss");
    EXPECT_EQ(received[2 * step].step, 2 * step);
    EXPECT_NEAR(received[2 * step].value, losses[step], 1e-6 * losses[step]);
    EXPECT_EQ(received[2 * step + 1].name, "Train/Samples/lr");
    EXPECT_EQ(received[2 * step + 1].step, 2 * (step + 1));
    EXPECT_DOUBLE_EQ(received[2 * step + 1].value, 0.01);
  }
}

}  // namespace
}  // namespace zerotrain
