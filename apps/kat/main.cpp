// The `kat` command: parses flags and calls the library. Every failure is one line on stderr
// starting with "kat: error:" and a non-zero exit status.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "kat/checkpoint.h"
#include "kat/config.h"
#include "kat/cpu.h"
#include "kat/data.h"
#include "kat/distributed.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/grkan.h"
#include "kat/lm.h"
#include "kat/lm_trainer.h"
#include "kat/lra.h"
#include "kat/parallel.h"
#include "kat/plot.h"
#include "kat/report.h"
#include "kat/text.h"
#include "kat/trainer.h"

namespace {

using namespace kat;

constexpr const char* kUsage = R"(kat 0.1: Kolmogorov-Arnold Transformers (and ViTs) on the CPU

usage: kat <command> [options]

commands:
  train          train an image classifier (default: KAT on Fashion-MNIST)
  eval CKPT      accuracy and confusion matrix of a checkpoint on a test set
  predict CKPT IMAGE...   top classes of PNG/JPEG/PGM images
  train-lm       train a byte-level language model (default: KAT on Debian's fortunes)
  generate CKPT  generate text from a language model, streamed as it is produced
  eval-lm CKPT   bits per byte and perplexity of a language model on text
  lra TASK       train and test a sequence classifier on a Long Range Arena task
  info CKPT      configuration and parameter counts of a checkpoint
  report RUN_DIR          one HTML page of a run: curves, learned functions, predictions
  plot-activations CKPT   the learned GR-KAN functions of a checkpoint as SVG or PNG
  fit-rational ACT        least-squares GR-KAN coefficients for an activation
  configs        list the named model configurations

`kat <command> --help` describes a command's options.
)";

constexpr const char* kTrainHelp = R"(usage: kat train [options]

Trains a classifier on an IDX dataset (MNIST family) and writes a run directory with
metrics.jsonl, config.json, last/ and best/ checkpoints (timm layout: model.safetensors +
config.json, plus optimizer.safetensors and trainer_state.json for --resume).

  --model kat|vit        GR-KAN (KAT) or GELU MLP (ViT) feed-forward        [kat]
  --config NAME|FILE     named config (see `kat configs`) or a config.json  [kat_fmnist]
                         kat_fmnist/vit_fmnist adapt image size, channels, classes and
                         mean/std to the data; other configs must match it
  --data DIR             IDX dataset directory       [/usr/share/datasets/fashion-mnist]
  --epochs N             epochs                                             [12]
  --batch N              batch size                                         [128]
  --lr X                 peak learning rate (AdamW)                         [0.002]
  --min-lr X             final learning rate of the cosine schedule         [1e-5]
  --warmup E             warmup epochs (linear)                             [1]
  --weight-decay X       decoupled weight decay on weight matrices          [0.05]
  --label-smoothing X    label smoothing                                    [0.1]
  --clip X               gradient-norm clipping, 0 to disable               [1.0]
  --augment SPEC         none | shift | flip | shift,flip                   [auto]
                         auto: flip on Fashion-MNIST (mirror-symmetric classes), else none
  --mixer NAME           softmax, local, linear, gla, combiner, delta, ssm  [softmax]
  --window W             local: keys each query sees; combiner: span [sqrt(length)]
  --depth N              transformer blocks                    [the config's: kat_fmnist 6]
  --drop-path X          stochastic depth rate (linear over depth)          [0]
  --dropout X            dropout on the residual branches                   [0]
  --threads N            threads (0: all cores)                             [0]
  --seed N               seed of init, data order, augmentation, dropout    [0]
  --out DIR              run directory                   [runs/<arch>-<date>-<time>]
  --overwrite            replace a run already in --out
  --resume CKPT          continue a run from its last/ checkpoint exactly, in the directory
                         that holds it now; --epochs (which may extend it), --threads,
                         --stop-after, --log-every and --progress go with it, no other flag
  --train-limit N        use only the first N training images
  --test-limit N         use only the first N test images
  --stop-after N         stop at step N, saving last/ for --resume (as Ctrl-C does)
  --log-every N          steps between metric lines                         [50]
  --progress bar|lines   progress display [bar on a terminal, lines otherwise]

Under `mpirun -np N` it trains data parallel on N ranks (kat built with MPI): --batch is per rank
and the global batch N times it, with the samples one process would draw for that batch; rank 0
alone prints and writes the run; --resume takes any N that divides the saved global batch. A
rank that hangs stops the job after KAT_MPI_TIMEOUT seconds [600].
)";

constexpr const char* kEvalHelp =
    R"(usage: kat eval CKPT [--data DIR] [--batch N] [--threads N] [--limit N]

Prints test accuracy, loss and the confusion matrix of a checkpoint (a directory with
config.json and model.safetensors) on the test split of an IDX dataset.
)";

constexpr const char* kPredictHelp = R"(usage: kat predict CKPT IMAGE... [--top K] [--threads N]

Prints the top K classes (default 3) with probabilities for each image. Images (PNG, JPEG,
PGM/PPM, any size) are converted to the model's channels, resized to its input size, scaled to
[0, 1] and normalised with the checkpoint's mean/std.
)";

constexpr const char* kTrainLmHelp = R"(usage: kat train-lm [options]

Trains a byte-level causal language model (256 byte values + end-of-text) and writes a run
directory as `kat train` does (metrics.jsonl, last/, best/; --resume continues exactly). The text
is split 90/10 into training and validation text (every tenth block of 4 KiB).

  --text FILE...         text files, one document each  [the fortunes in /usr/share/games/fortunes]
  --model kat|gpt        GR-KAN (KAT) or GELU MLP (GPT) feed-forward       [kat]
  --config NAME|FILE     kat_lm, gpt_lm or a config.json                     [kat_lm]
  --context N            context length (tokens) of a new model             [256]
  --positions rope|learned  position encoding of a new model                [rope]
  --mixer NAME           softmax, local, linear, gla, combiner, delta, ssm  [softmax]
  --window W             local: keys each query sees; combiner: span [sqrt(length)]
  --depth N              transformer blocks of a new model        [the config's: kat_lm 4]
  --steps N              training steps (about 20 minutes on 2 cores)       [1800]
  --batch N              sequences per step                                 [16]
  --lr X                 peak learning rate (AdamW)                         [0.002]
  --min-lr X             final learning rate of the cosine schedule         [1e-4]
  --warmup N             warmup steps (linear)                              [100]
  --weight-decay X       decoupled weight decay on weight matrices          [0.1]
  --clip X               gradient-norm clipping, 0 to disable               [1.0]
  --eval-every N         steps between validation evaluations               [500]
  --eval-tokens N        validation tokens per evaluation (the last: all)   [65536]
  --threads N            threads (0: all cores)                             [0]
  --seed N               seed of init and batches                           [0]
  --out DIR              run directory                   [runs/<arch>-<date>-<time>]
  --overwrite            replace a run already in --out
  --resume CKPT          continue a run from its last/ checkpoint exactly, in the directory
                         that holds it now; --steps (which may extend it), --threads,
                         --stop-after, --log-every and --progress go with it, no other flag
  --stop-after N         stop at step N, saving last/ for --resume (as Ctrl-C does)
  --log-every N          steps between metric lines                         [50]
  --progress bar|lines   progress display [bar on a terminal, lines otherwise]

Under `mpirun -np N` it trains data parallel on N ranks (kat built with MPI): --batch is per rank
and the global batch N times it, with the samples one process would draw for that batch; rank 0
alone prints and writes the run; --resume takes any N that divides the saved global batch. A
rank that hangs stops the job after KAT_MPI_TIMEOUT seconds [600].
)";

