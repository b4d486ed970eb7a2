// The classifier training loop. Every random choice is a function of (seed, purpose, counter):
// the data order of epoch e, the augmentation and dropout of step s. A run resumed at step s
// therefore draws exactly what the uninterrupted run drew.
#include "kat/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <numeric>
#include <ostream>
#include <sstream>

#include "kat/checkpoint.h"
#include "kat/distributed.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/optim.h"
#include "kat/parallel.h"
#include "kat/rng.h"
#include "train/run_support.h"

namespace kat {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

enum Purpose : uint64_t { kShuffle = 2, kAugment = 3, kDropout = 4 };

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Rng rng = Rng::derive(seed, kShuffle, static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; i--)
    std::swap(order[i], order[rng.below(static_cast<uint32_t>(i + 1))]);
  return order;
}

struct Augment {
  bool shift = false, flip = false;
};

Augment parse_augment(const std::string& spec, const std::string& data_dir) {
  Augment a;
  if (spec == "auto") {
    // Horizontal flips on Fashion-MNIST, whose classes are mirror-symmetric; nothing on digits.
    // Random shifts slow a 10-epoch run down more than they regularise it (docs/results.md).
    std::string lower = data_dir;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    a.flip = lower.find("fashion") != std::string::npos;
    return a;
  }
  if (spec == "none") return a;
  std::stringstream s(spec);
  std::string item;
  while (std::getline(s, item, ',')) {
    if (item == "shift")
      a.shift = true;
    else if (item == "flip")
      a.flip = true;
    else
      fail("--augment: unknown '", item, "' (use none, shift, flip, shift,flip or auto)");
  }
  return a;
}

// Copies the images of `idx` into out [B, C, H, W], shifted by up to 2 pixels (zero fill) and
// mirrored left-right with probability 1/2 when asked.
void gather_batch(uint8_t* out, int32_t* labels, const ImageDataset& d, const int64_t* idx,
                  int64_t B, const Augment& aug, Rng& rng) {
  const int64_t C = d.channels, H = d.height, W = d.width, hw = H * W;
  for (int64_t b = 0; b < B; b++) {
    const uint8_t* src = d.image(idx[b]);
    uint8_t* dst = out + b * C * hw;
    labels[b] = d.labels[idx[b]];
    const int dy = aug.shift ? static_cast<int>(rng.below(5)) - 2 : 0;
    const int dx = aug.shift ? static_cast<int>(rng.below(5)) - 2 : 0;
    const bool flip = aug.flip && rng.below(2) == 1;
    if (dy == 0 && dx == 0 && !flip) {
      std::memcpy(dst, src, C * hw);
      continue;
    }
    for (int64_t c = 0; c < C; c++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          const int64_t sy = y + dy, sx0 = x + dx, sx = flip ? W - 1 - sx0 : sx0;
          const bool inside = sy >= 0 && sy < H && sx0 >= 0 && sx0 < W;
          dst[c * hw + y * W + x] = inside ? src[c * hw + sy * W + sx] : 0;
        }
  }
}

json options_json(const TrainOptions& o) {
  return {{"data_dir", o.data_dir},
          {"epochs", o.epochs},
          {"batch", o.batch},
          {"lr", o.lr},
          {"min_lr", o.min_lr},
          {"warmup_epochs", o.warmup_epochs},
          {"weight_decay", o.weight_decay},
          {"label_smoothing", o.label_smoothing},
          {"clip", o.clip},
          {"augment", o.augment},
          {"seed", o.seed},
          {"train_limit", o.train_limit},
          {"test_limit", o.test_limit}};
}

void options_from_json(const json& j, TrainOptions& o) {
  o.data_dir = j.at("data_dir").get<std::string>();
  o.epochs = j.at("epochs").get<int>();
  o.batch = j.at("batch").get<int>();
  o.lr = j.at("lr").get<float>();
  o.min_lr = j.at("min_lr").get<float>();
  o.warmup_epochs = j.at("warmup_epochs").get<float>();
  o.weight_decay = j.at("weight_decay").get<float>();
  o.label_smoothing = j.at("label_smoothing").get<float>();
  o.clip = j.at("clip").get<float>();
  o.augment = j.at("augment").get<std::string>();
  o.seed = j.at("seed").get<uint64_t>();
  o.train_limit = j.at("train_limit").get<int64_t>();
  o.test_limit = j.at("test_limit").get<int64_t>();
}

