// The HTML report of a lower-bound analysis (include/bricklab/lowerbound/report.hpp), rendered
// from the committed fixture tests/data/lowerbound_resnet_sample.json (the first two stages of
// ResNet-18: 23 layers, 6 fused groups, a downsample branch off the critical path, advice of all
// five kinds, one layer without a benchmark): the page is self-contained, has its charts, marks
// the critical path, lists every advice row and the missing layer, escapes hostile names, copes
// with nulls and empty lists, stays small for 500 layers, and rejects malformed input by name.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>

#include "bricklab/core/error.hpp"
#include "bricklab/lowerbound/report.hpp"

using bricklab::InvalidArgument;
using bricklab::lowerbound::render_report_html;

namespace {

std::string fixture() {
  std::ifstream in(std::string(BRICKLAB_SOURCE_DIR) + "/tests/data/lowerbound_resnet_sample.json");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + needle.size())) ++n;
  return n;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

// The text of the <section id="..."> element.
std::string section(const std::string& page, const std::string& id) {
  size_t start = page.find("<section id=\"" + id + "\"");
  if (start == std::string::npos) return {};
  size_t end = page.find("</section>", start);
  return page.substr(start, end - start);
}

const char* kMinimal = R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": []})";

}  // namespace

TEST_CASE("report: the fixture renders as one self-contained page with its charts", "[report]") {
  std::string page = render_report_html(fixture());
  REQUIRE(page.rfind("<!DOCTYPE html>", 0) == 0);
  REQUIRE(page.find("</html>") != std::string::npos);
  CHECK(page.find("resnet18 (first two stages)") != std::string::npos);
  CHECK(page.find("AMD EPYC 9R14") != std::string::npos);
  CHECK(page.find("3f2a9c0d11aa22bb") != std::string::npos);

  // Nothing fetched from anywhere: no external scripts, styles, fonts, images or links.
  CHECK(page.find("src=") == std::string::npos);
  CHECK(page.find("<link") == std::string::npos);
  CHECK(page.find("http://") == std::string::npos);
  CHECK(page.find("https://") == std::string::npos);
  CHECK(page.find("url(") == std::string::npos);
  CHECK(page.find("@import") == std::string::npos);
  CHECK(page.find("<img") == std::string::npos);
  CHECK(count(page, "<script>") == 1);  // the table sorter, inline

  // One SVG chart per section.
  for (const char* id : {"bounds", "ops", "top-layers", "timeline"}) {
    INFO(id);
    std::string s = section(page, id);
    REQUIRE(!s.empty());
    CHECK(s.find("<svg") != std::string::npos);
    CHECK(s.find("<rect") != std::string::npos);
  }
  // Headline numbers: measured bricklab latency and the bounds, in ms with 3 significant digits.
  CHECK(page.find("4.54 ms") != std::string::npos);  // bricklab measured
  CHECK(page.find("2.64 ms") != std::string::npos);  // sequential bound
  CHECK(page.find("2.58 ms") != std::string::npos);  // parallel bound
  CHECK(page.find("2.11 ms") != std::string::npos);  // roofline, parallel
  CHECK(page.find("above the sequential bound") != std::string::npos);
  // Bounds chart: every bound and every measured runtime.
  std::string bounds = section(page, "bounds");
  for (const char* row : {"Roofline, parallel", "Roofline, sequential", "Parallel bound", "Sequential bound",
                          "Default variants (sum)", "Measured: bricklab", "Measured: onnxruntime", "Measured: pytorch"})
    CHECK(bounds.find(row) != std::string::npos);
  // FLOPs and bytes with SI prefixes.
  CHECK(page.find("236 M") != std::string::npos);
  CHECK(page.find("1.2 MB") != std::string::npos);
  // Operator types in the breakdown legend.
  std::string ops = section(page, "ops");
  for (const char* op : {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Gemm", "GlobalAveragePool"})
    CHECK(ops.find(std::string(">") + op + "<") != std::string::npos);
}

TEST_CASE("report: critical path, missing layers and advice are shown", "[report]") {
  std::string page = render_report_html(fixture());
  std::string layers = section(page, "layers");
  // 21 of the 23 layers are on the critical path; the downsample branch is not.
  CHECK(count(layers, "<tr class=\"crit\"") == 21);
  CHECK(count(layers, "<tr class=\"miss\"") == 1);
  size_t ds = layers.find("downsample.0/<wbr>Conv");  // names break after each /
  REQUIRE(ds != std::string::npos);
  size_t row = layers.rfind("<tr", ds);
  CHECK(layers.compare(row, 17, "<tr class=\"crit\"") != 0);
  std::string timeline = section(page, "timeline");
  CHECK(timeline.find("critical path") != std::string::npos);
  CHECK(count(timeline, "#dd5a1e") >= 15);  // critical layers drawn in the highlight colour

  // The missing layer, prominently, before the charts.
  size_t warn = page.find("id=\"missing\"");
  REQUIRE(warn != std::string::npos);
  CHECK(warn < page.find("id=\"bounds\""));
  CHECK(page.find("1 layer has no benchmark") != std::string::npos);
  CHECK(page.find("downsample.1/BatchNormalization</li>") != std::string::npos);

  // All five advice rows, with predicted and realised savings.
  std::string advice = section(page, "advice");
  for (const char* kind : {"algorithm", "fusion", "precision", "parallel", "runtime"})
    CHECK(advice.find(std::string("kind-") + kind) != std::string::npos);
  CHECK(count(advice, "<tr><td data-v=") == 5);
  CHECK(advice.find("Select the fastest convolution algorithm per layer") != std::string::npos);
  CHECK(advice.find("0.46 ms") != std::string::npos);
  CHECK(advice.find("0.39 ms") != std::string::npos);
  CHECK(count(advice, "not applied") == 2);
  // The fused groups.
  CHECK(count(section(page, "groups"), "Conv+BatchNormalization") == 6);
}

TEST_CASE("report: strings from the JSON are escaped", "[report]") {
  std::string hostile = R"(<script>alert(1)</script>&\"x')";
  std::string json = replace_all(fixture(), "\"/fc/Gemm\"", "\"" + hostile + "\"");
  json = replace_all(json, "\"resnet18 (first two stages)\"", "\"<b onmouseover=alert(2)>\"");
  json = replace_all(json, "\"Only one short branch", "\"<img src=x onerror=alert(3)> branch");
  std::string page = render_report_html(json);
  CHECK(page.find("<script>alert(1)</script>") == std::string::npos);
  CHECK(page.find("alert(1)</") == std::string::npos);
  CHECK(page.find("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;x&#39;") != std::string::npos);
  CHECK(page.find("<b onmouseover") == std::string::npos);
  CHECK(page.find("&lt;b onmouseover=alert(2)&gt;") != std::string::npos);
  CHECK(page.find("<img") == std::string::npos);
  CHECK(count(page, "<script>") == 1);
}

TEST_CASE("report: nulls, absent optional fields and empty lists", "[report]") {
  std::string page;
  REQUIRE_NOTHROW(page = render_report_html(kMinimal));
  CHECK(page.find("n/a") != std::string::npos);
  CHECK(page.find("not measured") != std::string::npos);
  CHECK(page.find("id=\"missing\"") == std::string::npos);
  REQUIRE_NOTHROW(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "path": null,
      "batch": null, "backend": null, "threads": null, "fingerprint": null, "machine": null, "bounds": null,
      "measured": null, "groups": null, "critical_path": null, "advice": null, "missing": null,
      "layers": [{"name": "a", "op": "Conv", "flops": null, "bytes": null, "roofline_ms": null, "default_ms": null,
                  "fastest_ms": null, "variants": null, "group": null, "critical": null, "start_ms": null,
                  "finish_ms": null, "missing": true}]})"));
  REQUIRE_NOTHROW(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m",
      "machine": {"cpu": null, "peak_gflops": {"tf32": 400, "fp16": null}},
      "bounds": {"sequential_ms": 1.0}, "measured": [{"runtime": "pytorch", "ms": null}],
      "advice": [{"kind": "mystery"}], "layers": [{"name": "a"}]})"));
}

