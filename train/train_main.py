"""train_main.py: fits the reference policy's main model (rsd_model.Main) on the demonstrations.

Owns the main model's training: teacher-forced cross-entropy (label smoothing 0.1; layers >= 3 weighted 0.05,
see train_loss) over the G codes of all L layers of the tokenized expert chunk, dropout 0.1 in the decoder, AdamW with a warm-up and a cosine decay over a wall-clock budget (the machine is a
shared 2-core CPU), random image shifts of up to 4 pixels (at the CNN's 64 px) as the only augmentation,
and the token accuracy per layer (teacher-forced) on held-out samples. Also the observation batches that
the draft and the evaluation reuse (`obs_batch`). Not here: the architecture (rsd_model.py).
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import rsd_model as rm


def obs_batch(data: dict, idx: np.ndarray, augment: bool = False, gen: torch.Generator = None):
    """Samples idx -> (img64 float [B, C, 3, 64, 64] in [0, 1], proprio [B, 8], instr [B, T])."""
    img = torch.from_numpy(data["images"][idx].astype(np.float32)) / (4.0 * 255.0)   # [B, C, 64, 64, 3]
    img = img.permute(0, 1, 4, 2, 3).contiguous()
    if augment:
        b, c = img.shape[:2]
        flat = img.view(b * c, 3, rm.IMG_IN, rm.IMG_IN)
        shift = torch.randint(-4, 5, (b * c, 2), generator=gen).float() * (2.0 / rm.IMG_IN)
        theta = torch.zeros(b * c, 2, 3)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
        img = F.grid_sample(flat, grid, mode="nearest", padding_mode="border", align_corners=False).view_as(img)
    return img, torch.from_numpy(data["proprio"][idx]), torch.from_numpy(data["instr"][idx])


def ce_loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))


def train_loss(logits: torch.Tensor, codes: torch.Tensor, layer_weight: torch.Tensor, smoothing: float):
    """Label-smoothed cross-entropy, weighted per layer: the fine layers (>= 3) carry almost none of the chunk
    (the tokenizer's error after 3 layers is within 10% of its error after 8) and are mostly unpredictable from
    the observation, so they get a small weight; main then keeps their prediction close to the data's
    marginal instead of memorizing the training chunks' residual noise (which no draft could follow)."""
    b, L, G, K = logits.shape
    ce = F.cross_entropy(logits.reshape(-1, K), codes.reshape(-1), reduction="none", label_smoothing=smoothing)
    ce = ce.view(b, L, G).mean((0, 2))
    return (ce * layer_weight).sum() / layer_weight.sum()


@torch.no_grad()
def token_accuracy(main: rm.Main, data: dict, codes: torch.Tensor, idx: np.ndarray, bs: int = 128) -> dict:
    """Teacher-forced accuracy per layer (all G codes of a layer right, and per code) on samples idx."""
    main.eval()
    layer_ok = torch.zeros(main.L)
    code_ok = torch.zeros(main.L)
    nll = 0.0
    for s in range(0, len(idx), bs):
        j = idx[s:s + bs]
        img, prop, ins = obs_batch(data, j)
        state = main.make_state(main.encode64(img, prop, ins))
        c = codes[j]
        logits, _ = main._decode(state, c)
        nll += float(ce_loss(logits, c)) * len(j)
        am = logits.argmax(-1)
        layer_ok += (am == c).all(2).float().sum(0)
        code_ok += (am == c).float().mean(2).sum(0)
    n = float(len(idx))
    return {"layer_acc": [round(float(v) / n, 4) for v in layer_ok], "code_acc": [round(float(v) / n, 4) for v in code_ok],
            "nll": round(nll / n, 4)}


def train(main: rm.Main, data: dict, codes: torch.Tensor, train_idx: np.ndarray, val_idx: np.ndarray,
          minutes: float, bs: int = 64, lr: float = 1e-3, smoothing: float = 0.1, fine_weight: float = 0.05,
          log=print) -> dict:
    layer_weight = torch.tensor([1.0 if l < 3 else fine_weight for l in range(main.L)])
    opt = torch.optim.AdamW(main.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    budget = minutes * 60.0
    t0 = time.time()
    step, epoch, warm = 0, 0, 100
    hist = []
    bs = min(bs, len(train_idx))
    while True:
        if time.time() - t0 >= budget:
            return {"steps": step, "epochs": epoch, "seconds": time.time() - t0, "log": hist}
        perm = rng.permutation(train_idx)
        for s in range(0, len(perm) - bs + 1, bs):
            frac = (time.time() - t0) / budget
            if frac >= 1.0:
                return {"steps": step, "epochs": epoch + s / len(perm), "seconds": time.time() - t0, "log": hist}
            cur = lr * min(1.0, (step + 1) / warm) * 0.5 * (1.0 + math.cos(math.pi * frac))
            for g in opt.param_groups:
                g["lr"] = cur
            j = perm[s:s + bs]
            main.train()
            img, prop, ins = obs_batch(data, j, augment=True, gen=gen)
            state = main.make_state(main.encode64(img, prop, ins))
            logits, _ = main._decode(state, codes[j])
            loss = train_loss(logits, codes[j], layer_weight, smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(main.parameters(), 1.0)
            opt.step()
            step += 1
            if step % 100 == 0:
                msg = f"main: step {step} epoch {epoch} t={time.time() - t0:.0f}s lr={cur:.2e} loss={loss.item():.4f}"
                if step % 500 == 0 and len(val_idx):
                    acc = token_accuracy(main, data, codes, val_idx[:512])
                    msg += f" val nll={acc['nll']} layer_acc={acc['layer_acc']}"
                log(msg)
                hist.append((step, round(loss.item(), 4)))
        epoch += 1
