// policy_bench.cpp: decoding throughput and latency of a policy package on a device, through the C API
// (so it measures what the worker will call). For each mode (ar, spec, spec-relaxed) and batch size
// (1, 4, 16, 64): chunks/s, p50/p99 latency of a batch (= what each of its requests waits for decoding),
// main and draft forwards per chunk, and the draft's acceptance per layer. Prints a table; --json FILE
// also writes the numbers. Not a test: timing belongs here, not in ctest.
//
//   policy_bench [PACKAGE_DIR] [--json FILE] [--threads N] [--seconds S] [--gamma G] [--radius R]
//                [--device cpu|cuda:N] [--obs DIR] [--width W] [--codes FILE] [--dtype float32|bfloat16|float16]
//
// --dtype: the precision main and draft run at (gw_policy_opts_t.dtype; the exactness pass then compares spec
// with ar at that precision).
// --width W: W draft paths per request and round in the spec modes (draft.propose_paths; 1 = propose).
//
// Observations are random images and proprio unless --obs names a recorded set (train/export_bench_obs.py):
// DIR/images.u8 (N x cameras x H x W x 3 uint8), DIR/proprio.f32 (N x proprio_dim float32) and
// DIR/instructions.txt (N lines). Acceptance on random images says little about a trained draft; on
// recorded frames it is what the policy meets on those states. Last, every observation is decoded by ar and
// by spec (batches of 1 and of 16) and the rows whose codes differ are counted: spec must be lossless; that
// pass also gives spec's main forwards per chunk over the whole set (the timed rows cover what fits in --seconds).
// --codes FILE writes that pass's ar codes at batch 1 (int32, observations x L x G), to compare two builds of
// the engine code for code.
//
// First, the cost of one call of each module method at batch 1 and 64 (median µs of 200 calls after 20
// warm-ups, each call waited for on a CUDA device), called as the engine calls them: main.prefill,
// main.step, main.verify over gamma layers, draft.propose(gamma), tokenizer.decode, with the number of
// top-level ATen operators one call runs (counted through a RecordFunction callback) and its casts (every
// aten::_to_copy, nested or not: under --dtype bfloat16/float16 autocast casts activations inside the
// operators that take them, once the weights' casts are cached). On a device where
// calls are bound by their number of operators (docs/benchmarks.md: about 8 µs each on an H100, eager),
// a spec round (propose + verify) against an ar layer (step) decides whether spec can be faster; this
// table says it without the decoding around it.
//
// After the timed rows, the speed target measured paired: ar and spec at batch 1 on each observation in turn
// (the order alternating), spec's speedup as mean ar latency / mean spec latency with a 95% bootstrap interval
// over the observations; drift in the machine's speed between the timed rows cannot bias it.
// Then the operators of a whole chunk at batch 1 per mode (gw_policy_decode on every observation, one at a
// time: the mean over the states whose main forwards the exactness pass counts): in all, in the module calls
// (the operators that ran inside a TorchScript method, as the callback sees them: exact at any --width) and
// the engine's own tensor work around them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <ATen/record_function.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include "policy.h"
#include "policy_impl.hpp"

#ifndef GW_DEFAULT_PACKAGE
#define GW_DEFAULT_PACKAGE "test-models/mixed"
#endif

struct Row {
  std::string mode;
  int batch;
  double chunks_per_s, p50_ms, p99_ms, main_fwd, draft_fwd;
  std::vector<double> accept;  // per layer, -1 where nothing was proposed
};

// Reads a whole file; false (and a message) if it cannot.
static bool s_slurp(const std::string &path, std::string &out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "policy_bench: cannot read %s\n", path.c_str());
    return false;
  }
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

