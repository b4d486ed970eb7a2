// Training, evaluation and sampling of the byte-level language models: what `kat train-lm`,
// `kat eval-lm` and `kat generate` run.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "kat/lm.h"
#include "kat/rng.h"
#include "kat/text.h"

namespace kat {

constexpr int64_t kDefaultLmSteps = 1800;  // about 20 minutes on the 2-core reference VM

struct LmTrainOptions {
  std::vector<std::string> texts;  // empty: the fortunes corpus (default_text_dir())
  int64_t steps = 0;               // 0: kDefaultLmSteps, or the resumed run's
  int batch = 16;                  // sequences of `context` tokens per step
  float lr = 2e-3f, min_lr = 1e-4f;
  int64_t warmup = 100;
  float weight_decay = 0.1f, clip = 1.0f, beta2 = 0.99f;
  int64_t eval_every = 500;
  int64_t eval_tokens = 65536;  // validation tokens per periodic evaluation (the final one: all)
  int threads = 0;
  uint64_t seed = 0;
  std::string out_dir;  // empty: runs/<architecture>-<timestamp>
  bool overwrite = false;
  std::string resume;
  int64_t stop_after = 0;
  int log_every = 50;
  int progress = -1;
};

struct LmEval {
  int64_t tokens = 0;
  double loss = 0;  // mean nats per token
  double bits_per_byte() const;
  double perplexity() const;
};

struct LmTrainResult {
  std::string run_dir;
  LmEval final_eval;
  double best_loss = 0, train_seconds = 0;
  int64_t steps = 0;
};

LmTrainResult train_lm(const LmConfig& config, LmTrainOptions options, std::ostream& log);

// The text a run trains on, split as train_lm splits it: the files of `texts` (one document
// each), or the fortunes when empty.
TextCorpus load_text_corpus(const std::vector<std::string>& texts, int64_t context);

// Mean next-token loss over `tokens` cut into windows of `window` tokens (0: the model's context;
// the last window shorter), `batch` windows per forward; at most `limit` predicted tokens when
// limit > 0.
LmEval evaluate_lm(CausalLM& model, const std::vector<int32_t>& tokens, int batch,
                   int64_t limit = 0, int64_t window = 0);

struct SamplingOptions {
  float temperature = 0.8f;  // 0: greedy
  int top_k = 0;             // 0: all tokens
  float top_p = 1.0f;        // nucleus: the smallest set holding this much probability
};
void validate(const SamplingOptions& s);
// Draws the next token from logits [V]; scratch is reused between calls.
int32_t sample_token(const float* logits, int64_t V, const SamplingOptions& s, Rng& rng,
                     std::vector<float>& scratch);

// Up to n bytes after `prompt` (empty: the start of a document) from the KV cache, batch 1; when
// `context` tokens are cached, the cache restarts from the last half of the text. Stops at the
// end-of-text symbol. on_byte (when set) sees each byte as it is drawn, for streaming.
std::string generate_text(CausalLM& model, const std::string& prompt, int64_t n, int64_t context,
                          const SamplingOptions& s, Rng& rng,
                          const std::function<void(char)>& on_byte = {});

}  // namespace kat
