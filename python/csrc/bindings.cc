// zerotrain._C: the C++ engine for Python modules. Python stays thin (python/zerotrain/): it describes the module
// (its submodules' parameters and buffers, and which submodules are stage-3 units), calls the module itself, and
// forwards to this engine from module hooks. Everything else - sharding, communication, precision, optimizer,
// schedule, checkpoints - is the C++ engine.
#include <torch/csrc/utils/pybind.h>
#include <torch/nn/module.h>

#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "zerotrain/comm.h"
#include "zerotrain/comms_logging.h"
#include "zerotrain/config.h"
#include "zerotrain/engine.h"
#include "zerotrain/profile.h"
#include "zerotrain/segmented.h"
#include "zerotrain/version.h"

namespace py = pybind11;

namespace zerotrain::python {
namespace {

// (qualified module name, its own parameters, its own buffers, its class name); parameters and buffers by their
// local names. Every module of the tree is listed, parents before children (named_modules order).
using TensorList = std::vector<std::pair<std::string, at::Tensor>>;
using ModuleEntry = std::tuple<std::string, TensorList, TensorList, std::string>;

// A C++ module tree with the Python module's names holding the Python module's own tensors (the same
// TensorImpls: what the engine does to them - moving, casting, making them views into its buffers - the Python
// module sees). Its segments are the stage-3 units the Python side chose; their runs are reported through
// Engine::begin_segment/end_segment from module hooks.
class MirrorModule final : public torch::nn::Module, public Segmented {
 public:
  MirrorModule(const std::vector<ModuleEntry>& modules, std::vector<std::vector<at::Tensor>> segments)
      : torch::nn::Module(root_type(modules)), segments_(std::move(segments)) {
    for (const auto& [name, params, buffers, type] : modules) {
      torch::nn::Module& target = find_or_add(name, type);
      for (const auto& [local, t] : params) {
        if (!t.defined()) continue;
        target.register_parameter(local, t, t.requires_grad());
      }
      for (const auto& [local, t] : buffers) {
        if (t.defined()) target.register_buffer(local, t);
      }
    }
  }

  std::vector<std::vector<at::Tensor>> segment_parameters() const override { return segments_; }

 private:
  // The class name the flops profiler reports (torch::nn::Module(name) keeps it as name()).
  static std::string root_type(const std::vector<ModuleEntry>& modules) {
    for (const auto& entry : modules) {
      if (std::get<0>(entry).empty()) return std::get<3>(entry);
    }
    return "Module";
  }

  torch::nn::Module& find_or_add(const std::string& qualified, const std::string& type) {
    torch::nn::Module* m = this;
    size_t start = 0;
    while (start < qualified.size()) {
      size_t dot = qualified.find('.', start);
      if (dot == std::string::npos) dot = qualified.size();
      const std::string part = qualified.substr(start, dot - start);
      if (part.empty()) throw std::invalid_argument("module name '" + qualified + "' has an empty component");
      auto children = m->named_children();
      if (auto* child = children.find(part)) {
        m = child->get();
      } else {
        // Intermediate modules come before their children in the list: created here with their own class name.
        m = m->register_module(part, std::make_shared<torch::nn::Module>(dot == qualified.size() ? type : "Module"))
                .get();
      }
      start = dot + 1;
    }
    return *m;
  }

  std::vector<std::vector<at::Tensor>> segments_;
};

class PyEngine {
 public:
  // Runs without the GIL (see the binding): everything Python was converted before.
  PyEngine(const std::vector<ModuleEntry>& modules, std::vector<std::vector<at::Tensor>> segments,
           const std::string& config, const std::string& group_name, const std::string& device, RunInfo run,
           std::vector<std::pair<at::Tensor, double>> weight_decay,
           std::vector<std::pair<at::Tensor, double>> lr_scale, MonitorSink monitor_sink) {
    auto model = std::make_shared<MirrorModule>(modules, std::move(segments));
    EngineOptions options;
    options.comm = group_name.empty() ? make_single_comm() : make_process_group_comm(group_name);
    options.device = c10::Device(device);
    options.cast_buffers = false;
    options.run = std::move(run);
    options.weight_decay = std::move(weight_decay);
    options.lr_scale = std::move(lr_scale);
    options.monitor_sink = std::move(monitor_sink);
    engine_ = std::make_unique<Engine>(std::static_pointer_cast<torch::nn::Module>(model), torch::nn::AnyModule(),
                                       config, std::move(options));
  }

