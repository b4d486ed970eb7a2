// Long Range Arena tasks (reference/lra.md) on the sequence classifier: data, training, test.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "kat/listops.h"
#include "kat/pathfinder.h"
#include "kat/sequence.h"

namespace kat {

// Token sequences with one label each; sequences are stored back to back.
struct SequenceDataset {
  std::vector<uint8_t> tokens;
  std::vector<int64_t> offsets{0};  // sequence i is tokens[offsets[i], offsets[i + 1])
  std::vector<int32_t> labels;
  int vocab_size = 0, num_classes = 0;
  int width = 0;  // images: pixels per row (the grid of --positions rope2d); 0: not an image
  std::string source;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  int64_t length(int64_t i) const { return offsets[i + 1] - offsets[i]; }
  int64_t max_length() const;
};

struct LraData {
  SequenceDataset train, valid, test;
  int64_t max_length() const;  // the longest sequence of the three splits
};

std::vector<std::string> lra_task_names();  // listops, text, retrieval, image, pathfinder

// The configuration LRA's task calls for, scaled to this CPU (docs/lra.md), for the data.
SequenceConfig lra_config(const std::string& task, const LraData& data);

struct LraOptions {
  std::string task = "listops", data_dir;
  int64_t train_size = 96000, heldout = 2000;  // generated ListOps / Pathfinder: train, valid, test
  // Generated ListOps keep the expressions of min_length < length < max_length (LRA's: 500, 2000);
  // shorter ones are a curriculum's first stage (docs/lra.md).
  int min_length = ListOpsRules{}.min_length, max_length = ListOpsRules{}.max_length;
  // Generated Pathfinder: dashes of each marked contour and unmarked contours (the Pathfinder
  // paper's difficulty is the contour length); shorter contours and no distractors make an easier
  // first stage of a curriculum.
  int contour_dashes = PathfinderRules{}.dashes, distractors = PathfinderRules{}.distractors;
  int64_t steps = 2000;
  int batch = 32;
  float lr = 1e-3f, min_lr = 1e-5f, weight_decay = 0.05f, clip = 1.0f;
  int64_t warmup = 100, eval_every = 500, eval_limit = 2000;
  int threads = 0, log_every = 50, progress = -1;
  uint64_t seed = 0;
  std::string out_dir;
  bool overwrite = false;
  int64_t stop_after = 0;
  std::string resume;  // a checkpoint directory of the run to continue (set by lra_resume_options)
  // A checkpoint whose weights a new run starts from (the same tensors and shapes; fresh optimizer
  // and schedule), e.g. to train a model further with rotary positions added. The masked-token
  // head's tensors may be on either side only: a classifier drops them, a pretraining model
  // starts them from its init.
  std::string init;
  // > 0: self-pretraining (the model needs masked_head): each step hides this fraction of the
  // tokens, drawn afresh, and trains the model to predict them; the labels are not used.
  // Validation and test report the accuracy of predicting hidden tokens, on masks fixed by the
  // sequence's index.
  float mask_ratio = 0;
};
// Steps, batch, learning rate and evaluation interval are positive (train_lra checks it too).
void validate(const LraOptions& o);

// The data of a run as trainer_state.json's "options" record it (task, data_dir, sizes, generator
// rules, seed), over `o`: what a run from an older kat did not record keeps o's value.
LraOptions lra_data_options(const nlohmann::json& options, LraOptions o = {});

// The splits of o.task. listops: DIR/basic_{train,val,test}.tsv when o.data_dir is given (LRA's
// files), else generated with the seed (train_size / heldout / heldout examples of min_length <
// length < max_length, deduplicated across splits) and, when export_dir is given, written there
// under the same names.
// text: IMDb reviews from the aclImdb directory data_dir (required), bytes cut to 1000; a seeded
// tenth of train is the validation set (kat/lra_files.h).
// retrieval: AAN pairs from LRA's new_aan_pairs.{train,eval,test}.tsv in data_dir (required).
// image: CIFAR-10 as grayscale pixels (1024 tokens) when data_dir holds its binary files, else
// sequential Fashion-MNIST (784 pixel tokens) from data_dir or the Debian package; the last tenth
// of the training images is the validation set.
// pathfinder: LRA's files from one difficulty directory data_dir (split 80/10/10 in file order),
// else generated with the seed (train_size / heldout / heldout images) and, when export_dir is
// given, written there in LRA's layout (kat/pathfinder.h).
// kHeldout: the validation and test splits are all the caller needs (evaluating a model); the
// training split is then left empty where the held-out ones do not depend on it (generated
// Pathfinder; generated ListOps deduplicates its test split against train, so it is generated).
enum class LraSplits { kAll, kHeldout };
LraData load_lra(const LraOptions& o, const std::string& export_dir = "",
                 LraSplits splits = LraSplits::kAll);

// The data options a checkpoint's run recorded in its trainer_state.json (task, data directory,
// sizes, generator rules, seed, eval_limit) over `given`; `given` itself when it has no such file.
LraOptions lra_checkpoint_data_options(const std::string& checkpoint, const LraOptions& given);

// --resume CKPT: the options the run was started with (task, data, seed, schedule, run directory)
// from CKPT/trainer_state.json; `given` keeps threads, progress, logging and --stop-after, and its
// steps when > 0 (a run may be extended). The model comes from CKPT when train_lra runs.
LraOptions lra_resume_options(const std::string& checkpoint, const LraOptions& given);

struct LraResult {
  std::string run_dir;
  // Of the final model; valid_accuracy is -1 when no validation ran at the final step (a run
  // stopped between evaluations).
  double valid_accuracy = -1, test_accuracy = 0, train_seconds = 0;
  int64_t steps = 0;
  // best/: the checkpoint of the best validation accuracy (LRA's model selection) and its test
  // accuracy; best_step is -1 when a resumed checkpoint did not record it.
  // Accuracies are of the hidden tokens when the run pretrained (mask_ratio > 0).
  float mask_ratio = 0;
  int64_t best_step = -1;
  double best_valid_accuracy = 0, best_test_accuracy = 0;
};

// Trains `config` from its init, or, with options.resume, continues that checkpoint exactly (same
// weights, optimizer state and batches as an uninterrupted run; config is then the checkpoint's).
LraResult train_lra(const SequenceConfig& config, const LraData& data, const LraOptions& options,
                    std::ostream& log);
// Accuracy over the first `limit` sequences (0: all), equal-length neighbours batched together.
// With mask_ratio > 0, of predicting hidden tokens (forward_masked) instead of the labels: each
// sequence hides the tokens its index's fixed mask draws, the same on every call.
double lra_accuracy(SequenceClassifier& model, const SequenceDataset& d, int batch,
                    int64_t limit = 0, float mask_ratio = 0);

}  // namespace kat
