"""evaluate.py: offline metrics of an exported package on held-out demonstration observations.

Owns the offline decoding check. It loads the package's TorchScript files the way the worker runs them (graph
optimizer off) and replays the engine's rules (docs/model-package.md "Decoding", gpu-worker/spec_decode.cpp):
`ar` (prefill, then one `step` per layer for the whole batch) and `spec` for several gammas (per round one
`propose` and one `verify` over the rows still decoding, longest matching prefix, main's layer at the first
mismatch or the bonus layer). Reports acceptance per layer, main and draft forwards per chunk, how often a
row's spec codes differ from its ar codes, and the action error of ar's chunks against the expert's.

Usage: python train/evaluate.py PACKAGE_DIR DEMO_FILE... [--trials 19,29,39] [--json OUT]
Not here: training; the C++ engine itself (policy_bench measures that one, on random observations).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rsd_model as rm  # noqa: E402


def _images128(data: dict, idx: np.ndarray) -> torch.Tensor:
    """The samples' 64 px sums back to 128 px uint8 (each 2x2 block replaced by its mean: the model pools 2x2
    first, so its input is the same up to rounding)."""
    x = np.round(data["images"][idx].astype(np.float32) / 4.0).astype(np.uint8)   # [B, C, 64, 64, 3]
    x = x.repeat(2, 2).repeat(2, 3)
    return torch.from_numpy(x)


@torch.no_grad()
def decode_ar(main, images, proprio, instr, L):
    state, lg0, _ = main.prefill(images, proprio, instr)
    b = images.shape[0]
    codes = torch.zeros(b, L, lg0.shape[1], dtype=torch.int64)
    codes[:, 0] = lg0.argmax(-1)
    for l in range(1, L):
        lg, _ = main.step(state, codes, torch.full((b,), l, dtype=torch.int64))
        codes[:, l] = lg.argmax(-1)
    return codes


@torch.no_grad()
def decode_spec(main, draft, images, proprio, instr, L, gamma):
    state, lg0, hidden = main.prefill(images, proprio, instr)
    b, G = images.shape[0], lg0.shape[1]
    codes = torch.zeros(b, L, G, dtype=torch.int64)
    codes[:, 0] = lg0.argmax(-1)
    pos = [1] * b
    proposed, accepted = np.zeros(L), np.zeros(L)
    main_fwd, draft_fwd = np.ones(b), np.zeros(b)
    while True:
        act = [i for i in range(b) if pos[i] < L]
        if not act:
            break
        left = max(L - pos[i] for i in act)
        g = min(gamma, left)
        nv = min(g, left - 1)
        ai = torch.tensor(act)
        ps = torch.tensor([pos[i] for i in act])
        cd = codes.index_select(0, ai).clone()
        prop = draft.propose(hidden.index_select(0, ai), cd, ps, g)
        m = [min(g, L - pos[i]) for i in act]
        for r, i in enumerate(act):
            cd[r, pos[i]:pos[i] + m[r]] = prop[r, :m[r]]
        lg, hv = main.verify(state.index_select(0, ai), cd, ps, nv)
        am = lg.argmax(-1)
        for r, i in enumerate(act):
            draft_fwd[i] += 1
            main_fwd[i] += 1
            p0 = pos[i]
            k = 0
            while k < m[r] and torch.equal(prop[r, k], am[r, k]):
                k += 1
            proposed[p0:p0 + m[r]] += 1
            accepted[p0:p0 + k] += 1
            codes[i, p0:p0 + k] = prop[r, :k]
            if p0 + k < L:
                codes[i, p0 + k] = am[r, k]
                hidden[i] = hv[r, k]
                pos[i] = p0 + k + 1
            else:
                pos[i] = L
    return codes, proposed, accepted, main_fwd, draft_fwd


def evaluate(pkg: str, data: dict, idx: np.ndarray, stats: dict, gammas, bs: int = 16) -> dict:
    torch._C._jit_set_profiling_executor(False)
    torch._C._set_graph_executor_optimize(False)
    main = torch.jit.load(os.path.join(pkg, "main.pt"))
    draft = torch.jit.load(os.path.join(pkg, "draft.pt"))
    tok = torch.jit.load(os.path.join(pkg, "tokenizer.pt"))
    with open(os.path.join(pkg, "manifest.json")) as f:
        L = json.load(f)["rfsq"]["layers"]
    import fit_tokenizer as ft
    ar_all = []
    res = {"samples": int(len(idx)), "batch": bs, "spec": {}}
    for s in range(0, len(idx), bs):
        j = idx[s:s + bs]
        ar_all.append(decode_ar(main, _images128(data, j), torch.from_numpy(data["proprio"][j]),
                                torch.from_numpy(data["instr"][j]), L))
    ar = torch.cat(ar_all)
    with torch.no_grad():
        chunk = tok.decode(ar).numpy()
    raw = data["chunk"][idx]
    pred = ft.unnormalize(chunk, stats)
    arm = [a for a in range(rm.A) if a != rm.GRIPPER]
    q01, q99 = np.asarray(stats["q01"]), np.asarray(stats["q99"])
    res["ar_actions_finite"] = bool(np.isfinite(chunk).all())
    res["ar_actions_in_range"] = bool(((pred[..., arm] >= q01[arm] - 1e-6) & (pred[..., arm] <= q99[arm] + 1e-6)).all()
                                      and np.isin(pred[..., rm.GRIPPER], [-1.0, 1.0]).all())
    res["ar_action_mae_raw"] = round(float(np.abs(pred[..., arm] - raw[..., arm]).mean()), 4)
    res["ar_action_mae_raw_first_step"] = round(float(np.abs(pred[:, 0, arm] - raw[:, 0, arm]).mean()), 4)
    res["ar_gripper_sign_acc"] = round(float(((pred[..., rm.GRIPPER] > 0) == (raw[..., rm.GRIPPER] > 0)).mean()), 4)
    for gamma in gammas:
        P, Acc = np.zeros(L), np.zeros(L)
        mf, df, diff = [], [], 0
        for s in range(0, len(idx), bs):
            j = idx[s:s + bs]
            codes, p, a, m, d = decode_spec(main, draft, _images128(data, j), torch.from_numpy(data["proprio"][j]),
                                            torch.from_numpy(data["instr"][j]), L, gamma)
            P += p
            Acc += a
            mf.extend(m.tolist())
            df.extend(d.tolist())
            diff += int((codes != ar[s:s + bs]).any(2).any(1).sum())
        res["spec"][str(gamma)] = {
            "acceptance_per_layer": [round(float(Acc[l] / P[l]), 4) if P[l] else None for l in range(1, L)],
            "main_forwards_per_chunk": round(float(np.mean(mf)), 3),
            "draft_forwards_per_chunk": round(float(np.mean(df)), 3),
            "main_forwards_ratio_vs_ar": round(float(np.mean(mf)) / L, 3),
            "spec_ne_ar_rows": diff, "spec_ne_ar_rate": round(diff / len(idx), 5)}
    return res


def main():
    ap = argparse.ArgumentParser(description="offline metrics of a package on held-out demonstrations")
    ap.add_argument("package")
    ap.add_argument("demos", nargs="+")
    ap.add_argument("--trials", default="19,29,39,49")
    ap.add_argument("--gammas", default="2,3,4,5,6,7")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    import rsd_data
    data, _ = rsd_data.load(args.demos)
    trials = [int(t) for t in args.trials.split(",")]
    idx = np.nonzero(np.isin(data["trial"], trials))[0]
    with open(os.path.join(args.package, "manifest.json")) as f:
        stats = json.load(f)["action_stats"]["libero_spatial"]
    res = evaluate(args.package, data, idx, stats, [int(g) for g in args.gammas.split(",")])
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