  Engine& get() { return *engine_; }

  static RunInfo to_run_info(const py::dict& d) {
    RunInfo run;
    auto get_int = [&](const char* key, std::optional<int64_t>& out) {
      if (d.contains(key) && !d[key].is_none()) out = d[key].cast<int64_t>();
    };
    auto get_double = [&](const char* key, std::optional<double>& out) {
      if (d.contains(key) && !d[key].is_none()) out = d[key].cast<double>();
    };
    get_int("micro_batch_per_gpu", run.micro_batch_per_gpu);
    get_int("gradient_accumulation_steps", run.gradient_accumulation_steps);
    get_int("hidden_size", run.hidden_size);
    get_double("lr", run.lr);
    get_double("weight_decay", run.weight_decay);
    get_int("total_num_steps", run.total_num_steps);
    get_int("warmup_num_steps", run.warmup_num_steps);
    return run;
  }

 private:
  std::unique_ptr<Engine> engine_;
};

// GatheredParameters as a Python context manager.
class PyGathered {
 public:
  PyGathered(PyEngine& engine, std::optional<int> modifier_rank) : engine_(engine), modifier_rank_(modifier_rank) {}
  void enter() { scope_ = std::make_unique<GatheredParameters>(engine_.get(), modifier_rank_); }
  // Leaving the scope, also by an exception, broadcasts the modifier's values (every rank leaves it, as with
  // DeepSpeed's GatheredParameters) and releases.
  void exit() { scope_.reset(); }

 private:
  PyEngine& engine_;
  std::optional<int> modifier_rank_;
  std::unique_ptr<GatheredParameters> scope_;
};

}  // namespace
}  // namespace zerotrain::python