void check_data_matches(const ModelConfig& c, const ImageDataset& d, const std::string& what) {
  check(d.channels == c.in_chans && d.height == c.img_size && d.width == c.img_size, what,
        ": images are ", d.channels, "x", d.height, "x", d.width, " but the model takes ",
        c.in_chans, "x", c.img_size, "x", c.img_size);
  check(d.num_classes <= c.num_classes, what, ": labels go up to ", d.num_classes - 1,
        " but the model has ", c.num_classes, " classes");
}

}  // namespace

ModelConfig config_for_data(ModelConfig c, const ImageDataset& train, const std::string& dir,
                            bool adapt) {
  if (!adapt) {
    check_data_matches(c, train, train.source);
    if (c.class_names.empty()) c.class_names = class_names_for(dir, c.num_classes);
    return c;
  }
  check(train.height == train.width, train.source, ": images are ", train.height, "x", train.width,
        "; kat's models take square images");
  c.img_size = train.height;
  c.in_chans = train.channels;
  c.num_classes = train.num_classes;
  if (c.img_size % c.patch_size != 0) {
    int p = c.patch_size;
    while (p > 1 && c.img_size % p != 0) p--;
    c.patch_size = p;
  }
  // Per-channel mean and std of the training pixels, as torchvision's recipes normalise.
  c.mean.assign(c.in_chans, 0.0f), c.std.assign(c.in_chans, 0.0f);
  const int64_t hw = static_cast<int64_t>(train.height) * train.width;
  for (int ch = 0; ch < c.in_chans; ch++) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < train.count; i++) {
      const uint8_t* p = train.image(i) + ch * hw;
      for (int64_t k = 0; k < hw; k++) s += p[k], s2 += double(p[k]) * p[k];
    }
    const double n = static_cast<double>(train.count) * hw;
    const double mean = s / n / 255.0, var = s2 / n / (255.0 * 255.0) - mean * mean;
    c.mean[ch] = static_cast<float>(mean);
    c.std[ch] = static_cast<float>(std::sqrt(std::max(var, 1e-12)));
  }
  c.class_names = class_names_for(dir, c.num_classes);
  validate(c);
  return c;
}

namespace {

// Images [first, end) of the data.
EvalResult evaluate_range(VisionTransformer& model, const ImageDataset& data, int batch,
                          int64_t first, int64_t end) {
  const ModelConfig& c = model.config();
  check_data_matches(c, data, data.source);
  const int64_t V = c.num_classes, per = static_cast<int64_t>(c.in_chans) * c.img_size * c.img_size;
  EvalResult r;
  r.num_classes = c.num_classes;
  r.confusion.assign(V * V, 0);
  r.predicted.reserve(end - first);
  std::vector<float> images(batch * per);
  std::vector<int32_t> labels(batch);
  for (int64_t start = first; start < end; start += batch) {
    const int64_t B = std::min<int64_t>(batch, end - start);
    normalize_images(images.data(), data.image(start), B, c);
    std::copy(data.labels.begin() + start, data.labels.begin() + start + B, labels.begin());
    const float loss = model.forward(images.data(), labels.data(), B);
    r.loss += static_cast<double>(loss) * B;
    const float* z = model.logits();
    for (int64_t b = 0; b < B; b++) {
      const int64_t pred = std::max_element(z + b * V, z + (b + 1) * V) - (z + b * V);
      r.confusion[labels[b] * V + pred]++;
      r.predicted.push_back(static_cast<int32_t>(pred));
      r.correct += pred == labels[b];
    }
    r.count += B;
  }
  r.loss /= std::max<int64_t>(1, r.count);
  return r;
}

// Every rank evaluates its shard of the data; the sums come together on every rank.
EvalResult evaluate_ranks(VisionTransformer& model, const ImageDataset& data, int batch) {
  const dist::Shard s = dist::shard(data.count);
  EvalResult r = evaluate_range(model, data, batch, s.begin, s.begin + s.count);
  if (dist::size() == 1) return r;
  const int64_t V = r.num_classes;
  std::vector<double> sums(3 + V * V + data.count, 0.0);  // count, correct, loss; confusion;
  sums[0] = static_cast<double>(r.count), sums[1] = static_cast<double>(r.correct);  // predicted
  sums[2] = r.loss * static_cast<double>(r.count);
  for (int64_t i = 0; i < V * V; i++) sums[3 + i] = static_cast<double>(r.confusion[i]);
  for (int64_t i = 0; i < s.count; i++) sums[3 + V * V + s.begin + i] = r.predicted[i];
  dist::sum(sums, "evaluation");
  r.count = static_cast<int64_t>(sums[0]), r.correct = static_cast<int64_t>(sums[1]);
  r.loss = sums[2] / std::max<double>(1, sums[0]);
  for (int64_t i = 0; i < V * V; i++) r.confusion[i] = static_cast<int64_t>(sums[3 + i]);
  r.predicted.resize(data.count);
  for (int64_t i = 0; i < data.count; i++)
    r.predicted[i] = static_cast<int32_t>(sums[3 + V * V + i]);
  return r;
}

}  // namespace

