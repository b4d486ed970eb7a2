#include "kat/checkpoint.h"

#include <filesystem>
#include <set>

#include "kat/error.h"
#include "kat/files.h"
#include "kat/safetensors.h"

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

void save_model(const std::string& dir, const VisionTransformer& model) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  check(!ec, dir, ": cannot create directory: ", ec.message());
  std::vector<TensorRef> tensors;
  const Params& p = model.params();
  for (size_t i = 0; i < p.specs().size(); i++)
    tensors.push_back({p.specs()[i].name, p.specs()[i].shape, p.value(static_cast<int>(i))});
  save_safetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir + "/config.json", config_to_json(model.config()));
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

void load_weights(const std::string& path, VisionTransformer& model) {
  const SafetensorsFile f = SafetensorsFile::load(path);
  Params& p = model.params();
  std::set<std::string> expected;
  for (size_t i = 0; i < p.specs().size(); i++) {
    const ParamSpec& s = p.specs()[i];
    expected.insert(s.name);
    check(f.contains(s.name), path, ": missing tensor '", s.name, "' ", shape_str(s.shape));
    f.read_f32(s.name, s.shape, p.value(static_cast<int>(i)));
  }
  for (const std::string& name : f.names())
    check(expected.count(name) > 0, path, ": unexpected tensor '", name, "' (not part of a ",
          model.config().architecture, " model)");
}

std::unique_ptr<VisionTransformer> load_model(const std::string& path) {
  const std::string dir = checkpoint_dir(path);
  const std::string config_path = dir + "/config.json";
  check(file_exists(config_path), dir, ": no config.json in the checkpoint directory");
  auto model = std::make_unique<VisionTransformer>(
      config_from_json(read_text_file(config_path), config_path));
  load_weights(dir + "/model.safetensors", *model);
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
