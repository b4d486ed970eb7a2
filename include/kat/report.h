// Pictures of what a model learned: the GR-KAN functions of a checkpoint (`kat plot-activations`),
// attention maps, and one self-contained HTML page per run directory (`kat report`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kat/config.h"
#include "kat/grkan.h"
#include "kat/params.h"

namespace kat {

// ---- Learned GR-KAN functions ------------------------------------------------------------------

struct LearnedActivation {
  std::string name;  // the parameters' prefix, e.g. "blocks.0.mlp.act1"
  int layer = 0;
  int which = 1;  // 1: act1 (before fc1), 2: act2 (after fc1)
  std::vector<RationalCoefs>
      groups;                // one per group: the layer's numerator, the group's denominator
  RationalCoefs initial;     // act1: identity; act2: rational_init(act_init)
  std::string initial_name;  // "identity", "swish", ...
};

// Every GR-KAN rational among the parameters (names "<prefix>mlp.act{1,2}.weight_numerator" [1, 6]
// and ".weight_denominator" [groups, 4]), by layer, act1 before act2; empty for MLP models.
std::vector<LearnedActivation> learned_activations(const Params& params,
                                                   const std::string& act_init);

// The GR-KAN functions of a checkpoint directory of any kind (image classifier, language model,
// sequence classifier: told apart by its config.json, as `kat info` does); `architecture` and
// `ffn` ("kan" or "mlp") are set for titles and messages.
std::vector<LearnedActivation> checkpoint_activations(const std::string& checkpoint,
                                                      std::string& architecture, std::string& ffn);

constexpr double kActivationRange = 4.0;  // functions are drawn over [-4, 4]

// One small plot: F(x) of every group (solid, a colour each, <title>group g</title>) over the
// initial function (dashed, black).
std::string activation_svg(const LearnedActivation& a, int width = 260, int height = 200);
// All of them in one SVG file: a title and a legend on top, then a row per layer with act1 and
// act2 side by side.
std::string activations_grid_svg(const std::vector<LearnedActivation>& acts,
                                 const std::string& title);

// ---- Attention maps -----------------------------------------------------------------------------

// True for the mixers whose token-to-token weights are a matrix one can draw: softmax, local
// (softmax over the window) and linear (the normalised phi(q_i) . phi(k_j) it uses implicitly).
bool has_attention_map(Mixer m);

// The weights head `head` puts on every key, for one example: qkv [T, 3C] as the blocks keep it
// (q, k, v stacked, heads contiguous, hd = C / H). Softmax and local: softmax(q k^T / sqrt(hd))
// under AttentionMask(causal, window); linear: phi(q_i) . phi(k_j) / (sum over the keys + 1e-6)
// with phi = elu + 1 over every key (causal: j <= i), as the kernel weighs the values.
// Returns [n, n], n = min(T, max_cells): the whole matrix (row i: query i's weights) when
// T <= max_cells, else the mean of the weights of queries [a T / n, (a + 1) T / n) on keys
// [b T / n, (b + 1) T / n) in cell (a, b), accumulated row by row (no T x T buffer).
std::vector<double> attention_map(const float* qkv, int64_t T, int64_t C, int64_t H, int64_t head,
                                  Mixer mixer, bool causal, int64_t window, int64_t max_cells,
                                  int64_t& n);

// ---- The report page ----------------------------------------------------------------------------

struct ReportOptions {
  std::string run_dir;
  std::string checkpoint;  // "last", "best" or a checkpoint directory; empty: last/, else best/
  std::string data_dir;    // test data of classifiers and LRA runs; empty: the run's
  int64_t limit = -1;      // test examples evaluated; 0: all; -1: all images, 500 LRA sequences
  int images = 48;         // test images in the grid (misclassified first)
  int tokens = 200;        // bytes per language-model sample
  uint64_t seed = 0;       // of the samples
};

// The page of a run directory: one HTML document with inline SVG and PNG data (no script, no
// network). Runs the evaluation, the samples and one attention example on the CPU. Errors: a
// missing run directory or metrics.jsonl, an unreadable checkpoint that was asked for by name.
// What cannot be shown (no checkpoint yet, no GR-KAN layers, test data not found, a mixer without
// attention weights) is said on the page.
std::string report_html(const ReportOptions& options);

}  // namespace kat
