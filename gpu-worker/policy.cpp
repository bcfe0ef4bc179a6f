// policy.cpp: the C boundary of rsd_policy and everything about loading a package: manifest.json
// parsing and validation (docs/model-package.md is the normative format), the content hash, loading
// the TorchScript modules onto a device, and the probe call that checks every method's outputs before
// the policy is handed out. It also turns observations into input tensors. It does not decode: that
// is spec_decode.cpp. Every C++ exception stops here and becomes a gw_err_t plus a thread-local message.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>

#include <jansson.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <set>
#include <sstream>

#include "policy_impl.hpp"
#include "sha256.h"

using gw::Error;

// ---- errors across the C boundary ---------------------------------------------------------------

static thread_local std::string tl_msg;

extern "C" const char *gw_strerror(int code) {
  switch (code) {
#define GW_CASE_(name, num, text) \
  case num:                       \
    return text;
    GW_ERRORS(GW_CASE_)
#undef GW_CASE_
  }
  return "unknown error";
}

extern "C" const char *gw_errmsg(void) { return tl_msg.c_str(); }

// Runs f; maps every exception to a code and sets the thread-local message.
// Also runs TorchScript without the optimizing (profiling) executor: it would re-profile and recompile
// for every new batch size and active-row count, which the engine produces all the time, and its fusers
// may change numerics between calls. The plain interpreter runs each op as written.
template <class F>
static int s_guard(F &&f) {
  tl_msg.clear();
  torch::jit::GraphOptimizerEnabledGuard no_optimizer(false);
  try {
    f();
    return GW_OK;
  } catch (const Error &e) {
    tl_msg = e.what();
    return e.code;
  } catch (const c10::OutOfMemoryError &e) {
    tl_msg = std::string("libtorch: out of memory: ") + e.what_without_backtrace();
    return GW_ENOMEM;
  } catch (const c10::Error &e) {
    tl_msg = std::string("libtorch: ") + e.what_without_backtrace();
    return GW_ETORCH;
  } catch (const std::bad_alloc &) {
    tl_msg = "out of memory";
    return GW_ENOMEM;
  } catch (const std::exception &e) {
    tl_msg = std::string("internal: ") + e.what();
    return GW_EINTERNAL;
  } catch (...) {
    tl_msg = "internal: unknown C++ exception";
    return GW_EINTERNAL;
  }
}

std::string gw::shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); i++) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

void gw::expect_tensor(const at::Tensor &t, std::vector<int64_t> shape, at::ScalarType dtype,
                       const torch::Device &dev, const std::string &what) {
  if (!t.defined()) throw Error(GW_ESHAPE, what + ": undefined tensor");
  if (t.sizes() != at::IntArrayRef(shape))
    throw Error(GW_ESHAPE, what + ": shape " + shape_str(t.sizes()) + ", manifest says " + shape_str(shape));
  if (t.scalar_type() != dtype)
    throw Error(GW_ESHAPE, what + ": dtype " + std::string(c10::toString(t.scalar_type())) + ", expected " +
                               c10::toString(dtype));
  if (t.device() != dev)
    throw Error(GW_ESHAPE, what + ": on device " + t.device().str() + ", expected " + dev.str());
}

void gw::expect_float(const gw_policy_t &p, const at::Tensor &t, std::vector<int64_t> shape, const std::string &what) {
  if (t.defined() && t.scalar_type() != at::kFloat && t.scalar_type() != p.compute)
    throw Error(GW_ESHAPE, what + ": dtype " + std::string(c10::toString(t.scalar_type())) + ", expected Float" +
                               (p.compute == at::kFloat ? "" : std::string(" or ") + c10::toString(p.compute)) +
                               " (running at " + gw_dtype_name(p.dtype) + ")");
  expect_tensor(t, shape, t.defined() ? t.scalar_type() : at::kFloat, p.device, what);
}

gw::Precision::Precision(const gw_policy_t &p) : dev_(p.device.type()) {
  if (p.dtype == GW_DTYPE_FLOAT32) return;
  on_ = true;
  prev_enabled_ = at::autocast::is_autocast_enabled(dev_);
  prev_dtype_ = at::autocast::get_autocast_dtype(dev_);
  prev_cache_ = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_dtype(dev_, p.compute);
  at::autocast::set_autocast_enabled(dev_, true);
  at::autocast::set_autocast_cache_enabled(true);
}

gw::Precision::~Precision() {
  if (!on_) return;
  at::autocast::set_autocast_enabled(dev_, prev_enabled_);
  at::autocast::set_autocast_dtype(dev_, prev_dtype_);
  at::autocast::set_autocast_cache_enabled(prev_cache_);
}

// ---- modes and precisions ---------------------------------------------------------------------------

