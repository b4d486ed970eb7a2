// LRA: data for each task, and the training loop of the sequence classifier. A batch holds
// sequences of any lengths; runs of equal length go through one forward, others one at a time,
// with the loss scaled so the gradient is the batch mean either way (no padding, no masks).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kat/checkpoint.h"
#include "kat/data.h"
#include "kat/distributed.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/listops.h"
#include "kat/lra.h"
#include "kat/lra_files.h"
#include "kat/optim.h"
#include "kat/parallel.h"
#include "kat/pathfinder.h"
#include "kat/rng.h"
#include "train/run_support.h"

namespace kat {
using json = nlohmann::json;

namespace {

enum Purpose : uint64_t {
  kLraBatches = 6,
  kListOpsTrain = 7,
  kListOpsValid = 8,
  kListOpsTest = 9,
  kPathfinderTrain = 10,
  kPathfinderValid = 11,
  kPathfinderTest = 12,
  kImdbValid = 13,
  kLraMasks = 14,
  kLraEvalMasks = 15
};

// The mask of `count` sequences of T tokens: sequence b hides each token with probability `ratio`,
// drawn from its own stream (counter first + b), so a sequence's mask does not depend on what
// else shares its call.
void draw_masks(std::vector<uint8_t>& mask, int64_t count, int64_t T, float ratio, uint64_t seed,
                uint64_t purpose, uint64_t first) {
  mask.resize(count * T);
  for (int64_t b = 0; b < count; b++) {
    Rng rng = Rng::derive(seed, purpose, first + static_cast<uint64_t>(b));
    for (int64_t t = 0; t < T; t++) mask[b * T + t] = rng.uniform() < ratio ? 1 : 0;
  }
}

SequenceDataset from_listops(const std::vector<ListOpsExample>& examples, std::string source) {
  SequenceDataset d;
  d.vocab_size = kListOpsVocab, d.num_classes = kListOpsClasses, d.source = std::move(source);
  for (size_t i = 0; i < examples.size(); i++) {
    for (int32_t t : tokenize_listops(examples[i].source, d.source))
      d.tokens.push_back(static_cast<uint8_t>(t));
    d.offsets.push_back(static_cast<int64_t>(d.tokens.size()));
    d.labels.push_back(examples[i].target);
  }
  return d;
}

SequenceDataset from_images(const ImageDataset& images) {
  check(images.channels == 1, images.source, ": the LRA image task reads grayscale images");
  SequenceDataset d;
  d.vocab_size = 256, d.num_classes = images.num_classes, d.source = images.source;
  d.width = images.width;
  const int64_t n = static_cast<int64_t>(images.height) * images.width;
  d.tokens.assign(images.pixels.begin(), images.pixels.begin() + images.count * n);
  for (int64_t i = 0; i < images.count; i++) d.offsets.push_back((i + 1) * n);
  d.labels.assign(images.labels.begin(), images.labels.begin() + images.count);
  return d;
}

// Images [first, first + count) of a set.
ImageDataset image_range(const ImageDataset& all, int64_t first, int64_t count) {
  ImageDataset part;
  part.channels = all.channels, part.height = all.height, part.width = all.width;
  part.num_classes = all.num_classes, part.source = all.source, part.count = count;
  const int64_t n = int64_t{all.channels} * all.height * all.width;
  part.pixels.assign(all.pixels.begin() + first * n, all.pixels.begin() + (first + count) * n);
  part.labels.assign(all.labels.begin() + first, all.labels.begin() + first + count);
  return part;
}

// Runs fn(first, count) over runs of neighbouring sequences of equal length in idx[0..n).
template <class Fn>
void for_equal_lengths(const SequenceDataset& d, const int64_t* idx, int64_t n, Fn&& fn) {
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && d.length(idx[j]) == d.length(idx[i])) j++;
    fn(i, j - i);
    i = j;
  }
}

