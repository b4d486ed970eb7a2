#include "kat/params.h"

#include <algorithm>
#include <cstring>

#include "kat/error.h"

namespace kat {

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

const char* kind_name(ParamKind k) {
  switch (k) {
    case ParamKind::Weight:
      return "weight";
    case ParamKind::Bias:
      return "bias";
    case ParamKind::Norm:
      return "norm";
    case ParamKind::Embedding:
      return "embedding";
    case ParamKind::Rational:
      return "rational";
  }
  return "?";
}

int Params::add(const std::string& name, std::vector<int64_t> shape, ParamKind kind) {
  check(values_.empty(), "Params::add after allocate");
  check(find(name) < 0, "duplicate parameter ", name);
  ParamSpec s{name, std::move(shape), kind};
  s.size = numel(s.shape);
  s.offset = specs_.empty() ? 0 : specs_.back().offset + specs_.back().size;
  specs_.push_back(std::move(s));
  return static_cast<int>(specs_.size()) - 1;
}

void Params::allocate() {
  const int64_t n = specs_.empty() ? 0 : specs_.back().offset + specs_.back().size;
  values_.assign(n, 0.0f);
  grads_.assign(n, 0.0f);
}

int Params::find(const std::string& name) const {
  for (size_t i = 0; i < specs_.size(); i++)
    if (specs_[i].name == name) return static_cast<int>(i);
  return -1;
}

void Params::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

}  // namespace kat