constexpr const char* kGenerateHelp = R"(usage: kat generate CKPT [--prompt TEXT] [options]

Generates bytes from a language model with a KV cache and streams them to stdout; prints tokens/s
to stderr at the end. Stops at the end-of-text symbol or after --tokens. Past the context, the
cache restarts from the last half of the text. The same seed gives the same text.

  --prompt TEXT          text to continue (empty: the start of a document)  [""]
  --tokens N             bytes to generate                                  [256]
  --temperature X        softmax temperature, 0 for greedy                  [0.8]
  --top-k K              sample among the K likeliest bytes, 0 for all      [0]
  --top-p P              sample from the smallest set with probability P    [1.0]
  --seed N               seed of the sampler                                [0]
  --context N            tokens of context kept (at most the model's)       [the model's]
  --threads N            threads (0: all cores)                             [0]
)";

constexpr const char* kEvalLmHelp =
    R"(usage: kat eval-lm CKPT [--text FILE...] [--context N] [--batch N] [--threads N]

Prints the mean loss, bits per byte and perplexity of a language model on text files (each one
document), in windows of --context tokens (default and at most: the model's context). Without
--text: the validation split of the default corpus (the fortunes).
)";

constexpr const char* kLraHelp = R"(usage: kat lra TASK [options]

Trains a sequence classifier (token embedding, learned positions, pre-norm blocks, --pool)
on a Long Range Arena task, evaluates it on the validation set while training and prints the test
accuracy at the end, of the final model and of best/ (the best validation accuracy). Writes a
run directory (metrics.jsonl, config.json, last/, best/). With --init CKPT --steps 0 it trains
nothing and prints the checkpoint's validation and test accuracy on the data its run recorded
(seed, sizes, generator flags or --data, --eval-limit); flags change it, e.g. --seed N for
another seed's images.