// Gathers sequences idx[first .. first + count) of one length into tokens [count, T], labels.
int64_t gather(const SequenceDataset& d, const int64_t* idx, int64_t count,
               std::vector<int32_t>& tokens, std::vector<int32_t>& labels) {
  const int64_t T = d.length(idx[0]);
  tokens.resize(count * T), labels.resize(count);
  for (int64_t b = 0; b < count; b++) {
    std::copy(d.tokens.begin() + d.offsets[idx[b]], d.tokens.begin() + d.offsets[idx[b] + 1],
              tokens.begin() + b * T);
    labels[b] = d.labels[idx[b]];
  }
  return T;
}

}  // namespace

int64_t SequenceDataset::max_length() const {
  int64_t m = 0;
  for (int64_t i = 0; i < size(); i++) m = std::max(m, length(i));
  return m;
}

int64_t LraData::max_length() const {
  return std::max({train.max_length(), valid.max_length(), test.max_length()});
}

std::vector<std::string> lra_task_names() {
  return {"listops", "text", "retrieval", "image", "pathfinder"};
}

LraData load_lra(const LraOptions& o, const std::string& export_dir, LraSplits splits) {
  const std::string &task = o.task, &data_dir = o.data_dir;
  const int64_t train_size = o.train_size, heldout = o.heldout;
  const uint64_t seed = o.seed;
  LraData data;
  if (task == "listops") {
    if (!data_dir.empty()) {
      for (auto [split, name] : {std::pair{&data.train, "basic_train.tsv"},
                                 {&data.valid, "basic_val.tsv"},
                                 {&data.test, "basic_test.tsv"}}) {
        const std::string path = data_dir + "/" + name;
        *split = from_listops(read_listops_tsv(path), path);
      }
      return data;
    }
    check(train_size > 0 && heldout > 0, "--train-size and --heldout must be positive");
    ListOpsRules rules;
    rules.min_length = o.min_length, rules.max_length = o.max_length;
    const auto train =
        generate_listops(train_size, Rng::derive(seed, kListOpsTrain).next_u64(), rules);
    const auto valid =
        generate_listops(heldout, Rng::derive(seed, kListOpsValid).next_u64(), rules, train);
    std::vector<ListOpsExample> seen = train;
    seen.insert(seen.end(), valid.begin(), valid.end());
    const auto test =
        generate_listops(heldout, Rng::derive(seed, kListOpsTest).next_u64(), rules, seen);
    if (!export_dir.empty()) {
      std::filesystem::create_directories(export_dir);
      write_listops_tsv(export_dir + "/basic_train.tsv", train);
      write_listops_tsv(export_dir + "/basic_val.tsv", valid);
      write_listops_tsv(export_dir + "/basic_test.tsv", test);
    }
    std::string source = "generated ListOps (seed " + std::to_string(seed);
    if (o.min_length != LraOptions{}.min_length || o.max_length != LraOptions{}.max_length)
      source +=
          ", lengths " + std::to_string(o.min_length + 1) + "-" + std::to_string(o.max_length - 1);
    data.train = from_listops(train, source + ")");
    data.valid = from_listops(valid, data.train.source);
    data.test = from_listops(test, data.train.source);
    return data;
  }
  if (task == "text") return load_imdb(data_dir, Rng::derive(seed, kImdbValid).next_u64());
  if (task == "retrieval") return load_aan(data_dir);
  if (task == "image") {
    // CIFAR-10 (LRA's data) when the directory holds its binary files, else an IDX dataset.
    const std::string dir = data_dir.empty() ? default_data_dir() : data_dir;
    const bool cifar = has_cifar10(dir);
    const ImageDataset train =
        cifar ? load_cifar10_gray(dir, Split::Train) : load_idx_split(dir, Split::Train);
    const ImageDataset test =
        cifar ? load_cifar10_gray(dir, Split::Test) : load_idx_split(dir, Split::Test);
    // The last 10% of the training images are the validation set.
    const int64_t n_valid = train.count / 10;
    data.train = from_images(image_range(train, 0, train.count - n_valid));
    data.valid = from_images(image_range(train, train.count - n_valid, n_valid));
    data.test = from_images(test);
    return data;
  }
  if (task == "pathfinder") {
    if (!data_dir.empty()) {
      // LRA's files: 80% / 10% / 10% of the images in file order (boundaries rounded).
      const ImageDataset all = read_pathfinder_dir(data_dir);
      const int64_t a = (all.count * 8 + 5) / 10, b = (all.count * 9 + 5) / 10;
      check(a > 0 && b > a && all.count > b, data_dir, ": ", all.count,
            " images are too few to split 80/10/10");
      data.train = from_images(image_range(all, 0, a));
      data.valid = from_images(image_range(all, a, b - a));
      data.test = from_images(image_range(all, b, all.count - b));
      return data;
    }
    check(train_size > 0 && heldout > 0, "--train-size and --heldout must be positive");
    PathfinderRules rules;
    rules.dashes = o.contour_dashes, rules.distractors = o.distractors;
    const ImageDataset valid =
        generate_pathfinder(heldout, Rng::derive(seed, kPathfinderValid).next_u64(), rules);
    // Each split has its own stream: the held-out images do not depend on the training ones.
    const bool skip_train = splits == LraSplits::kHeldout && export_dir.empty();
    const ImageDataset train =
        skip_train ? image_range(valid, 0, 0)
                   : generate_pathfinder(train_size, Rng::derive(seed, kPathfinderTrain).next_u64(),
                                         rules);
    const ImageDataset test =
        generate_pathfinder(heldout, Rng::derive(seed, kPathfinderTest).next_u64(), rules);
    if (!export_dir.empty()) {
      // LRA's layout, train then validation then test (read back, they split 80/10/10 again:
      // the same splits when --heldout is an eighth of --train-size).
      ImageDataset all = train;
      for (const ImageDataset* s : {&valid, &test}) {
        all.pixels.insert(all.pixels.end(), s->pixels.begin(), s->pixels.end());
        all.labels.insert(all.labels.end(), s->labels.begin(), s->labels.end());
        all.count += s->count;
      }
      write_pathfinder_dir(export_dir, all);
    }
    std::string source = "generated Pathfinder (seed " + std::to_string(seed);
    if (o.contour_dashes != LraOptions{}.contour_dashes ||
        o.distractors != LraOptions{}.distractors)
      source += ", contours of " + std::to_string(o.contour_dashes) + " dashes, " +
                std::to_string(o.distractors) + " distractors";
    source += ")";
    data.train = from_images(train), data.valid = from_images(valid), data.test = from_images(test);
    data.train.source = data.valid.source = data.test.source = source;
    return data;
  }
  fail("unknown LRA task '", task, "' (listops, text, retrieval, image or pathfinder)");
}

