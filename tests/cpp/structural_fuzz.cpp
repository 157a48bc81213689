// Structure-aware fuzzing against ONNX Runtime: the replay. Reads the cases that
// tests/python/structural_fuzz.py wrote (valid protobuf with bad contents, each with ONNX
// Runtime's verdict) and feeds every one to bricklab: load, compile on the CPU backend, run.
//
//   ORT refused          -> bricklab must refuse (throw bricklab::Error with a message)
//   ORT computed         -> bricklab must compute the same outputs, or refuse with a reason;
//                           where ONNX's reference implementation computed other values than ORT
//                           (stored with the case), bricklab may match the reference instead
//   ORT crashed / hung   -> bricklab must refuse
//   too big for ORT      -> bricklab (under --memory-limit) must refuse or compute
//   unfeedable           -> bricklab must refuse or compute
//
// Anything else fails the run: another exception type, different outputs, a crash or a sanitizer
// report (the case being replayed is printed first), a case taking longer than --case-timeout.
// Built with the rest of the tests; CI runs it under AddressSanitizer + UBSan on 20,000 cases.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "bricklab/bricklab.hpp"

#if defined(__has_include)
#if __has_include(<sanitizer/common_interface_defs.h>) && (defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__))
#include <sanitizer/common_interface_defs.h>
#define BRICKLAB_HAVE_SANITIZER_CALLBACK 1
#endif
#endif

namespace {

using bricklab::DType;
using bricklab::Shape;
using bricklab::Tensor;

struct Case {
  nlohmann::json meta;
  std::string model;
  std::map<std::string, Tensor> inputs;
  std::map<std::string, Tensor> expected;
  std::map<std::string, Tensor> reference;  // ONNX's reference, only where it differs from ORT
};

class Reader {
 public:
  explicit Reader(const std::string& path) : in_(path, std::ios::binary) {
    if (!in_) throw std::runtime_error("cannot open " + path);
    char magic[6];
    if (!in_.read(magic, 6) || std::memcmp(magic, "BLSF2\n", 6) != 0)
      throw std::runtime_error(path + ": not a case file of tests/python/structural_fuzz.py");
  }
  bool next(Case& c) {
    uint32_t mlen = 0;
    if (!in_.read(reinterpret_cast<char*>(&mlen), 4)) return false;
    c.meta = nlohmann::json::parse(bytes(mlen));
    c.model = bytes(u64());
    c.inputs = tensors();
    c.expected = tensors();
    c.reference = tensors();
    return true;
  }

