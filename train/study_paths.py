"""study_paths.py: an offline study of speculative decoding with several draft paths per round.

Question it answers: how many main forwards per chunk would `spec` need if, each round, the draft proposed
W candidates for the first layer (its W most likely joint code combinations, each continued greedily for the
other gamma - 1 layers) and one main forward verified all W paths as W rows, keeping the path with the longest
accepted prefix? Accepted codes still equal main's argmax, so the result stays equal to `ar`; the script checks
that too. On a GPU the extra rows of a small batch cost little; the engine (gpu-worker/spec_decode.cpp) does
not implement this: W = 1 here is exactly its `spec`.

Usage: python train/study_paths.py PACKAGE DEMO_FILE... [--trials 19,29] [--stride 3] [--widths 1,4,16,64]
           [--gammas 3,6]
It reads the draft's weights into train/rsd_model.Draft (the reference package's draft architecture) to get
its per-code distributions. Not here: the engine, the offline metrics of the shipped decoding (evaluate.py).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate as ev  # noqa: E402
import rsd_data  # noqa: E402
import rsd_model as rm  # noqa: E402


def load_draft(pkg: str, m: dict) -> rm.Draft:
    sd = torch.jit.load(os.path.join(pkg, "draft.pt")).state_dict()
    L, G, K = m["rfsq"]["layers"], m["rfsq"]["groups"], m["rfsq"]["levels"]
    D = sd["mem_kv.weight"].shape[1]
    d = rm.Draft(L, G, K, D, (m["hidden_dim"] - D) // D, Dd=sd["init.weight"].shape[0])
    d.load_state_dict(sd)
    return d.eval()


def paths(dr: rm.Draft, hidden, prev, pos: int, gamma: int, width: int) -> torch.Tensor:
    """One row: main's hidden [H], the codes of layer pos-1 [G] -> [W, gamma, G] candidate paths (path 0 greedy)."""
    G, K, L = dr.G, dr.K, dr.L
    hidden, prev, p = hidden[None], prev[None], torch.tensor([pos])
    kv = dr.mem_kv(hidden[:, dr.D:].reshape(1, dr.S, dr.D))
    h = torch.tanh(dr.init(hidden[:, :dr.D]))
    h = dr.cell(dr._emb((p - 1).clamp(0, L - 1), prev) + dr.layer_emb(p.clamp(0, L - 1)), h)
    h = h + dr.att(dr.norm(h).unsqueeze(1), kv, dr.no_mask)[:, 0]
    lp = torch.log_softmax(dr.head(h).view(G, K), -1)
    score, cand = torch.zeros(1), torch.zeros(1, 0, dtype=torch.long)   # beam over the G codes
    for g in range(G):
        s = (score[:, None] + lp[g][None]).reshape(-1)
        top = s.topk(min(width, s.numel())).indices
        cand, score = torch.cat([cand[top // K], (top % K)[:, None]], 1), s[top]
    w = cand.shape[0]
    out, hh, kvv, prv = [cand], h.expand(w, -1).contiguous(), kv.expand(w, -1, -1), cand
    for j in range(1, gamma):
        lprev, lnext = (p - 1 + j).clamp(0, L - 1).expand(w), (p + j).clamp(0, L - 1).expand(w)
        hh = dr.cell(dr._emb(lprev, prv) + dr.layer_emb(lnext), hh)
        hh = hh + dr.att(dr.norm(hh).unsqueeze(1), kvv, dr.no_mask)[:, 0]
        prv = dr.head(hh).view(w, G, K).argmax(2)
        out.append(prv)
    return torch.stack(out, 1)


@torch.no_grad()
def study(main, dr, data, idx, L, width, gamma):
    fwd, same = [], 0
    for s in range(0, len(idx), 16):
        j = idx[s:s + 16]
        im, pr = ev._images128(data, j), torch.from_numpy(data["proprio"][j])
        ins = torch.from_numpy(data["instr"][j])
        ar = ev.decode_ar(main, im, pr, ins, L)
        state, lg0, hid = main.prefill(im, pr, ins)
        for r in range(len(j)):
            codes = torch.zeros(L, lg0.shape[1], dtype=torch.long)
            codes[0] = lg0[r].argmax(-1)
            h, pos, f = hid[r], 1, 1
            while pos < L:
                g, nv = min(gamma, L - pos), min(gamma, L - pos - 1)
                P = paths(dr, h, codes[pos - 1], pos, g, width)
                w = P.shape[0]
                cd = codes[None].repeat(w, 1, 1)
                cd[:, pos:pos + g] = P
                lg, hv = main.verify(state[r:r + 1].expand(w, *state.shape[1:]).contiguous(), cd,
                                     torch.full((w,), pos), nv)
                am = lg.argmax(-1)
                best, bk = 0, -1
                for q in range(w):
                    k = 0
                    while k < g and torch.equal(P[q, k], am[q, k]):
                        k += 1
                    if k > bk:
                        best, bk = q, k
                codes[pos:pos + bk] = P[best, :bk]
                if pos + bk < L:
                    codes[pos + bk], h, pos = am[best, bk], hv[best, bk], pos + bk + 1
                else:
                    pos = L
                f += 1
            fwd.append(f)
            same += int(torch.equal(codes, ar[r]))
    return float(np.mean(fwd)), same, len(fwd)


def main():
    ap = argparse.ArgumentParser(description="offline study: spec with W draft paths per round")
    ap.add_argument("package")
    ap.add_argument("demos", nargs="+")
    ap.add_argument("--trials", default="19,29")
    ap.add_argument("--stride", type=int, default=3, help="every n-th held-out sample")
    ap.add_argument("--widths", default="1,4,16,64")
    ap.add_argument("--gammas", default="3,6")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch._C._jit_set_profiling_executor(False)
    torch._C._set_graph_executor_optimize(False)
    with open(os.path.join(args.package, "manifest.json")) as f:
        m = json.load(f)
    main_mod = torch.jit.load(os.path.join(args.package, "main.pt"))
    dr = load_draft(args.package, m)
    data, _ = rsd_data.load(args.demos)
    idx = np.nonzero(np.isin(data["trial"], [int(t) for t in args.trials.split(",")]))[0][::args.stride]
    L = m["rfsq"]["layers"]
    print("| paths W | gamma | main forwards / chunk | vs ar | spec codes == ar |")
    print("|---|---|---|---|---|")
    for w in [int(x) for x in args.widths.split(",")]:
        for g in [int(x) for x in args.gammas.split(",")]:
            f, same, n = study(main_mod, dr, data, idx, L, w, g)
            print(f"| {w} | {g} | {f:.2f} | {f / L:.2f}x | {same}/{n} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