SequenceConfig lra_config(const std::string& task, const LraData& data) {
  SequenceConfig c;
  c.architecture = "kat_lra_" + task;
  c.vocab_size = data.train.vocab_size, c.num_classes = data.train.num_classes;
  c.max_len = static_cast<int>(data.max_length());
  if (task == "image" || task == "pathfinder") {
    // LRA: 1 layer, 32 wide (image: 1 head, pathfinder: 2); 2 heads for both here.
    c.embed_dim = 32, c.depth = 1, c.num_heads = 2, c.hidden = 64;
  } else {  // LRA's ListOps (6 x 512), text (4 x 256) and retrieval (4 x 128) scaled to this CPU
    c.embed_dim = 64, c.depth = 4, c.num_heads = 4, c.hidden = 128;
  }
  return c;
}

namespace {

// Correct predictions and predictions made on sequences [first, end): of the labels, or with
// mask_ratio > 0 of the tokens each sequence's fixed mask hides.
struct Counts {
  double correct = 0, total = 0;
};
Counts count_correct(SequenceClassifier& model, const SequenceDataset& d, int batch, int64_t first,
                     int64_t end, float mask_ratio) {
  std::vector<int64_t> idx(end - first);
  for (int64_t i = first; i < end; i++) idx[i - first] = i;
  const int64_t n = end - first;
  std::vector<int32_t> tokens, labels;
  std::vector<uint8_t> mask;
  Counts counts;
  auto argmax = [](const float* z, int64_t V) { return std::max_element(z, z + V) - z; };
  for (int64_t at = 0; at < n; at += batch) {
    const int64_t m = std::min<int64_t>(batch, n - at);
    for_equal_lengths(d, idx.data() + at, m, [&](int64_t first, int64_t count) {
      const int64_t T = gather(d, idx.data() + at + first, count, tokens, labels);
      if (mask_ratio <= 0) {
        model.forward(tokens.data(), nullptr, count, T);
        const int64_t V = model.config().num_classes;
        for (int64_t b = 0; b < count; b++)
          counts.correct += argmax(model.logits() + b * V, V) == labels[b];
        counts.total += static_cast<double>(count);
        return;
      }
      draw_masks(mask, count, T, mask_ratio, 0, kLraEvalMasks,
                 static_cast<uint64_t>(idx[at + first]));
      model.forward_masked(tokens.data(), mask.data(), count, T);
      const int64_t V = model.config().vocab_size;
      int64_t k = 0;  // the hidden tokens, in the order forward_masked took them
      for (int64_t i = 0; i < count * T; i++)
        if (mask[i]) counts.correct += argmax(model.masked_logits() + k++ * V, V) == tokens[i];
      counts.total += static_cast<double>(k);
    });
  }
  return counts;
}

// Every rank tests its shard of the first `limit` sequences; the counts come together.
double lra_accuracy_ranks(SequenceClassifier& model, const SequenceDataset& d, int batch,
                          int64_t limit, float mask_ratio) {
  const int64_t n = limit > 0 ? std::min(limit, d.size()) : d.size();
  const dist::Shard s = dist::shard(n);
  const Counts c = count_correct(model, d, batch, s.begin, s.begin + s.count, mask_ratio);
  double sums[2] = {c.correct, c.total};
  dist::sum(sums, 2, "evaluation");
  return sums[0] / std::max(1.0, sums[1]);
}

}  // namespace

