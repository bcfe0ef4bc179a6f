// policy_impl.hpp: what policy.cpp (loading, validation, the C boundary) and spec_decode.cpp (the
// decoding engine) share inside rsd_policy. Not installed, not included from C.
#ifndef RSD_GW_POLICY_IMPL_HPP
#define RSD_GW_POLICY_IMPL_HPP

#include <ATen/autocast_mode.h>
#include <torch/script.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "policy.h"

// A loaded, validated package. Owned by the caller of gw_policy_open, freed in gw_policy_destroy.
struct gw_policy_t {
  gw_manifest_t m{};             // validated manifest; m.unnorm_key is the key chosen at load
  torch::Device device{torch::kCPU};
  int dtype = GW_DTYPE_FLOAT32;  // gw_dtype_t the policy was opened with
  at::ScalarType compute = at::kFloat;  // its scalar type: float outputs of main and draft are this or float32
  torch::jit::Module main, draft, tokenizer;  // on `device`, eval mode
  bool has_paths = false;        // the draft has the optional method propose_paths
  std::vector<float> q01, q99;   // [A] statistics of m.unnorm_key
  std::vector<bool> mask;        // [A] true: unnormalize this dimension; false: pass through
  // Every key's statistics, index-aligned with m.unnorm_keys; q01/q99/mask are a copy of the selected one.
  std::vector<std::vector<float>> all_q01, all_q99;
  std::vector<std::vector<bool>> all_mask;
};

namespace gw {

// The one exception type our code throws; the C boundary turns it into (code, thread-local message).
struct Error : std::runtime_error {
  int code;
  Error(int c, const std::string &msg) : std::runtime_error(msg), code(c) {}
};

// "[2, 4, 9]"
std::string shape_str(at::IntArrayRef s);

// Runs the module calls of its scope at the policy's precision. For bfloat16 and float16 it turns libtorch's
// autocast on for the policy's device type (the TorchScript interpreter dispatches through it) and restores
// the thread's previous autocast state when it ends. Autocast's cast cache stays on and is not cleared, so
// the lower-precision copies of the weights are made once, not per call. That cache is libtorch's, one for
// the process, and keeps only float32 parameters that require grad (a module's buffers are cast in every
// call); gw_policy_destroy clears it, and another open lower-precision policy then casts its weights again.
// tokenizer.decode runs outside such a scope: the chunk stays float32.
class Precision {
 public:
  explicit Precision(const gw_policy_t &p);
  ~Precision();
  Precision(const Precision &) = delete;
  Precision &operator=(const Precision &) = delete;

 private:
  at::DeviceType dev_;
  bool on_ = false, prev_enabled_ = false, prev_cache_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

// No autograd while a policy loads or runs. In float32 that is InferenceMode. In a lower precision it is
// no_grad only: autocast keeps no cast cache under InferenceMode, and would then cast every weight again
// in every call (on a GPU at batch 1, one more operator per weight; docs/benchmarks.md).
struct NoAutograd {
  c10::InferenceMode inference;
  torch::NoGradGuard no_grad;
  explicit NoAutograd(int dtype) : inference(dtype == GW_DTYPE_FLOAT32) {}
};

// Throws GW_ESHAPE unless t has exactly `shape`, is on the policy's device, and is float32 or the policy's
// compute type (under autocast a module's floating output may be either); `what` names the output.
void expect_float(const gw_policy_t &p, const at::Tensor &t, std::vector<int64_t> shape, const std::string &what);

// Throws GW_ESHAPE unless t is a tensor of exactly `shape` and `dtype` on `dev`; `what` names the output.
void expect_tensor(const at::Tensor &t, std::vector<int64_t> shape, at::ScalarType dtype,
                   const torch::Device &dev, const std::string &what);

// The request rows that reached the engine, as tensors on the policy's device.
struct Batch {
  at::Tensor images;   // [B, C, H, W, 3] uint8
  at::Tensor proprio;  // [B, P] float32
  at::Tensor instr;    // [B, T] int64
  std::vector<int> out;  // out[b] = index into the caller's results for tensor row b
};

// Runs prefill, the layer decoding in `prm.mode` and the tokenizer for the batch; fills results[out[b]]
// (status, codes, chunks, stats except batch_size). A row whose outputs are non-finite fails alone.
// Throws gw::Error / c10::Error for failures of the whole batch.
void decode_batch(gw_policy_t &p, const Batch &b, const gw_decode_params_t &prm, gw_result_t *results);

// Teacher-forced argmax (gw_policy_main_argmax): codes [B, L, G] int64 -> argmax [B, L, G] int64;
// row_ok[b] false where the row's outputs were non-finite.
at::Tensor main_argmax(gw_policy_t &p, const Batch &b, const at::Tensor &codes, std::vector<bool> &row_ok);

}  // namespace gw

#endif
