// Checkpoint directories in the layout timm models use on the Hugging Face hub:
//   DIR/model.safetensors    weights under the upstream timm/KAT names
//   DIR/config.json          architecture, num_classes, model_args, pretrained_cfg, kat
//   DIR/optimizer.safetensors  AdamW moments ("exp_avg.<name>", "exp_avg_sq.<name>"), training only
//   DIR/trainer_state.json   step, epoch, best accuracy, options: what --resume needs
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kat/model.h"
#include "kat/optim.h"

namespace kat {

// Accepts a checkpoint directory or the path of its model.safetensors.
std::string checkpoint_dir(const std::string& path);

// Writes config.json and model.safetensors (each atomically), creating the directory.
void save_model(const std::string& dir, const VisionTransformer& model);
void save_optimizer(const std::string& dir, const Params& params, AdamW& opt);

// Reads config.json and model.safetensors; every tensor of the model must be present with its
// shape and nothing else may be (errors name the tensor).
std::unique_ptr<VisionTransformer> load_model(const std::string& path);
// Loads weights into an existing model of the same configuration.
void load_weights(const std::string& safetensors_path, VisionTransformer& model);
// Any model's parameters: model.safetensors + the given config.json text, and back. Loading is
// strict: every tensor with its shape, nothing else (errors name the tensor), except the tensors
// named in `optional`: the model's keep their values when the file lacks them, and the file's are
// skipped when the model lacks them (a pretraining head, say).
void save_params(const std::string& dir, const Params& params, const std::string& config_json);
void load_params(const std::string& safetensors_path, Params& params,
                 const std::string& architecture, const std::vector<std::string>& optional = {});
void load_optimizer(const std::string& dir, const Params& params, AdamW& opt);

}  // namespace kat
