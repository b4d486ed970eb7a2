// Training and evaluation of image classifiers: the loop behind `kat train` and `kat eval`.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "kat/config.h"
#include "kat/data.h"
#include "kat/model.h"

namespace kat {

constexpr int kDefaultEpochs = 12;

struct TrainOptions {
  std::string data_dir;  // empty: default_data_dir()
  int epochs = 0;        // 0: kDefaultEpochs, or the resumed run's
  int batch = 128;
  float lr = 2e-3f, min_lr = 1e-5f, warmup_epochs = 1.0f;
  float weight_decay = 0.05f, label_smoothing = 0.1f, clip = 1.0f;
  std::string augment = "auto";  // none | shift | flip | shift,flip | auto (flip on
                                 // Fashion-MNIST, whose classes are mirror-symmetric; else none)
  int threads = 0;
  uint64_t seed = 0;
  std::string out_dir;  // empty: runs/<architecture>-<timestamp>
  bool overwrite = false;
  std::string resume;                       // checkpoint directory of an earlier run (its last/)
  int64_t train_limit = 0, test_limit = 0;  // use only the first N samples (0: all)
  int64_t stop_after = 0;  // stop at this step as an interrupt would (last/ saved); 0: never
  int log_every = 50;
  int progress = -1;  // 1 bar, 0 log lines, -1: bar when stderr is a terminal
};

struct EvalResult {
  int64_t count = 0, correct = 0;
  double loss = 0;
  int num_classes = 0;
  std::vector<int64_t> confusion;  // [true, predicted]
  std::vector<int32_t> predicted;  // [count]: the predicted class of each image, in data order
  double accuracy() const { return count ? static_cast<double>(correct) / count : 0.0; }
};

struct TrainResult {
  std::string run_dir;
  EvalResult final_eval;
  double best_accuracy = 0;
  double train_seconds = 0;
  int64_t steps = 0;
};

// The model config to train: `config` adapted to the data when it is the small default (image
// size, channels, classes, mean/std and class names come from the files); other configs must
// match the data, or the error says how they differ.
ModelConfig config_for_data(ModelConfig config, const ImageDataset& train, const std::string& dir,
                            bool adapt);

TrainResult train_classifier(const ModelConfig& config, bool adapt_config, TrainOptions options,
                             std::ostream& log);

EvalResult evaluate(VisionTransformer& model, const ImageDataset& data, int batch,
                    int64_t limit = 0);

// Prints accuracy, loss and the confusion matrix with class names.
void print_eval(std::ostream& out, const EvalResult& r, const std::vector<std::string>& names);

}  // namespace kat