EvalResult evaluate(VisionTransformer& model, const ImageDataset& data, int batch, int64_t limit) {
  return evaluate_range(model, data, batch, 0,
                        limit > 0 ? std::min(limit, data.count) : data.count);
}

void print_eval(std::ostream& out, const EvalResult& r, const std::vector<std::string>& names) {
  out << "accuracy " << std::fixed << std::setprecision(2) << 100 * r.accuracy() << "% ("
      << r.correct << "/" << r.count << "), loss " << std::setprecision(4) << r.loss << "\n";
  const int V = r.num_classes;
  size_t w = 5;
  for (int i = 0; i < V; i++)
    w = std::max(w, i < static_cast<int>(names.size()) ? names[i].size() : 2);
  out << "confusion matrix (rows: true class, columns: predicted)\n" << std::string(w + 1, ' ');
  for (int j = 0; j < V; j++) out << std::setw(6) << j;
  out << "\n";
  for (int i = 0; i < V; i++) {
    const std::string name = i < static_cast<int>(names.size()) ? names[i] : std::to_string(i);
    out << std::left << std::setw(static_cast<int>(w)) << name << std::right << " ";
    for (int j = 0; j < V; j++) out << std::setw(6) << r.confusion[i * V + j];
    out << "\n";
  }
  out << std::string(w + 1, ' ');
  for (int j = 0; j < V; j++) out << std::setw(6) << j;
  out << "  <- predicted\n";
}