 private:
  std::string bytes(uint64_t n) {
    if (n > (uint64_t(1) << 31)) throw std::runtime_error("corrupt case file");
    std::string s(size_t(n), '\0');
    if (n && !in_.read(s.data(), std::streamsize(n))) throw std::runtime_error("truncated case file");
    return s;
  }
  uint32_t u32() { uint32_t v = 0; if (!in_.read(reinterpret_cast<char*>(&v), 4)) throw std::runtime_error("truncated case file"); return v; }
  uint64_t u64() { uint64_t v = 0; if (!in_.read(reinterpret_cast<char*>(&v), 8)) throw std::runtime_error("truncated case file"); return v; }
  std::map<std::string, Tensor> tensors() {
    std::map<std::string, Tensor> out;
    const uint32_t n = u32();
    for (uint32_t i = 0; i < n; ++i) {
      const std::string name = bytes(u32());
      const int32_t et = int32_t(u32());
      const uint32_t rank = u32();
      Shape shape(rank);
      for (auto& d : shape) d = int64_t(u64());
      const std::string data = bytes(u64());
      Tensor t(DType(et), shape);
      if (t.nbytes() != data.size()) throw std::runtime_error("corrupt tensor '" + name + "' in the case file");
      if (!data.empty()) std::memcpy(t.data(), data.data(), data.size());
      out.emplace(name, std::move(t));
    }
    return out;
  }
  std::ifstream in_;
};

// What is being replayed, for the crash and hang reports.
char g_current[4096] = "";
std::atomic<int64_t> g_case_start_ms{0};

void say_current() {
  const char head[] = "\n[structural fuzz] died while replaying: ";
  (void)!write(2, head, sizeof(head) - 1);
  (void)!write(2, g_current, strlen(g_current));
  (void)!write(2, "\n", 1);
}

void on_signal(int sig) {
  say_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double as_double(const Tensor& t, size_t i) {
  switch (t.dtype()) {
    case DType::float32: return t.data_as<float>()[i];
    case DType::float64: return t.data_as<double>()[i];
    case DType::float16: return bricklab::half_to_float(t.data_as<uint16_t>()[i]);
    case DType::int8: return t.data_as<int8_t>()[i];
    case DType::uint8: return t.data_as<uint8_t>()[i];
    case DType::int16: return t.data_as<int16_t>()[i];
    case DType::uint16: return t.data_as<uint16_t>()[i];
    case DType::int32: return t.data_as<int32_t>()[i];
    case DType::uint32: return t.data_as<uint32_t>()[i];
    case DType::int64: return double(t.data_as<int64_t>()[i]);
    case DType::uint64: return double(t.data_as<uint64_t>()[i]);
    case DType::boolean: return t.data_as<uint8_t>()[i] ? 1.0 : 0.0;
    default: return NAN;
  }
}

// "" when `got` matches `want` (ORT's outputs, or ONNX's reference's), else what differs. With
// `alt` (ORT's outputs when `want` is the reference's), an element may match either one, and where
// both references overflowed (each non-finite, but not the same), `got` must be non-finite too.
std::string compare(const std::string& name, const Tensor& got, const Tensor& want, double rtol, double atol,
                    const char* who = "ORT", const Tensor* alt = nullptr) {
  const std::string w_ = ", " + std::string(who) + " ";
  if (got.dtype() != want.dtype())
    return "output '" + name + "': " + bricklab::dtype_name(got.dtype()) + w_ + bricklab::dtype_name(want.dtype());
  if (got.shape() != want.shape())
    return "output '" + name + "': shape " + bricklab::shape_str(got.shape()) + w_ + bricklab::shape_str(want.shape());
  if (alt && (alt->dtype() != want.dtype() || alt->shape() != want.shape())) alt = nullptr;
  const bool is_float = want.dtype() == DType::float32 || want.dtype() == DType::float64 || want.dtype() == DType::float16;
  if (want.dtype() == DType::float16) rtol = std::max(rtol, 2e-3), atol = std::max(atol, 2e-3);
  const size_t n = size_t(std::max<int64_t>(want.numel(), 0));
  auto same = [&](double g, double w) {
    if (!is_float) return g == w;
    if (std::isnan(w) || std::isnan(g)) return std::isnan(w) && std::isnan(g);
    if (std::isinf(w) || std::isinf(g)) return g == w;
    return std::fabs(g - w) <= atol + rtol * std::fabs(w);
  };
  if (!is_float && n && std::memcmp(got.data(), want.data(), want.nbytes()) == 0) return "";
  for (size_t i = 0; i < n; ++i) {
    const double g = as_double(got, i), w = as_double(want, i);
    if (same(g, w)) continue;
    if (alt) {
      const double a = as_double(*alt, i);
      if (same(g, a)) continue;
      if (is_float && !std::isfinite(w) && !std::isfinite(a) && !std::isfinite(g)) continue;  // both overflowed
    }
    return "output '" + name + "' element " + std::to_string(i) + ": " + std::to_string(g) + w_ + std::to_string(w) +
           (std::isnan(g) != std::isnan(w) ? " (NaN differs)" : "");
  }
  return "";
}

struct Outcome {
  enum Kind { computed, refused, other_exception } kind = computed;
  std::string message;
  std::map<std::string, Tensor> outputs;
};

Outcome replay(const Case& c) {
  Outcome o;
  try {
    bricklab::LoadOptions lo;
    for (const auto& [k, v] : c.meta.at("dims").items()) lo.dims[k] = v.get<int64_t>();
    const bricklab::Graph g = bricklab::load_onnx_bytes(c.model, lo, "", "case " + std::to_string(c.meta.at("id").get<int>()));
    bricklab::CompileOptions options;
    options.threads = 1;
    auto exe = bricklab::get_backend("cpu").compile(g, options);
    std::map<std::string, Tensor> inputs = c.inputs;
    for (const auto& name : exe->input_names())
      if (!inputs.count(name)) throw bricklab::InvalidArgument("the case feeds no input '" + name + "'");
    o.outputs = exe->run(inputs);
  } catch (const bricklab::Error& e) {
    o.kind = Outcome::refused;
    o.message = e.what();
  } catch (const std::exception& e) {
    o.kind = Outcome::other_exception;
    o.message = std::string("not a bricklab::Error: ") + e.what();
  } catch (...) {
    o.kind = Outcome::other_exception;
    o.message = "a non-std exception";
  }
  return o;
}

// Where ORT refuses a model ONNX defines, bricklab may compute it: the reasons, matched on ORT's
// message. Every other "ORT refused, bricklab computed" is a failure.
std::string accepted_reason(const std::string& ort_error) {
  static const std::pair<const char*, const char*> reasons[] = {
      {"NOT_IMPLEMENTED : Could not find an implementation for",
       "ORT has no CPU kernel for this element type, which the operator's ONNX schema allows"},
  };
  for (const auto& [pattern, why] : reasons)
    if (ort_error.find(pattern) != std::string::npos) return why;
  return "";
}

std::string describe(const Case& c) {
  std::string s = "case " + std::to_string(c.meta.at("id").get<int>()) + " (" + c.meta.at("seed").get<std::string>();
  for (const auto& m : c.meta.at("mutations")) s += "; " + m.get<std::string>();
  return s + ")";
}

}  // namespace

int main(int argc, char** argv) {
  std::string path, dump_to;
  int64_t memory_limit = int64_t(256) << 20;
  int only = -1, show = 40;
  double case_timeout = 60.0;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) { std::cerr << a << " needs a value\n"; std::exit(2); }
      return argv[++i];
    };
    if (a == "--memory-limit") memory_limit = std::stoll(value());
    else if (a == "--only") only = std::stoi(value());
    else if (a == "--dump") dump_to = value();
    else if (a == "--show") show = std::stoi(value());
    else if (a == "--case-timeout") case_timeout = std::stod(value());
    else if (a == "--verbose") verbose = true;
    else if (a == "--help" || a == "-h") {
      std::cout << "usage: bricklab_structural_fuzz CASES.bin [--only ID [--dump MODEL.onnx]] [--memory-limit BYTES]\n"
                   "       [--case-timeout S] [--show N] [--verbose]\n"
                   "Replays the cases of tests/python/structural_fuzz.py against bricklab (see its header).\n";
      return 0;
    } else path = a;
  }
  if (path.empty()) {
    std::cerr << "usage: bricklab_structural_fuzz CASES.bin [--only ID] (see --help)\n";
    return 2;
  }
  bricklab::set_memory_limit(memory_limit);  // mutants with huge dims must be refused, not allocated
  std::signal(SIGSEGV, on_signal);
  std::signal(SIGFPE, on_signal);
  std::signal(SIGBUS, on_signal);
  std::signal(SIGILL, on_signal);
  std::signal(SIGABRT, on_signal);