double lra_accuracy(SequenceClassifier& model, const SequenceDataset& d, int batch, int64_t limit,
                    float mask_ratio) {
  const int64_t n = limit > 0 ? std::min(limit, d.size()) : d.size();
  const Counts c = count_correct(model, d, batch, 0, n, mask_ratio);
  return c.correct / std::max(1.0, c.total);
}

namespace {

json options_json(const LraOptions& o) {
  json j = {{"task", o.task},
            {"data_dir", o.data_dir},
            {"train_size", o.train_size},
            {"heldout", o.heldout},
            {"steps", o.steps},
            {"batch", o.batch},
            {"lr", o.lr},
            {"min_lr", o.min_lr},
            {"weight_decay", o.weight_decay},
            {"clip", o.clip},
            {"warmup", o.warmup},
            {"eval_every", o.eval_every},
            {"eval_limit", o.eval_limit},
            {"seed", o.seed},
            {"init", o.init}};
  if (o.mask_ratio > 0) j["mask_ratio"] = o.mask_ratio;
  if (o.task == "listops") j["min_length"] = o.min_length, j["max_length"] = o.max_length;
  if (o.task == "pathfinder")
    j["contour_dashes"] = o.contour_dashes, j["distractors"] = o.distractors;
  return j;
}

}  // namespace

LraOptions lra_data_options(const json& j, LraOptions o) {
  o.task = j.value("task", o.task);
  o.data_dir = j.value("data_dir", o.data_dir);
  o.train_size = j.value("train_size", o.train_size);
  o.heldout = j.value("heldout", o.heldout);
  o.min_length = j.value("min_length", o.min_length);  // runs from before the option: LRA's
  o.max_length = j.value("max_length", o.max_length);
  o.contour_dashes = j.value("contour_dashes", o.contour_dashes);
  o.distractors = j.value("distractors", o.distractors);
  o.seed = j.value("seed", o.seed);
  return o;
}

