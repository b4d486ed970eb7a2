// Model configuration, read from and written to the config.json of a timm-style checkpoint
// directory: {"architecture", "num_classes", "model_args": {...}, "pretrained_cfg": {...},
// "kat": {kat's own fields}}. See docs/formats.md.
#pragma once

#include <string>
#include <vector>

namespace kat {

enum class Ffn { Kan, Mlp };  // GR-KAN feed-forward (KAT) or GELU MLP (ViT)

// Token mixer of every block (reference/attention.md): exact softmax attention (tiled), local
// (softmax over a sliding window of `window` keys), linear attention (elu + 1 feature map), gated
// linear attention (GLA: per-channel learned decay), Combiner-Fixed (direct attention inside
// spans of `window` tokens, default sqrt of the longest sequence, plus one summary per other span)
// DeltaNet (the delta rule; bidirectional models add a reverse scan) or a selective state space
// (Mamba-2's scalar-decay form: per head, h_t = exp(dt_t A) h_{t-1} + dt_t k_t^T v_t, y_t = q_t h_t
// + D v_t, dt_t = softplus(W x_t + b); q, k, v play Mamba's C, B, x).
enum class Mixer { Softmax, Local, Linear, Gla, Combiner, Delta, Ssm };
const char* mixer_name(Mixer m);
Mixer parse_mixer(const std::string& name);  // error lists the names
// Every mixer, in the order above.
inline constexpr Mixer kMixers[] = {Mixer::Softmax,  Mixer::Local, Mixer::Linear, Mixer::Gla,
                                    Mixer::Combiner, Mixer::Delta, Mixer::Ssm};
// The window a block runs with for sequences of up to max_len tokens: local's window, combiner's
// span (`window`, or ceil(sqrt(max_len)) when 0); 0 for the others.
int64_t mixer_window(Mixer m, int window, int64_t max_len);

struct ModelConfig {
  std::string architecture = "kat_fmnist";
  int img_size = 28, patch_size = 4, in_chans = 1;
  int embed_dim = 64, depth = 6, num_heads = 4;
  double mlp_ratio = 4.0;
  int num_classes = 10;
  int rational_groups = 8;
  Ffn ffn = Ffn::Kan;
  Mixer mixer = Mixer::Softmax;
  int window = 0;  // keys a query sees with the local mixer; the combiner's span (0: sqrt)
  std::string act_init = "swish";  // act2's init (act1 is identity); any name rational_init takes
  std::vector<float> mean{0.2860f}, std{0.3530f};  // per input channel, applied to pixels in [0, 1]
  float layernorm_eps = 1e-6f;
  float drop_rate = 0.0f, drop_path_rate = 0.0f;
  // timm's global_pool: "token" (the class token, through `norm`) or "avg" (the mean of the patch
  // tokens, through `fc_norm`; timm then has no `norm`).
  std::string global_pool = "token";
  std::vector<std::string> class_names;  // optional, for predictions and reports

  int grid() const { return img_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  int tokens() const { return num_patches() + 1; }
  int hidden() const { return static_cast<int>(embed_dim * mlp_ratio); }
  int head_dim() const { return embed_dim / num_heads; }
  std::string ffn_name() const { return ffn == Ffn::Kan ? "kan" : "mlp"; }
  bool avg_pool() const { return global_pool == "avg"; }
};

// Checks every constraint (positive sizes, divisibility by patch, heads and groups, channel counts
// of mean/std); the error names the field and the values.
void validate(const ModelConfig& c);
// The local mixer needs a window > 0, no window is negative; the error names the architecture.
void validate_mixer(Mixer m, int window, const std::string& architecture);
// Rotary positions turn pairs of head channels: the head size must be even, theta positive.
void validate_rotary(int64_t head_dim, double rope_theta, const std::string& architecture);

// Names: kat_{tiny,small,base}_patch16_224 (and the _swish_ / _gelu_ aliases), vit_{tiny,small,
// base}_patch16_224, and kat_fmnist / vit_fmnist (the small 28x28 default).
std::vector<std::string> config_names();
bool is_config_name(const std::string& name);
ModelConfig named_config(const std::string& name);

// Parses config.json text. Unknown keys (outside pretrained_cfg, which timm fills freely) are
// errors. When model_args is absent the architecture must be a known name and implies its
// configuration.
ModelConfig config_from_json(const std::string& text, const std::string& origin);
std::string config_to_json(const ModelConfig& c);

// NAME or FILE.json.
ModelConfig resolve_config(const std::string& name_or_file);

// Switches between KAT and ViT keeping the backbone: architecture prefix, ffn.
ModelConfig with_ffn(ModelConfig c, Ffn ffn);

}  // namespace kat
