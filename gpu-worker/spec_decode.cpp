// spec_decode.cpp: the decoding engine. Given a batch of observations as tensors it runs main.prefill,
// then decodes the RFSQ layers in one of three modes, then tokenizer.decode and the unnormalization:
//
//   ar            one main.step per layer; all rows advance together.
//   spec          per round: draft.propose(gamma) -> one main.verify over the proposed layers ->
//                 per row, accept the longest prefix of layers equal to main's argmax, then take main's
//                 layer at the first mismatch (or the bonus layer after a full accept). With width W > 1,
//                 draft.propose_paths gives W paths per row, verified as W rows of the same forward; the
//                 row keeps the path with the longest accepted prefix (its codes are still main's argmax).
//   spec-relaxed  as spec, but a layer is accepted when every code is within radii[l] levels of main's
//                 argmax, and the draft's codes are kept.
//
// Rows keep their own position (layers decided so far); a round runs only the rows that are still
// decoding, selected out of the batch tensors, so rows at different layers share one forward. Codes and
// positions live on the CPU (they are small and the accept loop reads them); model tensors stay on the
// policy's device. Main's logits come to the CPU in one copy per forward, where the argmax and the
// finiteness check run in a loop: at batch 1 on a GPU every tensor operator costs about as much as the
// arithmetic of a layer (docs/benchmarks.md), so the engine spends as few as it can around the module
// calls (policy_bench counts them). A row whose outputs contain NaN/Inf stops and fails alone. It does
// not own loading or validation of the package (policy.cpp) nor batching in time (the batcher).
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "policy_impl.hpp"

using gw::Error;

namespace {

double s_us_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<at::Tensor> s_call(torch::jit::Module &mod, const char *method, std::vector<c10::IValue> args,
                               size_t n_out, const char *what) {
  c10::IValue v = mod.get_method(method)(std::move(args));
  std::vector<at::Tensor> out;
  if (n_out == 1) {
    if (!v.isTensor()) throw Error(GW_ESHAPE, std::string(what) + ": expected a tensor");
    out.push_back(v.toTensor());
    return out;
  }
  if (!v.isTuple() || v.toTupleRef().elements().size() != n_out)
    throw Error(GW_ESHAPE, std::string(what) + ": expected a tuple of " + std::to_string(n_out) + " tensors");
  for (const auto &e : v.toTupleRef().elements()) {
    if (!e.isTensor()) throw Error(GW_ESHAPE, std::string(what) + ": tuple item is not a tensor");
    out.push_back(e.toTensor());
  }
  return out;
}

// The row indices v as a tensor on dev, made without an operator on the CPU (from_blob: valid while v lives).
at::Tensor s_index(const std::vector<int64_t> &v, const at::Device &dev) {
  at::Tensor t = at::from_blob(const_cast<int64_t *>(v.data()), {(int64_t)v.size()}, at::kLong);
  return dev.is_cpu() ? t : t.to(dev);
}

// Whether each vector of t is finite, a vector being `inner` consecutive values in memory order (t [b, D] with
// inner D: one flag per row). Read on the CPU in one copy, as the logits below: at batch 1 on a GPU,
// isfinite, all and their copy would cost three operators where the copy costs one.
std::vector<uint8_t> s_finite_vectors(const at::Tensor &t, int64_t inner) {
  at::Tensor c = t.to(at::kCPU, at::kFloat);
  if (!c.is_contiguous()) c = c.contiguous();
  const int64_t n = inner ? c.numel() / inner : 0;
  const float *x = c.data_ptr<float>();
  std::vector<uint8_t> out(n, 1);
  for (int64_t v = 0; v < n; v++)
    for (int64_t k = 0; k < inner; k++)
      if (!std::isfinite(x[v * inner + k])) {
        out[v] = 0;
        break;
      }
  return out;
}

// Main's logits ([n, G, K] or [n, P, G, K]: P layers per row) read on the CPU in one copy: for row r and
// layer j (k = r * P + j), codes[k * G + g] is group g's argmax over the K levels (the first maximum, as
// at::argmax) and finite[k] says whether all of (r, j)'s values are finite. The engine's own tensor
// operators cost about as much as a model's on a GPU at batch 1 (docs/benchmarks.md), so isfinite, all,
// argmax and their two copies become this one copy and a loop.
struct Logits {
  std::vector<int64_t> codes;
  std::vector<uint8_t> finite;
};

Logits s_read_logits(const at::Tensor &logits) {
  at::Tensor l = logits.to(at::kCPU, at::kFloat);  // one copy, also from a lower precision
  if (!l.is_contiguous()) l = l.contiguous();
  const int64_t K = l.size(-1), G = l.size(-2), cells = K ? l.numel() / K : 0;
  const float *x = l.data_ptr<float>();
  Logits out;
  out.codes.resize(cells);
  out.finite.assign(G ? cells / G : 0, 1);
  for (int64_t c = 0; c < cells; c++, x += K) {
    int64_t best = 0;
    bool fin = true;
    for (int64_t k = 0; k < K; k++) {
      fin = fin && std::isfinite(x[k]);
      if (x[k] > x[best]) best = k;
    }
    out.codes[c] = best;
    if (!fin) out.finite[c / G] = 0;
  }
  return out;
}

// The decoding state of a batch.
struct Run {
  gw_policy_t &p;
  const gw::Batch &b;
  gw_result_t *res;
  int64_t B, L, G, K, D;
  at::Tensor state;            // main's per-row state, on device
  at::Tensor hidden;           // main's hidden at each row's last decided layer, on device: row k is for
  std::vector<int64_t> hrows;  //   batch row hrows[k] (the rows a spec round updated; rows only ever leave)
  at::Tensor codes;            // [B, L, G] int64 on CPU: decided layers (and nothing beyond pos)
  std::vector<int64_t> pos;    // layers decided per row, 0..L
  std::vector<bool> alive;     // false once the row failed

