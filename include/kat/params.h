// Parameters and their gradients, each in one contiguous block, pointed into by name (llm.c style):
// the optimizer walks one array, checkpoints walk the table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kat {

// What a parameter is, for weight decay and reporting.
enum class ParamKind { Weight, Bias, Norm, Embedding, Rational };

struct ParamSpec {
  std::string name;  // checkpoint name, e.g. "blocks.0.mlp.fc1.weight"
  std::vector<int64_t> shape;
  ParamKind kind;
  int64_t offset = 0, size = 0;
};

int64_t numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);  // "[3, 4]"
const char* kind_name(ParamKind k);

class Params {
 public:
  // Registers a parameter; returns its index. Call allocate() once all are registered.
  int add(const std::string& name, std::vector<int64_t> shape, ParamKind kind);
  void allocate();

  float* value(int i) { return values_.data() + specs_[i].offset; }
  const float* value(int i) const { return values_.data() + specs_[i].offset; }
  float* grad(int i) { return grads_.data() + specs_[i].offset; }
  int find(const std::string& name) const;  // -1 when absent
  void zero_grad();
  // Backward passes report here that gradients [offset, total()) are final (a transformer block
  // when its backward is done); a data-parallel run exchanges them meanwhile (dist::GradientSync).
  void grads_final_from(int64_t offset) const {
    if (on_grads_final_) on_grads_final_(offset);
  }
  void on_grads_final(std::function<void(int64_t)> f) { on_grads_final_ = std::move(f); }

  const std::vector<ParamSpec>& specs() const { return specs_; }
  std::vector<float>& values() { return values_; }
  const std::vector<float>& values() const { return values_; }
  std::vector<float>& grads() { return grads_; }
  int64_t total() const { return static_cast<int64_t>(values_.size()); }

 private:
  std::vector<ParamSpec> specs_;
  std::vector<float> values_, grads_;
  std::function<void(int64_t)> on_grads_final_;
};

}  // namespace kat
