#include "kat/checkpoint.h"

#include <filesystem>
#include <set>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/lm.h"
#include "kat/safetensors.h"
#include "kat/sequence.h"

namespace kat {
namespace fs = std::filesystem;

std::string checkpoint_dir(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return path;
  if (fs::path(path).filename() == "model.safetensors") {
    const std::string parent = fs::path(path).parent_path().string();
    return parent.empty() ? "." : parent;
  }
  check(fs::exists(path, ec), path, ": no such checkpoint (give a checkpoint directory)");
  fail(path,
       ": not a checkpoint directory (expected a directory with config.json and "
       "model.safetensors)");
}

void save_params(const std::string& dir, const Params& p, const std::string& config_json) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec, dir, ": cannot create directory: ", ec.message());
  std::vector<TensorRef> tensors;
  for (size_t i = 0; i < p.specs().size(); i++)
    tensors.push_back({p.specs()[i].name, p.specs()[i].shape, p.value(static_cast<int>(i))});
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", config_json);
}

void save_model(const std::string& dir, const VisionTransformer& model) {
  save_params(dir, model.params(), config_to_json(model.config()));
}

void save_lm(const std::string& dir, const CausalLM& model) {
  save_params(dir, model.params(), lm_config_to_json(model.config()));
}

void save_optimizer(const std::string& dir, const Params& params, AdamW& opt) {
  std::vector<TensorRef> tensors;
  for (const ParamSpec& s : params.specs()) {
    tensors.push_back({"exp_avg." + s.name, s.shape, opt.exp_avg().data() + s.offset});
    tensors.push_back({"exp_avg_sq." + s.name, s.shape, opt.exp_avg_sq().data() + s.offset});
  }
  save_safetensors(dir + "/optimizer.safetensors", tensors,
                   {{"step", std::to_string(opt.steps())}});
}

void load_params(const std::string& path, Params& p, const std::string& architecture,
                 const std::vector<std::string>& optional) {
  const SafetensorsFile f = SafetensorsFile::load(path);
  const std::set<std::string> may_skip(optional.begin(), optional.end());
  std::set<std::string> expected;
  for (size_t i = 0; i < p.specs().size(); i++) {
    const ParamSpec& s = p.specs()[i];
    expected.insert(s.name);
    if (!f.contains(s.name) && may_skip.count(s.name) > 0) continue;
    check(f.contains(s.name), path, ": missing tensor '", s.name, "' ", shape_str(s.shape));
    f.read_f32(s.name, s.shape, p.value(static_cast<int>(i)));
  }
  for (const std::string& name : f.names())
    check(expected.count(name) > 0 || may_skip.count(name) > 0, path, ": unexpected tensor '", name,
          "' (not part of a ", architecture, " model)");
}

void load_weights(const std::string& path, VisionTransformer& model) {
  load_params(path, model.params(), model.config().architecture);
}

std::string read_config(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  check(file_exists(config_path), dir, ": no config.json in the checkpoint directory");
  return read_text_file(config_path);
}

// What kat eval, predict, generate and eval-lm say of a kat lra checkpoint.
constexpr const char* kLraCheckpoint =
    ": this is a sequence classifier of kat lra; evaluate it with kat lra TASK --init CKPT "
    "--steps 0";

std::unique_ptr<VisionTransformer> load_model(const std::string& path) {
  const std::string dir = checkpoint_dir(path);
  const std::string text = read_config(dir);
  check(!is_lm_config_json(text), dir,
        ": this is a language model; use kat generate / kat eval-lm with it");
  check(!is_sequence_config_json(text), dir, kLraCheckpoint);
  auto model = std::make_unique<VisionTransformer>(config_from_json(text, dir + "/config.json"));
  load_weights(dir + "/model.safetensors", *model);
  return model;
}

std::unique_ptr<CausalLM> load_lm(const std::string& path) {
  const std::string dir = checkpoint_dir(path);
  const std::string text = read_config(dir);
  check(!is_sequence_config_json(text), dir, kLraCheckpoint);
  check(is_lm_config_json(text), dir,
        ": not a language model (an image classifier? use kat eval / kat predict with it)");
  auto model = std::make_unique<CausalLM>(lm_config_from_json(text, dir + "/config.json"));
  load_params(dir + "/model.safetensors", model->params(), model->config().architecture);
  return model;
}

void load_optimizer(const std::string& dir, const Params& params, AdamW& opt) {
  const std::string path = dir + "/optimizer.safetensors";
  const SafetensorsFile f = SafetensorsFile::load(path);
  for (const ParamSpec& s : params.specs()) {
    f.read_f32("exp_avg." + s.name, s.shape, opt.exp_avg().data() + s.offset);
    f.read_f32("exp_avg_sq." + s.name, s.shape, opt.exp_avg_sq().data() + s.offset);
  }
  const auto it = f.metadata().find("step");
  check(it != f.metadata().end(), path, ": no 'step' in the metadata");
  opt.set_steps(std::stoll(it->second));
}

}  // namespace kat