TrainResult train_classifier(const ModelConfig& config_in, bool adapt_config, TrainOptions o,
                             std::ostream& log) {
  // Resuming: the run directory, options and step come from the checkpoint.
  json state;
  std::string resume_dir;
  if (!o.resume.empty()) {
    // The saved options make the continuation exact; --epochs may extend the run (which
    // stretches the cosine schedule from here on).
    const TrainOptions given = o;
    state = read_trainer_state(o.resume, [&](const json& saved) { options_from_json(saved, o); });
    resume_dir = state["resume_dir"].get<std::string>();
    if (given.epochs > 0) o.epochs = given.epochs;
    o.threads = given.threads, o.progress = given.progress, o.stop_after = given.stop_after;
    o.log_every = given.log_every;
    o.out_dir = state["run_dir"].get<std::string>();
  }
  if (o.epochs <= 0) o.epochs = kDefaultEpochs;
  check(o.epochs > 0 && o.batch > 0 && o.lr > 0, "epochs, batch and lr must be positive");
  check(o.label_smoothing >= 0 && o.label_smoothing < 1, "label smoothing must be in [0, 1)");
  set_num_threads(o.threads);
  if (o.data_dir.empty()) o.data_dir = default_data_dir();

  ImageDataset train = load_idx_split(o.data_dir, Split::Train);
  ImageDataset test = load_idx_split(o.data_dir, Split::Test);
  if (o.train_limit > 0) train.count = std::min(train.count, o.train_limit);
  if (o.test_limit > 0) test.count = std::min(test.count, o.test_limit);

  std::unique_ptr<VisionTransformer> model;
  if (!resume_dir.empty()) {
    model = load_model(resume_dir);
  } else {
    model = std::make_unique<VisionTransformer>(
        config_for_data(config_in, train, o.data_dir, adapt_config));
    model->init(o.seed);
  }
  const ModelConfig& c = model->config();
  check_data_matches(c, train, train.source);
  check(train.count >= o.batch, train.source, ": ", train.count,
        " training images are fewer than one batch of ", o.batch);
  if (o.out_dir.empty()) o.out_dir = default_run_dir(c.architecture);
  const int64_t local = rank_batch(o.batch), first = dist::rank() * local;
  if (resume_dir.empty()) prepare_run_dir(o.out_dir, o.overwrite);

  AdamWConfig ac;
  ac.weight_decay = o.weight_decay;
  AdamW opt(model->params(), ac);
  const int64_t steps_per_epoch = train.count / o.batch;  // drop_last, as timm trains
  const int64_t total_steps = steps_per_epoch * o.epochs;
  const int64_t warmup = static_cast<int64_t>(o.warmup_epochs * steps_per_epoch);
  int64_t step = 0;
  double best = 0;
  if (!resume_dir.empty()) {
    load_optimizer(resume_dir, model->params(), opt);
    step = state.at("step").get<int64_t>();
    best = state.value("best_accuracy", 0.0);
    check(step == opt.steps(), resume_dir, ": optimizer and trainer state disagree on the step");
  }
  const Augment aug = parse_augment(o.augment, o.data_dir);
  if (dist::root()) write_file_atomic(o.out_dir + "/config.json", config_to_json(c));
  MetricsLog metrics(o.out_dir);

  const bool bar = o.progress == 1 || (o.progress == -1 && isatty(STDERR_FILENO));
  Progress progress(root_log(log), bar);
  {
    std::ostringstream s;
    s << "kat: training " << c.architecture << " (" << model->params().total() << " parameters, "
      << c.ffn_name() << " feed-forward) on " << train.count << " images of " << o.data_dir << "; "
      << o.epochs << " epochs x " << steps_per_epoch << " steps of " << batch_text(o.batch) << ", "
      << num_threads() << " threads -> " << o.out_dir;
    if (step > 0) s << " (resuming at step " << step << ")";
    progress.message(s.str());
  }

  const int64_t per = static_cast<int64_t>(c.in_chans) * c.img_size * c.img_size;
  std::vector<uint8_t> raw(o.batch * per);
  std::vector<float> images(local * per);
  std::vector<int32_t> labels(o.batch);
  const RunClock clock(state);
  auto save_state = [&](const std::string& dir, int64_t at_step, double acc) {
    if (!dist::root()) return;
    const SavingCheckpoint saving;
    save_model(dir, *model);
    save_optimizer(dir, model->params(), opt);
    json s = {{"step", at_step},           {"epoch", at_step / steps_per_epoch},
              {"best_accuracy", best},     {"accuracy", acc},
              {"time_s", clock.seconds()}, {"run_dir", o.out_dir},
              {"options", options_json(o)}};
    write_file_atomic(dir + "/trainer_state.json", s.dump(2) + "\n");
  };

  InterruptGuard interrupt;
  TrainResult result;
  result.run_dir = o.out_dir;
  double t_window = now_seconds();
  int64_t window_images = 0, window_correct = 0, window_steps = 0;
  double window_loss = 0, last_img_s = 0, window_sync = 0;
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  const int64_t end_step = o.stop_after > 0 ? std::min(total_steps, o.stop_after) : total_steps;
  dist::GradientSync sync(model->params());
  bool stop = interrupt.interrupted();
  while (step < end_step && !stop) {
    const int64_t epoch = step / steps_per_epoch, in_epoch = step % steps_per_epoch;
    if (order_epoch != epoch) order = epoch_order(train.count, o.seed, epoch), order_epoch = epoch;
    Rng aug_rng = Rng::derive(o.seed, kAugment, static_cast<uint64_t>(step));
    // Every rank draws the whole batch (the same augmentation as one process) and takes its part.
    gather_batch(raw.data(), labels.data(), train, order.data() + in_epoch * o.batch, o.batch, aug,
                 aug_rng);
    normalize_images(images.data(), raw.data() + first * per, local, c);
    const float lr = schedule_lr(step, total_steps, warmup, o.lr, o.min_lr);
    model->params().zero_grad();
    // Dropout masks: one process draws them for its whole batch; each rank for its own part.
    uint64_t dropout_seed = Rng::derive(o.seed, kDropout, step).next_u64();
    if (dist::rank() > 0)
      dropout_seed = Rng::derive(dropout_seed, kDropout, dist::rank()).next_u64();
    const float local_loss = model->forward(images.data(), labels.data() + first, local, true,
                                            o.label_smoothing, dropout_seed);
    check(std::isfinite(local_loss), "the loss became ", local_loss, " at step ", step,
          " (try a lower --lr)");
    sync.overlap_next_backward();
    model->backward();
    const float* z = model->logits();
    const int64_t V = c.num_classes;
    double stats[3] = {local_loss, 0, interrupt.interrupted() ? 1.0 : 0.0};
    for (int64_t b = 0; b < local; b++)
      stats[1] += (std::max_element(z + b * V, z + (b + 1) * V) - (z + b * V)) == labels[first + b];
    sync.finish(stats, 3, step);  // the gradient of the whole batch on every rank
    const float loss = static_cast<float>(stats[0] / dist::size());
    stop = stats[2] > 0;
    const float grad_norm = clip_grad_norm(model->params(), o.clip);
    opt.step(lr);
    step++;
    window_correct += static_cast<int64_t>(stats[1]);
    window_images += o.batch, window_loss += loss, window_steps++;

    const bool epoch_end = step % steps_per_epoch == 0;
    if (step % o.log_every == 0 || epoch_end || step == total_steps) {
      const double t = now_seconds();
      last_img_s = window_images / std::max(1e-9, t - t_window);
      const float mean_loss = static_cast<float>(window_loss / window_steps);
      const float acc = static_cast<float>(window_correct) / window_images;
      const double eta = (total_steps - step) * o.batch / std::max(1.0, last_img_s);
      std::ostringstream line;
      line << "epoch " << epoch + 1 << "/" << o.epochs << " step " << step << "/" << total_steps
           << " loss " << std::fixed << std::setprecision(4) << mean_loss << " acc "
           << std::setprecision(1) << 100 * acc << "% " << std::setprecision(0) << last_img_s
           << " img/s ETA " << format_duration(eta);
      progress.step(step, total_steps, line.str());
      json record = {{"kind", "step"},
                     {"step", step},
                     {"epoch", epoch},
                     {"loss", mean_loss},
                     {"acc", acc},
                     {"lr", lr},
                     {"grad_norm", grad_norm},
                     {"images_per_s", last_img_s},
                     {"time_s", clock.seconds()}};
      if (dist::size() > 1) record["allreduce_s"] = sync.seconds() - window_sync;
      metrics.write(record);
      t_window = t, window_images = window_correct = window_steps = 0, window_loss = 0;
      window_sync = sync.seconds();
    }
    if (epoch_end) {
      const EvalResult r = evaluate_ranks(*model, test, o.batch);
      const bool is_best = r.accuracy() > best;
      best = std::max(best, r.accuracy());
      std::ostringstream s;
      s << "epoch " << epoch + 1 << "/" << o.epochs << ": test accuracy " << std::fixed
        << std::setprecision(2) << 100 * r.accuracy() << "%, test loss " << std::setprecision(4)
        << r.loss << (is_best ? " (best)" : "") << ", " << format_duration(clock.seconds())
        << " elapsed";
      progress.message(s.str());
      metrics.write({{"kind", "epoch"},
                     {"step", step},
                     {"epoch", epoch + 1},
                     {"test_acc", r.accuracy()},
                     {"test_loss", r.loss},
                     {"images_per_s", last_img_s},
                     {"time_s", clock.seconds()}});
      save_state(o.out_dir + "/last", step, r.accuracy());
      if (is_best) save_state(o.out_dir + "/best", step, r.accuracy());
      result.final_eval = r;
      t_window = now_seconds();  // evaluation time is not training throughput
    }
  }
  if (step < total_steps) {  // interrupted or --stop-after
    save_state(o.out_dir + "/last", step, 0.0);
    progress.message(std::string(stop ? "interrupted" : "stopped") + ": saved " + o.out_dir +
                     "/last at step " + std::to_string(step) + "; continue with --resume " +
                     o.out_dir + "/last");
  }
  result.best_accuracy = best;
  result.train_seconds = clock.seconds();
  result.steps = step;
  if (result.final_eval.count == 0 && step > 0)
    result.final_eval = evaluate_ranks(*model, test, o.batch);
  return result;
}

}  // namespace kat
