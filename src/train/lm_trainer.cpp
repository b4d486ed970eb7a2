// The language-model training loop. Batches are windows at offsets drawn from (seed, step), so a
// run resumed at step s draws exactly what the uninterrupted run drew.
#include "kat/lm_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "kat/checkpoint.h"
#include "kat/distributed.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/optim.h"
#include "kat/parallel.h"
#include "kat/text.h"
#include "train/run_support.h"

namespace kat {
using json = nlohmann::json;

namespace {

enum Purpose : uint64_t { kBatches = 5 };

json options_json(const LmTrainOptions& o) {
  return {{"texts", o.texts},
          {"steps", o.steps},
          {"batch", o.batch},
          {"lr", o.lr},
          {"min_lr", o.min_lr},
          {"warmup", o.warmup},
          {"weight_decay", o.weight_decay},
          {"clip", o.clip},
          {"beta2", o.beta2},
          {"eval_every", o.eval_every},
          {"eval_tokens", o.eval_tokens},
          {"seed", o.seed}};
}

void options_from_json(const json& j, LmTrainOptions& o) {
  o.texts = j.at("texts").get<std::vector<std::string>>();
  o.steps = j.at("steps").get<int64_t>();
  o.batch = j.at("batch").get<int>();
  o.lr = j.at("lr").get<float>();
  o.min_lr = j.at("min_lr").get<float>();
  o.warmup = j.at("warmup").get<int64_t>();
  o.weight_decay = j.at("weight_decay").get<float>();
  o.clip = j.at("clip").get<float>();
  o.beta2 = j.at("beta2").get<float>();
  o.eval_every = j.at("eval_every").get<int64_t>();
  o.eval_tokens = j.at("eval_tokens").get<int64_t>();
  o.seed = j.at("seed").get<uint64_t>();
}

// Windows of T + 1 tokens at random offsets: inputs [B, T] and the next tokens [B, T].
void sample_batch(int32_t* inputs, int32_t* targets, const std::vector<int32_t>& train, int64_t B,
                  int64_t T, Rng& rng) {
  const auto span = static_cast<uint64_t>(train.size() - T);
  for (int64_t b = 0; b < B; b++) {
    const auto at = static_cast<int64_t>(rng.next_u64() % span);
    std::copy(train.begin() + at, train.begin() + at + T, inputs + b * T);
    std::copy(train.begin() + at + 1, train.begin() + at + T + 1, targets + b * T);
  }
}

// Every rank evaluates its share of the windows of T tokens; the sums come together.
LmEval evaluate_lm_ranks(CausalLM& model, const std::vector<int32_t>& tokens, int batch,
                         int64_t limit) {
  if (dist::size() == 1) return evaluate_lm(model, tokens, batch, limit);
  const int64_t T = model.config().context;
  int64_t n = static_cast<int64_t>(tokens.size()) - 1;
  if (limit > 0) n = std::min(n, limit);
  const dist::Shard s = dist::shard((n + T - 1) / T);
  const int64_t begin = s.begin * T, end = std::min(n, (s.begin + s.count) * T);
  double sums[2] = {0, 0};  // loss x tokens, tokens
  if (end > begin) {
    const std::vector<int32_t> part(tokens.begin() + begin, tokens.begin() + end + 1);
    const LmEval e = evaluate_lm(model, part, batch, 0, T);
    sums[0] = e.loss * static_cast<double>(e.tokens), sums[1] = static_cast<double>(e.tokens);
  }
  dist::sum(sums, 2, "evaluation");
  LmEval e;
  e.tokens = static_cast<int64_t>(sums[1]);
  e.loss = sums[0] / std::max(1.0, sums[1]);
  return e;
}

}  // namespace

TextCorpus load_text_corpus(const std::vector<std::string>& texts, int64_t context) {
  if (texts.empty()) {
    const auto files = fortune_files(default_text_dir());
    return split_corpus(
        read_documents(files, true), context,
        std::string(default_text_dir()) + " (" + std::to_string(files.size()) + " fortune files)");
  }
  std::string source = texts[0];
  if (texts.size() > 1) source += " and " + std::to_string(texts.size() - 1) + " more";
  return split_corpus(read_documents(texts, false), context, source);
}

double LmEval::bits_per_byte() const { return loss / std::log(2.0); }
double LmEval::perplexity() const { return std::exp(loss); }

LmEval evaluate_lm(CausalLM& model, const std::vector<int32_t>& tokens, int batch, int64_t limit,
                   int64_t window) {
  const int64_t T = window > 0 ? window : model.config().context;
  check(T <= model.config().context, "a context of ", T, " tokens is longer than the ",
        model.config().context, " the model supports");
  int64_t n = static_cast<int64_t>(tokens.size()) - 1;  // predicted tokens
  check(n >= 1, "evaluation needs at least 2 tokens");
  if (limit > 0) n = std::min(n, limit);
  std::vector<int32_t> in(static_cast<size_t>(batch) * T), out(in.size());
  LmEval e;
  double sum = 0;
  for (int64_t at = 0; at < n;) {
    // A batch of full windows, or the one shorter window at the end.
    const int64_t len = std::min(T, n - at);
    const int64_t B = len < T ? 1 : std::min<int64_t>(batch, (n - at) / T);
    for (int64_t b = 0; b < B; b++) {
      std::copy_n(tokens.begin() + at + b * len, len, in.begin() + b * len);
      std::copy_n(tokens.begin() + at + b * len + 1, len, out.begin() + b * len);
    }
    sum += static_cast<double>(model.forward(in.data(), out.data(), B, len)) * B * len;
    at += B * len;
  }
  e.tokens = n;
  e.loss = sum / n;
  return e;
}

LmTrainResult train_lm(const LmConfig& config_in, LmTrainOptions o, std::ostream& log) {
  json state;
  std::string resume_dir;
  if (!o.resume.empty()) {
    const LmTrainOptions given = o;  // --steps may extend the run
    state = read_trainer_state(o.resume, [&](const json& saved) { options_from_json(saved, o); });
    resume_dir = state["resume_dir"].get<std::string>();
    if (given.steps > 0) o.steps = given.steps;
    o.threads = given.threads, o.progress = given.progress, o.stop_after = given.stop_after;
    o.log_every = given.log_every;
    o.out_dir = state["run_dir"].get<std::string>();
  }
  if (o.steps <= 0) o.steps = kDefaultLmSteps;
  check(o.batch > 0 && o.lr > 0 && o.eval_every > 0, "batch, lr and --eval-every must be positive");
  set_num_threads(o.threads);

  std::unique_ptr<CausalLM> model;
  if (!resume_dir.empty()) {
    model = load_lm(resume_dir);
  } else {
    model = std::make_unique<CausalLM>(config_in);
    model->init(o.seed);
  }
  const LmConfig& c = model->config();
  const int64_t T = c.context, B = o.batch;
  const TextCorpus corpus = load_text_corpus(o.texts, T);
  if (o.out_dir.empty()) o.out_dir = default_run_dir(c.architecture);
  const int64_t local = rank_batch(B), first = dist::rank() * local;
  if (resume_dir.empty()) prepare_run_dir(o.out_dir, o.overwrite);

  AdamWConfig ac;
  ac.weight_decay = o.weight_decay, ac.beta2 = o.beta2;
  AdamW opt(model->params(), ac);
  int64_t step = 0;
  double best = std::numeric_limits<double>::infinity();
  if (!resume_dir.empty()) {
    load_optimizer(resume_dir, model->params(), opt);
    step = state.at("step").get<int64_t>();
    best = state.value("best_loss", best);
    check(step == opt.steps(), resume_dir, ": optimizer and trainer state disagree on the step");
  }
  if (dist::root()) write_file_atomic(o.out_dir + "/config.json", lm_config_to_json(c));
  MetricsLog metrics(o.out_dir);
  const bool bar = o.progress == 1 || (o.progress == -1 && isatty(STDERR_FILENO));
  Progress progress(root_log(log), bar);
  {
    std::ostringstream s;
    s << "kat: training " << c.architecture << " (" << model->params().total() << " parameters, "
      << c.ffn_name() << " feed-forward, context " << T << ") on " << corpus.source << ": "
      << corpus.train.size() << " training / " << corpus.valid.size() << " validation tokens; "
      << o.steps << " steps of " << batch_text(B) << " x " << T << ", " << num_threads()
      << " threads -> " << o.out_dir;
    if (step > 0) s << " (resuming at step " << step << ")";
    progress.message(s.str());
  }
  const RunClock clock(state);
  auto save_state = [&](const std::string& dir, int64_t at_step, double val_loss) {
    if (!dist::root()) return;
    const SavingCheckpoint saving;
    save_lm(dir, *model);
    save_optimizer(dir, model->params(), opt);
    json s = {{"step", at_step},      {"best_loss", std::isfinite(best) ? best : 0.0},
              {"val_loss", val_loss}, {"time_s", clock.seconds()},
              {"run_dir", o.out_dir}, {"options", options_json(o)}};
    write_file_atomic(dir + "/trainer_state.json", s.dump(2) + "\n");
  };

  std::vector<int32_t> inputs(B * T), targets(B * T);
  InterruptGuard interrupt;
  LmTrainResult result;
  result.run_dir = o.out_dir;
  double t_window = now_seconds(), window_loss = 0, last_tok_s = 0;
  int64_t window_steps = 0;
  double window_sync = 0;
  const int64_t end_step = o.stop_after > 0 ? std::min(o.steps, o.stop_after) : o.steps;
  dist::GradientSync sync(model->params());
  bool stop = interrupt.interrupted();
  while (step < end_step && !stop) {
    // Every rank draws the whole batch (the windows of one process) and takes its part.
    Rng rng = Rng::derive(o.seed, kBatches, static_cast<uint64_t>(step));
    sample_batch(inputs.data(), targets.data(), corpus.train, B, T, rng);
    const float lr = schedule_lr(step, o.steps, o.warmup, o.lr, o.min_lr);
    model->params().zero_grad();
    const float local_loss =
        model->forward(inputs.data() + first * T, targets.data() + first * T, local, T);
    check(std::isfinite(local_loss), "the loss became ", local_loss, " at step ", step,
          " (try a lower --lr)");
    sync.overlap_next_backward();
    model->backward();
    double stats[2] = {local_loss, interrupt.interrupted() ? 1.0 : 0.0};
    sync.finish(stats, 2, step);
    const double loss = stats[0] / dist::size();
    stop = stats[1] > 0;
    const float grad_norm = clip_grad_norm(model->params(), o.clip);
    opt.step(lr);
    step++;
    window_loss += loss, window_steps++;

    if (step % o.log_every == 0 || step == o.steps) {
      const double t = now_seconds();
      last_tok_s = window_steps * B * T / std::max(1e-9, t - t_window);
      const double mean_loss = window_loss / window_steps;
      const double eta = (o.steps - step) * B * T / std::max(1.0, last_tok_s);
      std::ostringstream line;
      line << "step " << step << "/" << o.steps << " loss " << std::fixed << std::setprecision(4)
           << mean_loss << " (" << std::setprecision(2) << mean_loss / std::log(2.0)
           << " bits/byte) " << std::setprecision(0) << last_tok_s << " tok/s ETA "
           << format_duration(eta);
      progress.step(step, o.steps, line.str());
      json record = {{"kind", "step"},           {"step", step},
                     {"loss", mean_loss},        {"lr", lr},
                     {"grad_norm", grad_norm},   {"tokens_per_s", last_tok_s},
                     {"time_s", clock.seconds()}};
      if (dist::size() > 1) record["allreduce_s"] = sync.seconds() - window_sync;
      metrics.write(record);
      t_window = t, window_loss = 0, window_steps = 0, window_sync = sync.seconds();
    }
    if (step % o.eval_every == 0 || step == o.steps) {
      const LmEval e =
          evaluate_lm_ranks(*model, corpus.valid, local, step == o.steps ? 0 : o.eval_tokens);
      const bool is_best = e.loss < best;
      best = std::min(best, e.loss);
      std::ostringstream s;
      s << "step " << step << ": validation " << std::fixed << std::setprecision(3)
        << e.bits_per_byte() << " bits/byte (perplexity " << std::setprecision(2) << e.perplexity()
        << ", " << e.tokens << " tokens)" << (is_best ? " (best)" : "") << ", "
        << format_duration(clock.seconds()) << " elapsed";
      progress.message(s.str());
      metrics.write({{"kind", "eval"},
                     {"step", step},
                     {"val_loss", e.loss},
                     {"val_bpb", e.bits_per_byte()},
                     {"val_tokens", e.tokens},
                     {"tokens_per_s", last_tok_s},
                     {"time_s", clock.seconds()}});
      save_state(o.out_dir + "/last", step, e.loss);
      if (is_best) save_state(o.out_dir + "/best", step, e.loss);
      result.final_eval = e;
      t_window = now_seconds();
    }
  }
  if (step < o.steps) {
    save_state(o.out_dir + "/last", step, 0.0);
    progress.message(std::string(stop ? "interrupted" : "stopped") + ": saved " + o.out_dir +
                     "/last at step " + std::to_string(step) + "; continue with --resume " +
                     o.out_dir + "/last");
  }
  result.best_loss = best;
  result.train_seconds = clock.seconds();
  result.steps = step;
  return result;
}

void validate(const SamplingOptions& s) {
  check(s.temperature >= 0 && std::isfinite(s.temperature), "--temperature must be >= 0, not ",
        s.temperature);
  check(s.top_k >= 0, "--top-k must be >= 0 (0: no limit), not ", s.top_k);
  check(s.top_p > 0 && s.top_p <= 1, "--top-p must be in (0, 1], not ", s.top_p);
}

int32_t sample_token(const float* logits, int64_t V, const SamplingOptions& s, Rng& rng,
                     std::vector<float>& p) {
  const auto argmax = static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  if (s.temperature == 0 || s.top_k == 1) return argmax;
  p.resize(V);
  const float mx = logits[argmax];
  double sum = 0;
  for (int64_t v = 0; v < V; v++) sum += p[v] = std::exp((logits[v] - mx) / s.temperature);
  thread_local std::vector<int32_t> order;  // tokens by probability; kept between calls
  order.resize(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
  int64_t keep = s.top_k > 0 ? std::min<int64_t>(s.top_k, V) : V;
  if (s.top_p < 1) {
    double acc = 0;
    for (int64_t i = 0; i < keep; i++) {
      acc += p[order[i]] / sum;
      if (acc >= s.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (int64_t i = 0; i < keep; i++) kept += p[order[i]];
  double u = rng.uniform_double() * kept;
  for (int64_t i = 0; i < keep; i++) {
    u -= p[order[i]];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

std::string generate_text(CausalLM& model, const std::string& prompt, int64_t n, int64_t context,
                          const SamplingOptions& s, Rng& rng,
                          const std::function<void(char)>& on_byte) {
  check(context > 1 && context <= model.config().context, "a context of ", context,
        " tokens is longer than the model's ", model.config().context);
  std::vector<int32_t> text(prompt.begin(), prompt.end());
  for (auto& t : text) t &= 0xFF;
  check(static_cast<int64_t>(text.size()) <= context, "the prompt is ", text.size(),
        " bytes, longer than the model's context of ", context, " tokens");
  if (text.empty()) text.push_back(kEndOfText);
  std::vector<float> scratch;
  std::string out;
  const float* logits = model.prefill(text.data(), static_cast<int64_t>(text.size()));
  for (int64_t made = 0; made < n; made++) {
    const int32_t next = sample_token(logits, model.config().vocab_size, s, rng, scratch);
    if (next == kEndOfText) break;
    out.push_back(static_cast<char>(next));
    if (on_byte) on_byte(static_cast<char>(next));
    text.push_back(next);
    if (model.cached() == context) {  // full: restart the cache from the last half of the text
      const int64_t keep = context / 2;
      logits = model.prefill(text.data() + text.size() - keep, keep);
    } else {
      logits = model.decode(next);
    }
  }
  return out;
}

}  // namespace kat
