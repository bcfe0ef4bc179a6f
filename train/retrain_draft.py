"""retrain_draft.py: distils a package's draft further from its own main model, and writes the package again.

The main model, the tokenizer and the action statistics stay as they are (main.pt and tokenizer.pt are copied
byte for byte); only draft.pt and the manifest's content_hash change. The draft starts from the package's
weights (or fresh, --fresh) and trains on main's greedy codes of the training observations, clean and in
--copies randomly shifted copies (train_draft.py), for --minutes on --device (a GPU turns minutes of CPU into
many more steps). Held-out trials are never trained on; the draft's teacher-forced accuracy on them is
printed before and after.

--obs DIR (repeatable) adds on-policy observations: recordings of `rsd-gpu-worker --record-obs` (the states the
policy itself visits in closed loop, where a draft fitted to demonstrations alone meets states it never saw). Their
rows of trials --obs-heldout (default 0,1, the trials the model card's closed-loop figures use) are held out and
reported separately; the others are trained on, clean and in --copies shifted copies, like the demonstrations.

Usage:
  python train/retrain_draft.py --package models/rsd-ref-spatial --demos DEMOS_DIR --out DIR [--minutes 5]
      [--copies 3] [--device cpu|cuda] [--fresh]
  python train/retrain_draft.py --demos DEMOS_DIR --save-data FILE.npz   compact samples for a machine without
                                                                         the HDF5 demonstrations (64 px, uint8)
  python train/retrain_draft.py --package ... --data FILE.npz --out DIR ...
  python train/retrain_draft.py --package ... --data FILE.npz --obs runs/record/obs --out DIR ...
Not here: the main model's training (train_reference.py), the offline decoding metrics (evaluate.py).
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export  # noqa: E402
import rsd_data  # noqa: E402
import rsd_model as rm  # noqa: E402
import train_draft  # noqa: E402

HELD_OUT = [19, 29, 39, 49]
KEYS = ("proprio", "instr", "trial")
ARCHS = {"gru": rm.Draft, "parallel": rm.ParallelDraft, "head": rm.HeadDraft}


def load_data(args):
    if args.data:
        z = np.load(args.data)
        data = {k: z[k] for k in KEYS}
        data["images"] = z["images4"].astype(np.uint16) * 4   # the 2x2 sums, to within rounding
        return data
    data, _ = rsd_data.load(rsd_data.find(args.demos))
    return data


def recorded(dirs):
    """The rows of every recording in dirs, one after another."""
    recs = [rsd_data.load_recorded(d) for d in dirs]
    return {k: np.concatenate([r[k] for r in recs]) for k in recs[0]}


def main():
    ap = argparse.ArgumentParser(description="distil a package's draft further")
    ap.add_argument("--package")
    ap.add_argument("--out")
    ap.add_argument("--demos")
    ap.add_argument("--data")
    ap.add_argument("--save-data")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bs", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--arch", choices=sorted(ARCHS),
                    help="with --fresh: rsd_model.Draft (gru, the default), rsd_model.ParallelDraft (parallel: "
                         "one pass per round) or rsd_model.HeadDraft (head: one pass, no attention); without "
                         "--fresh the package's own architecture is kept")
    ap.add_argument("--draft-dim", type=int, default=0,
                    help="with --fresh: the draft's width (Dd; default: the package draft's, 256 for head)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--heldout", default=",".join(map(str, HELD_OUT)))
    ap.add_argument("--obs", action="append", default=[], help="a recording of rsd-gpu-worker --record-obs")
    ap.add_argument("--obs-heldout", default="0,1", help="trials of the --obs recordings never trained on")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if not args.demos and not args.data:
        ap.error("--demos or --data is required")
    if (args.arch or args.draft_dim) and not args.fresh:
        ap.error("--arch and --draft-dim need --fresh (otherwise the package's draft, its architecture and width, "
                 "is trained further)")
    data = load_data(args)
    if args.save_data:
        np.savez_compressed(args.save_data, images4=np.round(data["images"] / 4.0).astype(np.uint8),
                            **{k: data[k] for k in KEYS})
        print(f"retrain_draft: {len(data['trial'])} samples -> {args.save_data}")
        return 0
    if not args.package or not args.out:
        ap.error("--package and --out are required")
    held = [int(t) for t in args.heldout.split(",")]
    va = np.isin(data["trial"], held)
    tr_idx, va_idx = np.nonzero(~va)[0], np.nonzero(va)[0]
    with open(os.path.join(args.package, "manifest.json")) as f:
        man = json.load(f)
    L, G, K = man["rfsq"]["layers"], man["rfsq"]["groups"], man["rfsq"]["levels"]
    msd = torch.jit.load(os.path.join(args.package, man["modules"]["main"])).state_dict()
    D = msd["layer_emb"].shape[1]
    main_m = rm.Main(L, G, K, D, torch.zeros(rm.PROPRIO), torch.ones(rm.PROPRIO))
    main_m.load_state_dict(msd)
    dev = torch.device(args.device)
    main_m = main_m.to(dev).eval()
    draft = export.load_draft(args.package)
    if args.fresh:
        arch = ARCHS[args.arch or "gru"]
        dd = args.draft_dim or (256 if arch is rm.HeadDraft else draft.Dd)
        draft = arch(L, G, K, D, main_m.S, dd)
    draft = draft.to(dev)
    t0 = time.time()
    parts = [train_draft.main_greedy(main_m, data, tr_idx, device=dev)]
    for c in range(args.copies):
        parts.append(train_draft.main_greedy(main_m, data, tr_idx, augment=True, seed=1 + c, device=dev))
    held_sets = {"demo": train_draft.main_greedy(main_m, data, va_idx, device=dev)}
    n_obs = 0
    if args.obs:
        rec = recorded(args.obs)
        ho = np.isin(rec["trial"], [int(t) for t in args.obs_heldout.split(",")])
        otr, ova = np.nonzero(~ho)[0], np.nonzero(ho)[0]
        if len(otr) == 0 or len(ova) == 0:
            raise SystemExit(f"--obs: {len(otr)} rows to train on and {len(ova)} held out (trials "
                             f"{args.obs_heldout}); both must be non-empty")
        parts.append(train_draft.main_greedy(main_m, rec, otr, device=dev))
        for c in range(args.copies):
            parts.append(train_draft.main_greedy(main_m, rec, otr, augment=True, seed=101 + c, device=dev))
        held_sets["on-policy"] = train_draft.main_greedy(main_m, rec, ova, device=dev)
        n_obs = len(otr)
    codes, hid, mem = (torch.cat([p[i] for p in parts]).to(dev) for i in range(3))
    print(f"retrain_draft: main's greedy codes on {len(codes)} observations ({len(tr_idx)} demonstration + {n_obs} "
          f"on-policy rows, x {1 + args.copies}) in {time.time() - t0:.0f}s on {dev}", flush=True)
    held_sets = {k: tuple(t.to(dev) for t in v) for k, v in held_sets.items()}

    def heldout_acc():
        draft.eval()
        with torch.no_grad():
            return {k: round(train_draft.draft_loss(draft, *v)[1], 4) for k, v in held_sets.items()}
    before = heldout_acc()
    res = train_draft.train(draft, codes, hid, mem, args.minutes, bs=args.bs, lr=args.lr, device=dev,
                            log=lambda m: print(m, flush=True))
    after = heldout_acc()
    print(f"retrain_draft: {res['steps']} steps in {res['seconds']:.0f}s; held-out layers fully right "
          f"(teacher-forced): {before} -> {after}", flush=True)
    # The weights first, beside OUT: scripting reads rsd_model.py's source again, and a failure there must not
    # lose a long training run (load them with export.load_draft's classes and write_draft them again).
    torch.save(draft.cpu().state_dict(), os.path.abspath(args.out).rstrip("/") + ".state.pt")
    if os.path.abspath(args.out) != os.path.abspath(args.package):
        shutil.copytree(args.package, args.out, dirs_exist_ok=True)
    h = export.write_draft(args.out, draft.cpu())
    summary = {"steps": res["steps"], "seconds": round(res["seconds"], 1), "train_observations": int(len(codes)),
               "on_policy_rows": n_obs, "obs": args.obs, "obs_heldout": args.obs_heldout,
               "heldout_layer_acc_before": before, "heldout_layer_acc_after": after,
               "device": str(dev), "minutes": args.minutes, "copies": args.copies, "bs": args.bs, "lr": args.lr,
               "fresh": args.fresh, "arch": type(draft).__name__, "content_hash": h}
    with open(os.path.join(args.out, "retrain_draft.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("retrain_draft: " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