  Run(gw_policy_t &p_, const gw::Batch &b_, gw_result_t *r)
      : p(p_), b(b_), res(r), B((int64_t)b_.out.size()), L(p_.m.layers), G(p_.m.groups), K(p_.m.levels),
        D(p_.m.hidden_dim), pos(B, 0), alive(B, true) {}

  gw_result_t &row(int64_t i) { return res[b.out[i]]; }

  void fail_row(int64_t i, int code, const std::string &why) {
    if (!alive[i]) return;
    alive[i] = false;
    row(i).status = code;
    std::snprintf(row(i).message, sizeof row(i).message, "%s", why.c_str());
  }

  // Rows still decoding.
  std::vector<int64_t> active() const {
    std::vector<int64_t> a;
    for (int64_t i = 0; i < B; i++)
      if (alive[i] && pos[i] < L) a.push_back(i);
    return a;
  }

  at::Tensor select(const at::Tensor &t, const std::vector<int64_t> &act) const {
    if ((int64_t)act.size() == t.size(0)) return t;
    return t.index_select(0, s_index(act, t.device()));
  }

  // main's hidden for the rows act (each of them in hrows).
  at::Tensor hidden_of(const std::vector<int64_t> &act) const {
    if (act == hrows) return hidden;
    std::vector<int64_t> where(B, -1), k;
    for (size_t j = 0; j < hrows.size(); j++) where[hrows[j]] = (int64_t)j;
    for (int64_t i : act) {
      if (where[i] < 0) throw Error(GW_EINTERNAL, "decoding engine: no hidden state for batch row " + std::to_string(i));
      k.push_back(where[i]);
    }
    return hidden.index_select(0, s_index(k, hidden.device()));
  }

  void prefill() {
    auto out = s_call(p.main, "prefill", {b.images, b.proprio, b.instr}, 3, "main.prefill");
    if (out[0].dim() < 1 || out[0].size(0) != B)
      throw Error(GW_ESHAPE, "main.prefill state: shape " + gw::shape_str(out[0].sizes()) + ", expected [" +
                                 std::to_string(B) + ", ...]");
    gw::expect_float(p, out[1], {B, G, K}, "main.prefill logits0");
    gw::expect_float(p, out[2], {B, D}, "main.prefill hidden");
    state = out[0];
    hidden = out[2];
    hrows.resize(B);
    for (int64_t i = 0; i < B; i++) hrows[i] = i;
    Logits l0 = s_read_logits(out[1]);
    std::vector<uint8_t> f2 = s_finite_vectors(out[2], D);
    codes = at::zeros({B, L, G}, at::kLong);
    auto C = codes.accessor<int64_t, 3>();
    for (int64_t i = 0; i < B; i++) {
      for (int64_t g = 0; g < G; g++) C[i][0][g] = l0.codes[i * G + g];
      row(i).stats.main_forwards = 1;
      if (!l0.finite[i] || !f2[i]) fail_row(i, GW_ENONFINITE, "main.prefill returned NaN or Inf for this request");
      pos[i] = 1;
    }
  }