TASK is one of:
  listops     nested [MIN/[MAX/[MED/[SM expressions (LRA's rules; operators and ] are tokens,
              LRA's redundant ( ) are left out); generated with --seed, or LRA's
              basic_{train,val,test}.tsv from --data DIR
  text        IMDb reviews, bytes as tokens, each cut to 1000 bytes as in LRA's code; --data DIR
              is required: the aclImdb directory (train/, test/) of aclImdb_v1.tar.gz from
              https://ai.stanford.edu/~amaas/data/sentiment/; a seeded tenth of train validates
  retrieval   AAN citation pairs: text1 (up to 4000 bytes), a NUL byte, text2 (up to 4000);
              --data DIR is required: LRA's tsv_data directory, which holds
              new_aan_pairs.{train,eval,test}.tsv, from lra_release.gz
              (https://storage.googleapis.com/long-range-arena/lra_release.gz)
  image       CIFAR-10 as 1024 grayscale pixel tokens when --data DIR holds its binary files
              (data_batch_1..5.bin, test_batch.bin); else sequential Fashion-MNIST, 784 pixel
              tokens (--data DIR: another IDX dataset); the last tenth of train validates
  pathfinder  32x32 images, 1024 pixel tokens: are the two marks joined by a dashed contour?
              Generated with --seed (--train-size, --heldout; --export DIR writes LRA's layout),
              or --data DIR: one difficulty directory of LRA's release, e.g.
              lra_release/pathfinder32/curv_contour_length_14 (split 80/10/10 in file order)
kat downloads nothing.

  --mixer NAME           softmax, local, linear, gla, combiner, delta, ssm  [softmax]
  --window W             local: keys each query sees; combiner: span [sqrt(length)]
  --ffn kan|mlp          GR-KAN or GELU MLP feed-forward                    [kan]
  --pool avg|token       mean of the tokens or a class token (timm's global_pool)  [avg]
  --positions P          learned (pos_embed), rope (rotary q and k in every block: relative
                         offsets), learned+rope, or for image and pathfinder rope2d or
                         learned+rope2d (rotary by the pixel's row and column: attention sees
                         2D offsets) or sincos2d (pos_embed learned from MAE's 2D sine-cosine
                         table: neighbouring pixels start alike)             [learned]
  --rope-theta X         rotary base (of rope and rope2d)                   [10000; rope2d: 100]
  --end-token            a learned end token after the last token (LRA codes' <eos>): with
                         rope, attention sees offsets from the end of the sequence
  --depth N              transformer blocks         [image, pathfinder: 1; the others: 4]
  --init CKPT            start from the weights of a kat lra checkpoint (its config, then the
                         flags above; the same tensors: e.g. --positions learned+rope on a
                         learned model); a new run, with a fresh optimizer and schedule. With a
                         --depth above the checkpoint's the model grows: its new blocks follow
                         the checkpoint's, each an identity at first (the outputs of its
                         attention and feed-forward branches zero), so it starts from what the
                         checkpoint computes
  --pretrain             self-pretraining on the task's own inputs: each step hides a fraction
                         of the tokens (a learned mask_token in their place) and the model learns
                         to predict them through a masked-token head; labels are not used and
                         the accuracies printed are of the hidden tokens. Then --init a
                         classification run from it (which drops the head)
  --mask-ratio X         with --pretrain: the fraction of tokens hidden      [0.5]
  --config FILE.json     a sequence-classifier config (model_type "kat-seq")
  --data DIR             task files (see above)
  --train-size N         generated ListOps / Pathfinder training examples   [96000]
  --heldout N            generated validation and test examples (each)      [2000]
  --min-length N, --max-length N
                         generated ListOps keep min < length < max   [500, 2000: LRA's]; shorter
                         expressions make the first stage of a length curriculum: train on
                         them with --positions rope, then --init a run on LRA's lengths with it
  --contour-dashes N     generated Pathfinder: dashes per marked contour    [6]
  --distractors N        generated Pathfinder: unmarked contours (4 dashes) [2]
                         (short contours without distractors: easier images, e.g. a
                         curriculum's first stage to --init a run on the default ones from)
  --export DIR           also write the generated data as LRA's files (with --steps 0: only that)
  --steps N              training steps (0 with --init: evaluate only)      [2000]
  --batch N              sequences per step                                 [32]
  --lr X                 peak learning rate (AdamW)                         [0.001]
  --warmup N             warmup steps (linear)                              [100]
  --weight-decay X       decoupled weight decay on weight matrices          [0.05]
  --eval-every N         steps between validation evaluations               [500]
  --eval-limit N         validation sequences per evaluation (0: all)       [2000]
  --threads N            threads (0: all cores)                             [0]
  --seed N               seed of the data, init and batches                 [0]
  --out DIR              run directory                   [runs/<arch>-<date>-<time>]
  --overwrite            replace a run already in --out
  --resume CKPT          continue a run from its last/ or best/ exactly, in the directory
                         that holds it now (--steps may extend it)
  --stop-after N         stop at step N, saving last/ for --resume (as Ctrl-C does)
  --log-every N          steps between metric lines                         [50]
  --progress bar|lines   progress display [bar on a terminal, lines otherwise]

Under `mpirun -np N` it trains data parallel on N ranks (kat built with MPI): --batch is per rank
and the global batch N times it, with the samples one process would draw for that batch; rank 0
alone prints and writes the run; --resume takes any N that divides the saved global batch. A
rank that hangs stops the job after KAT_MPI_TIMEOUT seconds [600].
)";

constexpr const char* kInfoHelp = R"(usage: kat info CKPT

Prints the configuration and the parameter count of every tensor and of every module type.
)";

constexpr const char* kReportHelp = R"(usage: kat report RUN_DIR [--out FILE.html] [options]

Writes one self-contained HTML page about a run directory of kat train, train-lm or lra (inline
SVG and PNG, no script, nothing fetched: it opens from disk): the model's configuration; the
loss, accuracy, learning-rate and throughput curves of metrics.jsonl; every learned GR-KAN
function over [-4, 4] drawn over its initial function; for image classifiers the confusion
matrix and a grid of test images with predicted and true classes, misclassified first; for
language models two samples (temperatures 0.5 and 1.0); for LRA runs the confusion matrix; and
for the softmax, local and linear mixers the attention maps of one example per layer and head.
What a run lacks (no checkpoint yet, no GR-KAN layers, test data not found) is said on the page.

  --out FILE.html        the page                                  [RUN_DIR/report.html]
  --checkpoint C         last, best or a checkpoint directory      [last/, else best/]
  --data DIR             test data of classifiers and LRA runs     [the run's]
  --limit N              test examples evaluated, 0 for all        [all images, 500 sequences]
  --images N             test images in the grid                   [48]
  --tokens N             bytes per language-model sample           [200]
  --seed N               seed of the samples                       [0]
  --threads N            threads (0: all cores)                    [0]
)";

constexpr const char* kPlotActivationsHelp =
    R"(usage: kat plot-activations CKPT --out FILE.svg|FILE.png

Draws every learned GR-KAN function of a checkpoint (image classifier, language model or LRA
sequence classifier) over [-4, 4]: a row per block with act1 and act2 side by side, one curve
per channel group over the function it started from (dashed). A .png is converted from the SVG
by rsvg-convert (Debian package librsvg2-bin).
)";

constexpr const char* kFitHelp = R"(usage: kat fit-rational ACT [--lo X] [--hi X]

Fits F(x) = P(x)/Q(x) (GR-KAN, kernel form) to ACT on [lo, hi] (default [-3, 3]) by least
squares and prints the coefficients with the max and RMS error. ACT: identity, relu, gelu,
swish, silu, tanh, sigmoid.
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;
  std::set<std::string> switches;

  bool has(const std::string& k) const { return values.count(k) || switches.count(k); }
  std::string str(const std::string& k, const std::string& fallback = "") const {
    auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
  long long integer(const std::string& k, long long fallback) const {
    if (!values.count(k)) return fallback;
    const std::string& v = values.at(k);
    try {
      size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    fail("--", k, " expects a whole number, not '", v, "'");
  }
  double real(const std::string& k, double fallback) const {
    if (!values.count(k)) return fallback;
    const std::string& v = values.at(k);
    try {
      size_t used = 0;
      const double x = std::stod(v, &used);
      if (used == v.size() && std::isfinite(x)) return x;
    } catch (const std::exception&) {
    }
    fail("--", k, " expects a number, not '", v, "'");
  }
};

// Parses "--key value", "--key=value" and bare switches; anything unknown is an error.
Args parse(int argc, char** argv, int first, const std::set<std::string>& valued,
           const std::set<std::string>& switches, const char* command) {
  Args a;
  for (int i = first; i < argc; i++) {
    std::string s = argv[i];
    if (s.rfind("--", 0) != 0 || s == "--") {
      a.positional.push_back(s);
      continue;
    }
    std::string key = s.substr(2), value;
    const size_t eq = key.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) value = key.substr(eq + 1), key = key.substr(0, eq);
    if (switches.count(key)) {
      check(!inline_value, "--", key, " takes no value");
      a.switches.insert(key);
    } else if (valued.count(key)) {
      if (!inline_value) {
        check(i + 1 < argc, "--", key, " needs a value");
        value = argv[++i];
      }
      a.values[key] = value;
    } else {
      fail("unknown option --", key, " for `kat ", command, "` (see kat ", command, " --help)");
    }
  }
  return a;
}

// --resume continues a run as it was started: it takes the run's length (`length_flag`, which may
// extend it) and how it runs and reports; any other flag would be dropped without a word, so it
// is an error instead.
void check_resume_flags(const Args& a, const std::string& length_flag) {
  if (!a.has("resume")) return;
  const std::vector<std::string> may_change = {length_flag, "threads", "stop-after", "log-every",
                                               "progress"};
  auto check_flag = [&](const std::string& k) {
    check(k == "resume" || std::find(may_change.begin(), may_change.end(), k) != may_change.end(),
          "--resume continues a run as it was started; --", k, " cannot change it (--", length_flag,
          ", --threads, --stop-after, --log-every and --progress can)");
  };
  for (const auto& [k, v] : a.values) check_flag(k);
  for (const std::string& k : a.switches) check_flag(k);
}

bool wants_help(int argc, char** argv) {
  for (int i = 2; i < argc; i++) {
    const std::string s = argv[i];
    if (s == "--help" || s == "-h") return true;
  }
  return false;
}

// --batch of a training command is per rank (as in PyTorch's DistributedDataParallel): the
// global batch is that times the ranks of an mpirun job; checkpoints keep the global batch.
int global_batch(const Args& a, int fallback) {
  const long long b = a.integer("batch", fallback);
  check(b > 0 && b <= (1 << 24), "--batch must be positive, not ", b);
  return static_cast<int>(b) * dist::size();
}

int cmd_train(int argc, char** argv) {
  const Args a = parse(argc, argv, 2,
                       {"model",     "config",   "data",       "epochs",       "batch",
                        "lr",        "min-lr",   "warmup",     "weight-decay", "label-smoothing",
                        "clip",      "augment",  "drop-path",  "dropout",      "threads",
                        "seed",      "out",      "resume",     "train-limit",  "test-limit",
                        "log-every", "progress", "stop-after", "mixer",        "window",
                        "depth"},
                       {"overwrite"}, "train");
  check(a.positional.empty(), "unexpected argument '", a.positional.empty() ? "" : a.positional[0],
        "' (see kat train --help)");
  check_resume_flags(a, "epochs");
  TrainOptions o;
  o.data_dir = a.str("data");
  o.epochs = static_cast<int>(a.integer("epochs", 0));
  o.batch = global_batch(a, o.batch);
  o.lr = static_cast<float>(a.real("lr", o.lr));
  o.min_lr = static_cast<float>(a.real("min-lr", o.min_lr));
  o.warmup_epochs = static_cast<float>(a.real("warmup", o.warmup_epochs));
  o.weight_decay = static_cast<float>(a.real("weight-decay", o.weight_decay));
  o.label_smoothing = static_cast<float>(a.real("label-smoothing", o.label_smoothing));
  o.clip = static_cast<float>(a.real("clip", o.clip));
  o.augment = a.str("augment", o.augment);
  o.threads = static_cast<int>(a.integer("threads", 0));
  o.seed = static_cast<uint64_t>(a.integer("seed", 0));
  o.out_dir = a.str("out");
  o.overwrite = a.has("overwrite");
  o.resume = a.str("resume");
  o.train_limit = a.integer("train-limit", 0);
  o.test_limit = a.integer("test-limit", 0);
  o.log_every = static_cast<int>(a.integer("log-every", o.log_every));
  o.stop_after = a.integer("stop-after", 0);
  check(o.stop_after >= 0, "--stop-after must be a step number >= 0");
  check(o.log_every > 0, "--log-every must be positive");
  check(o.epochs >= 0, "--epochs must be positive");
  check(o.batch > 0, "--batch must be positive");
  check(o.threads >= 0, "--threads must be >= 0");
  if (a.has("progress")) {
    const std::string p = a.str("progress");
    check(p == "bar" || p == "lines", "--progress is bar or lines, not '", p, "'");
    o.progress = p == "bar" ? 1 : 0;
  }
  const std::string config_name = a.str("config", "kat_fmnist");
  ModelConfig c = resolve_config(config_name);
  const bool adapt = config_name == "kat_fmnist" || config_name == "vit_fmnist";
  if (a.has("model")) {
    const std::string m = a.str("model");
    check(m == "kat" || m == "vit", "--model is kat or vit, not '", m, "'");
    c = with_ffn(c, m == "kat" ? Ffn::Kan : Ffn::Mlp);
  }
  c.drop_path_rate = static_cast<float>(a.real("drop-path", c.drop_path_rate));
  c.drop_rate = static_cast<float>(a.real("dropout", c.drop_rate));
  if (a.has("mixer")) c.mixer = parse_mixer(a.str("mixer"));
  c.window = static_cast<int>(a.integer("window", c.window));
  c.depth = static_cast<int>(a.integer("depth", c.depth));
  validate(c);
  const TrainResult r = train_classifier(c, adapt, o, std::cerr);
  std::cout << "run directory:   " << r.run_dir << "\n"
            << "last checkpoint: " << r.run_dir << "/last\n"
            << "best checkpoint: " << r.run_dir << "/best (test accuracy " << std::fixed
            << std::setprecision(2) << 100 * r.best_accuracy << "%)\n"
            << "metrics:         " << r.run_dir << "/metrics.jsonl\n"
            << "final test accuracy " << 100 * r.final_eval.accuracy() << "% after " << r.steps
            << " steps in " << std::setprecision(0) << r.train_seconds << " s\n";
  return 0;
}

double now_seconds_for_cli() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// --text FILE... : the value of --text and the positional arguments after the command's own.
std::vector<std::string> text_files(const Args& a, size_t skip) {
  std::vector<std::string> files;
  if (a.has("text")) files.push_back(a.str("text"));
  files.insert(files.end(), a.positional.begin() + static_cast<int64_t>(skip), a.positional.end());
  return files;
}

int parse_progress(const Args& a) {
  if (!a.has("progress")) return -1;
  const std::string p = a.str("progress");
  check(p == "bar" || p == "lines", "--progress is bar or lines, not '", p, "'");
  return p == "bar" ? 1 : 0;
}

int cmd_train_lm(int argc, char** argv) {
  const Args a = parse(
      argc, argv, 2, {"text",       "model",       "config",   "context", "positions",    "steps",
                      "batch",      "lr",          "min-lr",   "warmup",  "weight-decay", "clip",
                      "eval-every", "eval-tokens", "threads",  "seed",    "out",          "resume",
                      "stop-after", "log-every",   "progress", "mixer",   "window",       "depth"},
      {"overwrite"}, "train-lm");
  check(a.has("text") || a.positional.empty(), "unexpected argument '",
        a.positional.empty() ? "" : a.positional[0], "' (see kat train-lm --help)");
  check_resume_flags(a, "steps");
  LmTrainOptions o;
  o.texts = text_files(a, 0);
  o.steps = a.integer("steps", 0);
  o.batch = global_batch(a, o.batch);
  o.lr = static_cast<float>(a.real("lr", o.lr));
  o.min_lr = static_cast<float>(a.real("min-lr", o.min_lr));
  o.warmup = a.integer("warmup", o.warmup);
  o.weight_decay = static_cast<float>(a.real("weight-decay", o.weight_decay));
  o.clip = static_cast<float>(a.real("clip", o.clip));
  o.eval_every = a.integer("eval-every", o.eval_every);
  o.eval_tokens = a.integer("eval-tokens", o.eval_tokens);
  o.threads = static_cast<int>(a.integer("threads", 0));
  o.seed = static_cast<uint64_t>(a.integer("seed", 0));
  o.out_dir = a.str("out");
  o.overwrite = a.has("overwrite");
  o.resume = a.str("resume");
  o.stop_after = a.integer("stop-after", 0);
  o.log_every = static_cast<int>(a.integer("log-every", o.log_every));
  o.progress = parse_progress(a);
  check(o.steps >= 0 && o.stop_after >= 0 && o.warmup >= 0, "step counts must be >= 0");
  check(o.batch > 0 && o.log_every > 0 && o.eval_every > 0 && o.eval_tokens >= 0,
        "--batch, --log-every and --eval-every must be positive");
  check(o.threads >= 0, "--threads must be >= 0");
  LmConfig c = resolve_lm_config(a.str("config", "kat_lm"));
  if (a.has("model")) {
    const std::string m = a.str("model");
    check(m == "kat" || m == "gpt", "--model is kat or gpt, not '", m, "'");
    const Ffn ffn = m == "kat" ? Ffn::Kan : Ffn::Mlp;
    if (ffn != c.ffn && (c.architecture == "kat_lm" || c.architecture == "gpt_lm"))
      c.architecture = m + "_lm";
    c.ffn = ffn;
  }
  if (a.has("context")) {
    const long long n = a.integer("context", c.context);
    check(n > 1 && n <= (1 << 20), "--context must be in 2..1048576, not ", n);
    c.context = static_cast<int>(n);
  }
  if (a.has("positions")) {
    const std::string p = a.str("positions");
    check(p == "rope" || p == "learned", "--positions is rope or learned, not '", p, "'");
    c.positions = p == "rope" ? Positions::Rope : Positions::Learned;
  }
  if (a.has("mixer")) c.mixer = parse_mixer(a.str("mixer"));
  c.window = static_cast<int>(a.integer("window", c.window));
  c.depth = static_cast<int>(a.integer("depth", c.depth));
  validate(c);
  const LmTrainResult r = train_lm(c, o, std::cerr);
  std::cout << "run directory:   " << r.run_dir << "\n"
            << "last checkpoint: " << r.run_dir << "/last\n"
            << "best checkpoint: " << r.run_dir << "/best\n"
            << "metrics:         " << r.run_dir << "/metrics.jsonl\n"
            << "final validation " << std::fixed << std::setprecision(3)
            << r.final_eval.bits_per_byte() << " bits/byte (perplexity " << std::setprecision(2)
            << r.final_eval.perplexity() << ") after " << r.steps << " steps in "
            << std::setprecision(0) << r.train_seconds << " s\n";
  return 0;
}

int cmd_generate(int argc, char** argv) {
  const Args a =
      parse(argc, argv, 2,
            {"prompt", "tokens", "temperature", "top-k", "top-p", "seed", "threads", "context"}, {},
            "generate");
  check(a.positional.size() == 1, "kat generate takes one checkpoint (see kat generate --help)");
  set_num_threads(static_cast<int>(a.integer("threads", 0)));
  SamplingOptions s;
  s.temperature = static_cast<float>(a.real("temperature", s.temperature));
  s.top_k = static_cast<int>(a.integer("top-k", s.top_k));
  s.top_p = static_cast<float>(a.real("top-p", s.top_p));
  validate(s);
  const long long n = a.integer("tokens", 256);
  check(n >= 0, "--tokens must be >= 0");
  auto model = load_lm(a.positional[0]);
  const int64_t ctx = a.integer("context", model->config().context);
  check(ctx > 1 && ctx <= model->config().context, "--context ", ctx,
        " is longer than the checkpoint supports (", model->config().context, " tokens)");
  const std::string prompt = a.str("prompt");
  check(static_cast<int64_t>(prompt.size()) <= ctx, "the prompt is ", prompt.size(),
        " bytes, longer than the model's context of ", ctx, " tokens");
  Rng rng(static_cast<uint64_t>(a.integer("seed", 0)));
  std::cout << prompt << std::flush;
  const double t0 = now_seconds_for_cli();
  const auto made =
      static_cast<long long>(generate_text(*model, prompt, n, ctx, s, rng, [](char c) {
                               std::cout.put(c);
                               std::cout.flush();
                             }).size());
  const double seconds = now_seconds_for_cli() - t0;
  std::cout << "\n" << std::flush;
  std::cerr << "generated " << made << " tokens in " << std::fixed << std::setprecision(2)
            << seconds << " s: " << std::setprecision(1) << made / std::max(1e-9, seconds)
            << " tokens/s\n";
  return 0;
}

int cmd_eval_lm(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {"text", "batch", "threads", "context"}, {}, "eval-lm");
  check(!a.positional.empty(), "kat eval-lm takes a checkpoint (see kat eval-lm --help)");
  set_num_threads(static_cast<int>(a.integer("threads", 0)));
  const int batch = static_cast<int>(a.integer("batch", 16));
  check(batch > 0, "--batch must be positive");
  auto model = load_lm(a.positional[0]);
  const std::vector<std::string> files = text_files(a, 1);
  std::vector<int32_t> tokens;
  std::string source;
  if (files.empty()) {
    const auto fortunes = fortune_files(default_text_dir());
    tokens = split_corpus(read_documents(fortunes, true), model->config().context, "").valid;
    source = std::string(default_text_dir()) + " (validation split)";
  } else {
    for (const std::string& doc : read_documents(files, false)) {
      if (!tokens.empty()) tokens.push_back(kEndOfText);
      tokens.insert(tokens.end(), doc.begin(), doc.end());
    }
    for (auto& t : tokens) t = t == kEndOfText ? t : (t & 0xFF);
    source = files.size() == 1 ? files[0]
                               : files[0] + " and " + std::to_string(files.size() - 1) + " more";
  }
  check(tokens.size() >= 2, source, ": too little text to evaluate");
  const long long window = a.integer("context", model->config().context);
  check(window > 0 && window <= model->config().context, "--context ", window,
        " is longer than the checkpoint supports (", model->config().context, " tokens)");
  const LmEval e = evaluate_lm(*model, tokens, batch, 0, window);
  std::cout << model->config().architecture << " on " << source << ": " << e.tokens << " tokens\n"
            << "loss " << std::fixed << std::setprecision(4) << e.loss << " nats/token, "
            << std::setprecision(3) << e.bits_per_byte() << " bits/byte, perplexity "
            << std::setprecision(2) << e.perplexity() << "\n";
  return 0;
}

int report_lra(const LraResult& r) {
  std::cout << "run directory:   " << r.run_dir << "\n" << std::fixed << std::setprecision(2);
  if (r.mask_ratio > 0) std::cout << "hidden tokens (" << 100 * r.mask_ratio << "%): ";
  if (r.valid_accuracy >= 0)
    std::cout << "validation accuracy " << 100 * r.valid_accuracy << "%, ";
  else
    std::cout << "(stopped between validations) ";
  std::cout << "test accuracy " << 100 * r.test_accuracy << "% after " << r.steps << " steps in "
            << std::setprecision(0) << r.train_seconds << " s\n";
  if (r.best_step >= 0)
    std::cout << "best checkpoint: " << r.run_dir << "/best (step " << r.best_step
              << ", validation accuracy " << std::setprecision(2) << 100 * r.best_valid_accuracy
              << "%): test accuracy " << 100 * r.best_test_accuracy << "%\n";
  return 0;
}

// kat lra TASK --init CKPT --steps 0: the accuracy of the checkpoint (as config `c` holds it) on
// the validation split (its first --eval-limit, as training evaluates) and the whole test split;
// of predicting hidden tokens when o.mask_ratio > 0 (a pretraining checkpoint).
int evaluate_lra(const SequenceConfig& c, const LraData& data, const LraOptions& o) {
  SequenceClassifier model(c);
  load_params(checkpoint_dir(o.init) + "/model.safetensors", model.params(), c.architecture);
  const double valid = lra_accuracy(model, data.valid, o.batch, o.eval_limit, o.mask_ratio);
  const double test = lra_accuracy(model, data.test, o.batch, 0, o.mask_ratio);
  const int64_t n_valid =
      o.eval_limit > 0 ? std::min(o.eval_limit, data.valid.size()) : data.valid.size();
  std::cout << "checkpoint:      " << o.init << " (" << c.architecture << ", "
            << model.params().total() << " parameters)\n"
            << "data:            " << data.test.source << "\n"
            << std::fixed << std::setprecision(2);
  if (o.mask_ratio > 0) std::cout << "hidden tokens (" << 100 * o.mask_ratio << "%): ";
  std::cout << "validation accuracy " << 100 * valid << "% (" << n_valid
            << " sequences), test accuracy " << 100 * test << "% (" << data.test.size()
            << " sequences)\n";
  return 0;
}

int cmd_lra(int argc, char** argv) {
  const Args a = parse(
      argc, argv, 2,
      {"mixer",        "window",     "ffn",        "config",         "data",        "train-size",
       "export",       "heldout",    "steps",      "batch",          "lr",          "warmup",
       "weight-decay", "eval-every", "eval-limit", "threads",        "seed",        "out",
       "stop-after",   "log-every",  "progress",   "resume",         "pool",        "positions",
       "init",         "min-length", "max-length", "contour-dashes", "distractors", "rope-theta",
       "mask-ratio",   "depth"},
      {"overwrite", "end-token", "pretrain"}, "lra");
  LraOptions o;  // what a resumed run may change too: steps, threads, logging, stop
  o.steps = a.integer("steps", a.has("resume") ? 0 : o.steps);  // 0: the run's own
  o.threads = static_cast<int>(a.integer("threads", 0));
  o.stop_after = a.integer("stop-after", 0);
  o.log_every = static_cast<int>(a.integer("log-every", o.log_every));
  o.progress = parse_progress(a);
  check(o.log_every > 0 && o.threads >= 0 && o.stop_after >= 0,
        "--log-every must be positive, --threads and --stop-after not negative");
  if (a.has("resume")) {
    check_resume_flags(a, "steps");
    o = lra_resume_options(a.str("resume"), o);
    check(a.positional.empty() || a.positional == std::vector<std::string>{o.task}, a.str("resume"),
          " is a run of the ", o.task, " task");
    set_num_threads(o.threads);
    const LraData data = load_lra(o);
    return report_lra(train_lra(SequenceConfig{}, data, o, std::cerr));
  }
  check(
      a.positional.size() == 1,
      "kat lra takes one task: listops, text, retrieval, image or pathfinder (see kat lra --help)");
  o.task = a.positional[0];
  o.init = a.str("init");
  // --steps 0 --init CKPT: the checkpoint as saved, on the task's data; nothing trains or is
  // written. The data is the one its run recorded (trainer_state.json) unless flags change it.
  const bool evaluate_only = o.steps == 0 && !o.init.empty();
  if (evaluate_only) {
    o = lra_checkpoint_data_options(o.init, o);
    check(o.task == a.positional[0], o.init, " is a model of the ", o.task, " task, not of ",
          a.positional[0]);
  }
  o.data_dir = a.str("data", o.data_dir);
  o.train_size = a.integer("train-size", o.train_size);
  o.heldout = a.integer("heldout", o.heldout);
  o.min_length = static_cast<int>(a.integer("min-length", o.min_length));
  o.max_length = static_cast<int>(a.integer("max-length", o.max_length));
  o.contour_dashes = static_cast<int>(a.integer("contour-dashes", o.contour_dashes));
  o.distractors = static_cast<int>(a.integer("distractors", o.distractors));
  // A generator's options: for its task only, and not with --data (files are read as they are).
  auto generator_options = [&](const std::string& first, const std::string& second,
                               const char* task, const char* what) {
    if (!a.has(first) && !a.has(second)) return;
    const std::string both = "--" + first + " and --" + second;
    check(o.task == task, both, " are for generated ", what);
    check(o.data_dir.empty(), both, " generate ", what, "; --data reads its files as they are");
  };
  generator_options("min-length", "max-length", "listops", "ListOps");
  generator_options("contour-dashes", "distractors", "pathfinder", "Pathfinder");
  o.batch = global_batch(a, o.batch);
  o.lr = static_cast<float>(a.real("lr", o.lr));
  o.warmup = a.integer("warmup", o.warmup);
  o.weight_decay = static_cast<float>(a.real("weight-decay", o.weight_decay));
  o.eval_every = a.integer("eval-every", o.eval_every);
  o.eval_limit = a.integer("eval-limit", o.eval_limit);
  o.seed = static_cast<uint64_t>(a.integer("seed", static_cast<int64_t>(o.seed)));
  o.out_dir = a.str("out");
  o.overwrite = a.has("overwrite");
  if (evaluate_only) {
    for (const char* f : {"mixer", "window", "ffn", "pool", "positions", "end-token", "config",
                          "rope-theta", "lr", "warmup", "weight-decay", "eval-every", "stop-after",
                          "out", "overwrite", "pretrain", "depth"})
      check(!a.has(f), "--steps 0 --init evaluates the checkpoint as it was saved; --", f,
            " goes only with training");
    check(dist::size() == 1,
          "kat lra --steps 0 --init evaluates in one process (not under mpirun)");
    check(o.batch > 0 && o.eval_limit >= 0, "--batch must be positive, --eval-limit not negative");
  }
  // Before the data, which can take a minute to load or generate (--steps 0 --export: only that).
  if (o.steps != 0 || (!a.has("export") && !evaluate_only)) validate(o);
  set_num_threads(o.threads);
  const LraData data =
      load_lra(o, a.str("export"), evaluate_only ? LraSplits::kHeldout : LraSplits::kAll);
  if (a.has("export") && o.steps == 0) {
    std::cout << "wrote the " << o.task << " splits to " << a.str("export") << "\n";
    if (!evaluate_only) return 0;  // --steps 0 without --init: the files alone
  }
  // The model: --config, else the --init checkpoint's, else the task's default; then the flags.
  const std::string config_file = a.has("config")  ? a.str("config")
                                  : o.init.empty() ? ""
                                                   : checkpoint_dir(o.init) + "/config.json";
  SequenceConfig c = config_file.empty()
                         ? lra_config(o.task, data)
                         : sequence_config_from_json(read_text_file(config_file), config_file);
  if (a.has("mixer")) c.mixer = parse_mixer(a.str("mixer"));
  c.window = static_cast<int>(a.integer("window", c.window));
  c.depth = static_cast<int>(a.integer("depth", c.depth));
  if (a.has("ffn")) {
    const std::string f = a.str("ffn");
    check(f == "kan" || f == "mlp", "--ffn is kan or mlp, not '", f, "'");
    c.ffn = f == "kan" ? Ffn::Kan : Ffn::Mlp;
  }
  if (a.has("pool")) c.global_pool = a.str("pool");
  const bool was_2d = c.rotary_2d();
  if (a.has("positions")) c.positions = a.str("positions");
  if (a.has("rope-theta"))
    c.rope_theta = a.real("rope-theta", c.rope_theta);
  else if (c.rotary_2d() && !was_2d)
    c.rope_theta = kRope2dTheta;
  if (c.grid_positions()) {
    const int width = data.train.width;
    check(width > 0, "--positions ", c.positions, " is for the image tasks (image, pathfinder)");
    check(c.grid_width == 0 || c.grid_width == width, "the model's grid_width of ", c.grid_width,
          " is not the images' width of ", width);
    c.grid_width = width;
  }
  if (a.has("end-token")) c.end_token = true;
  // Self-pretraining: the masked-token head and the ratio of hidden tokens. A run without
  // --pretrain is a classifier: --init from a pretraining checkpoint drops its head.
  check(!a.has("mask-ratio") || a.has("pretrain") || (evaluate_only && c.masked_head),
        "--mask-ratio goes with --pretrain (or --steps 0 --init of a pretraining checkpoint)");
  if (!evaluate_only) c.masked_head = a.has("pretrain");
  const double ratio = o.mask_ratio > 0 ? o.mask_ratio : 0.5;  // a checkpoint's run's, or 0.5
  o.mask_ratio = c.masked_head ? static_cast<float>(a.real("mask-ratio", ratio)) : 0.0f;
  check(!c.masked_head || (o.mask_ratio > 0 && o.mask_ratio < 1),
        "--mask-ratio must be in (0, 1), not ", o.mask_ratio);
  // A checkpoint without learned positions takes longer sequences than it was trained on (the
  // second stage of a length curriculum): its max_len bounds no weight.
  if (!o.init.empty() && !a.has("config") && c.positions == "rope")
    c.max_len = std::max(c.max_len, static_cast<int>(data.max_length()));
  c.architecture =
      std::string(c.ffn == Ffn::Kan ? "kat" : "vit") + "_lra_" + o.task + "_" + mixer_name(c.mixer);
  validate(c);
  check(data.train.max_length() <= c.max_len && data.test.max_length() <= c.max_len,
        "the data has sequences of up to ",
        std::max(data.train.max_length(), data.test.max_length()),
        " tokens, longer than the config's max_len of ", c.max_len);
  check(data.train.vocab_size <= c.vocab_size && data.train.num_classes <= c.num_classes,
        "the config's vocab_size / num_classes are smaller than the data's");
  if (evaluate_only) return evaluate_lra(c, data, o);
  return report_lra(train_lra(c, data, o, std::cerr));
}

int cmd_eval(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {"data", "batch", "threads", "limit"}, {}, "eval");
  check(a.positional.size() == 1, "kat eval takes one checkpoint (see kat eval --help)");
  set_num_threads(static_cast<int>(a.integer("threads", 0)));
  auto model = load_model(a.positional[0]);
  const std::string dir = a.str("data", default_data_dir());
  const ImageDataset test = load_idx_split(dir, Split::Test);
  const int batch = static_cast<int>(a.integer("batch", 256));
  check(batch > 0, "--batch must be positive");
  const EvalResult r = evaluate(*model, test, batch, a.integer("limit", 0));
  std::vector<std::string> names = model->config().class_names;
  if (names.empty()) names = class_names_for(dir, model->config().num_classes);
  std::cout << model->config().architecture << " on " << test.source << "\n";
  print_eval(std::cout, r, names);
  return 0;
}

int cmd_predict(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {"top", "threads"}, {}, "predict");
  check(a.positional.size() >= 2, "kat predict takes a checkpoint and at least one image");
  set_num_threads(static_cast<int>(a.integer("threads", 0)));
  auto model = load_model(a.positional[0]);
  const ModelConfig& c = model->config();
  const int top = static_cast<int>(std::min<long long>(a.integer("top", 3), c.num_classes));
  check(top > 0, "--top must be positive");
  const int64_t per = static_cast<int64_t>(c.img_size) * c.img_size;
  std::vector<float> input(c.in_chans * per);
  for (size_t i = 1; i < a.positional.size(); i++) {
    const std::string& path = a.positional[i];
    Image img =
        resize_image(convert_channels(load_image(path), c.in_chans), c.img_size, c.img_size);
    for (int ch = 0; ch < c.in_chans; ch++)
      for (int64_t k = 0; k < per; k++)
        input[ch * per + k] = (img.data[ch * per + k] - c.mean[ch]) / c.std[ch];
    model->forward(input.data(), nullptr, 1);
    const float* z = model->logits();
    const float m = *std::max_element(z, z + c.num_classes);
    std::vector<std::pair<double, int>> p;
    double sum = 0;
    for (int k = 0; k < c.num_classes; k++) sum += std::exp(z[k] - m);
    for (int k = 0; k < c.num_classes; k++) p.push_back({std::exp(z[k] - m) / sum, k});
    std::partial_sort(p.begin(), p.begin() + top, p.end(), std::greater<>());
    std::cout << path << "\n";
    for (int k = 0; k < top; k++) {
      const int cls = p[k].second;
      const std::string name =
          cls < static_cast<int>(c.class_names.size()) ? c.class_names[cls] : std::to_string(cls);
      std::cout << "  " << std::fixed << std::setprecision(2) << std::setw(6) << 100 * p[k].first
                << "%  " << cls << " " << name << "\n";
    }
  }
  return 0;
}

std::string module_type(const std::string& name) {
  if (name.find("mlp.act") != std::string::npos) return "GR-KAN rational";
  if (name.find("mlp.fc") != std::string::npos || name.find("mlp.c_") != std::string::npos)
    return "feed-forward linear";
  if (name.find("attn.") != std::string::npos) return "attention";
  if (name.find("norm") != std::string::npos || name.find("ln_") != std::string::npos)
    return "LayerNorm";
  if (name.rfind("patch_embed", 0) == 0) return "patch embedding";
  if (name == "cls_token" || name == "end_token" || name == "pos_embed")
    return "class token + positions";
  if (name == "wte.weight" || name == "wpe.weight") return "byte + position embeddings";
  if (name.rfind("head", 0) == 0 || name.rfind("lm_head", 0) == 0) return "head";
  return "other";
}

int cmd_info(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {}, {}, "info");
  check(a.positional.size() == 1, "kat info takes one checkpoint (see kat info --help)");
  const std::string dir = checkpoint_dir(a.positional[0]);
  std::unique_ptr<VisionTransformer> classifier;
  std::unique_ptr<CausalLM> lm;
  std::unique_ptr<SequenceClassifier> seq;
  const std::string text =
      file_exists(dir + "/config.json") ? read_text_file(dir + "/config.json") : "";
  if (is_lm_config_json(text))
    lm = load_lm(dir);
  else if (is_sequence_config_json(text))
    seq = load_sequence_model(dir);
  else
    classifier = load_model(dir);
  std::cout << "checkpoint " << dir << "\n"
            << (lm    ? lm_config_to_json(lm->config())
                : seq ? sequence_config_to_json(seq->config())
                      : config_to_json(classifier->config()))
            << "\n";
  const Params& p = lm ? lm->params() : seq ? seq->params() : classifier->params();
  std::map<std::string, int64_t> by_type;
  std::cout << "tensors:\n";
  for (const ParamSpec& s : p.specs()) {
    std::cout << "  " << std::left << std::setw(44) << s.name << std::setw(18) << shape_str(s.shape)
              << std::right << std::setw(10) << s.size << "\n";
    by_type[module_type(s.name)] += s.size;
  }
  std::cout << "parameters by module type:\n";
  for (const auto& [type, n] : by_type)
    std::cout << "  " << std::left << std::setw(26) << type << std::right << std::setw(12) << n
              << "\n";
  std::cout << "  " << std::left << std::setw(26) << "total" << std::right << std::setw(12)
            << p.total() << "\n";
  return 0;
}

// Fails before any long work when `path` cannot be written: its directory is missing, is not a
// directory, or is read-only.
void check_writable(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path parent =
      fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  std::error_code ec;
  check(fs::is_directory(parent, ec), "cannot write ", path, ": ", parent.string(),
        fs::exists(parent, ec) ? " is not a directory" : " does not exist");
  check(!fs::is_directory(path, ec), "cannot write ", path, ": it is a directory");
  check(::access(parent.c_str(), W_OK) == 0, "cannot write ", path, ": ", parent.string(),
        " is not writable");
}

int cmd_report(int argc, char** argv) {
  const Args a = parse(
      argc, argv, 2, {"out", "checkpoint", "data", "limit", "images", "tokens", "seed", "threads"},
      {}, "report");
  check(a.positional.size() == 1, "kat report takes one run directory (see kat report --help)");
  ReportOptions o;
  o.run_dir = a.positional[0];
  o.checkpoint = a.str("checkpoint");
  o.data_dir = a.str("data");
  o.limit = a.integer("limit", -1);
  o.images = static_cast<int>(a.integer("images", o.images));
  o.tokens = static_cast<int>(a.integer("tokens", o.tokens));
  o.seed = static_cast<uint64_t>(a.integer("seed", 0));
  check(!a.has("limit") || o.limit >= 0, "--limit must be >= 0 (0: all)");
  check(o.images >= 0 && o.tokens >= 0, "--images and --tokens must be >= 0");
  const std::string out = a.str("out", (std::filesystem::path(o.run_dir) / "report.html").string());
  check_writable(out);
  set_num_threads(static_cast<int>(a.integer("threads", 0)));
  write_file_atomic(out, report_html(o));
  std::cout << "report: " << out << "\n";
  return 0;
}

int cmd_plot_activations(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {"out"}, {}, "plot-activations");
  check(a.positional.size() == 1,
        "kat plot-activations takes one checkpoint (see kat plot-activations --help)");
  check(a.has("out"), "kat plot-activations needs --out FILE.svg or --out FILE.png");
  const std::string out = a.str("out");
  const std::string ext = std::filesystem::path(out).extension().string();
  check(ext == ".svg" || ext == ".png", "--out ", out, ": the file must end in .svg or .png");
  check_writable(out);
  std::string architecture, ffn;
  const auto acts = checkpoint_activations(a.positional[0], architecture, ffn);
  check(!acts.empty(), a.positional[0], " has no GR-KAN layers (", architecture, ", ffn ", ffn,
        "): nothing to plot");
  const std::string svg = activations_grid_svg(
      acts, "Learned GR-KAN functions of " + architecture + " (" + a.positional[0] + ")");
  if (ext == ".svg")
    write_file_atomic(out, svg);
  else
    write_svg_as_png(svg, out);
  std::cout << "activations: " << out << " (" << acts.size() << " rationals)\n";
  return 0;
}

int cmd_fit_rational(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {"lo", "hi"}, {}, "fit-rational");
  check(a.positional.size() == 1, "kat fit-rational takes one activation name");
  const std::string act = a.positional[0];
  activation(act, 0.0);  // unknown names fail with the list
  const double lo = a.real("lo", -3), hi = a.real("hi", 3);
  check(lo < hi, "--lo must be below --hi");
  const RationalFit f = fit_rational([&](double x) { return activation(act, x); }, lo, hi);
  std::cout << std::setprecision(17) << "weight_numerator [1, 6]: ";
  for (double v : f.coefs.num) std::cout << v << " ";
  std::cout << "\nweight_denominator [4]: ";
  for (double v : f.coefs.den) std::cout << v << " ";
  std::cout << std::setprecision(6) << "\nmax error " << f.max_error << ", rms error "
            << f.rms_error << " on [" << lo << ", " << hi << "]\n";
  return 0;
}

constexpr const char* kConfigsHelp = R"(usage: kat configs

Lists the named model configurations that --config accepts. Each is also a valid
config.json architecture name: `kat info` and checkpoints use the same names.
)";