PYBIND11_MODULE(_C, m) {
  using namespace zerotrain;
  using namespace zerotrain::python;
  m.doc() = "zerotrain's C++ engine (use the zerotrain package, not this module)";
  m.attr("__version__") = std::string(version());

  static py::exception<ConfigError> config_error(m, "ConfigError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ConfigError& e) {
      py::set_error(config_error, e.what());
    } catch (const AutotuningExit& e) {
      // An autotuning experiment has written its measurement: the script ends as DeepSpeed's engine ends it (exit()).
      PySys_WriteStderr("zerotrain: %s\n", e.what());
      PyErr_SetObject(PyExc_SystemExit, py::int_(0).ptr());
    } catch (const c10::Error& e) {
      // Without the C++ backtrace: the message is what the user needs.
      PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
    }
  });

  m.def(
      "check_config",
      [](const std::string& config, int world_size, const py::dict& run_info) {
        RunInfo run = PyEngine::to_run_info(run_info);
        run.world_size = world_size;
        Config cfg = Config::from_path_or_text(config, run);
        cfg.require_supported();
        return cfg.to_json();
      },
      py::arg("config"), py::arg("world_size"), py::arg("run_info"),
      "Validates a DeepSpeed config (path or JSON text) for world_size ranks; returns the effective config as JSON. "
      "Raises ConfigError naming every problem.");

  m.def("engine_host_cpu_seconds", &zerotrain::engine_host_cpu_seconds,
        "Host seconds spent in zerotrain's C++ engine code in this process so far (hooks, gathers, reductions, "
        "the optimizer step's launches), excluding the model's forward and backward, waits for the device and this "
        "package's Python hooks, "
        "while the accounting is on (set_engine_host_accounting).");
  m.def("set_engine_host_accounting", &zerotrain::set_engine_host_accounting, py::arg("enabled"),
        "Turns engine_host_cpu_seconds()'s accounting on or off (off by default: it reads the steady clock at every "
        "engine entry point and gradient hook).");

  m.def(
      "comms_log_summary",
      [](bool show_straggler, bool print) {
        py::list rows;
        std::vector<CommsLogEntry> entries;
        {
          py::gil_scoped_release release;  // a collective: other ranks' Python threads may need the GIL meanwhile
          entries = comms_log_summary(show_straggler, print);
        }
        for (const CommsLogEntry& e : entries) {
          py::dict d;
          d["op"] = e.op;
          d["msg_bytes"] = e.msg_bytes;
          d["msg_size_str"] = comms_size_string(e.msg_bytes);
          d["count"] = e.count;
          d["total_latency_ms"] = e.total_latency_ms;
          d["avg_latency_ms"] = e.avg_latency_ms;
          d["tput_avg_gbps"] = e.algbw_gbps;
          d["busbw_avg_gbps"] = e.busbw_gbps;
          if (e.total_comm_latency_ms) {
            d["total_comm_lat_ms"] = *e.total_comm_latency_ms;
            d["total_straggler_ms"] = *e.total_straggler_ms;
            d["avg_comm_lat_ms"] = *e.avg_comm_latency_ms;
            d["avg_straggler_ms"] = *e.avg_straggler_ms;
          }
          rows.append(d);
        }
        return rows;
      },
      py::arg("show_straggler"), py::arg("print"),
      "The comms_logger's records (include/zerotrain/comms_logging.h); rank 0 prints the table when print.");
  m.def("comms_log_reset", &zerotrain::comms_log_reset, "Forgets the comms_logger's records.");

  py::class_<PyEngine>(m, "Engine")
      .def(py::init([](const std::vector<ModuleEntry>& modules, std::vector<std::vector<at::Tensor>> segments,
                       const std::string& config, const std::string& group_name, const std::string& device,
                       const py::dict& run_info, std::vector<std::pair<at::Tensor, double>> weight_decay,
                       std::vector<std::pair<at::Tensor, double>> lr_scale, const py::object& monitor) {
             RunInfo run = PyEngine::to_run_info(run_info);  // Python objects: with the GIL
             MonitorSink sink;
             if (!monitor.is_none()) {
               // The engine calls it from step() (the GIL released there); the callable is released with the GIL.
               std::shared_ptr<py::object> fn(new py::object(monitor), [](py::object* o) {
                 py::gil_scoped_acquire gil;
                 delete o;
               });
               sink = [fn](const std::vector<MonitorEvent>& events) {
                 py::gil_scoped_acquire gil;
                 py::list batch;
                 for (const MonitorEvent& e : events) batch.append(py::make_tuple(e.name, e.value, e.step));
                 (*fn)(batch);
               };
             }
             py::gil_scoped_release release;  // collectives: without it
             return std::make_unique<PyEngine>(modules, std::move(segments), config, group_name, device,
                                               std::move(run), std::move(weight_decay), std::move(lr_scale),
                                               std::move(sink));
           }),
           py::arg("modules"), py::arg("segments"), py::arg("config"), py::arg("group_name"), py::arg("device"),
           py::arg("run_info"), py::arg("weight_decay") = std::vector<std::pair<at::Tensor, double>>{},
           py::arg("lr_scale") = std::vector<std::pair<at::Tensor, double>>{}, py::arg("monitor") = py::none())
      .def("begin_forward", [](PyEngine& e) { e.get().begin_forward(); }, py::call_guard<py::gil_scoped_release>())
      .def("end_forward", [](PyEngine& e) { e.get().end_forward(); }, py::call_guard<py::gil_scoped_release>())
      .def("begin_segment", [](PyEngine& e, int64_t index, bool record) { e.get().begin_segment(index, record); },
           py::call_guard<py::gil_scoped_release>())
      .def("segment_inputs",
           [](PyEngine& e, const std::vector<at::Tensor>& xs) {
             std::vector<at::Tensor> out;
             out.reserve(xs.size());
             for (const auto& x : xs) out.push_back(e.get().segment_input(x, /*sole=*/xs.size() == 1));
             return out;
           })
      .def("segment_outputs",
           [](PyEngine& e, const std::vector<at::Tensor>& ys) {
             for (const auto& y : ys) e.get().segment_output(y);
           })
      .def("end_segment", [](PyEngine& e) { e.get().end_segment(); }, py::call_guard<py::gil_scoped_release>())
      .def("backward", [](PyEngine& e, const at::Tensor& loss) { e.get().backward(loss); },
           py::call_guard<py::gil_scoped_release>())
      .def("step", [](PyEngine& e) { e.get().step(); }, py::call_guard<py::gil_scoped_release>())
      .def("zero_grad", [](PyEngine& e) { e.get().zero_grad(); })
      .def("set_flops_per_sample", [](PyEngine& e, double flops) { e.get().set_flops_per_sample(flops); })
      .def("is_gradient_accumulation_boundary",
           [](PyEngine& e) { return e.get().is_gradient_accumulation_boundary(); })
      .def("set_gradient_accumulation_boundary",
           [](PyEngine& e, std::optional<bool> is_boundary) { e.get().set_gradient_accumulation_boundary(is_boundary); })
      .def("save_checkpoint",
           [](PyEngine& e, const std::string& dir, const std::string& tag, const std::string& client) {
             return e.get().save_checkpoint(dir, tag, client);
           },
           py::call_guard<py::gil_scoped_release>())
      .def("load_checkpoint",
           [](PyEngine& e, const std::string& dir, const std::string& tag) { return e.get().load_checkpoint(dir, tag); },
           py::call_guard<py::gil_scoped_release>())
      .def("save_16bit_model",
           [](PyEngine& e, const std::string& dir, const std::string& name) { return e.get().save_16bit_model(dir, name); },
           py::call_guard<py::gil_scoped_release>())
      .def("gathered", [](PyEngine& e, std::optional<int> modifier_rank) { return PyGathered(e, modifier_rank); },
           py::keep_alive<0, 1>())
      .def("write_monitor_events",
           [](PyEngine& e, const std::vector<std::tuple<std::string, double, int64_t>>& events) {
             std::vector<MonitorEvent> out;
             for (const auto& [name, value, step] : events) out.push_back({name, value, step});
             py::gil_scoped_release release;  // the sink takes it back for the Python clients
             e.get().write_monitor_events(out);
           })
      .def("get_global_grad_norm", [](PyEngine& e) { return e.get().get_global_grad_norm(); },
           py::call_guard<py::gil_scoped_release>())
      .def("get_global_grad_norm_tensor", [](PyEngine& e) -> std::optional<at::Tensor> {
        at::Tensor t = e.get().get_global_grad_norm_tensor();
        if (!t.defined()) return std::nullopt;
        return t;
      })
      .def("get_lr", [](PyEngine& e) { return e.get().get_lr(); })
      .def("set_lr", [](PyEngine& e, double lr) { e.get().set_lr(lr); })
      .def("loss_scale", [](PyEngine& e) { return e.get().loss_scale(); })
      .def("wall_clock_timers", [](PyEngine& e) { return e.get().wall_clock_timers(); })
      .def("flops_profile_pending", [](PyEngine& e) { return e.get().flops_profile_pending(); })
      .def("begin_module", [](PyEngine& e, const std::string& name) { e.get().begin_module(name); })
      .def("end_module", [](PyEngine& e) { e.get().end_module(); })
      .def("flops_profile_macs", [](PyEngine& e, const std::string& name) { return e.get().flops_profile_macs(name); },
           py::arg("name") = "")
      .def("train_batch_size", [](PyEngine& e) { return e.get().train_batch_size(); })
      .def("train_micro_batch_size_per_gpu", [](PyEngine& e) { return e.get().train_micro_batch_size_per_gpu(); })
      .def("gradient_accumulation_steps", [](PyEngine& e) { return e.get().gradient_accumulation_steps(); })
      .def("global_steps", [](PyEngine& e) { return e.get().global_steps(); })
      .def("global_samples", [](PyEngine& e) { return e.get().global_samples(); })
      .def("skipped_steps", [](PyEngine& e) { return e.get().skipped_steps(); })
      .def("micro_steps", [](PyEngine& e) { return e.get().micro_steps(); })
      .def("zero_stage", [](PyEngine& e) { return e.get().zero_stage(); })
      .def("gathered_numel", [](PyEngine& e) { return e.get().gathered_numel(); })
      .def("rank", [](PyEngine& e) { return e.get().comm().rank(); })
      .def("world_size", [](PyEngine& e) { return e.get().comm().world_size(); })
      .def("backend", [](PyEngine& e) { return e.get().comm().backend(); })
      .def("device", [](PyEngine& e) { return e.get().device().str(); })
      .def("config_json", [](PyEngine& e) { return e.get().config().to_json(); });

  py::class_<PyGathered>(m, "GatheredParameters")
      .def("__enter__", [](PyGathered& g) { g.enter(); }, py::call_guard<py::gil_scoped_release>())
      .def("__exit__",
           [](PyGathered& g, const py::object&, const py::object&, const py::object&) {
             py::gil_scoped_release release;
             g.exit();
             return false;
           });
}