  void ar_round(const std::vector<int64_t> &act) {
    int64_t n = (int64_t)act.size();
    std::vector<int64_t> pv(n);
    for (int64_t r = 0; r < n; r++) pv[r] = pos[act[r]];
    auto out = s_call(p.main, "step", {select(state, act), select(codes, act).to(p.device), s_index(pv, p.device)}, 2,
                      "main.step");
    gw::expect_float(p, out[0], {n, G, K}, "main.step logits");
    gw::expect_float(p, out[1], {n, D}, "main.step hidden");
    Logits lg = s_read_logits(out[0]);
    auto C = codes.accessor<int64_t, 3>();
    for (int64_t r = 0; r < n; r++) {
      int64_t i = act[r];
      row(i).stats.main_forwards++;
      if (!lg.finite[r]) {
        fail_row(i, GW_ENONFINITE, "main.step returned NaN or Inf at layer " + std::to_string(pos[i]));
        continue;
      }
      for (int64_t g = 0; g < G; g++) C[i][pos[i]][g] = lg.codes[r * G + g];
      pos[i]++;
    }
  }

  void spec_round(const std::vector<int64_t> &act, const gw_decode_params_t &prm) {
    const bool relaxed = prm.mode == GW_DECODE_SPEC_RELAXED;
    const int64_t W = std::max(1, prm.width);  // draft paths per row; each is one row of the verify batch
    int64_t n = (int64_t)act.size(), left = 0;
    std::vector<int64_t> pv(n);
    for (int64_t r = 0; r < n; r++) {
      pv[r] = pos[act[r]];
      left = std::max(left, L - pos[act[r]]);
    }
    at::Tensor psd = s_index(pv, p.device);
    const int64_t gamma = std::min<int64_t>(prm.gamma, left);  // layers worth proposing in this round
    const int64_t nv = std::min<int64_t>(gamma, left - 1);       // verify logits for pos .. pos+nv
    at::Tensor cd = select(codes, act);
    if (cd.data_ptr() == codes.data_ptr()) cd = cd.clone();

    // Draft: gamma layers per row (and path) from main's hidden state at the last decided layer.
    at::Tensor prop;
    if (W == 1) {
      prop = s_call(p.draft, "propose", {hidden_of(act), cd.to(p.device), psd, gamma}, 1, "draft.propose")[0];
      gw::expect_tensor(prop, {n, gamma, G}, at::kLong, p.device, "draft.propose codes");
    } else {
      prop = s_call(p.draft, "propose_paths", {hidden_of(act), cd.to(p.device), psd, gamma, W}, 1,
                    "draft.propose_paths")[0];
      gw::expect_tensor(prop, {n, W, gamma, G}, at::kLong, p.device, "draft.propose_paths codes");
    }
    prop = prop.to(at::kCPU);  // [n, W, gamma, G] in memory order (W = 1: [n, gamma, G])
    if (!prop.is_contiguous()) prop = prop.contiguous();
    const int64_t *pd = prop.data_ptr<int64_t>();
    auto P = [&](int64_t r, int64_t w, int64_t j, int64_t g) { return pd[((r * W + w) * gamma + j) * G + g]; };
    // Verify rows: row r's path w is row r * W + w, its decided layers then that path's proposals.
    at::Tensor cdw = W == 1 ? cd : cd.repeat_interleave(W, 0);
    auto CD = cdw.accessor<int64_t, 3>();
    std::vector<int64_t> m(n);
    for (int64_t r = 0; r < n; r++) {
      int64_t i = act[r];
      row(i).stats.draft_forwards++;
      m[r] = std::min<int64_t>(gamma, L - pos[i]);
      for (int64_t w = 0; w < W && alive[i]; w++)
        for (int64_t j = 0; j < m[r] && alive[i]; j++)
          for (int64_t g = 0; g < G; g++) {
            int64_t c = P(r, w, j, g);
            if (c < 0 || c >= K) {
              fail_row(i, GW_ESHAPE, std::string(W == 1 ? "draft.propose" : "draft.propose_paths") +
                                         " returned code " + std::to_string(c) + " outside [0, " +
                                         std::to_string(K) + ") at layer " + std::to_string(pos[i] + j));
              break;
            }
            CD[r * W + w][pos[i] + j][g] = c;
          }
    }

    // One main forward verifies every proposed layer of every row and path.
    at::Tensor st = select(state, act), pw = psd;
    if (W > 1) {
      st = st.repeat_interleave(W, 0);
      pw = psd.repeat_interleave(W, 0);
    }
    const int64_t nw = n * W;
    auto out = s_call(p.main, "verify", {st, cdw.to(p.device), pw, nv}, 2, "main.verify");
    gw::expect_float(p, out[0], {nw, nv + 1, G, K}, "main.verify logits");
    gw::expect_float(p, out[1], {nw, nv + 1, D}, "main.verify hidden");
    Logits lg = s_read_logits(out[0]);  // layer j of verify row rw: k = rw * (nv + 1) + j
    std::vector<uint8_t> hf = s_finite_vectors(out[1], D);  // verify row rw, layer j: rw * (nv + 1) + j
    auto F = [&](int64_t rw, int64_t j) { return lg.finite[rw * (nv + 1) + j] && hf[rw * (nv + 1) + j]; };
    auto A = [&](int64_t rw, int64_t j, int64_t g) { return lg.codes[(rw * (nv + 1) + j) * G + g]; };
    auto C = codes.accessor<int64_t, 3>();
    std::vector<int64_t> upd_rows, upd_from;  // hidden[upd_rows[k]] = verify hidden[upd_from[k] / (nv+1), % (nv+1)]
    for (int64_t r = 0; r < n; r++) {
      int64_t i = act[r];
      if (!alive[i]) continue;
      row(i).stats.main_forwards++;
      const int64_t p0 = pos[i], used = std::min<int64_t>(nv, L - 1 - p0);  // verify positions of this row
      bool finite = true;
      for (int64_t w = 0; w < W; w++)
        for (int64_t j = 0; j <= used; j++) finite = finite && F(r * W + w, j);
      if (!finite) {
        fail_row(i, GW_ENONFINITE, "main.verify returned NaN or Inf for layers " + std::to_string(p0) + ".." +
                                       std::to_string(p0 + used));
        continue;
      }
      // Each path: the longest prefix of its layers that main accepts, against main's argmax on that path's
      // own row; the row keeps the path with the longest prefix (the first such path on a tie).
      int64_t k = -1, best = 0;
      for (int64_t w = 0; w < W; w++) {
        const int64_t rw = r * W + w;
        int64_t kw = 0;
        for (; kw < m[r]; kw++) {
          bool ok = true;
          for (int64_t g = 0; g < G && ok; g++) {
            int64_t d = P(r, w, kw, g) - A(rw, kw, g);
            ok = relaxed ? std::abs(d) <= prm.radii[p0 + kw] : d == 0;
          }
          if (!ok) break;
        }
        if (kw > k) k = kw, best = w;
      }
      const int64_t rb = r * W + best;
      gw_stats_t &s = row(i).stats;
      for (int64_t j = 0; j < m[r]; j++) s.layers_proposed[p0 + j]++;
      for (int64_t j = 0; j < k; j++) {
        s.layers_accepted[p0 + j]++;
        for (int64_t g = 0; g < G; g++) C[i][p0 + j][g] = P(r, best, j, g);  // spec: equal to main's argmax
      }
      if (p0 + k < L) {  // main's layer at the first mismatch, or the bonus layer after a full accept
        for (int64_t g = 0; g < G; g++) C[i][p0 + k][g] = A(rb, k, g);
        upd_rows.push_back(i);
        upd_from.push_back(rb * (nv + 1) + k);
        pos[i] = p0 + k + 1;
      } else {
        pos[i] = L;
      }
    }
    if (!upd_rows.empty()) {
      // Every verify row goes on from the same layer k (always so at batch 1): a view of that layer, without
      // the index copy to the device and the gather.
      const int64_t k0 = upd_from[0] % (nv + 1);
      bool same = nw == (int64_t)upd_rows.size();
      for (size_t r = 0; r < upd_from.size() && same; r++) same = upd_from[r] == (int64_t)r * (nv + 1) + k0;
      hidden = same ? out[1].select(1, k0)
                    : out[1].reshape({nw * (nv + 1), D}).index_select(0, s_index(upd_from, p.device));
    }
    hrows = upd_rows;
  }