int cmd_configs(int argc, char** argv) {
  const Args a = parse(argc, argv, 2, {}, {}, "configs");
  check(a.positional.empty(), "kat configs takes no arguments");
  for (const auto& n : config_names()) std::cout << n << "\n";
  return 0;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (cmd == "--version") {
    std::cout << "kat 0.1.0 (kernels built for " << kat::build_instruction_set()
              << (dist::built_with_mpi() ? "; with MPI" : "; without MPI") << ")\n";
    return 0;
  }
  const std::map<std::string, std::pair<int (*)(int, char**), const char*>> commands = {
      {"train", {cmd_train, kTrainHelp}},
      {"eval", {cmd_eval, kEvalHelp}},
      {"predict", {cmd_predict, kPredictHelp}},
      {"train-lm", {cmd_train_lm, kTrainLmHelp}},
      {"generate", {cmd_generate, kGenerateHelp}},
      {"eval-lm", {cmd_eval_lm, kEvalLmHelp}},
      {"lra", {cmd_lra, kLraHelp}},
      {"info", {cmd_info, kInfoHelp}},
      {"report", {cmd_report, kReportHelp}},
      {"plot-activations", {cmd_plot_activations, kPlotActivationsHelp}},
      {"fit-rational", {cmd_fit_rational, kFitHelp}},
      {"configs", {cmd_configs, kConfigsHelp}}};
  const auto it = commands.find(cmd);
  if (it == commands.end()) fail("unknown command '", cmd, "' (see kat --help)");
  if (wants_help(argc, argv)) {
    std::cout << it->second.second;
    return 0;
  }
  check(dist::size() == 1 || cmd == "train" || cmd == "train-lm" || cmd == "lra", "kat ", cmd,
        " runs in one process; under mpirun only train, train-lm and lra run (data parallel)");
  return it->second.first(argc, argv);
}

}  // namespace

int main(int argc, char** argv) {
  kat::use_short_openmp_spin(argv);
  std::string error;
  int status = 1;
  try {
    kat::require_build_cpu_features();
    kat::dist::init(&argc, &argv);
    if (!kat::dist::root()) std::cout.setstate(std::ios::failbit);  // results print on rank 0
    status = run(argc, argv);
  } catch (const kat::Error& e) {
    error = e.what();
  } catch (const std::bad_alloc&) {
    error = "out of memory";
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty()) {
    kat::dist::report_error(error);  // once for the job, by the rank it belongs to
    kat::dist::abort_job(1);
  }
  kat::dist::finalize();
  return error.empty() ? status : 1;
}