// A recorded observation set (see the top of the file), checked against the package's shapes.
static bool s_load_obs(const char *dir, const gw_manifest_t *m, std::vector<uint8_t> &images,
                       std::vector<float> &proprio, std::vector<std::string> &instr) {
  std::string im, pr, tx;
  std::string d(dir);
  if (!s_slurp(d + "/images.u8", im) || !s_slurp(d + "/proprio.f32", pr) || !s_slurp(d + "/instructions.txt", tx))
    return false;
  instr.clear();
  for (size_t a = 0, b; a < tx.size(); a = b + 1) {
    b = tx.find('\n', a);
    if (b == std::string::npos) b = tx.size();
    instr.push_back(tx.substr(a, b - a));
  }
  const size_t n = instr.size(), img = (size_t)m->num_cameras * m->image_height * m->image_width * 3;
  if (n == 0 || im.size() != n * img || pr.size() != n * sizeof(float) * (size_t)m->proprio_dim) {
    std::fprintf(stderr, "policy_bench: %s: %zu instructions, images.u8 %zu bytes (expected %zu), proprio.f32 %zu "
                         "bytes (expected %zu) for %d camera(s) of %dx%d and proprio %d\n", dir, n, im.size(),
                 n * img, pr.size(), n * sizeof(float) * (size_t)m->proprio_dim, m->num_cameras, m->image_height,
                 m->image_width, m->proprio_dim);
    return false;
  }
  images.assign(im.begin(), im.end());
  proprio.resize(n * (size_t)m->proprio_dim);
  std::memcpy(proprio.data(), pr.data(), pr.size());
  return true;
}