  // tokenizer.decode for the finished rows, then unnormalization into the caller's buffers.
  void finish() {
    std::vector<int64_t> done;
    for (int64_t i = 0; i < B; i++)
      if (alive[i] && pos[i] == L) done.push_back(i);
    if (done.empty()) return;
    const int64_t n = (int64_t)done.size(), H = p.m.chunk_horizon, Ad = p.m.action_dim;
    at::Tensor cd = select(codes, done);
    at::Tensor chunk = s_call(p.tokenizer, "decode", {cd.to(p.device)}, 1, "tokenizer.decode")[0];
    gw::expect_tensor(chunk, {n, H, Ad}, at::kFloat, p.device, "tokenizer.decode chunk");
    chunk = chunk.to(at::kCPU);
    if (!chunk.is_contiguous()) chunk = chunk.contiguous();
    auto X = chunk.accessor<float, 3>();
    std::vector<bool> fin(n, true);
    for (int64_t r = 0; r < n; r++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t a = 0; a < Ad; a++) fin[r] = fin[r] && std::isfinite(X[r][h][a]);
    auto C = cd.accessor<int64_t, 3>();
    for (int64_t r = 0; r < n; r++) {
      int64_t i = done[r];
      if (!fin[r]) {
        fail_row(i, GW_ENONFINITE, "tokenizer.decode returned NaN or Inf for this request");
        continue;
      }
      gw_result_t &out = row(i);
      if (out.codes)
        for (int64_t l = 0; l < L; l++)
          for (int64_t g = 0; g < G; g++) out.codes[l * G + g] = (int32_t)C[r][l][g];
      for (int64_t h = 0; h < H; h++)
        for (int64_t a = 0; a < Ad; a++) {
          float x = X[r][h][a];
          if (out.chunk_norm) out.chunk_norm[h * Ad + a] = x;
          // Normalized units are [-1, 1]; clip, then map onto [q01, q99] (docs/model-package.md).
          float xc = std::min(1.0f, std::max(-1.0f, x)), y;
          if (a == p.m.gripper_index)
            y = xc > 0.0f ? 1.0f : -1.0f;  // +1 close, -1 open
          else if (p.mask[a])
            y = 0.5f * (xc + 1.0f) * (p.q99[a] - p.q01[a]) + p.q01[a];
          else
            y = x;
          out.chunk[h * Ad + a] = y;
        }
    }
  }
};

}  // namespace