#ifdef BRICKLAB_HAVE_SANITIZER_CALLBACK
  __sanitizer_set_death_callback(say_current);
#endif
  std::thread([case_timeout] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const int64_t t0 = g_case_start_ms.load();
      if (t0 && double(now_ms() - t0) > case_timeout * 1000.0) {
        const char msg[] = "\n[structural fuzz] a case ran past --case-timeout (a hang):";
        (void)!write(2, msg, sizeof(msg) - 1);
        say_current();
        _exit(3);
      }
    }
  }).detach();

  std::map<std::string, int> table;  // "ORT verdict / bricklab outcome" -> count
  std::map<std::string, int> refusals;  // bricklab's reasons where ORT computed, by message head
  std::map<std::string, int> accepted;  // ORT refused, bricklab computed, for a listed reason
  std::vector<std::string> failures;
  int cases = 0, matches_reference = 0;
  const auto start = std::chrono::steady_clock::now();
  try {
    Reader reader(path);
    Case c;
    while (reader.next(c)) {
      const int id = c.meta.at("id").get<int>();
      if (only >= 0 && id != only) continue;
      if (!dump_to.empty()) {
        std::ofstream(dump_to, std::ios::binary) << c.model;
        std::cout << "wrote " << describe(c) << " to " << dump_to << "\n";
      }
      ++cases;
      const std::string ort = c.meta.at("ort").get<std::string>();
      std::snprintf(g_current, sizeof g_current, "%s; ORT %s", describe(c).c_str(), ort.c_str());
      g_case_start_ms = now_ms();
      const Outcome o = replay(c);
      g_case_start_ms = 0;
      const char* got = o.kind == Outcome::computed ? "computed" : o.kind == Outcome::refused ? "refused" : "other exception";
      table[ort + " / " + got] += 1;
      std::string fail;
      if (o.kind == Outcome::other_exception) fail = o.message;
      else if (o.kind == Outcome::refused && o.message.empty()) fail = "refused without a message";
      else if ((ort == "refused" || ort == "crashed") && o.kind == Outcome::computed) {
        const std::string why = accepted_reason(c.meta.value("ort_error", ""));
        if (why.empty()) fail = "ORT " + ort + " (" + c.meta.value("ort_error", "") + "), bricklab computed";
        else accepted[why] += 1;
      }
      else if (ort == "computed" && o.kind == Outcome::computed) {
        auto differs = [&](const std::map<std::string, Tensor>& want_all, const char* who, bool or_ort) -> std::string {
          for (const auto& [name, want] : want_all) {
            auto it = o.outputs.find(name);
            if (it == o.outputs.end()) return "bricklab has no output '" + name + "'";
            const auto ort_it = c.expected.find(name);
            const Tensor* alt = or_ort && ort_it != c.expected.end() ? &ort_it->second : nullptr;
            std::string d = compare(name, it->second, want, c.meta.at("rtol").get<double>(), c.meta.at("atol").get<double>(), who, alt);
            if (!d.empty()) return d;
          }
          return o.outputs.size() != want_all.size() ? std::string("bricklab has other outputs than ") + who : "";
        };
        fail = differs(c.expected, "ORT", false);
        if (!fail.empty() && !c.reference.empty()) {
          const std::string vs_reference = differs(c.reference, "ONNX's reference", true);
          if (vs_reference.empty()) {
            matches_reference += 1;
            if (verbose || only >= 0) std::cout << describe(c) << ": ORT departs from ONNX's reference (" << fail << "); bricklab matches the reference\n";
            fail.clear();
          } else {
            fail += "; and " + vs_reference;
          }
        }
      } else if (ort == "computed" && o.kind == Outcome::refused) {
        std::string head = o.message;
        const auto colon = head.find(": ", head.find("case ") == 0 ? head.find(": ") + 2 : 0);
        if (colon != std::string::npos) head = head.substr(colon + 2);
        refusals[head.substr(0, 90)] += 1;
      }
      if (!fail.empty()) failures.push_back(describe(c) + ": " + fail);
      if (verbose || only >= 0) std::cout << describe(c) << "\n  ORT " << ort << " " << c.meta.value("ort_error", "")
                                          << "\n  bricklab " << got << " " << o.message << (fail.empty() ? "" : "\n  FAIL " + fail) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "bricklab_structural_fuzz: " << e.what() << "\n";
    return 2;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "structural fuzz: " << cases << " cases in " << int(secs) << " s\n";
  for (const auto& [k, v] : table) std::cout << "  ORT " << k << ": " << v << "\n";
  for (const auto& [k, v] : accepted) std::cout << "  of which ORT refused, bricklab computed: " << v << " (" << k << ")\n";
  if (matches_reference)
    std::cout << "  of which ORT computed other values than ONNX's reference implementation and bricklab matches the reference\n"
                 "    (element by element, either one; where both overflowed, with a non-finite value too): "
              << matches_reference << "\n";
  if (verbose && !refusals.empty()) {
    std::cout << "bricklab's reasons where ORT computed:\n";
    for (const auto& [k, v] : refusals) std::cout << "  " << v << "  " << k << "\n";
  }
  if (failures.empty()) {
    std::cout << "0 crashes, 0 hangs, 0 disagreements\n";
    return cases > 0 ? 0 : 1;
  }
  std::cout << failures.size() << " disagreements:\n";
  for (size_t i = 0; i < failures.size() && int(i) < show; ++i) std::cout << "  " << failures[i] << "\n";
  return 1;
}