static double s_pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  size_t i = (size_t)(q * (double)(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct CallCost {
  std::string call;
  int batch;
  double us;
  long ops;  // top-level ATen operators of one call
  long casts;  // aten::_to_copy at any depth in one call: casts (autocast's, inside other operators) and copies
};

static thread_local std::vector<at::RecordScope> tl_scopes;  // the records open now, outermost first
static thread_local long tl_ops = 0, tl_casts = 0, tl_module_ops = 0;

// Top-level ATen operators that fn() runs on this thread: an operator that calls others counts once, and an
// operator that a TorchScript method runs counts as top-level inside it. *module_ops_out (nullable) gets those
// of them that ran inside a module method (the rest are the caller's own), *casts_out (nullable) every
// aten::_to_copy, nested or not (autocast's casts run inside the operator they feed).
template <typename F>
static long s_count_ops(F fn, long *casts_out = nullptr, long *module_ops_out = nullptr) {
  tl_scopes.clear();
  tl_ops = tl_casts = tl_module_ops = 0;
  at::CallbackHandle h = at::addThreadLocalCallback(
      at::RecordFunctionCallback(
          [](const at::RecordFunction &fn) -> std::unique_ptr<at::ObserverContext> {
            if (fn.scope() == at::RecordScope::FUNCTION) {
              bool top = true, in_module = false;  // only TorchScript methods around it: top-level
              for (at::RecordScope sc : tl_scopes) {
                top = top && sc == at::RecordScope::TORCHSCRIPT_FUNCTION;
                in_module = true;
              }
              if (top) tl_ops++, tl_module_ops += in_module;
              if (std::strcmp(fn.name(), "aten::_to_copy") == 0) tl_casts++;
            }
            tl_scopes.push_back(fn.scope());
            return nullptr;
          },
          [](const at::RecordFunction &, at::ObserverContext *) {
            if (!tl_scopes.empty()) tl_scopes.pop_back();
          })
          .scopes({at::RecordScope::FUNCTION, at::RecordScope::TORCHSCRIPT_FUNCTION}));
  fn();
  at::removeCallback(h);
  if (casts_out) *casts_out = tl_casts;
  if (module_ops_out) *module_ops_out = tl_module_ops;
  return tl_ops;
}

// Median µs of one call of mod.method(args) (see the top of the file).
static double s_time_call(torch::jit::Module &mod, const char *method, const std::vector<c10::IValue> &args,
                          const torch::Device &dev) {
  torch::jit::Method m = mod.get_method(method);
  std::vector<double> us;
  for (int it = 0; it < 220; it++) {
    auto t0 = std::chrono::steady_clock::now();
    c10::IValue out = m(args);
    if (dev.is_cuda()) torch::cuda::synchronize(dev.index());
    if (it >= 20) us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  return s_pct(us, 0.5);
}

// The per-call table: every method the engine calls, on the first b observations' tensors (random
// instruction tokens: the cost does not depend on them), with no optimizing executor, as the worker runs.
static std::vector<CallCost> s_call_costs(gw_policy_t &p, const std::vector<uint8_t> &images,
                                          const std::vector<float> &proprio, int nobs, int gamma) {
  const gw_manifest_t &m = p.m;
  const int64_t L = m.layers, G = m.groups;
  const int64_t img = (int64_t)m.num_cameras * m.image_height * m.image_width * 3;
  const int64_t nv = std::min<int64_t>(gamma, L - 2);  // verify from layer 1: logits for layers 1..1+nv
  std::vector<CallCost> out;
  gw::NoAutograd no_autograd(p.dtype);
  torch::jit::GraphOptimizerEnabledGuard no_optimizer(false);
  for (int b : {1, 64}) {
    std::vector<uint8_t> im((size_t)img * b);
    std::vector<float> pr((size_t)m.proprio_dim * b);
    for (int i = 0; i < b; i++) {
      std::memcpy(im.data() + (size_t)img * i, images.data() + (size_t)img * (i % nobs), (size_t)img);
      std::memcpy(pr.data() + (size_t)m.proprio_dim * i, proprio.data() + (size_t)m.proprio_dim * (i % nobs),
                  sizeof(float) * m.proprio_dim);
    }
    at::Tensor images_t = at::from_blob(im.data(), {b, m.num_cameras, m.image_height, m.image_width, 3}, at::kByte)
                              .to(p.device);
    at::Tensor proprio_t = at::from_blob(pr.data(), {b, m.proprio_dim}, at::kFloat).to(p.device);
    at::Tensor instr_t = at::randint(1, 200, {b, m.instr_max_tokens}, at::kLong).to(p.device);
    c10::IValue pre = [&] {
      gw::Precision precision(p);
      return p.main.get_method("prefill")({images_t, proprio_t, instr_t});
    }();
    at::Tensor state = pre.toTupleRef().elements()[0].toTensor();
    at::Tensor hidden = pre.toTupleRef().elements()[2].toTensor();
    at::Tensor codes = at::randint(0, m.levels, {b, L, G}, at::kLong).to(p.device);
    at::Tensor pos = at::ones({b}, at::kLong).to(p.device);
    struct {
      std::string name;
      torch::jit::Module *mod;
      const char *method;
      std::vector<c10::IValue> args;
    } calls[] = {{"main.prefill", &p.main, "prefill", {images_t, proprio_t, instr_t}},
                 {"main.step", &p.main, "step", {state, codes, pos}},
                 {"main.verify(" + std::to_string(nv) + ")", &p.main, "verify", {state, codes, pos, nv}},
                 {"draft.propose(" + std::to_string(gamma) + ")", &p.draft, "propose", {hidden, codes, pos, (int64_t)gamma}},
                 {"tokenizer.decode", &p.tokenizer, "decode", {codes}}};
    for (auto &c : calls) {
      std::optional<gw::Precision> precision;  // as the engine runs them: main and draft at the policy's
      if (c.mod != &p.tokenizer) precision.emplace(p);  // precision, the tokenizer in float32
      const double us = s_time_call(*c.mod, c.method, c.args, p.device);  // warm: autocast's weight casts are cached
      long casts = 0;
      const long ops = s_count_ops([&] { c.mod->get_method(c.method)(c.args); }, &casts);
      out.push_back({c.name, b, us, ops, casts});
    }
  }
  return out;
}

int main(int argc, char **argv) {
  const char *dir = GW_DEFAULT_PACKAGE, *json = nullptr, *device = "cpu", *obs_dir = nullptr, *codes_out = nullptr,
             *dtype_name = "float32";
  int threads = 0, gamma = 0, radius = 1, width = 0;
  double seconds = 1.0;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--gamma") && i + 1 < argc) gamma = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--radius") && i + 1 < argc) radius = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
    else if (!std::strcmp(argv[i], "--obs") && i + 1 < argc) obs_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--width") && i + 1 < argc) width = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--codes") && i + 1 < argc) codes_out = argv[++i];
    else if (!std::strcmp(argv[i], "--dtype") && i + 1 < argc) dtype_name = argv[++i];
    else if (argv[i][0] != '-') dir = argv[i];
    else {
      std::fprintf(stderr, "usage: policy_bench [PACKAGE_DIR] [--json FILE] [--threads N] [--seconds S] "
                           "[--gamma G] [--radius R] [--device cpu|cuda:N] [--obs DIR] [--width W] [--codes FILE]\n"
                           "                    [--dtype float32|bfloat16|float16]\n");
      return 2;
    }
  }
  // Any unnorm_key of the package will do: the first.
  const int dtype = gw_dtype_parse(dtype_name);
  if (dtype < 0) {
    std::fprintf(stderr, "policy_bench: --dtype '%s' is not float32, bfloat16 or float16\n", dtype_name);
    return 2;
  }
  gw_policy_opts_t opts = {device, nullptr, threads, 1, 1, dtype};
  gw_policy_t *p = nullptr;
  int rc = gw_policy_open(dir, &opts, &p);
  if (rc != GW_OK) {
    std::fprintf(stderr, "policy_bench: %s: %s (%s)\n", dir, gw_strerror(rc), gw_errmsg());
    return 1;
  }
  const gw_manifest_t *m = gw_policy_manifest(p);
  const int L = m->layers, G = m->groups, HA = m->chunk_horizon * m->action_dim;
  const size_t img = (size_t)m->num_cameras * m->image_height * m->image_width * 3;
  const int maxb = 64;
  std::vector<uint8_t> images;
  std::vector<float> proprio;
  std::vector<std::string> instr;
  if (obs_dir) {
    if (!s_load_obs(obs_dir, m, images, proprio, instr)) return 1;
  } else {
    std::mt19937 rng(1);
    images.resize(img * maxb);
    proprio.resize((size_t)m->proprio_dim * maxb);
    for (auto &b : images) b = (uint8_t)(rng() & 255);
    for (auto &x : proprio) x = (float)((int)(rng() % 2001) - 1000) / 1000.0f;
    instr.assign(maxb, "pick up the black bowl and place it on the plate");
  }
  const int nobs = (int)instr.size();
  std::vector<gw_obs_t> obs(nobs);
  for (int i = 0; i < nobs; i++)
    obs[i] = gw_obs_t{images.data() + img * i, m->num_cameras, m->image_height, m->image_width,
                      proprio.data() + (size_t)m->proprio_dim * i, m->proprio_dim, instr[i].c_str()};
  // A batch of b takes b consecutive observations, starting where the last one stopped (wrapping), so that
  // every batch size sees the whole set; with fewer observations than the batch, rows repeat.
  std::vector<gw_obs_t> batch(maxb);
  size_t next = 0;
  std::vector<float> chunks((size_t)HA * maxb);
  std::vector<int32_t> codes((size_t)L * G * maxb);
  std::vector<gw_result_t> res(maxb);

  std::printf("policy_bench: %s (%s) on %s in %s, L=%d G=%d K=%d, gamma=%d, width=%d, relaxed radius=%d, threads=%d, "
              "observations: %s\n", dir, m->name, device, gw_dtype_name(dtype), L, G, m->levels,
              gamma ? gamma : m->decoding.gamma,
              width ? width : m->decoding.width, radius, threads, obs_dir ? obs_dir : "random");
  const int g_used = gamma ? gamma : m->decoding.gamma;
  // The decoding parameters of a mode: the package's defaults with the command line's gamma, width, radius.
  auto params = [&](int mode) {
    gw_decode_params_t prm = m->decoding;
    prm.mode = mode;
    if (gamma) prm.gamma = gamma;
    if (width) prm.width = width;
    for (int l = 0; l < L; l++) prm.radii[l] = radius;
    return prm;
  };
  std::vector<CallCost> calls = s_call_costs(*p, images, proprio, nobs, g_used);
  std::printf("%-20s %12s %12s %16s %10s %8s\n", "call", "us batch 1", "us batch 64", "x main.step (1)", "operators",
              "casts");
  const double step1 = calls[1].us;
  for (size_t i = 0; i < calls.size() / 2; i++)
    std::printf("%-20s %12.1f %12.1f %16.2f %10ld %8ld\n", calls[i].call.c_str(), calls[i].us,
                calls[i + calls.size() / 2].us, calls[i].us / step1, calls[i].ops, calls[i].casts);
  std::printf("%-13s %5s %10s %9s %9s %9s %9s  %s\n", "mode", "batch", "chunks/s", "p50 ms", "p99 ms", "main/ch",
              "draft/ch", "acceptance per layer 1..L-1");
  std::vector<Row> rows;
  for (int mode = 0; mode < 3; mode++)
    for (int b : {1, 4, 16, 64}) {
      const gw_decode_params_t prm = params(mode);
      std::vector<double> lat;
      std::vector<long> prop(L, 0), acc(L, 0);
      long chunks_done = 0, main_fwd = 0, draft_fwd = 0;
      double total = 0;
      for (int it = 0; total < seconds * 1e6 || it < 8; it++) {
        for (int i = 0; i < b; i++) {
          std::memset(&res[i], 0, sizeof res[i]);
          res[i].chunk = chunks.data() + (size_t)HA * i;
          res[i].codes = codes.data() + (size_t)L * G * i;
        }
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < b; i++) batch[i] = obs[next++ % (size_t)nobs];
        rc = gw_policy_decode(p, batch.data(), b, &prm, res.data());
        double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        if (rc != GW_OK || res[0].status != GW_OK) {
          std::fprintf(stderr, "policy_bench: decode failed: %s (%s)\n", gw_strerror(rc), res[0].message);
          return 1;
        }
        if (it < 3) continue;  // warm-up: the TorchScript executor profiles its first calls
        lat.push_back(us / 1000.0);
        total += us;
        for (int i = 0; i < b; i++) {
          chunks_done++;
          main_fwd += res[i].stats.main_forwards;
          draft_fwd += res[i].stats.draft_forwards;
          for (int l = 0; l < L; l++) prop[l] += res[i].stats.layers_proposed[l], acc[l] += res[i].stats.layers_accepted[l];
        }
      }
      Row r{gw_mode_name(mode), b, chunks_done / (total / 1e6), s_pct(lat, 0.5), s_pct(lat, 0.99),
            (double)main_fwd / chunks_done, (double)draft_fwd / chunks_done, {}};
      std::string acc_s;
      for (int l = 0; l < L; l++) {
        r.accept.push_back(prop[l] ? (double)acc[l] / prop[l] : -1);
        if (l > 0 && mode != GW_DECODE_AR) {
          char buf[16];
          if (r.accept.back() < 0) std::snprintf(buf, sizeof buf, "    -");
          else std::snprintf(buf, sizeof buf, " %.2f", r.accept.back());
          acc_s += buf;
        }
      }
      std::printf("%-13s %5d %10.1f %9.3f %9.3f %9.2f %9.2f %s\n", r.mode.c_str(), b, r.chunks_per_s, r.p50_ms, r.p99_ms,
                  r.main_fwd, r.draft_fwd, acc_s.c_str());
      rows.push_back(r);
    }
  // The speed target, paired: ar and spec at batch 1 on the same observations, one after the other (the order
  // alternating between observations), so that drift in the machine's speed (clocks, other work) falls on
  // both alike. At least one pass over the set and 64 pairs. Speedup = mean ar latency / mean spec latency
  // (the ratio of chunks/s), with a 95% bootstrap interval over the observation pairs.
  struct Paired {
    int pairs = 0;
    double ar_p50 = 0, spec_p50 = 0, speedup = 0, lo = 0, hi = 0, median_ratio = 0;
  } pd;
  {
    std::vector<double> la, ls;
    for (int i = 0; i < 6; i++) {  // warm-up of both modes
      for (int mode : {(int)GW_DECODE_AR, (int)GW_DECODE_SPEC}) {
        const gw_decode_params_t prm = params(mode);
        std::memset(&res[0], 0, sizeof res[0]);
        res[0].chunk = chunks.data();
        gw_policy_decode(p, &obs[i % nobs], 1, &prm, res.data());
      }
    }
    for (int i = 0; i < std::max(nobs, 64); i++) {
      double us[2] = {0, 0};
      for (int k = 0; k < 2; k++) {
        const int mode = (k == i % 2) ? GW_DECODE_AR : GW_DECODE_SPEC;  // ar first on even observations
        const gw_decode_params_t prm = params(mode);
        std::memset(&res[0], 0, sizeof res[0]);
        res[0].chunk = chunks.data();
        auto t0 = std::chrono::steady_clock::now();
        rc = gw_policy_decode(p, &obs[i % nobs], 1, &prm, res.data());
        if (rc != GW_OK || res[0].status != GW_OK) {
          std::fprintf(stderr, "policy_bench: paired decode failed: %s (%s)\n", gw_strerror(rc), res[0].message);
          return 1;
        }
        us[mode == GW_DECODE_AR ? 0 : 1] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      }
      la.push_back(us[0] / 1000.0);
      ls.push_back(us[1] / 1000.0);
    }
    const int n = (int)la.size();
    auto ratio = [&](const std::vector<int> &idx) {
      double a = 0, b = 0;
      for (int i : idx) a += la[i], b += ls[i];
      return a / b;
    };
    std::vector<int> all(n), pick(n);
    std::vector<double> per(n), boot;
    for (int i = 0; i < n; i++) all[i] = i, per[i] = la[i] / ls[i];
    std::mt19937 rng(7);
    for (int r = 0; r < 2000; r++) {
      for (int i = 0; i < n; i++) pick[i] = (int)(rng() % (unsigned)n);
      boot.push_back(ratio(pick));
    }
    pd = Paired{n, s_pct(la, 0.5), s_pct(ls, 0.5), ratio(all), s_pct(boot, 0.025), s_pct(boot, 0.975), s_pct(per, 0.5)};
    std::printf("paired at batch 1 (ar and spec on the same %d observations, alternating order): ar p50 %.3f ms, spec "
                "p50 %.3f ms; spec speedup (mean ar / mean spec latency) %.3fx, 95%% interval %.3f-%.3fx; median "
                "per-observation ratio %.3fx\n",
                pd.pairs, pd.ar_p50, pd.spec_p50, pd.speedup, pd.lo, pd.hi, pd.median_ratio);
  }
  // Operators per chunk at batch 1, the whole gw_policy_decode call: the module calls (from the per-call
  // counts and the forwards each chunk needed) and the engine's own tensor work around them (the rest).
  struct OpsRow {
    std::string mode;
    double total, modules, engine;
  };
  std::vector<OpsRow> ops_rows;
  {
    std::printf("%-13s %14s %14s %14s   (top-level ATen operators per chunk at batch 1, mean over %d observations)\n",
                "mode", "operators", "in modules", "engine's own", nobs);
    for (int mode = 0; mode < 3; mode++) {
      const gw_decode_params_t prm = params(mode);
      long ops = 0, in_modules = 0;
      for (int i = 0; i < nobs; i++) {
        std::memset(&res[0], 0, sizeof res[0]);
        res[0].chunk = chunks.data();
        res[0].codes = codes.data();
        long mod_ops = 0;
        ops += s_count_ops([&] { rc = gw_policy_decode(p, &obs[i], 1, &prm, res.data()); }, nullptr, &mod_ops);
        in_modules += mod_ops;
        if (rc != GW_OK || res[0].status != GW_OK) {
          std::fprintf(stderr, "policy_bench: decode failed: %s (%s)\n", gw_strerror(rc), res[0].message);
          return 1;
        }
      }
      OpsRow o{gw_mode_name(mode), (double)ops / nobs, (double)in_modules / nobs, (double)(ops - in_modules) / nobs};
      std::printf("%-13s %14.1f %14.1f %14.1f\n", o.mode.c_str(), o.total, o.modules, o.engine);
      ops_rows.push_back(o);
    }
  }
  // Exactness: every observation decoded by ar and by spec in batches of 1 and of 16 (consecutive rows);
  // a row counts as differing when any of its L x G codes differ (equal codes give equal actions).
  int differ[2] = {0, 0}, checked = 0;
  long spec_main[2] = {0, 0};
  {
    std::vector<int32_t> ca((size_t)nobs * L * G), cs((size_t)nobs * L * G);
    const int bs[2] = {1, 16};
    for (int k = 0; k < 2; k++) {
      for (int mode : {(int)GW_DECODE_AR, (int)GW_DECODE_SPEC}) {
        const gw_decode_params_t prm = params(mode);
        std::vector<int32_t> &dst = mode == GW_DECODE_AR ? ca : cs;
        for (int s = 0; s < nobs; s += bs[k]) {
          const int b = std::min(bs[k], nobs - s);
          for (int i = 0; i < b; i++) {
            std::memset(&res[i], 0, sizeof res[i]);
            res[i].chunk = chunks.data() + (size_t)HA * i;
            res[i].codes = dst.data() + (size_t)(s + i) * L * G;
          }
          rc = gw_policy_decode(p, obs.data() + s, b, &prm, res.data());
          for (int i = 0; i < b; i++) {
            if (rc != GW_OK || res[i].status != GW_OK) {
              std::fprintf(stderr, "policy_bench: exactness decode failed: %s (%s)\n", gw_strerror(rc), res[i].message);
              return 1;
            }
            if (mode == GW_DECODE_SPEC) spec_main[k] += res[i].stats.main_forwards;
          }
        }
      }
      if (k == 0 && codes_out) {
        FILE *f = std::fopen(codes_out, "wb");
        if (!f || std::fwrite(ca.data(), sizeof(int32_t), ca.size(), f) != ca.size() || std::fclose(f) != 0) {
          std::fprintf(stderr, "policy_bench: cannot write %s\n", codes_out);
          return 1;
        }
      }
      for (int i = 0; i < nobs; i++)
        differ[k] += std::memcmp(ca.data() + (size_t)i * L * G, cs.data() + (size_t)i * L * G, sizeof(int32_t) * L * G) != 0;
    }
    checked = nobs;
    std::printf("exactness: spec codes differ from ar codes in %d of %d observations at batch 1, %d of %d at batch 16\n",
                differ[0], checked, differ[1], checked);
    std::printf("spec main forwards per chunk over all %d observations: %.3f at batch 1, %.3f at batch 16 (ar: %d)\n",
                nobs, (double)spec_main[0] / nobs, (double)spec_main[1] / nobs, L);
  }
  if (json) {
    FILE *f = std::fopen(json, "w");
    if (!f) {
      std::fprintf(stderr, "policy_bench: cannot write %s\n", json);
      return 1;
    }
    std::fprintf(f, "{\"package\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, "
                    "\"gamma\": %d, \"width\": %d, "
                    "\"observations\": \"%s\", "
                    "\"spec_ne_ar\": {\"observations\": %d, \"batch_1\": %d, \"batch_16\": %d}, "
                    "\"spec_main_forwards_per_chunk_all\": {\"batch_1\": %.4f, \"batch_16\": %.4f},\n",
                 m->name, device, gw_dtype_name(dtype), threads, gamma ? gamma : m->decoding.gamma,
                 width ? width : m->decoding.width,
                 obs_dir ? obs_dir : "random", checked, differ[0], differ[1], (double)spec_main[0] / nobs,
                 (double)spec_main[1] / nobs);
    std::fprintf(f, "  \"paired_batch_1\": {\"pairs\": %d, \"ar_p50_ms\": %.4f, \"spec_p50_ms\": %.4f, \"speedup\": %.4f, "
                    "\"speedup_ci95\": [%.4f, %.4f], \"median_ratio\": %.4f},\n",
                 pd.pairs, pd.ar_p50, pd.spec_p50, pd.speedup, pd.lo, pd.hi, pd.median_ratio);
    std::fprintf(f, "  \"calls_us\": [");
    for (size_t i = 0; i < calls.size(); i++)
      std::fprintf(f, "%s{\"call\": \"%s\", \"batch\": %d, \"us\": %.1f, \"operators\": %ld, \"casts\": %ld}",
                   i ? ", " : "", calls[i].call.c_str(), calls[i].batch, calls[i].us, calls[i].ops, calls[i].casts);
    std::fprintf(f, "],\n  \"operators_per_chunk_batch_1\": [");
    for (size_t i = 0; i < ops_rows.size(); i++)
      std::fprintf(f, "%s{\"mode\": \"%s\", \"total\": %.1f, \"modules\": %.1f, \"engine\": %.1f}", i ? ", " : "",
                   ops_rows[i].mode.c_str(), ops_rows[i].total, ops_rows[i].modules, ops_rows[i].engine);
    std::fprintf(f, "],\n \"results\": [\n");
    for (size_t i = 0; i < rows.size(); i++) {
      const Row &r = rows[i];
      std::fprintf(f, "  {\"mode\": \"%s\", \"batch\": %d, \"chunks_per_s\": %.2f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, "
                      "\"main_forwards_per_chunk\": %.3f, \"draft_forwards_per_chunk\": %.3f, \"acceptance_per_layer\": [",
                   r.mode.c_str(), r.batch, r.chunks_per_s, r.p50_ms, r.p99_ms, r.main_fwd, r.draft_fwd);
      for (size_t l = 0; l < r.accept.size(); l++)
        r.accept[l] < 0 ? std::fprintf(f, "%snull", l ? ", " : "") : std::fprintf(f, "%s%.4f", l ? ", " : "", r.accept[l]);
      std::fprintf(f, "]}%s\n", i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  gw_policy_destroy(&p);
  return 0;
}
