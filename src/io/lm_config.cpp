// LmConfig <-> config.json (Hugging Face GPT-2 keys, kat's own under "kat"); see docs/formats.md.
#include <nlohmann/json.hpp>

#include "io/json_fields.h"
#include "kat/error.h"
#include "kat/files.h"
#include "kat/lm.h"

namespace kat {

using json = nlohmann::json;
using json_fields::check_keys;
using json_fields::get;

void validate(const LmConfig& c) {
  const std::string& a = c.architecture;
  check(c.vocab_size == kByteVocab, a, ": vocab_size must be ", kByteVocab,
        " (byte-level: 256 bytes and end-of-text), not ", c.vocab_size);
  check(c.context > 0 && c.embed_dim > 0 && c.depth > 0 && c.num_heads > 0 && c.hidden > 0, a,
        ": sizes must be positive, not n_positions ", c.context, ", n_embd ", c.embed_dim,
        ", n_layer ", c.depth, ", n_head ", c.num_heads, ", n_inner ", c.hidden);
  check(c.embed_dim % c.num_heads == 0, a, ": n_embd ", c.embed_dim, " is not divisible by n_head ",
        c.num_heads);
  if (c.positions == Positions::Rope) validate_rotary(c.head_dim(), c.rope_theta, a);
  validate_mixer(c.mixer, c.window, a);
  if (c.ffn == Ffn::Kan) {
    check(c.rational_groups > 0 && c.embed_dim % c.rational_groups == 0 &&
              c.hidden % c.rational_groups == 0,
          a, ": n_embd ", c.embed_dim, " and n_inner ", c.hidden,
          " must both be divisible by rational_groups ", c.rational_groups);
  }
}

std::vector<std::string> lm_config_names() { return {"kat_lm", "gpt_lm"}; }

LmConfig named_lm_config(const std::string& name) {
  LmConfig c;
  c.architecture = name;
  if (name == "kat_lm") return c;
  if (name == "gpt_lm") {
    c.ffn = Ffn::Mlp;
    return c;
  }
  fail("unknown language-model config '", name, "' (known: kat_lm, gpt_lm, or a config.json)");
}

bool is_lm_config_json(const std::string& text) {
  try {
    const json j = json::parse(text);
    return j.is_object() && j.value("model_type", "") == "kat-lm";
  } catch (const json::exception&) {
    return false;
  }
}

LmConfig lm_config_from_json(const std::string& text, const std::string& origin) {
  const json j = json_fields::parse(text, origin);
  check_keys(j,
             {"architecture", "model_type", "vocab_size", "n_positions", "n_embd", "n_layer",
              "n_head", "n_inner", "layer_norm_epsilon", "tie_word_embeddings", "kat"},
             "the config", origin);
  check(j.value("model_type", "") == "kat-lm", origin,
        ": not a kat language-model config (model_type must be \"kat-lm\")");
  LmConfig c;
  if (j.contains("architecture")) c.architecture = get<std::string>(j, "architecture", origin);
  auto take_int = [&](const json& o, const char* key, int& dst) {
    if (o.contains(key)) dst = get<int>(o, key, origin);
  };
  take_int(j, "vocab_size", c.vocab_size);
  take_int(j, "n_positions", c.context);
  take_int(j, "n_embd", c.embed_dim);
  take_int(j, "n_layer", c.depth);
  take_int(j, "n_head", c.num_heads);
  c.hidden = 4 * c.embed_dim;
  if (j.contains("n_inner") && !j["n_inner"].is_null()) take_int(j, "n_inner", c.hidden);
  if (j.contains("layer_norm_epsilon"))
    c.layernorm_eps = get<float>(j, "layer_norm_epsilon", origin);
  if (j.contains("tie_word_embeddings"))
    c.tie_weights = get<bool>(j, "tie_word_embeddings", origin);
  if (j.contains("kat")) {
    const json& k = j["kat"];
    check_keys(k,
               {"ffn", "rational_groups", "act_init", "positions", "rope_theta", "mixer", "window"},
               "kat", origin);
    json_fields::read_ffn_and_mixer(k, c.ffn, c.mixer, c.window, origin);
    take_int(k, "rational_groups", c.rational_groups);
    if (k.contains("act_init")) c.act_init = get<std::string>(k, "act_init", origin);
    if (k.contains("positions")) {
      const auto p = get<std::string>(k, "positions", origin);
      check(p == "learned" || p == "rope", origin,
            ": kat.positions must be \"learned\" or \"rope\", not \"", p, "\"");
      c.positions = p == "rope" ? Positions::Rope : Positions::Learned;
    }
    if (k.contains("rope_theta")) c.rope_theta = get<double>(k, "rope_theta", origin);
  }
  try {
    validate(c);
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

std::string lm_config_to_json(const LmConfig& c) {
  json k = {{"ffn", c.ffn_name()},
            {"positions", c.positions == Positions::Rope ? "rope" : "learned"}};
  if (c.ffn == Ffn::Kan) k["rational_groups"] = c.rational_groups, k["act_init"] = c.act_init;
  if (c.positions == Positions::Rope) k["rope_theta"] = c.rope_theta;
  if (c.mixer != Mixer::Softmax) k["mixer"] = mixer_name(c.mixer);
  if (c.window > 0) k["window"] = c.window;
  const json j = {{"architecture", c.architecture},
                  {"model_type", "kat-lm"},
                  {"vocab_size", c.vocab_size},
                  {"n_positions", c.context},
                  {"n_embd", c.embed_dim},
                  {"n_layer", c.depth},
                  {"n_head", c.num_heads},
                  {"n_inner", c.hidden},
                  {"layer_norm_epsilon", json_fields::float_for_json(c.layernorm_eps)},
                  {"tie_word_embeddings", c.tie_weights},
                  {"kat", k}};
  return j.dump(2) + "\n";
}

LmConfig resolve_lm_config(const std::string& name_or_file) {
  for (const auto& n : lm_config_names())
    if (n == name_or_file) return named_lm_config(n);
  if (!json_fields::names_a_file(name_or_file))
    named_lm_config(name_or_file);  // fails with the list of names
  return lm_config_from_json(read_text_file(name_or_file), name_or_file);
}

}  // namespace kat
