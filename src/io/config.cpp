#include "kat/config.h"

#include <nlohmann/json.hpp>
#include <set>

#include "io/json_fields.h"
#include "kat/error.h"
#include "kat/files.h"

namespace kat {
namespace {

using json = nlohmann::json;
using json_fields::check_keys;
using json_fields::get;

const std::vector<float> kImagenetMean{0.485f, 0.456f, 0.406f};
const std::vector<float> kImagenetStd{0.229f, 0.224f, 0.225f};

ModelConfig upstream(const std::string& name, int dim, int heads, Ffn ffn, const std::string& act) {
  ModelConfig c;
  c.architecture = name;
  c.img_size = 224, c.patch_size = 16, c.in_chans = 3;
  c.embed_dim = dim, c.depth = 12, c.num_heads = heads, c.mlp_ratio = 4.0;
  c.num_classes = 1000, c.rational_groups = 8, c.ffn = ffn, c.act_init = act;
  c.mean = kImagenetMean, c.std = kImagenetStd;
  return c;
}

}  // namespace

const char* mixer_name(Mixer m) {
  switch (m) {
    case Mixer::Softmax:
      return "softmax";
    case Mixer::Local:
      return "local";
    case Mixer::Linear:
      return "linear";
    case Mixer::Gla:
      return "gla";
    case Mixer::Combiner:
      return "combiner";
    case Mixer::Delta:
      return "delta";
    case Mixer::Ssm:
      return "ssm";
  }
  return "?";
}

Mixer parse_mixer(const std::string& name) {
  for (Mixer m : kMixers)
    if (name == mixer_name(m)) return m;
  fail("unknown mixer '", name, "' (softmax, local, linear, gla, combiner, delta or ssm)");
}

int64_t mixer_window(Mixer m, int window, int64_t max_len) {
  if (m == Mixer::Local) return window;
  if (m != Mixer::Combiner) return 0;
  if (window > 0) return window;
  int64_t span = 1;
  while (span * span < max_len) span++;
  return span;
}

void validate_mixer(Mixer m, int window, const std::string& arch) {
  check(window >= 0, arch, ": kat.window must not be negative, not ", window);
  if (m == Mixer::Local)
    check(window > 0, arch, ": the local mixer needs a window > 0 (kat.window)");
}

void validate_rotary(int64_t head_dim, double rope_theta, const std::string& arch) {
  check(head_dim % 2 == 0, arch, ": rotary positions need an even head size, not ", head_dim);
  check(rope_theta > 0, arch, ": rope_theta must be positive, not ", rope_theta);
}

void validate(const ModelConfig& c) {
  const std::string& a = c.architecture;
  check(c.img_size > 0 && c.patch_size > 0 && c.in_chans > 0 && c.embed_dim > 0 && c.depth > 0 &&
            c.num_heads > 0 && c.num_classes > 0 && c.mlp_ratio > 0,
        a, ": sizes must be positive, not img_size ", c.img_size, ", patch_size ", c.patch_size,
        ", in_chans ", c.in_chans, ", embed_dim ", c.embed_dim, ", depth ", c.depth, ", num_heads ",
        c.num_heads, ", num_classes ", c.num_classes, ", mlp_ratio ", c.mlp_ratio);
  check(c.img_size % c.patch_size == 0, a, ": img_size ", c.img_size,
        " is not a multiple of patch_size ", c.patch_size);
  check(c.embed_dim % c.num_heads == 0, a, ": embed_dim ", c.embed_dim,
        " is not divisible by num_heads ", c.num_heads);
  check(c.hidden() > 0, a, ": mlp_ratio gives no hidden units");
  validate_mixer(c.mixer, c.window, a);
  if (c.ffn == Ffn::Kan) {
    check(c.rational_groups > 0, a, ": rational_groups must be positive");
    check(c.embed_dim % c.rational_groups == 0, a, ": embed_dim ", c.embed_dim,
          " is not divisible by rational_groups ", c.rational_groups);
    check(c.hidden() % c.rational_groups == 0, a, ": hidden size ", c.hidden(),
          " is not divisible by rational_groups ", c.rational_groups);
  }
  check(c.mean.size() == static_cast<size_t>(c.in_chans) &&
            c.std.size() == static_cast<size_t>(c.in_chans),
        a, ": mean and std need one value per input channel (", c.in_chans, ")");
  for (float s : c.std) check(s > 0, a, ": std values must be positive");
  check(c.drop_rate >= 0 && c.drop_rate < 1 && c.drop_path_rate >= 0 && c.drop_path_rate < 1, a,
        ": drop rates must be in [0, 1)");
  check(c.global_pool == "token" || c.global_pool == "avg", a,
        ": global_pool is \"token\" or \"avg\", not \"", c.global_pool, "\"");
  check(c.class_names.empty() || c.class_names.size() == static_cast<size_t>(c.num_classes), a,
        ": class_names has ", c.class_names.size(), " names for ", c.num_classes, " classes");
}

std::vector<std::string> config_names() {
  return {"kat_fmnist",
          "vit_fmnist",
          "kat_tiny_patch16_224",
          "kat_small_patch16_224",
          "kat_base_patch16_224",
          "kat_tiny_swish_patch16_224",
          "kat_small_swish_patch16_224",
          "kat_base_swish_patch16_224",
          "kat_tiny_gelu_patch16_224",
          "kat_small_gelu_patch16_224",
          "kat_base_gelu_patch16_224",
          "vit_tiny_patch16_224",
          "vit_small_patch16_224",
          "vit_base_patch16_224"};
}

bool is_config_name(const std::string& name) {
  for (const auto& n : config_names())
    if (n == name) return true;
  return false;
}

ModelConfig named_config(const std::string& name) {
  if (name == "kat_fmnist" || name == "vit_fmnist") {
    ModelConfig c;  // the defaults of ModelConfig are the Fashion-MNIST model
    c.architecture = name;
    c.global_pool = "avg";  // learns faster than the class token from scratch (docs/results.md)
    c.ffn = name[0] == 'k' ? Ffn::Kan : Ffn::Mlp;
    return c;
  }
  for (const char* size : {"tiny", "small", "base"}) {
    const int dim = size[0] == 't' ? 192 : size[0] == 's' ? 384 : 768;
    const int heads = dim / 64;
    const std::string s = size;
    if (name == "vit_" + s + "_patch16_224") return upstream(name, dim, heads, Ffn::Mlp, "swish");
    if (name == "kat_" + s + "_patch16_224" || name == "kat_" + s + "_swish_patch16_224")
      return upstream(name, dim, heads, Ffn::Kan, "swish");
    if (name == "kat_" + s + "_gelu_patch16_224")
      return upstream(name, dim, heads, Ffn::Kan, "gelu_old");
  }
  std::string known;
  for (const auto& n : config_names()) known += (known.empty() ? "" : ", ") + n;
  fail("unknown model config '", name, "' (known: ", known, "; or give a FILE.json)");
}

ModelConfig config_from_json(const std::string& text, const std::string& origin) {
  const json j = json_fields::parse(text, origin);
  check_keys(j,
             {"architecture", "num_classes", "num_features", "global_pool", "model_args",
              "pretrained_cfg", "kat"},
             "the config", origin);
  check(j.contains("architecture"), origin, ": missing 'architecture'");
  const std::string arch = get<std::string>(j, "architecture", origin);
  ModelConfig c;
  if (is_config_name(arch)) c = named_config(arch);
  c.architecture = arch;
  const bool kat_name = arch.rfind("kat", 0) == 0;
  const bool vit_name = arch.rfind("vit", 0) == 0;
  if (!j.contains("model_args")) {
    check(is_config_name(arch), origin, ": no 'model_args' and '", arch,
          "' is not a known architecture name");
  } else {
    const json& m = j["model_args"];
    check_keys(m,
               {"img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                "mlp_ratio", "num_classes", "rational_groups", "act_init", "qkv_bias", "drop_rate",
                "drop_path_rate", "global_pool"},
               "model_args", origin);
    auto take_int = [&](const char* key, int& dst) {
      if (m.contains(key)) dst = get<int>(m, key, origin);
    };
    take_int("img_size", c.img_size);
    take_int("patch_size", c.patch_size);
    take_int("in_chans", c.in_chans);
    take_int("embed_dim", c.embed_dim);
    take_int("depth", c.depth);
    take_int("num_heads", c.num_heads);
    take_int("num_classes", c.num_classes);
    take_int("rational_groups", c.rational_groups);
    if (m.contains("mlp_ratio")) c.mlp_ratio = get<double>(m, "mlp_ratio", origin);
    if (m.contains("act_init")) c.act_init = get<std::string>(m, "act_init", origin);
    if (m.contains("qkv_bias"))
      check(get<bool>(m, "qkv_bias", origin), origin, ": qkv_bias=false is not supported");
    if (m.contains("drop_rate")) c.drop_rate = get<float>(m, "drop_rate", origin);
    if (m.contains("drop_path_rate")) c.drop_path_rate = get<float>(m, "drop_path_rate", origin);
    if (m.contains("global_pool")) c.global_pool = get<std::string>(m, "global_pool", origin);
    if (j.contains("global_pool")) {  // timm repeats it at the top level
      const auto top = get<std::string>(j, "global_pool", origin);
      if (!m.contains("global_pool")) c.global_pool = top;
      check(top == c.global_pool, origin, ": global_pool \"", top,
            "\" differs from model_args.global_pool \"", c.global_pool, "\"");
    }
    if (!j.contains("pretrained_cfg")) c.mean = c.std = {};
  }
  if (j.contains("num_classes")) {
    const int n = get<int>(j, "num_classes", origin);
    if (j.contains("model_args") && j["model_args"].contains("num_classes"))
      check(n == c.num_classes, origin, ": num_classes ", n, " differs from model_args ",
            c.num_classes);
    c.num_classes = n;
  }
  if (j.contains("pretrained_cfg")) {
    const json& p = j["pretrained_cfg"];
    check(p.is_object(), origin, ": pretrained_cfg must be an object");
    if (p.contains("mean")) c.mean = get<std::vector<float>>(p, "mean", origin);
    if (p.contains("std")) c.std = get<std::vector<float>>(p, "std", origin);
    if (p.contains("input_size")) {
      const auto s = get<std::vector<int>>(p, "input_size", origin);
      check(s.size() == 3 && s[0] == c.in_chans && s[1] == c.img_size && s[2] == c.img_size, origin,
            ": pretrained_cfg.input_size does not match model_args");
    }
  }
  if (c.mean.empty()) c.mean.assign(c.in_chans, 0.5f);
  if (c.std.empty()) c.std.assign(c.in_chans, 0.5f);
  if (j.contains("kat")) {
    const json& k = j["kat"];
    check_keys(k, {"ffn", "act_init", "class_names", "layernorm_eps", "mixer", "window"}, "kat",
               origin);
    json_fields::read_ffn_and_mixer(k, c.ffn, c.mixer, c.window, origin);
    if (k.contains("act_init")) c.act_init = get<std::string>(k, "act_init", origin);
    if (k.contains("class_names"))
      c.class_names = get<std::vector<std::string>>(k, "class_names", origin);
    if (k.contains("layernorm_eps")) c.layernorm_eps = get<float>(k, "layernorm_eps", origin);
  } else {
    check(kat_name || vit_name, origin, ": cannot tell KAT from ViT: architecture '", arch,
          "' starts with neither kat_ nor vit_ and there is no kat.ffn");
    c.ffn = kat_name ? Ffn::Kan : Ffn::Mlp;
  }
  try {
    validate(c);
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

std::string config_to_json(const ModelConfig& c) {
  json args = {{"img_size", c.img_size},   {"patch_size", c.patch_size},
               {"in_chans", c.in_chans},   {"embed_dim", c.embed_dim},
               {"depth", c.depth},         {"num_heads", c.num_heads},
               {"mlp_ratio", c.mlp_ratio}, {"num_classes", c.num_classes}};
  if (c.ffn == Ffn::Kan) args["rational_groups"] = c.rational_groups;
  if (c.drop_rate > 0) args["drop_rate"] = c.drop_rate;
  if (c.drop_path_rate > 0) args["drop_path_rate"] = c.drop_path_rate;
  if (c.avg_pool()) args["global_pool"] = c.global_pool;
  json k = {{"ffn", c.ffn_name()}};
  if (c.ffn == Ffn::Kan) k["act_init"] = c.act_init;
  if (!c.class_names.empty()) k["class_names"] = c.class_names;
  if (c.layernorm_eps != 1e-6f) k["layernorm_eps"] = json_fields::float_for_json(c.layernorm_eps);
  if (c.mixer != Mixer::Softmax) k["mixer"] = mixer_name(c.mixer);
  if (c.window > 0) k["window"] = c.window;
  json j = {{"architecture", c.architecture},
            {"num_classes", c.num_classes},
            {"num_features", c.embed_dim},
            {"global_pool", c.global_pool},
            {"model_args", args},
            {"pretrained_cfg",
             {{"input_size", {c.in_chans, c.img_size, c.img_size}},
              {"mean", c.mean},
              {"std", c.std},
              {"num_classes", c.num_classes}}},
            {"kat", k}};
  return j.dump(2) + "\n";
}

ModelConfig resolve_config(const std::string& name_or_file) {
  if (is_config_name(name_or_file)) return named_config(name_or_file);
  if (!json_fields::names_a_file(name_or_file))
    named_config(name_or_file);  // fails with the list of names
  return config_from_json(read_text_file(name_or_file), name_or_file);
}

ModelConfig with_ffn(ModelConfig c, Ffn ffn) {
  if (c.ffn == ffn) return c;
  c.ffn = ffn;
  const std::string from = ffn == Ffn::Kan ? "vit" : "kat", to = ffn == Ffn::Kan ? "kat" : "vit";
  if (c.architecture.rfind(from, 0) == 0) c.architecture = to + c.architecture.substr(from.size());
  if (c.architecture.find("_swish_") != std::string::npos)
    c.architecture.erase(c.architecture.find("_swish_"), 6);
  return c;
}

}  // namespace kat