LraOptions lra_checkpoint_data_options(const std::string& checkpoint, const LraOptions& given) {
  if (!file_exists(checkpoint_dir(checkpoint) + "/trainer_state.json")) return given;
  LraOptions o = given;
  read_trainer_state(checkpoint, [&](const json& j) {
    o = lra_data_options(j, given);
    o.eval_limit = j.value("eval_limit", o.eval_limit);
    o.mask_ratio = j.value("mask_ratio", 0.0f);
  });
  return o;
}

LraOptions lra_resume_options(const std::string& checkpoint, const LraOptions& given) {
  LraOptions o = given;
  const json state = read_trainer_state(checkpoint, [&](const json& j) {
    for (const char* key : {"task", "data_dir", "train_size", "heldout", "seed"})
      (void)j.at(key);  // recorded by every kat: a file without them is not a trainer state
    o = lra_data_options(j, given);
    o.steps = given.steps > 0 ? given.steps : j.at("steps").get<int64_t>();
    o.batch = j.at("batch").get<int>();
    o.lr = j.at("lr").get<float>();
    o.min_lr = j.at("min_lr").get<float>();
    o.weight_decay = j.at("weight_decay").get<float>();
    o.clip = j.at("clip").get<float>();
    o.warmup = j.at("warmup").get<int64_t>();
    o.eval_every = j.at("eval_every").get<int64_t>();
    o.eval_limit = j.at("eval_limit").get<int64_t>();
    o.init = j.value("init", "");
    o.mask_ratio = j.value("mask_ratio", 0.0f);
  });
  o.out_dir = state.at("run_dir").get<std::string>();
  o.resume = state.at("resume_dir").get<std::string>();
  return o;
}

void validate(const LraOptions& o) {
  check(o.steps > 0 && o.batch > 0 && o.lr > 0 && o.eval_every > 0,
        "--steps, --batch, --lr and --eval-every must be positive (--steps 0 goes only with "
        "--export or --init)");
  check(o.contour_dashes >= 2 && o.distractors >= 0,
        "--contour-dashes must be at least 2 and --distractors not negative");
  check(o.mask_ratio >= 0 && o.mask_ratio < 1, "--mask-ratio must be in (0, 1), not ",
        o.mask_ratio);
}