static const char *const s_mode_names[] = {"ar", "spec", "spec-relaxed"};

extern "C" int gw_mode_parse(const char *name) {
  for (int i = 0; name && i < 3; i++)
    if (std::strcmp(name, s_mode_names[i]) == 0) return i;
  return -1;
}

extern "C" const char *gw_mode_name(int mode) { return mode >= 0 && mode < 3 ? s_mode_names[mode] : "?"; }

static const char *const s_dtype_names[] = {"float32", "bfloat16", "float16"};

extern "C" int gw_dtype_parse(const char *name) {
  for (int i = 0; name && i < 3; i++)
    if (std::strcmp(name, s_dtype_names[i]) == 0) return i;
  return -1;
}

extern "C" const char *gw_dtype_name(int dtype) { return dtype >= 0 && dtype < 3 ? s_dtype_names[dtype] : "?"; }

// ---- manifest.json ---------------------------------------------------------------------------------

namespace {

// A JSON object being read, with the dotted path of where it sits for error messages.
struct Obj {
  json_t *j;
  std::string path;  // "" for the top level, else "chunk." etc.

  [[noreturn]] void bad(const char *key, const std::string &why) const {
    throw Error(GW_EMANIFEST, "manifest.json: field '" + path + key + "' " + why);
  }
  json_t *get(const char *key) const {
    json_t *v = json_object_get(j, key);
    if (!v) bad(key, "is missing");
    return v;
  }
  // Every key must be one of `allowed`.
  void only(std::initializer_list<const char *> allowed) const {
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
      bool ok = false;
      for (const char *a : allowed) ok = ok || std::strcmp(a, k) == 0;
      if (!ok) {
        std::string list;
        for (const char *a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
        throw Error(GW_EMANIFEST, "manifest.json: unknown field '" + path + k + "' (allowed: " + list + ")");
      }
    }
  }
  Obj obj(const char *key) const {
    json_t *v = get(key);
    if (!json_is_object(v)) bad(key, "must be an object");
    return Obj{v, path + key + "."};
  }
  long long integer(const char *key, long long lo, long long hi) const {
    json_t *v = get(key);
    if (!json_is_integer(v)) bad(key, "must be an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
      bad(key, "= " + std::to_string(x) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  std::string str(const char *key, size_t max_len) const {
    json_t *v = get(key);
    if (!json_is_string(v)) bad(key, "must be a string");
    std::string s = json_string_value(v);
    if (s.empty() || s.size() >= max_len) bad(key, "must be 1.." + std::to_string(max_len - 1) + " characters");
    return s;
  }
  json_t *array(const char *key, size_t n_min, size_t n_max) const {
    json_t *v = get(key);
    if (!json_is_array(v)) bad(key, "must be an array");
    size_t n = json_array_size(v);
    if (n < n_min || n > n_max)
      bad(key, "has " + std::to_string(n) + " items, expected " + std::to_string(n_min) +
                   (n_min == n_max ? "" : ".." + std::to_string(n_max)));
    return v;
  }
};

void s_copy(char *dst, size_t cap, const std::string &s) { std::snprintf(dst, cap, "%s", s.c_str()); }

// A module file name: a plain file inside the package directory.
std::string s_module_file(const Obj &mods, const char *key) {
  std::string f = mods.str(key, 256);
  if (f.find('/') != std::string::npos || f == "." || f == "..")
    mods.bad(key, "= '" + f + "' must be a file name inside the package directory");
  return f;
}

std::string s_read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(GW_EIO, path + ": cannot open");
  std::ostringstream o;
  o << in.rdbuf();
  if (in.bad()) throw Error(GW_EIO, path + ": read error");
  return o.str();
}

struct Parsed {
  gw_manifest_t m{};
  std::string files[3];  // main, draft, tokenizer
};

void s_parse_manifest(const std::string &dir, const char *unnorm_key, bool any_unnorm_key, gw_policy_t &p,
                      Parsed &out) {
  std::string path = dir + "/manifest.json";
  std::string text = s_read_file(path);
  json_error_t jerr;
  json_t *root = json_loadb(text.data(), text.size(), JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    throw Error(GW_EMANIFEST, path + ":" + std::to_string(jerr.line) + ": invalid JSON: " + jerr.text);
  std::unique_ptr<json_t, void (*)(json_t *)> hold(root, [](json_t *j) { json_decref(j); });
  if (!json_is_object(root)) throw Error(GW_EMANIFEST, path + ": top level must be an object");
  Obj top{root, ""};
  top.only({"format", "format_version", "name", "version", "content_hash", "cameras", "image", "instruction",
            "proprio_dim", "chunk", "rfsq", "hidden_dim", "action_stats", "decoding", "modules"});
  gw_manifest_t &m = out.m;

  if (top.str("format", 64) != "rsd-policy") top.bad("format", "must be \"rsd-policy\"");
  top.integer("format_version", 1, 1);
  s_copy(m.name, sizeof m.name, top.str("name", GW_NAME_MAX));
  s_copy(m.version, sizeof m.version, top.str("version", GW_NAME_MAX));
  std::string hash = top.str("content_hash", sizeof m.content_hash);
  if (hash.size() != 7 + 64 || hash.compare(0, 7, "sha256:") != 0 ||
      hash.find_first_not_of("0123456789abcdef", 7) != std::string::npos)
    top.bad("content_hash", "= '" + hash + "' must be \"sha256:\" + 64 lowercase hex digits");
  s_copy(m.content_hash, sizeof m.content_hash, hash);

  json_t *cams = top.array("cameras", 1, GW_MAX_CAMERAS);
  m.num_cameras = (int)json_array_size(cams);
  for (int i = 0; i < m.num_cameras; i++) {
    json_t *c = json_array_get(cams, i);
    if (!json_is_string(c) || !*json_string_value(c) || std::strlen(json_string_value(c)) >= GW_NAME_MAX)
      top.bad("cameras", "item " + std::to_string(i) + " must be a non-empty name");
    s_copy(m.cameras[i], GW_NAME_MAX, json_string_value(c));
  }

  Obj img = top.obj("image");
  img.only({"height", "width", "channels", "dtype"});
  m.image_height = (int)img.integer("height", 1, 4096);
  m.image_width = (int)img.integer("width", 1, 4096);
  img.integer("channels", 3, 3);
  if (img.str("dtype", 16) != "uint8") img.bad("dtype", "must be \"uint8\"");

  Obj ins = top.obj("instruction");
  ins.only({"tokenizer", "vocab", "max_tokens"});
  std::string kind = ins.str("tokenizer", GW_NAME_MAX);
  if (kind != "bytes") ins.bad("tokenizer", "= '" + kind + "' is not supported (have: bytes)");
  if (!json_is_null(ins.get("vocab"))) ins.bad("vocab", "must be null for the bytes tokenizer");
  s_copy(m.instr_tokenizer, sizeof m.instr_tokenizer, kind);
  m.instr_max_tokens = (int)ins.integer("max_tokens", 1, 4096);

  m.proprio_dim = (int)top.integer("proprio_dim", 1, 1024);

  Obj ch = top.obj("chunk");
  ch.only({"horizon", "action_dim", "gripper_index"});
  m.chunk_horizon = (int)ch.integer("horizon", 1, 1024);
  m.action_dim = (int)ch.integer("action_dim", 1, 64);
  m.gripper_index = (int)ch.integer("gripper_index", -1, m.action_dim - 1);

  Obj rq = top.obj("rfsq");
  rq.only({"layers", "groups", "levels"});
  m.layers = (int)rq.integer("layers", 1, GW_MAX_LAYERS);
  m.groups = (int)rq.integer("groups", 1, 4096);
  m.levels = (int)rq.integer("levels", 2, 65536);
  m.hidden_dim = (int)top.integer("hidden_dim", 1, 1 << 20);

  // Action statistics: every key is checked, then the campaign's key is chosen.
  Obj st = top.obj("action_stats");
  if (json_object_size(st.j) == 0) top.bad("action_stats", "must have at least one unnorm_key");
  std::string have;
  const char *key;
  json_t *v;
  json_object_foreach(st.j, key, v) {
    if (std::strlen(key) == 0 || std::strlen(key) >= GW_NAME_MAX) st.bad(key, "is not a valid unnorm_key");
    if (!json_is_object(v)) st.bad(key, "must be an object");
    Obj s{v, st.path + key + "."};
    s.only({"q01", "q99", "mask", "mean", "std"});
    json_t *lo = s.array("q01", m.action_dim, m.action_dim), *hi = s.array("q99", m.action_dim, m.action_dim);
    json_t *mk = s.array("mask", m.action_dim, m.action_dim);
    std::vector<float> q01(m.action_dim), q99(m.action_dim);
    std::vector<bool> mask(m.action_dim);
    for (int a = 0; a < m.action_dim; a++) {
      json_t *l = json_array_get(lo, a), *h = json_array_get(hi, a), *b = json_array_get(mk, a);
      if (!json_is_number(l) || !json_is_number(h) || !std::isfinite(json_number_value(l)) ||
          !std::isfinite(json_number_value(h)) || json_number_value(l) > json_number_value(h))
        s.bad("q01", "/q99 item " + std::to_string(a) + " must be finite numbers with q01 <= q99");
      if (!json_is_boolean(b)) s.bad("mask", "item " + std::to_string(a) + " must be true or false");
      q01[a] = (float)json_number_value(l);
      q99[a] = (float)json_number_value(h);
      mask[a] = json_is_true(b);
    }
    have += (have.empty() ? "" : ", ") + std::string(key);
    if (m.num_unnorm_keys == GW_MAX_UNNORM_KEYS)
      top.bad("action_stats", "has more than " + std::to_string(GW_MAX_UNNORM_KEYS) + " unnorm_keys");
    s_copy(m.unnorm_keys[m.num_unnorm_keys++], GW_NAME_MAX, key);
    p.all_q01.push_back(q01);
    p.all_q99.push_back(q99);
    p.all_mask.push_back(mask);
    if (unnorm_key && std::strcmp(unnorm_key, key) == 0) {
      p.q01 = q01;
      p.q99 = q99;
      p.mask = mask;
    }
  }
  if (!unnorm_key && any_unnorm_key) {
    unnorm_key = m.unnorm_keys[0];
    p.q01 = p.all_q01[0];
    p.q99 = p.all_q99[0];
    p.mask = p.all_mask[0];
  }
  if (!unnorm_key || !*unnorm_key) throw Error(GW_EUNNORM, "no unnorm_key given (have: " + have + ")");
  if (p.q01.empty())
    throw Error(GW_EUNNORM, "unnorm_key '" + std::string(unnorm_key) + "' not in model stats (have: " + have + ")");
  s_copy(m.unnorm_key, sizeof m.unnorm_key, unnorm_key);

  Obj dec = top.obj("decoding");
  dec.only({"mode", "gamma", "radii", "width"});
  std::string mode = dec.str("mode", 32);
  m.decoding.mode = gw_mode_parse(mode.c_str());
  if (m.decoding.mode < 0) dec.bad("mode", "= '" + mode + "' is not one of ar, spec, spec-relaxed");
  m.decoding.gamma = (int)dec.integer("gamma", 1, GW_MAX_GAMMA);
  json_t *radii = dec.array("radii", m.layers, m.layers);
  for (int l = 0; l < m.layers; l++) {
    json_t *r = json_array_get(radii, l);
    if (!json_is_integer(r) || json_integer_value(r) < 0 || json_integer_value(r) >= m.levels)
      dec.bad("radii", "item " + std::to_string(l) + " must be an integer in [0, levels)");
    m.decoding.radii[l] = (int)json_integer_value(r);
  }
  m.decoding.width = json_object_get(dec.j, "width") ? (int)dec.integer("width", 1, GW_MAX_WIDTH) : 1;

  Obj mods = top.obj("modules");
  mods.only({"main", "draft", "tokenizer"});
  out.files[0] = s_module_file(mods, "main");
  out.files[1] = s_module_file(mods, "draft");
  out.files[2] = s_module_file(mods, "tokenizer");
}

// content_hash = sha256 of main, draft and tokenizer files concatenated in that order.
void s_check_hash(const std::string &dir, const Parsed &pm) {
  msg_sha256_t h;
  msg_sha256_init(&h);
  for (const std::string &f : pm.files) {
    std::string bytes = s_read_file(dir + "/" + f);
    msg_sha256_update(&h, bytes.data(), bytes.size());
  }
  char hex[65];
  msg_sha256_hex(&h, hex);
  if (std::strcmp(pm.m.content_hash + 7, hex) != 0)
    throw Error(GW_EHASH, dir + ": content_hash in manifest.json is sha256:" + std::string(pm.m.content_hash + 7) +
                              ", the module files hash to sha256:" + hex);
}

torch::Device s_device(const char *name) {
  std::string d = name ? name : "cpu";
  if (d == "cpu") return torch::Device(torch::kCPU);
  if (d.compare(0, 5, "cuda:") == 0 && d.size() > 5 && d.find_first_not_of("0123456789", 5) == std::string::npos) {
    int idx = std::atoi(d.c_str() + 5);
    if (!torch::cuda::is_available())
      throw Error(GW_EDEVICE, "device '" + d + "' not available: this build links libtorch without CUDA "
                              "(or the machine has no CUDA device)");
    if (idx >= (int)torch::cuda::device_count())
      throw Error(GW_EDEVICE, "device '" + d + "' not available: " + std::to_string(torch::cuda::device_count()) +
                              " CUDA device(s)");
    return torch::Device(torch::kCUDA, (c10::DeviceIndex)idx);
  }
  throw Error(GW_EINVAL, "device '" + d + "' is not 'cpu' or 'cuda:N'");
}

torch::jit::Module s_load_module(const std::string &dir, const std::string &file, const char *role,
                                 const torch::Device &dev) {
  std::string path = dir + "/" + file;
  std::ifstream probe(path, std::ios::binary);
  if (!probe) throw Error(GW_EIO, std::string(role) + " module " + path + ": cannot open");
  try {
    torch::jit::Module mod = torch::jit::load(path, dev);
    mod.eval();
    return mod;
  } catch (const c10::Error &e) {
    throw Error(GW_EMODULE, std::string(role) + " module " + path + ": not loadable TorchScript: " +
                                e.what_without_backtrace());
  }
}

// The method must exist and take `nargs` arguments besides self.
void s_need_method(torch::jit::Module &mod, const char *role, const char *method, size_t nargs, const char *sig) {
  auto m = mod.find_method(method);
  if (!m)
    throw Error(GW_EMODULE, std::string(role) + " module has no method '" + method + "' (expected " + sig + ")");
  size_t have = m->function().getSchema().arguments().size() - 1;
  if (have != nargs)
    throw Error(GW_EMODULE, std::string(role) + "." + method + " takes " + std::to_string(have) +
                                " arguments, expected " + sig);
}

// Calls a method during the probe; a libtorch failure there means the module does not fit the format.
c10::IValue s_probe_call(torch::jit::Module &mod, const char *what, std::vector<c10::IValue> args) {
  try {
    return mod.get_method(what)(std::move(args));
  } catch (const c10::Error &e) {
    throw Error(GW_EMODULE, std::string("probe call ") + what + " failed: " + e.what_without_backtrace());
  }
}

std::vector<at::Tensor> s_tuple(const c10::IValue &v, size_t n, const char *what) {
  if (!v.isTuple() || v.toTupleRef().elements().size() != n)
    throw Error(GW_ESHAPE, std::string(what) + ": expected a tuple of " + std::to_string(n) + " tensors");
  std::vector<at::Tensor> out;
  for (const auto &e : v.toTupleRef().elements()) {
    if (!e.isTensor()) throw Error(GW_ESHAPE, std::string(what) + ": tuple item is not a tensor");
    out.push_back(e.toTensor());
  }
  return out;
}

void s_finite(const at::Tensor &t, const char *what) {
  if (!at::isfinite(t).all().item<bool>()) throw Error(GW_ENONFINITE, std::string(what) + " returned NaN or Inf on the probe batch");
}

// A dummy batch of two rows through every method, main and draft at the policy's precision; checks shapes,
// dtypes, device and finiteness. The rows carry an instruction, as every request does (INFER requires one):
// a row of padding alone is not an input the worker can receive.
void s_probe(gw_policy_t &p) {
  const gw_manifest_t &m = p.m;
  const int64_t B = 2, L = m.layers, G = m.groups, K = m.levels, D = m.hidden_dim;
  auto dev = p.device;
  at::Tensor images = at::zeros({B, m.num_cameras, m.image_height, m.image_width, 3}, at::dtype(at::kByte).device(dev));
  at::Tensor proprio = at::zeros({B, m.proprio_dim}, at::dtype(at::kFloat).device(dev));
  at::Tensor instr = at::zeros({B, m.instr_max_tokens}, at::kLong);
  const char *probe_text = "probe";
  for (int64_t t = 0; t < m.instr_max_tokens && probe_text[t]; t++)
    instr.select(1, t).fill_((int64_t)probe_text[t] + 1);  // the bytes tokenizer: byte + 1
  instr = instr.to(dev);
  at::Tensor codes = at::zeros({B, L, G}, at::dtype(at::kLong).device(dev));
  {
    gw::Precision precision(p);  // main and draft at the policy's precision; the tokenizer after, in float32
    auto pre = s_tuple(s_probe_call(p.main, "prefill", {images, proprio, instr}), 3, "main.prefill");
    if (pre[0].dim() < 1 || pre[0].size(0) != B || pre[0].device() != dev)
      throw Error(GW_ESHAPE, "main.prefill state: shape " + gw::shape_str(pre[0].sizes()) + " on " +
                                 pre[0].device().str() + ", expected [2, ...] on " + dev.str());
    gw::expect_float(p, pre[1], {B, G, K}, "main.prefill logits0");
    gw::expect_float(p, pre[2], {B, D}, "main.prefill hidden");
    s_finite(pre[1], "main.prefill logits0");
    s_finite(pre[2], "main.prefill hidden");
    at::Tensor pos = at::tensor({int64_t(0), L - 1}, at::kLong).to(dev);
    auto st = s_tuple(s_probe_call(p.main, "step", {pre[0], codes, pos}), 2, "main.step");
    gw::expect_float(p, st[0], {B, G, K}, "main.step logits");
    gw::expect_float(p, st[1], {B, D}, "main.step hidden");
    s_finite(st[0], "main.step logits");
    int64_t n = std::min<int64_t>(m.decoding.gamma, L - 1);
    at::Tensor at0 = at::zeros({B}, at::dtype(at::kLong).device(dev)), at1 = at0 + 1;  // rows' positions
    auto ve = s_tuple(s_probe_call(p.main, "verify", {pre[0], codes, at0, n}), 2, "main.verify");
    gw::expect_float(p, ve[0], {B, n + 1, G, K}, "main.verify logits");
    gw::expect_float(p, ve[1], {B, n + 1, D}, "main.verify hidden");
    s_finite(ve[0], "main.verify logits");
    int64_t gamma = m.decoding.gamma;
    c10::IValue pr = s_probe_call(p.draft, "propose", {pre[2], codes, at1, gamma});
    if (!pr.isTensor()) throw Error(GW_ESHAPE, "draft.propose: expected a tensor");
    gw::expect_tensor(pr.toTensor(), {B, gamma, G}, at::kLong, dev, "draft.propose codes");
    if (p.has_paths) {
      c10::IValue pp = s_probe_call(p.draft, "propose_paths", {pre[2], codes, at1, gamma, int64_t(2)});
      if (!pp.isTensor()) throw Error(GW_ESHAPE, "draft.propose_paths: expected a tensor");
      gw::expect_tensor(pp.toTensor(), {B, 2, gamma, G}, at::kLong, dev, "draft.propose_paths codes");
    }
  }
  c10::IValue ck = s_probe_call(p.tokenizer, "decode", {codes});
  if (!ck.isTensor()) throw Error(GW_ESHAPE, "tokenizer.decode: expected a tensor");
  gw::expect_tensor(ck.toTensor(), {B, m.chunk_horizon, m.action_dim}, at::kFloat, dev, "tokenizer.decode chunk");
  s_finite(ck.toTensor(), "tokenizer.decode chunk");
}

// Observation i -> its index in the batch tensors, or a per-request error.
bool s_obs_ok(const gw_manifest_t &m, const gw_obs_t &o, gw_result_t &r) {
  auto fail = [&](const std::string &why) {
    r.status = GW_EINPUT;
    std::snprintf(r.message, sizeof r.message, "%s", why.c_str());
    return false;
  };
  if (o.num_cameras != m.num_cameras || o.image_height != m.image_height || o.image_width != m.image_width)
    return fail("images are " + std::to_string(o.num_cameras) + " x " + std::to_string(o.image_height) + "x" +
                std::to_string(o.image_width) + ", model expects " + std::to_string(m.num_cameras) + " x " +
                std::to_string(m.image_height) + "x" + std::to_string(m.image_width));
  if (o.proprio_dim != m.proprio_dim)
    return fail("proprio has " + std::to_string(o.proprio_dim) + " values, model expects " +
                std::to_string(m.proprio_dim));
  if (!o.images || !o.proprio || !o.instruction) return fail("images, proprio and instruction are required");
  for (int i = 0; i < o.proprio_dim; i++)
    if (!std::isfinite(o.proprio[i])) return fail("proprio[" + std::to_string(i) + "] is not finite");
  return true;
}

gw::Batch s_batch(gw_policy_t &p, const gw_obs_t *obs, const std::vector<int> &rows) {
  const gw_manifest_t &m = p.m;
  const int64_t B = (int64_t)rows.size(), T = m.instr_max_tokens;
  const size_t img_bytes = (size_t)m.num_cameras * m.image_height * m.image_width * 3;
  at::Tensor images = at::empty({B, m.num_cameras, m.image_height, m.image_width, 3}, at::kByte);
  at::Tensor proprio = at::empty({B, m.proprio_dim}, at::kFloat);
  at::Tensor instr = at::zeros({B, T}, at::kLong);
  auto tok = instr.accessor<int64_t, 2>();
  for (int64_t b = 0; b < B; b++) {
    const gw_obs_t &o = obs[rows[b]];
    std::memcpy(images.data_ptr<uint8_t>() + b * img_bytes, o.images, img_bytes);
    std::memcpy(proprio.data_ptr<float>() + b * m.proprio_dim, o.proprio, sizeof(float) * m.proprio_dim);
    // bytes tokenizer: token = byte + 1, 0 = padding, truncated to T.
    const unsigned char *s = (const unsigned char *)o.instruction;
    for (int64_t t = 0; t < T && s[t]; t++) tok[b][t] = (int64_t)s[t] + 1;
  }
  gw::Batch out;
  out.images = images.to(p.device);
  out.proprio = proprio.to(p.device);
  out.instr = instr.to(p.device);
  out.out = rows;
  return out;
}

}  // namespace

// ---- the C API ------------------------------------------------------------------------------------

extern "C" int gw_policy_open(const char *dir, const gw_policy_opts_t *opts, gw_policy_t **policy_out) {
  if (policy_out) *policy_out = nullptr;
  return s_guard([&] {
    if (!dir || !opts || !policy_out) throw Error(GW_EINVAL, "gw_policy_open: dir, opts and policy_out are required");
    gw::NoAutograd no_autograd(opts->dtype);
    std::unique_ptr<gw_policy_t> p(new gw_policy_t());
    p->device = s_device(opts->device);  // before reading the package: a bad device is the caller's error
    if (opts->dtype < GW_DTYPE_FLOAT32 || opts->dtype > GW_DTYPE_FLOAT16)
      throw Error(GW_EINVAL, "dtype " + std::to_string(opts->dtype) + " is not float32, bfloat16 or float16");
    p->dtype = opts->dtype;
    p->compute = p->dtype == GW_DTYPE_BFLOAT16 ? at::kBFloat16 : p->dtype == GW_DTYPE_FLOAT16 ? at::kHalf : at::kFloat;
    if (opts->num_threads > 0) at::set_num_threads(opts->num_threads);
    Parsed pm;
    s_parse_manifest(dir, opts->unnorm_key, opts->any_unnorm_key != 0, *p, pm);
    p->m = pm.m;
    if (opts->verify_hash) s_check_hash(dir, pm);
    p->main = s_load_module(dir, pm.files[0], "main", p->device);
    p->draft = s_load_module(dir, pm.files[1], "draft", p->device);
    p->tokenizer = s_load_module(dir, pm.files[2], "tokenizer", p->device);
    s_need_method(p->main, "main", "prefill", 3, "prefill(images, proprio, instr)");
    s_need_method(p->main, "main", "step", 3, "step(state, codes, pos)");
    s_need_method(p->main, "main", "verify", 4, "verify(state, codes, pos, n)");
    s_need_method(p->draft, "draft", "propose", 4, "propose(hidden, codes, pos, gamma)");
    p->has_paths = p->draft.find_method("propose_paths").has_value();
    if (p->has_paths)
      s_need_method(p->draft, "draft", "propose_paths", 5, "propose_paths(hidden, codes, pos, gamma, width)");
    else if (p->m.decoding.width > 1)
      throw Error(GW_EMODULE, "manifest decoding.width is " + std::to_string(p->m.decoding.width) +
                                  " but the draft module has no method 'propose_paths' (expected "
                                  "propose_paths(hidden, codes, pos, gamma, width))");
    s_need_method(p->tokenizer, "tokenizer", "decode", 1, "decode(codes)");
    try {
      s_probe(*p);
    } catch (...) {  // a probe that failed part-way may have left casts of the weights in autocast's cache
      if (p->dtype != GW_DTYPE_FLOAT32) at::autocast::clear_cache();
      throw;
    }
    *policy_out = p.release();
  });
}

extern "C" int gw_policy_set_unnorm_key(gw_policy_t *policy, const char *unnorm_key) {
  return s_guard([&] {
    if (!policy || !unnorm_key) throw Error(GW_EINVAL, "gw_policy_set_unnorm_key: policy and unnorm_key are required");
    gw_manifest_t &m = policy->m;
    std::string have;
    for (int i = 0; i < m.num_unnorm_keys; i++) {
      if (std::strcmp(m.unnorm_keys[i], unnorm_key) == 0) {
        policy->q01 = policy->all_q01[i];
        policy->q99 = policy->all_q99[i];
        policy->mask = policy->all_mask[i];
        s_copy(m.unnorm_key, sizeof m.unnorm_key, unnorm_key);
        return;
      }
      have += (have.empty() ? "" : ", ") + std::string(m.unnorm_keys[i]);
    }
    throw Error(GW_EUNNORM, "unnorm_key '" + std::string(unnorm_key) + "' not in model stats (have: " + have + ")");
  });
}

extern "C" void gw_policy_destroy(gw_policy_t **self_p) {
  if (!self_p || !*self_p) return;
  // Autocast's cast cache (one for the process) holds lower-precision copies of this policy's weights.
  if ((*self_p)->dtype != GW_DTYPE_FLOAT32) at::autocast::clear_cache();
  delete *self_p;
  *self_p = nullptr;
}

extern "C" int gw_policy_dtype(const gw_policy_t *policy) { return policy ? policy->dtype : GW_DTYPE_FLOAT32; }

extern "C" const gw_manifest_t *gw_policy_manifest(const gw_policy_t *policy) { return policy ? &policy->m : nullptr; }

static void s_check_params(const gw_policy_t &p, const gw_decode_params_t &prm) {
  const gw_manifest_t &m = p.m;
  if (prm.mode < 0 || prm.mode > 2) throw Error(GW_EINVAL, "decode mode " + std::to_string(prm.mode) + " is not ar, spec or spec-relaxed");
  if (prm.width < 0 || prm.width > GW_MAX_WIDTH)
    throw Error(GW_EINVAL, "width " + std::to_string(prm.width) + " out of range [0, " + std::to_string(GW_MAX_WIDTH) + "]");
  if (prm.mode != GW_DECODE_AR && prm.width > 1 && !p.has_paths)
    throw Error(GW_EINVAL, "width " + std::to_string(prm.width) + " needs the draft method propose_paths, which " +
                               std::string(m.name) + "'s draft does not have");
  if (prm.mode != GW_DECODE_AR && (prm.gamma < 1 || prm.gamma > GW_MAX_GAMMA))
    throw Error(GW_EINVAL, "gamma " + std::to_string(prm.gamma) + " out of range [1, " + std::to_string(GW_MAX_GAMMA) + "]");
  if (prm.mode == GW_DECODE_SPEC_RELAXED)
    for (int l = 0; l < m.layers; l++)
      if (prm.radii[l] < 0) throw Error(GW_EINVAL, "radius for layer " + std::to_string(l) + " is negative");
}

extern "C" int gw_policy_decode(gw_policy_t *policy, const gw_obs_t *obs, int n, const gw_decode_params_t *params,
                                gw_result_t *results) {
  int rc = s_guard([&] {
    if (!policy || !obs || !results) throw Error(GW_EINVAL, "gw_policy_decode: policy, obs and results are required");
    if (n < 1 || n > GW_MAX_BATCH) throw Error(GW_EINVAL, "batch of " + std::to_string(n) + " requests, allowed 1.." + std::to_string(GW_MAX_BATCH));
    const gw_decode_params_t &prm = params ? *params : policy->m.decoding;
    s_check_params(*policy, prm);
    std::vector<int> rows;
    for (int i = 0; i < n; i++) {
      gw_result_t &r = results[i];
      r.status = GW_OK;
      r.message[0] = '\0';
      std::memset(&r.stats, 0, sizeof r.stats);
      r.stats.batch_size = n;
      if (!r.chunk) {
        r.status = GW_EINVAL;
        std::snprintf(r.message, sizeof r.message, "results[%d].chunk is NULL", i);
        continue;
      }
      if (s_obs_ok(policy->m, obs[i], r)) rows.push_back(i);
    }
    if (rows.empty()) return;
    gw::NoAutograd no_autograd(policy->dtype);
    gw::Batch b = s_batch(*policy, obs, rows);
    gw::decode_batch(*policy, b, prm, results);
  });
  if (rc != GW_OK && results && n > 0 && n <= GW_MAX_BATCH)
    for (int i = 0; i < n; i++) {
      results[i].status = rc;
      std::snprintf(results[i].message, sizeof results[i].message, "%s", tl_msg.c_str());
    }
  return rc;
}

extern "C" int gw_policy_main_argmax(gw_policy_t *policy, const gw_obs_t *obs, int n, const int32_t *codes,
                                     int32_t *argmax_out, int *status_out) {
  return s_guard([&] {
    if (!policy || !obs || !codes || !argmax_out) throw Error(GW_EINVAL, "gw_policy_main_argmax: missing argument");
    if (n < 1 || n > GW_MAX_BATCH) throw Error(GW_EINVAL, "batch of " + std::to_string(n) + " requests");
    const gw_manifest_t &m = policy->m;
    const int64_t LG = (int64_t)m.layers * m.groups;
    std::vector<int> rows;
    std::vector<gw_result_t> tmp(n);
    for (int i = 0; i < n; i++) {
      bool ok = s_obs_ok(m, obs[i], tmp[i]);
      for (int64_t k = 0; ok && k < LG; k++)
        if (codes[i * LG + k] < 0 || codes[i * LG + k] >= m.levels) {
          ok = false;
          tmp[i].status = GW_EINPUT;
        }
      if (status_out) status_out[i] = ok ? GW_OK : tmp[i].status;
      if (ok) rows.push_back(i);
    }
    if (rows.empty()) return;
    gw::NoAutograd no_autograd(policy->dtype);
    gw::Batch b = s_batch(*policy, obs, rows);
    at::Tensor c = at::empty({(int64_t)rows.size(), m.layers, m.groups}, at::kLong);
    for (size_t r = 0; r < rows.size(); r++)
      for (int64_t k = 0; k < LG; k++) c.data_ptr<int64_t>()[r * LG + k] = codes[rows[r] * LG + k];
    std::vector<bool> ok;
    at::Tensor am = gw::main_argmax(*policy, b, c.to(policy->device), ok).to(at::kCPU).contiguous();
    for (size_t r = 0; r < rows.size(); r++) {
      if (!ok[r]) {
        if (status_out) status_out[rows[r]] = GW_ENONFINITE;
        continue;
      }
      for (int64_t k = 0; k < LG; k++) argmax_out[rows[r] * LG + k] = (int32_t)am.data_ptr<int64_t>()[r * LG + k];
    }
  });
}
