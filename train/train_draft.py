"""train_draft.py: distils the draft (rsd_model.Draft) from the trained main model.

Owns the draft's targets and training. Targets are the main model's **own** greedy decoding (what `ar`
returns, and what `spec` accepts against): for every training observation, main decodes its L layers by
argmax, and we keep the hidden state that predicted each layer and the argmax codes. The draft, started from
the hidden state that predicted layer p-1 and given that layer's codes, learns to reproduce main's codes of
layers p, p+1, ... (teacher-forced on main's codes; every p in 1..L-1). Not here: the architecture.
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import rsd_model as rm
from train_main import obs_batch


@torch.no_grad()
def main_greedy(main: rm.Main, data: dict, idx: np.ndarray, augment: bool = False, seed: int = 0, bs: int = 128,
                device: str = "cpu"):
    """Main's greedy (ar) decoding on samples idx: codes [N, L, G], the decoder output that predicted each layer
    [N, L, D] and the memory [N, S, D] (the draft's hidden input is the two side by side, see rsd_model.Main).
    main runs on `device` (where it is); the results come back on the CPU."""
    main.eval()
    gen = torch.Generator().manual_seed(seed)
    all_codes, all_hid, all_mem = [], [], []
    for s in range(0, len(idx), bs):
        j = idx[s:s + bs]
        img, prop, ins = obs_batch(data, j, augment=augment, gen=gen)
        state = main.make_state(main.encode64(img.to(device), prop.to(device), ins.to(device)))
        codes = torch.zeros(len(j), main.L, main.G, dtype=torch.int64, device=device)
        hid = torch.zeros(len(j), main.L, main.D, device=device)
        w = 2 * main.D * len(main.blocks)
        all_mem.append(state[:, :-1, w:w + main.D].cpu())
        for l in range(main.L):
            logits, h = main._decode(state, codes)
            codes[:, l] = logits[:, l].argmax(-1)
            hid[:, l] = h[:, l]
        all_codes.append(codes.cpu())
        all_hid.append(hid.cpu())
    return torch.cat(all_codes), torch.cat(all_hid), torch.cat(all_mem)


def draft_loss(draft: rm.Draft, codes: torch.Tensor, hid: torch.Tensor, mem: torch.Tensor):
    """Mean cross-entropy over start layers p = 1..L-1 and the layers p..L-1 after each; also the accuracy."""
    L = draft.L
    tot, n, ok = 0.0, 0, 0.0
    for p in range(1, L):
        pos = torch.full((codes.shape[0],), p, dtype=torch.int64, device=codes.device)
        hidden = torch.cat([hid[:, p - 1], mem.reshape(mem.shape[0], -1)], 1)
        logits = draft.rollout(hidden, codes[:, p - 1], pos, codes[:, p:], L - p)
        tgt = codes[:, p:]
        tot = tot + F.cross_entropy(logits.reshape(-1, draft.K), tgt.reshape(-1), reduction="sum") / draft.G
        n += tgt.shape[0] * tgt.shape[1]
        ok += float((logits.argmax(-1) == tgt).all(2).float().sum())
    return tot / n, ok / n


def train(draft: rm.Draft, codes: torch.Tensor, hid: torch.Tensor, mem: torch.Tensor, minutes: float, bs: int = 256, lr: float = 2e-3,
          log=print, device: str = "cpu") -> dict:
    """Trains draft (on `device`, where it is) for `minutes`; codes/hid/mem may live on the CPU or on device."""
    opt = torch.optim.AdamW(draft.parameters(), lr=lr, weight_decay=1e-5)
    rng = np.random.default_rng(1)
    budget = minutes * 60.0
    t0 = time.time()
    step = 0
    N = codes.shape[0]
    bs = min(bs, N)
    while True:
        if time.time() - t0 >= budget:
            return {"steps": step, "seconds": time.time() - t0}
        perm = rng.permutation(N)
        for s in range(0, N - bs + 1, bs):
            frac = (time.time() - t0) / budget
            if frac >= 1.0:
                return {"steps": step, "seconds": time.time() - t0}
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1.0 + math.cos(math.pi * frac))
            j = torch.from_numpy(perm[s:s + bs]).to(codes.device)
            draft.train()
            loss, acc = draft_loss(draft, codes[j].to(device), hid[j].to(device), mem[j].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(draft.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                log(f"draft: step {step} t={time.time() - t0:.0f}s loss={loss.item():.4f} layer_acc={acc:.4f}")
