// The self-contained HTML report of a model's lower-bound analysis (Benanza-style).
//
// Input: the JSON text written by `bricklab lowerbound --json` (schema "bricklab.lowerbound/1").
// Output: one HTML page with no external scripts, fonts, images or stylesheets (charts are
// inline SVG, the optional table sorting is a few lines of inline JavaScript and the page reads
// the same without it). It shows:
//   - a header with model, batch, backend, threads, machine (peaks, bandwidth), fingerprint, and
//     headline numbers (measured latency, sequential / parallel / roofline bounds, the gap);
//   - bounds vs measured latencies (horizontal bars, p10-p90 whiskers on measurements);
//   - time by operator type (default variants, fastest variants, roofline; stacked bars);
//   - the top layers by time (default vs fastest vs roofline; critical-path layers marked);
//   - the parallel schedule as a timeline, critical-path layers highlighted;
//   - the advice table (predicted vs realised savings), the fused groups, the full layer table
//     (sortable) and, prominently, the layers without a benchmark.
// Every string taken from the JSON is HTML-escaped; null or absent optional fields and empty
// lists are rendered as "n/a" or left out.
#pragma once

#include <string>

namespace bricklab::lowerbound {

// Renders the analysis JSON as one self-contained HTML page. Throws bricklab::InvalidArgument
// naming the field when the text is not JSON, when a required field ("schema", "model",
// "layers", a layer's "name") is missing, when the schema is not "bricklab.lowerbound/1", or
// when a field has the wrong type (e.g. a string where a number or null is expected).
std::string render_report_html(const std::string& analysis_json);

}  // namespace bricklab::lowerbound