TEST_CASE("report: a 500-layer model stays compact", "[report]") {
  std::string layers;
  for (int i = 0; i < 500; ++i) {
    std::string name = "/blocks/blocks." + std::to_string(i / 20) + "/attn/MatMul_" + std::to_string(i);
    double t = 0.01 + (i % 37) * 0.003;
    layers += std::string(i ? "," : "") + R"({"name": ")" + name + R"(", "op": ")" +
              (i % 3 ? "MatMul" : (i % 2 ? "Add" : "LayerNormalization")) + R"(", "flops": 1.2e8, "bytes": 3e6,
        "roofline_ms": 0.004, "roofline_limit": "memory", "default_variant": "auto", "default_ms": )" +
              std::to_string(t) + R"(, "fastest_variant": "auto", "fastest_ms": )" + std::to_string(t) +
              R"(, "variants": [{"name": "auto", "ms": 0.1, "default": true}], "group": -1, "critical": true,
        "start_ms": )" + std::to_string(i * 0.05) + R"(, "finish_ms": )" + std::to_string(i * 0.05 + t) +
              R"(, "missing": false})";
  }
  std::string page = render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "vit", "layers": [)" +
                                        layers + "]}");
  CHECK(page.size() < 1200 * 1000);
  CHECK(page.find("Top 25 layers by time") != std::string::npos);
  CHECK(count(page, "<tr class=\"crit\"") == 500);
}

