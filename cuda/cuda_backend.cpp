// The CUDA backend: compile() builds a plan of cuDNN / cuBLAS steps on GPU 0 with every weight
// uploaded once and every value in its own device buffer; run() copies float32 inputs host to
// device, launches the steps on one stream and copies the outputs back; run_profiled() brackets
// each step with CUDA events (kernel time on the GPU, not API wall time).
#include <algorithm>
#include <mutex>
#include <sstream>

#include "cuda_internal.hpp"

namespace bricklab::cuda {

// ---- PlanBuilder ----------------------------------------------------------------------------------

PlanBuilder::PlanBuilder(const Graph& g, const CompileOptions& o, Gpu& gpu_)
    : graph(g), options(o), gpu(gpu_), done_(g.nodes.size(), false) {}

int PlanBuilder::sole_consumer(int v) const {
  const Value& val = value(v);
  if (val.is_graph_output || val.consumers.size() != 1) return -1;
  const int c = val.consumers[0];
  int reads = 0;
  for (int in : graph.nodes[size_t(c)].inputs) reads += in == v;
  return reads == 1 ? c : -1;
}

std::vector<float> PlanBuilder::constant_floats(int v) {
  const Value& val = value(v);
  if (!val.data) throw Error("internal: value '" + val.name + "' is not a constant");
  if (val.data->has_values()) {
    const std::vector<double> d = val.data->as_double();
    return std::vector<float>(d.begin(), d.end());
  }
  // Stripped weights: the same deterministic stand-ins as the CPU backend.
  random_weights = true;
  return random_weight_values(graph, v, options.weight_seed);
}

float* PlanBuilder::device(int v, const ErrorContext& where) {
  auto it = memory.find(v);
  if (it != memory.end()) return static_cast<float*>(it->second->get());
  const Value& val = value(v);
  if (!val.is_constant()) throw Error(where, "internal: value '" + val.name + "' is used before a step produced it");
  if (val.dtype != DType::float32)
    throw UnsupportedError(where, "the CUDA backend computes in float32 only; constant '" + val.name + "' is " +
                                      dtype_name(val.dtype));
  const std::vector<float> host = constant_floats(v);
  auto buf = std::make_shared<DeviceBuffer>(host.size() * sizeof(float), where);
  BL_CHECK(where, cudaMemcpy(buf->get(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  memory[v] = buf;
  return static_cast<float*>(buf->get());
}

float* PlanBuilder::output(int v, const ErrorContext& where) {
  const Value& val = value(v);
  if (val.dtype != DType::float32)
    throw UnsupportedError(where, "the CUDA backend computes in float32 only; value '" + val.name + "' is " +
                                      dtype_name(val.dtype));
  if (val.numel() < 0) throw ShapeError(where, "value '" + val.name + "' has an unknown shape");
  auto buf = std::make_shared<DeviceBuffer>(size_t(val.numel()) * sizeof(float), where);
  memory[v] = buf;
  return static_cast<float*>(buf->get());
}

void PlanBuilder::alias(int a, int of, const ErrorContext& where) {
  device(of, where);  // uploads a constant if needed
  if (value(a).dtype != DType::float32 || value(a).numel() != value(of).numel())
    throw UnsupportedError(where, "value '" + value(a).name + "' cannot share the memory of '" + value(of).name + "'");
  memory[a] = memory.at(of);
}

void* PlanBuilder::scratch(size_t bytes, const ErrorContext& where) {
  owned.push_back(std::make_shared<DeviceBuffer>(bytes, where));
  return owned.back()->get();
}

void* PlanBuilder::upload(const void* host, size_t bytes, const ErrorContext& where) {
  void* p = scratch(bytes, where);
  BL_CHECK(where, cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
  return p;
}

std::string PlanBuilder::variant_for(const Node& n) const {
  auto it = options.variants.find(n.name);
  return it == options.variants.end() ? std::string() : it->second;
}

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// ---- the executable ---------------------------------------------------------------------------------

class CudaExecutable : public Executable {
 public:
  CudaExecutable(const Graph& graph, const CompileOptions& options) {
    PlanBuilder b(graph, options, gpu_);
    const ErrorContext at_graph{graph.path, "", ""};
    for (int v : graph.inputs) {
      const Value& value = graph.values[size_t(v)];
      if (value.dtype != DType::float32)
        throw UnsupportedError(at_graph, "the CUDA backend takes float32 inputs only; input '" + value.name + "' is " +
                                             dtype_name(value.dtype));
      b.output(v, at_graph);
      input_names_.push_back(value.name);
      input_values_.push_back(v);
      input_shapes_.push_back(value.shape);
    }
    for (size_t i = 0; i < graph.nodes.size(); ++i)
      if (!b.done(int(i))) lower_node(b, int(i));
    for (int v : graph.outputs) {
      b.device(v, at_graph);
      output_names_.push_back(graph.values[size_t(v)].name);
      output_values_.push_back(v);
      output_shapes_.push_back(graph.values[size_t(v)].shape);
    }
    // Weight uploads and conversions done at compile time must have finished.
    BL_CHECK(at_graph, cudaStreamSynchronize(gpu_.stream));
    for (size_t i = 0; i <= b.steps.size(); ++i) {
      cudaEvent_t e = nullptr;
      BL_CHECK(at_graph, cudaEventCreate(&e));
      events_.push_back(e);
    }
    steps_ = std::move(b.steps);
    memory_ = std::move(b.memory);
    owned_ = std::move(b.owned);
    random_weights_ = b.random_weights;
    path_ = graph.path;
  }

  ~CudaExecutable() override {
    cudaStreamSynchronize(gpu_.stream);
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }

  const std::vector<std::string>& input_names() const override { return input_names_; }
  const std::vector<std::string>& output_names() const override { return output_names_; }
  bool uses_random_weights() const override { return random_weights_; }

  // Calls from several threads take turns: the device buffers and the stream are the executable's.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) override {
    std::lock_guard<std::mutex> turn(run_mutex_);
    upload_inputs(inputs);
    launch_all(false);
    return download_outputs();
  }

  std::vector<StepTime> run_profiled(const std::map<std::string, Tensor>& inputs) override {
    std::lock_guard<std::mutex> turn(run_mutex_);
    upload_inputs(inputs);
    launch_all(true);
    download_outputs();  // synchronises the stream: every event has completed
    std::vector<StepTime> times;
    for (size_t i = 0; i < steps_.size(); ++i) {
      float ms = 0;
      BL_CHECK(ErrorContext({path_, join(steps_[i].nodes), ""}), cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      StepTime t;
      t.nodes = steps_[i].nodes;
      for (const auto& n : t.nodes) t.name += (t.name.empty() ? "" : "+") + n;
      t.kind = steps_[i].kind;
      t.ms = double(ms);
      times.push_back(std::move(t));
    }
    return times;
  }

  // cuDNN steps write plain (NCHW) float tensors; there are no layout-conversion steps.
  std::vector<PlanStep> plan() const override {
    std::vector<PlanStep> out;
    for (const auto& s : steps_) {
      PlanStep p;
      p.label = s.kind;
      p.nodes = s.nodes;
      out.push_back(std::move(p));
    }
    return out;
  }

  std::string describe() const override {
    std::ostringstream os;
    size_t bytes = 0;
    std::vector<const DeviceBuffer*> seen;
    for (const auto& [v, buf] : memory_)
      if (std::find(seen.begin(), seen.end(), buf.get()) == seen.end()) {
        seen.push_back(buf.get());
        bytes += buf->bytes();
      }
    for (const auto& buf : owned_) bytes += buf->bytes();
    os << steps_.size() << " steps on GPU 0, " << (bytes >> 20) << " MiB device memory (one buffer per value, weights and workspaces)\n";
    for (const auto& s : steps_) os << "  " << s.kind << "  " << join(s.nodes) << (s.detail.empty() ? "" : "  [" + s.detail + "]") << "\n";
    return os.str();
  }

 private:
  Gpu gpu_;  // first member: destroyed last, after every buffer that uses its stream
  std::vector<Step> steps_;
  std::map<int, std::shared_ptr<DeviceBuffer>> memory_;
  std::vector<std::shared_ptr<DeviceBuffer>> owned_;
  std::vector<cudaEvent_t> events_;
  std::vector<std::string> input_names_, output_names_;
  std::vector<int> input_values_, output_values_;
  std::vector<Shape> input_shapes_, output_shapes_;
  bool random_weights_ = false;
  std::mutex run_mutex_;  // one run at a time
  std::string path_;

  void upload_inputs(const std::map<std::string, Tensor>& inputs) {
    for (const auto& [name, t] : inputs)
      if (std::find(input_names_.begin(), input_names_.end(), name) == input_names_.end())
        throw InvalidArgument("unknown input '" + name + "' (model inputs: " + join(input_names_) + ")");
    const ErrorContext where{path_, "", ""};
    for (size_t i = 0; i < input_names_.size(); ++i) {
      auto it = inputs.find(input_names_[i]);
      if (it == inputs.end()) throw InvalidArgument("missing input '" + input_names_[i] + "'");
      const Tensor& t = it->second;
      if (t.dtype() != DType::float32)
        throw InvalidArgument("input '" + input_names_[i] + "' must be float32, got " + dtype_name(t.dtype()));
      if (t.shape() != input_shapes_[i])
        throw InvalidArgument("input '" + input_names_[i] + "' must have shape " + shape_str(input_shapes_[i]) + ", got " +
                              shape_str(t.shape()) + " (load the model with the matching batch / dims)");
      BL_CHECK(where, cudaMemcpyAsync(memory_.at(input_values_[i])->get(), t.data(), t.nbytes(), cudaMemcpyHostToDevice,
                                      gpu_.stream));
    }
  }

  void launch_all(bool timed) {
    const ErrorContext where{path_, "", ""};
    try {
      for (size_t i = 0; i < steps_.size(); ++i) {
        if (timed) BL_CHECK(where, cudaEventRecord(events_[i], gpu_.stream));
        steps_[i].launch(gpu_);
      }
      if (timed) BL_CHECK(where, cudaEventRecord(events_[steps_.size()], gpu_.stream));
    } catch (...) {
      cudaStreamSynchronize(gpu_.stream);  // leave no work in flight behind the error
      throw;
    }
  }

  std::map<std::string, Tensor> download_outputs() {
    const ErrorContext where{path_, "", ""};
    std::map<std::string, Tensor> out;
    for (size_t i = 0; i < output_names_.size(); ++i) {
      Tensor t(DType::float32, output_shapes_[i]);
      BL_CHECK(where, cudaMemcpyAsync(t.data(), memory_.at(output_values_[i])->get(), t.nbytes(), cudaMemcpyDeviceToHost,
                                      gpu_.stream));
      out[output_names_[i]] = std::move(t);
    }
    // A kernel that failed asynchronously reports here.
    BL_CHECK(where, cudaStreamSynchronize(gpu_.stream));
    return out;
  }
};

// ---- the backend -------------------------------------------------------------------------------------

class CudaBackend : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  bool available() const override { return cached_available(); }

  std::unique_ptr<Executable> compile(const Graph& graph, const CompileOptions& options) const override {
    if (!cached_available())
      throw UnsupportedError({graph.path, "", ""}, "the CUDA backend cannot run here: " + unavailable_reason());
    return std::make_unique<CudaExecutable>(graph, options);
  }

  // With a GPU: the variants cuDNN / cuBLAS accept for this node, the library heuristic's first.
  // Without one: the full candidate list, unfiltered (see docs/cuda-backend.md).
  std::vector<Variant> variants(const Graph& graph, int node) const override {
    if (node < 0 || node >= int(graph.nodes.size()))
      throw InvalidArgument("variants: node index " + std::to_string(node) + " out of range");
    if (!cached_available()) return node_variants(graph, node, nullptr);
    std::lock_guard<std::mutex> lock(probe_mutex_);
    // One set of handles for every query, created on first use and kept for the process.
    static Gpu* probe = new Gpu();
    return node_variants(graph, node, probe);
  }
  bool lowers(const OpDef& op) const override { return lowerings().lowers(op); }

 private:
  mutable std::mutex probe_mutex_;

  static bool cached_available() {
    static const bool yes = is_available();
    return yes;
  }
};

}  // namespace

const Backend& backend() {
  static CudaBackend instance;
  return instance;
}

}  // namespace bricklab::cuda