LraResult train_lra(const SequenceConfig& config_in, const LraData& data, const LraOptions& o,
                    std::ostream& log) {
  validate(o);
  set_num_threads(o.threads);
  std::unique_ptr<SequenceClassifier> loaded;
  if (!o.resume.empty()) loaded = load_sequence_model(o.resume);
  SequenceClassifier fresh(loaded ? loaded->config() : config_in);
  SequenceClassifier& model = loaded ? *loaded : fresh;
  const SequenceConfig& config = model.config();
  check(o.mask_ratio == 0 || config.masked_head, config.architecture,
        ": pretraining needs the masked-token head (masked_head in the config)");
  if (!loaded) model.init(o.seed);
  if (!loaded && !o.init.empty()) load_sequence_weights(o.init, model);
  check(data.train.max_length() <= config.max_len && data.test.max_length() <= config.max_len,
        "the data has sequences of up to ",
        std::max(data.train.max_length(), data.test.max_length()),
        " tokens, longer than the model's max_len of ", config.max_len);
  const std::string out = o.out_dir.empty() ? default_run_dir(config.architecture) : o.out_dir;
  const int64_t local = rank_batch(o.batch), first = dist::rank() * local;
  if (!loaded) prepare_run_dir(out, o.overwrite);
  AdamWConfig ac;
  ac.weight_decay = o.weight_decay;
  AdamW opt(model.params(), ac);
  int64_t step = 0;
  double best = -1;
  int64_t best_step = -1;  // of best/; -1: unknown (a checkpoint from before it was kept)
  json state;              // null for a new run
  if (loaded) {
    state = json::parse(read_text_file(o.resume + "/trainer_state.json"));
    load_optimizer(o.resume, model.params(), opt);
    step = state.at("step").get<int64_t>();
    best = state.value("best_acc", best);
    best_step = state.value("best_step", best_step);
    check(step == opt.steps(), o.resume, ": optimizer and trainer state disagree on the step");
    check(step < o.steps, o.resume, " is at step ", step, " of ", o.steps,
          ": give a larger --steps to train further");
  }
  if (dist::root()) write_file_atomic(out + "/config.json", sequence_config_to_json(config));
  MetricsLog metrics(out);
  const RunClock clock(state);
  auto save_state = [&](const std::string& dir, int64_t at_step) {
    if (!dist::root()) return;
    const SavingCheckpoint saving;
    save_sequence_model(dir, model);
    save_optimizer(dir, model.params(), opt);
    const json s = {{"step", at_step},           {"best_acc", best}, {"best_step", best_step},
                    {"time_s", clock.seconds()}, {"run_dir", out},   {"options", options_json(o)}};
    write_file_atomic(dir + "/trainer_state.json", s.dump(2) + "\n");
  };
  Progress progress(root_log(log), o.progress == 1 || (o.progress == -1 && isatty(STDERR_FILENO)));
  {
    std::ostringstream s;
    s << "kat: " << (o.mask_ratio > 0 ? "pretraining " : "training ") << config.architecture << " ("
      << model.params().total() << " parameters, " << (config.ffn == Ffn::Kan ? "kan" : "mlp")
      << " feed-forward, " << mixer_name(config.mixer) << " mixer) on " << data.train.size()
      << " sequences of " << data.train.source << " (up to " << data.train.max_length()
      << " tokens); " << o.steps << " steps of " << batch_text(o.batch) << ", " << num_threads()
      << " threads -> " << out;
    if (step > 0) s << " (resuming at step " << step << ")";
    if (!loaded && !o.init.empty()) s << " (starting from the weights of " << o.init << ")";
    if (o.mask_ratio > 0)
      s << "; predicting the " << o.mask_ratio * 100 << "% of the tokens each step hides";
    progress.message(s.str());
  }
  InterruptGuard interrupt;
  std::vector<int32_t> tokens, labels;
  std::vector<uint8_t> mask;
  std::vector<int64_t> idx(o.batch);  // the whole batch; this rank trains on its part
  LraResult result;
  result.run_dir = out;
  result.mask_ratio = o.mask_ratio;
  double t_window = now_seconds(), window_loss = 0, window_sync = 0;
  int64_t window_steps = 0;
  const int64_t end = o.stop_after > 0 ? std::min(o.steps, o.stop_after) : o.steps;
  const uint64_t n_train = static_cast<uint64_t>(data.train.size());
  dist::GradientSync sync(model.params());
  bool stop = interrupt.interrupted();
  for (; step < end && !stop;) {
    // Every rank draws the whole batch (the samples of one process) and takes its part.
    Rng rng = Rng::derive(o.seed, kLraBatches, static_cast<uint64_t>(step));
    for (int64_t& i : idx) i = static_cast<int64_t>(rng.next_u64() % n_train);
    const float lr = schedule_lr(step, o.steps, o.warmup, o.lr, o.min_lr);
    model.params().zero_grad();
    double local_loss = 0;
    for_equal_lengths(data.train, idx.data() + first, local, [&](int64_t at, int64_t count) {
      const int64_t T = gather(data.train, idx.data() + first + at, count, tokens, labels);
      const float scale = static_cast<float>(count) / static_cast<float>(local);
      if (o.mask_ratio > 0) {  // sequence j of the step's whole batch: mask stream step * batch + j
        draw_masks(mask, count, T, o.mask_ratio, o.seed, kLraMasks,
                   static_cast<uint64_t>(step * o.batch + first + at));
        local_loss += model.forward_masked(tokens.data(), mask.data(), count, T, scale);
      } else {
        local_loss += model.forward(tokens.data(), labels.data(), count, T, scale);
      }
      if (at + count == local) sync.overlap_next_backward();  // the last backward of the step
      model.backward();
    });
    check(std::isfinite(local_loss), "the loss became ", local_loss, " at step ", step,
          " (try a lower --lr)");
    double stats[2] = {local_loss, interrupt.interrupted() ? 1.0 : 0.0};
    sync.finish(stats, 2, step);
    const double loss = stats[0] / dist::size();
    stop = stats[1] > 0;
    const float grad_norm = clip_grad_norm(model.params(), o.clip);
    opt.step(lr);
    step++, window_loss += loss, window_steps++;
    result.valid_accuracy = -1;  // a new model, not validated until the evaluation below runs
    if (step % o.log_every == 0 || step == o.steps) {
      const double t = now_seconds(), seq_s = window_steps * o.batch / std::max(1e-9, t - t_window);
      std::ostringstream line;
      line << "step " << step << "/" << o.steps << " loss " << std::fixed << std::setprecision(4)
           << window_loss / window_steps << " " << std::setprecision(1) << seq_s << " seq/s ETA "
           << format_duration((o.steps - step) * o.batch / std::max(1e-9, seq_s));
      progress.step(step, o.steps, line.str());
      json record = {{"kind", "step"},
                     {"step", step},
                     {"loss", window_loss / window_steps},
                     {"lr", lr},
                     {"grad_norm", grad_norm},
                     {"sequences_per_s", seq_s},
                     {"time_s", clock.seconds()}};
      if (dist::size() > 1) record["allreduce_s"] = sync.seconds() - window_sync;
      metrics.write(record);
      t_window = t, window_loss = 0, window_steps = 0, window_sync = sync.seconds();
    }
    if (step % o.eval_every == 0 || step == o.steps) {
      const double acc = lra_accuracy_ranks(model, data.valid, static_cast<int>(local),
                                            o.eval_limit, o.mask_ratio);
      const bool is_best = acc > best;
      best = std::max(best, acc);
      if (is_best) best_step = step;
      std::ostringstream s;
      s << "step " << step << ": validation " << (o.mask_ratio > 0 ? "masked-token " : "")
        << "accuracy " << std::fixed << std::setprecision(2) << 100 * acc << "%"
        << (is_best ? " (best)" : "") << ", " << format_duration(clock.seconds()) << " elapsed";
      progress.message(s.str());
      metrics.write(
          {{"kind", "eval"}, {"step", step}, {"valid_acc", acc}, {"time_s", clock.seconds()}});
      save_state(out + "/last", step);
      if (is_best) save_state(out + "/best", step);
      result.valid_accuracy = acc;
      t_window = now_seconds();
    }
  }
  if (step < o.steps) {
    save_state(out + "/last", step);
    progress.message(std::string(stop ? "interrupted" : "stopped") + ": saved " + out +
                     "/last at step " + std::to_string(step) + "; continue with kat lra " + o.task +
                     " --resume " + out + "/last");
  }
  result.steps = step;
  result.train_seconds = clock.seconds();
  result.test_accuracy =
      lra_accuracy_ranks(model, data.test, static_cast<int>(local), 0, o.mask_ratio);
  metrics.write({{"kind", "test"}, {"step", step}, {"test_acc", result.test_accuracy}});
  // LRA picks the model by validation accuracy: best/ is tested too when it is another model.
  result.best_step = best_step, result.best_valid_accuracy = best;
  result.best_test_accuracy = result.test_accuracy;
  if (best_step >= 0 && best_step != step) {
    dist::barrier("saving best/");  // rank 0 has written best/ before any rank reads it
    const auto best_model = load_sequence_model(out + "/best");
    result.best_test_accuracy =
        lra_accuracy_ranks(*best_model, data.test, static_cast<int>(local), 0, o.mask_ratio);
    metrics.write(
        {{"kind", "test_best"}, {"step", best_step}, {"test_acc", result.best_test_accuracy}});
  }
  return result;
}

}  // namespace kat