void gw::decode_batch(gw_policy_t &p, const Batch &b, const gw_decode_params_t &prm, gw_result_t *results) {
  auto t0 = std::chrono::steady_clock::now();
  Run run(p, b, results);
  double prefill_us;
  auto t1 = t0;
  {
    gw::Precision precision(p);  // main and draft at the policy's precision; the tokenizer after, in float32
    run.prefill();
    prefill_us = s_us_since(t0);
    t1 = std::chrono::steady_clock::now();
    for (std::vector<int64_t> act = run.active(); !act.empty(); act = run.active()) {
      if (prm.mode == GW_DECODE_AR)
        run.ar_round(act);
      else
        run.spec_round(act, prm);
    }
  }
  run.finish();
  double decode_us = s_us_since(t1);
  for (int64_t i = 0; i < run.B; i++) {
    run.row(i).stats.prefill_us = prefill_us;
    run.row(i).stats.decode_us = decode_us;
  }
}

at::Tensor gw::main_argmax(gw_policy_t &p, const Batch &b, const at::Tensor &codes, std::vector<bool> &row_ok) {
  const int64_t B = (int64_t)b.out.size(), L = p.m.layers, G = p.m.groups, K = p.m.levels;
  gw::Precision precision(p);
  auto pre = s_call(p.main, "prefill", {b.images, b.proprio, b.instr}, 3, "main.prefill");
  gw::expect_float(p, pre[1], {B, G, K}, "main.prefill logits0");
  auto out = s_call(p.main, "verify", {pre[0], codes, at::zeros({B}, at::dtype(at::kLong).device(p.device)), L - 1},
                    2, "main.verify");
  gw::expect_float(p, out[0], {B, L, G, K}, "main.verify logits");
  std::vector<uint8_t> fin = s_finite_vectors(out[0], L * G * K);
  row_ok.assign(fin.begin(), fin.end());
  return out[0].to(at::kFloat).argmax(-1);  // the engine's argmax: over float32 values, first maximum
}