TEST_CASE("report: malformed input throws InvalidArgument naming the field", "[report]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_AS(render_report_html("{not json"), InvalidArgument);
  CHECK_THROWS_AS(render_report_html(""), InvalidArgument);
  CHECK_THROWS_AS(render_report_html("[1, 2]"), InvalidArgument);
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m"})"), Contains("'layers'"));
  CHECK_THROWS_AS(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m"})"), InvalidArgument);
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/2", "model": "m", "layers": []})"),
                    Contains("'schema'"));
  CHECK_THROWS_WITH(render_report_html(R"({"model": "m", "layers": []})"), Contains("'schema'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "layers": []})"), Contains("'model'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": 3, "layers": []})"),
                    Contains("'model'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": {}})"),
                    Contains("'layers'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": [{"op": "Conv"}]})"),
                    Contains("'layers[0].name'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m",
                        "layers": [{"name": "a"}, {"name": "b", "flops": "many"}]})"),
                    Contains("'layers[1].flops'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m",
                        "layers": [{"name": "a", "group": 1e300}]})"),
                    Contains("'layers[0].group'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": [],
                        "bounds": {"parallel_ms": "fast"}})"),
                    Contains("'bounds.parallel_ms'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": [],
                        "advice": [{"kind": "fusion", "applied": "yes"}]})"),
                    Contains("'advice[0].applied'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": [],
                        "machine": {"peak_gflops": {"f32": "lots"}}})"),
                    Contains("'machine.peak_gflops.f32'"));
  CHECK_THROWS_WITH(render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": [],
                        "critical_path": ["a", 2]})"),
                    Contains("'critical_path[1]'"));
}

TEST_CASE("report: operator colours follow the time each type takes, distinct for the heaviest", "[report]") {
  // A custom-domain type the table does not know outweighs Conv; twenty light types follow.
  std::string layers = R"({"name": "a", "op": "MyFusedAttention", "default_ms": 9.0, "fastest_ms": 8.0},
                          {"name": "b", "op": "Conv", "default_ms": 5.0, "fastest_ms": 4.0},
                          {"name": "c", "op": "Relu", "default_ms": 1.0, "fastest_ms": 1.0})";
  for (int i = 0; i < 20; ++i)
    layers += R"(, {"name": "t)" + std::to_string(i) + R"(", "op": "Light)" + std::to_string(i) + R"(", "default_ms": 0.01})";
  const std::string page = render_report_html(R"({"schema": "bricklab.lowerbound/1", "model": "m", "layers": [)" + layers + "]}");
  const std::string table = section(page, "layers");
  auto swatch = [&](const std::string& op) {
    const std::string tail = "\"></span>" + op + "</td>";
    const size_t end = table.find(tail);
    REQUIRE(end != std::string::npos);
    const size_t start = table.rfind("background:", end);
    return table.substr(start + 11, end - start - 11);
  };
  CHECK(swatch("MyFusedAttention") == "#4e79a7");  // the palette's first colour: the heaviest type
  CHECK(swatch("Conv") == "#f28e2b");
  CHECK(swatch("Relu") != swatch("Conv"));
  CHECK(swatch("Light9") == "#c7c7c7");  // the last by time and name, beyond the palette: neutral
}
