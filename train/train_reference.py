"""train_reference.py: trains the reference policy rsd-ref-spatial end to end from collected demonstrations and
exports the package.

Usage: python train/train_reference.py --demos DIR --work WORKDIR --out models/rsd-ref-spatial
           [--main-minutes 8] [--draft-minutes 4] [--L 8 --G 10 --K 7 --D 128]

Owns the order of the stages and the split: samples of trials 19, 29, 39, 49 are held out (validation and
the offline decoding metrics); every other collected trial trains. Stages: action statistics and the RFSQ
tokenizer (fit_tokenizer.py) -> main model (train_main.py) -> main's greedy codes and hidden states -> draft
(train_draft.py) -> package (export.py) -> offline decoding metrics for several gammas (evaluate.py); the
default gamma of the manifest is the one with the fewest main forwards per chunk. Writes WORKDIR/final.pt
(everything export.py needs), WORKDIR/metrics.json and WORKDIR/train.log. Runs on 2 CPU threads.
Not here: collecting the demonstrations (collect_demos.sh), the whole pipeline as one command
(train_reference.sh).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate  # noqa: E402
import export  # noqa: E402
import fit_tokenizer as ft  # noqa: E402
import rsd_data  # noqa: E402
import rsd_model as rm  # noqa: E402
import train_draft  # noqa: E402
import train_main  # noqa: E402

HELD_OUT = [19, 29, 39, 49]


def main():
    ap = argparse.ArgumentParser(description="train the reference policy")
    ap.add_argument("--demos", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--main-minutes", type=float, default=8.0)
    ap.add_argument("--draft-minutes", type=float, default=4.0)
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--G", type=int, default=10)
    ap.add_argument("--K", type=int, default=7)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--Dd", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heldout", default=",".join(map(str, HELD_OUT)), help="held-out trials (a smoke test: any)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    os.makedirs(args.work, exist_ok=True)
    logf = open(os.path.join(args.work, "train.log"), "a")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    t_start = time.time()
    metrics = {"cfg": vars(args)}
    paths = rsd_data.find(args.demos)
    data, demos = rsd_data.load(paths)
    held = [int(t) for t in args.heldout.split(",")]
    val_mask = np.isin(data["trial"], held)
    tr_idx, va_idx = np.nonzero(~val_mask)[0], np.nonzero(val_mask)[0]
    if len(tr_idx) == 0:
        log("warning: no training samples outside the held-out trials; training on the held-out ones (smoke test)")
        tr_idx = va_idx
    tr_trials = sorted({d["trial"] for d in demos if d["trial"] not in held})
    metrics["data"] = {"files": [os.path.basename(p) for p in paths], "demos": len(demos),
                       "steps": int(sum(d["steps"] for d in demos)), "samples": int(len(data["chunk"])),
                       "train_samples": int(len(tr_idx)), "heldout_samples": int(len(va_idx)),
                       "train_trials": tr_trials, "heldout_trials": sorted({d["trial"] for d in demos} & set(held)),
                       "tasks": sorted({d["task"] for d in demos}),
                       "demos_per_task": {str(t): sum(1 for d in demos if d["task"] == t) for t in range(10)},
                       "mean_episode_steps": round(float(np.mean([d["steps"] for d in demos])), 1)}
    log(f"data: {json.dumps(metrics['data'])} (loaded in {time.time() - t_start:.0f}s)")

    # ---- statistics and tokenizer ----
    stats = ft.action_stats(data["actions"][~np.isin(data["actions_trial"], held)] if len(tr_idx) != len(va_idx) or
                            not np.array_equal(tr_idx, va_idx) else data["actions"])
    xn = ft.normalize(data["chunk"], stats)
    tok = ft.fit(xn[tr_idx], args.L, args.G, args.K)
    metrics["action_stats"] = stats
    metrics["tokenizer"] = {"train": ft.report(tok, xn[tr_idx], stats, data["chunk"][tr_idx]),
                            "heldout": ft.report(tok, xn[va_idx], stats, data["chunk"][va_idx])}
    log(f"tokenizer: {json.dumps(metrics['tokenizer']['heldout'])}")
    codes = ft.codes_of(tok, xn)

    # ---- main ----
    p = torch.from_numpy(data["proprio"][tr_idx])
    model = rm.Main(args.L, args.G, args.K, args.D, p.mean(0), p.std(0).clamp(min=1e-3), dropout=0.1)
    metrics["main_params"] = sum(x.numel() for x in model.parameters())
    log(f"main: {metrics['main_params']} parameters")
    t0 = time.time()
    tr = train_main.train(model, data, codes, tr_idx, va_idx, args.main_minutes, log=log)
    metrics["main_train"] = {k: v for k, v in tr.items() if k != "log"}
    metrics["main_heldout"] = train_main.token_accuracy(model, data, codes, va_idx)
    metrics["main_train_acc"] = train_main.token_accuracy(model, data, codes, tr_idx[:1024])
    log(f"main: trained in {time.time() - t0:.0f}s; held-out {json.dumps(metrics['main_heldout'])}; "
        f"train {json.dumps(metrics['main_train_acc'])}")

    # ---- draft ----
    t0 = time.time()
    c1, h1, m1 = train_draft.main_greedy(model, data, tr_idx)
    c2, h2, m2 = train_draft.main_greedy(model, data, tr_idx, augment=True, seed=1)
    cv, hv, mv = train_draft.main_greedy(model, data, va_idx)
    log(f"draft: main's greedy codes on {2 * len(tr_idx)} observations in {time.time() - t0:.0f}s")
    draft = rm.Draft(args.L, args.G, args.K, args.D, model.S, args.Dd)
    metrics["draft_params"] = sum(x.numel() for x in draft.parameters())
    t0 = time.time()
    dtr = train_draft.train(draft, torch.cat([c1, c2]), torch.cat([h1, h2]), torch.cat([m1, m2]), args.draft_minutes,
                            log=log)
    draft.eval()
    with torch.no_grad():
        _, acc_v = train_draft.draft_loss(draft, cv, hv, mv)
    metrics["draft_train"] = dtr
    metrics["draft_heldout_layer_acc_teacher_forced"] = round(acc_v, 4)
    log(f"draft: trained in {time.time() - t0:.0f}s; held-out layer accuracy (teacher-forced) {acc_v:.4f}")

    ck = {"cfg": {"L": args.L, "G": args.G, "K": args.K, "D": args.D, "Dd": args.Dd}, "main": model.state_dict(),
          "draft": draft.state_dict(), "proprio_mean": model.proprio_mean, "proprio_std": model.proprio_std,
          "tok_mean": tok.mean, "tok_basis": tok.basis, "tok_zscale": tok.zscale, "stats": stats, "gamma": 4}
    torch.save(ck, os.path.join(args.work, "final.pt"))

    # ---- export, offline decoding metrics, default gamma ----
    export.write_package(args.out, model, draft, tok, stats, 4)
    t0 = time.time()
    ev = evaluate.evaluate(args.out, data, va_idx, stats, [2, 3, 4, 5, 6, 7])
    best = min(ev["spec"], key=lambda g: (ev["spec"][g]["main_forwards_per_chunk"] + 0.05 * int(g)))
    ck["gamma"] = int(best)
    torch.save(ck, os.path.join(args.work, "final.pt"))
    export.write_package(args.out, model, draft, tok, stats, int(best))
    metrics["offline_decoding"] = ev
    metrics["default_gamma"] = int(best)
    log(f"evaluate: {time.time() - t0:.0f}s; {json.dumps(ev)}; default gamma {best}")
    metrics["wall_seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.work, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    log(f"done in {metrics['wall_seconds']} s; package {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
