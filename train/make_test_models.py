"""make_test_models.py: builds the tiny policy packages that the GPU-worker tests load.

Usage: python train/make_test_models.py OUTDIR

Writes one directory per package under OUTDIR (see docs/model-package.md for the format). Everything is
derived from fixed seeds, so two runs give the same weights; nothing is downloaded. The packages are a
few tens of KB each.

The tiny main model is *integer-exact*: its weights are small integers and every intermediate value is an
integer below 2**24 held in float32, so any summation order (batch size, number of verified layers, BLAS
kernel) gives bit-identical logits. That makes "spec equals ar, code for code" and "a row does not depend
on its batch" properties of the decoding engine alone, which is what the tests check. A real model does not
have this property; see docs/model-package.md ("Exactness").

Packages:
  exact       the draft is the main model itself (acceptance 100%)
  poor        the draft is always off by one level in group 0 (acceptance 0% for spec, 100% for
              spec-relaxed with radius >= 1)
  mixed       the draft is off by one on a data-dependent third of the layers (rows accept different
              numbers of layers, so a batch holds rows at different positions)
  (the drafts of exact, poor and mixed also have propose_paths: path 1 puts group 0 back where main has it,
  so a poor draft's first layer is always among its paths)
  nan         like exact, but main returns NaN for a row whose proprio[0] > 100 (a per-request error), and
              main.verify returns NaN hidden states (its logits finite) for a row whose proprio[0] < -100
  no_paths    like mixed, but its draft has no propose_paths (width > 1 is refused)
  sim_no_paths  no_paths at the simulator's image size (128 px) with LIBERO's proprio: real sim workers run
              campaigns on it (tests/refused_campaign_test.c), and a variant with width > 1 is refused
  no_verify   main lacks the verify method (load error)
  bad_shape   tokenizer.decode returns H+1 steps (load error)
"""
import hashlib
import json
import os
import sys
from typing import Tuple

import torch
from torch import Tensor, nn

CAMERAS = ["agentview", "eye_in_hand"]
NCAM = 2
IMG = 16          # image height = width (IMG // 4 is the sum-pooling window: a 4 x 4 grid per camera)
SIM_IMG = 128     # the campaigns' image size, for sim_no_paths
PROPRIO = 8
MAX_TOKENS = 32   # instruction tokens (bytes tokenizer: byte + 1, 0 = pad)
VOCAB = 257
H, A = 8, 7       # action chunk
L, G, K = 8, 4, 9 # RFSQ layers x groups x levels
D = 32            # hidden width
GAMMA = 3


def _ints(g: torch.Generator, shape, lo: int, hi: int) -> Tensor:
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64).to(torch.int8)


def _dims(m: nn.Module, img: int = IMG) -> None:
    """Copies the package dimensions onto a module (TorchScript keeps them as int attributes). A pooled cell
    sums POOL**2 pixels; PRESCALE (a power of two) divides it back to at most 16 pixels' worth, so the image
    encoder stays below 2**24 at any image size."""
    m.NCAM, m.IMG, m.POOL, m.L, m.G, m.K, m.D, m.A = NCAM, img, img // 4, L, G, K, D, A
    m.PRESCALE = max(1, (img // 4) ** 2 // 16)


class MainCore(nn.Module):
    """prefill + step; `Main` adds verify. Weights are int8 buffers used as float32 integers."""

    def __init__(self, seed: int, nan_trigger: bool, img: int = IMG):
        super().__init__()
        _dims(self, img)
        g = torch.Generator().manual_seed(seed)
        n_pool = self.NCAM * (self.IMG // self.POOL) * (self.IMG // self.POOL) * 3
        self.register_buffer("w_img", _ints(g, (self.D, n_pool), -1, 1))
        self.register_buffer("w_prop", _ints(g, (self.D, PROPRIO), -2, 2))
        tok = _ints(g, (VOCAB, self.D), -4, 4)
        tok[0] = 0
        self.register_buffer("tok_emb", tok)
        self.register_buffer("code_emb", _ints(g, (self.L * self.G * self.K, self.D), -64, 64))
        self.register_buffer("layer_emb", _ints(g, (self.L, self.D), -127, 127))
        self.register_buffer("w1", _ints(g, (self.D, self.D), -1, 1))
        self.register_buffer("w2", _ints(g, (self.G * self.K, self.D), -2, 2))
        self.nan_trigger = nan_trigger

    def _ctx(self, state: Tensor, codes: Tensor, pos: Tensor, n: int) -> Tensor:
        """Context for layers pos .. pos+n of every row: [B, n+1, D]. Layer l sees codes[:, :l]."""
        b = state.shape[0]
        base = state.sum(1)                                                   # [B, D]
        lg = torch.arange(self.L, device=codes.device).view(1, self.L, 1) * (self.G * self.K) + \
            torch.arange(self.G, device=codes.device).view(1, 1, self.G) * self.K
        idx = (lg + codes.clamp(0, self.K - 1)).reshape(-1)
        emb = self.code_emb.float().index_select(0, idx).view(b, self.L, self.G, self.D).sum(2)  # [B, self.L, self.D]
        prefix = torch.cat([torch.zeros(b, 1, self.D, device=state.device), emb.cumsum(1)], 1)  # [B, self.L+1, self.D]
        li = pos.view(b, 1) + torch.arange(n + 1, device=pos.device).view(1, n + 1)      # [B, n+1]
        pre = prefix.gather(1, li.clamp(0, self.L).unsqueeze(2).expand(b, n + 1, self.D))
        lay = self.layer_emb.float()[li.clamp(0, self.L - 1)]
        return base.unsqueeze(1) + pre + lay

    def _head(self, ctx: Tensor) -> Tensor:
        h = torch.relu(torch.floor(ctx.matmul(self.w1.float().t()) / 8.0))
        logits = h.matmul(self.w2.float().t())
        return logits.view(ctx.shape[0], ctx.shape[1], self.G, self.K)

    @torch.jit.export
    def prefill(self, images: Tensor, proprio: Tensor, instr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        b = images.shape[0]
        x = images.to(torch.float32).view(b, self.NCAM, self.IMG // self.POOL, self.POOL, self.IMG // self.POOL, self.POOL, 3)
        x = torch.floor(x.sum(5).sum(3).reshape(b, -1) / self.PRESCALE)      # exact sum pooling
        img = torch.floor(x.matmul(self.w_img.float().t()) / 256.0)
        p = torch.clamp(torch.round(proprio * 16.0), -256.0, 256.0)
        p = torch.floor(p.matmul(self.w_prop.float().t()) / 16.0)
        t = self.tok_emb.float()[instr].sum(1)
        state = torch.stack([img, p, t], 1)                                   # [B, 3, self.D] memory
        if self.nan_trigger:
            bad = (proprio[:, 0] > 100.0).view(b, 1, 1)
            state = torch.where(bad, torch.full_like(state, float("nan")), state)
            # proprio[0] < -100 marks the row's state (1e6 added to one value) for verify's NaN hidden
            marker = torch.zeros_like(state)
            marker[:, 1, 0] = 1.0e6
            state = torch.where((proprio[:, 0] < -100.0).view(b, 1, 1), state + marker, state)
        zeros = torch.zeros(b, self.L, self.G, dtype=torch.int64, device=images.device)
        ctx = self._ctx(state, zeros, torch.zeros(b, dtype=torch.int64, device=images.device), 0)
        return state, self._head(ctx)[:, 0], ctx[:, 0]

    @torch.jit.export
    def step(self, state: Tensor, codes: Tensor, pos: Tensor) -> Tuple[Tensor, Tensor]:
        ctx = self._ctx(state, codes, pos, 0)
        return self._head(ctx)[:, 0], ctx[:, 0]

    def forward(self, images: Tensor, proprio: Tensor, instr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.prefill(images, proprio, instr)


class Main(MainCore):
    @torch.jit.export
    def verify(self, state: Tensor, codes: Tensor, pos: Tensor, n: int) -> Tuple[Tensor, Tensor]:
        ctx = self._ctx(state, codes, pos, n)
        logits = self._head(ctx)
        if self.nan_trigger:  # a marked row (see prefill): finite logits, NaN hidden states
            marked = (state[:, 1, 0] > 1.0e5).view(-1, 1, 1)
            ctx = torch.where(marked, torch.full_like(ctx, float("nan")), ctx)
        return logits, ctx


class Draft(nn.Module):
    """Rolls the main model's own context forward from its hidden state (hidden == context).
    kind 0: exact; 1: group 0 off by one level always; 2: off by one where sum(ctx) % 3 == 0."""

    def __init__(self, main: MainCore, kind: int):
        super().__init__()
        _dims(self)
        self.register_buffer("code_emb", main.code_emb.clone())
        self.register_buffer("layer_emb", main.layer_emb.clone())
        self.register_buffer("w1", main.w1.clone())
        self.register_buffer("w2", main.w2.clone())
        self.kind = kind

    def _layer(self, ctx: Tensor, prev: Tensor, pos: Tensor, j: int) -> Tuple[Tensor, Tensor, Tensor]:
        """One proposed layer (pos + j) from the codes `prev` of the layer before: the new context, the
        proposed codes (off by one where the kind says so), and the unshifted code of group 0."""
        b = ctx.shape[0]
        l_prev = (pos - 1 + j).clamp(0, self.L - 1)
        l_next = (pos + j).clamp(0, self.L - 1)
        idx = (l_prev.view(b, 1) * self.G + torch.arange(self.G, device=ctx.device).view(1, self.G)) * self.K + prev
        e = self.code_emb.float().index_select(0, idx.reshape(-1)).view(b, self.G, self.D).sum(1)
        ctx = ctx - self.layer_emb.float()[l_prev] + e + self.layer_emb.float()[l_next]
        h = torch.relu(torch.floor(ctx.matmul(self.w1.float().t()) / 8.0))
        a = h.matmul(self.w2.float().t()).view(b, self.G, self.K).argmax(2)
        a0 = a[:, 0].clone()
        if self.kind != 0:
            shifted = torch.where(a[:, 0] == self.K - 1, a[:, 0] - 1, a[:, 0] + 1)
            if self.kind == 1:
                a[:, 0] = shifted
            else:
                off = torch.remainder(ctx.sum(1), 3.0) == 0.0
                a[:, 0] = torch.where(off, shifted, a[:, 0])
        return ctx, a, a0

    @torch.jit.export
    def propose(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        b = hidden.shape[0]
        ctx = hidden
        rows = torch.arange(b, device=hidden.device)
        prev = codes[rows, (pos - 1).clamp(0, self.L - 1)]                  # [B, self.G]
        out = []
        for j in range(gamma):
            ctx, a, _ = self._layer(ctx, prev, pos, j)
            out.append(a)
            prev = a
        return torch.stack(out, 1)

    @torch.jit.export
    def propose_paths(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int, width: int) -> Tensor:
        """Path 0: propose's first layer; path 1: the same with group 0 unshifted (main's own code, so a poor
        draft's first layer is always among its paths); path w >= 2: group 0 moved by w levels (mod K). Each
        path goes on greedily, off by one where the kind says so."""
        b = hidden.shape[0]
        rows = torch.arange(b, device=hidden.device)
        prev = codes[rows, (pos - 1).clamp(0, self.L - 1)]
        ctx, a, a0 = self._layer(hidden, prev, pos, 0)
        firsts = []
        for w in range(width):
            f = a.clone()
            if w == 1:
                f[:, 0] = a0
            elif w >= 2:
                f[:, 0] = torch.remainder(a[:, 0] + w, self.K)
            firsts.append(f)
        first = torch.stack(firsts, 1).reshape(b * width, self.G)
        ctxw = ctx.repeat_interleave(width, 0)
        posw = pos.repeat_interleave(width, 0)
        out = [first]
        prev = first
        for j in range(1, gamma):
            ctxw, nxt, _ = self._layer(ctxw, prev, posw, j)
            out.append(nxt)
            prev = nxt
        return torch.stack(out, 1).view(b, width, gamma, self.G)

    def forward(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        return self.propose(hidden, codes, pos, gamma)


class DraftNoPaths(nn.Module):
    """A draft with propose only (the optional propose_paths absent)."""

    def __init__(self, main: MainCore, kind: int):
        super().__init__()
        self.inner = Draft(main, kind)

    @torch.jit.export
    def propose(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        return self.inner.propose(hidden, codes, pos, gamma)

    def forward(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        return self.propose(hidden, codes, pos, gamma)


class Tokenizer(nn.Module):
    """RFSQ decode: level index -> [-1, 1] scaled by 2**-l per layer, summed; a linear map to H x self.A."""

    def __init__(self, seed: int, horizon: int):
        super().__init__()
        _dims(self)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(self.G, horizon * self.A, generator=g) * 0.4)
        self.register_buffer("b", torch.randn(horizon * self.A, generator=g) * 0.1)
        self.register_buffer("scale", torch.tensor([2.0 ** -l for l in range(self.L)]))
        self.horizon = horizon

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        half = (self.K - 1) / 2.0
        z = ((codes.to(torch.float32) - half) / half * self.scale.view(1, self.L, 1)).sum(1)  # [B, self.G]
        return torch.tanh(z.matmul(self.w) + self.b).view(codes.shape[0], self.horizon, self.A)

    def forward(self, codes: Tensor) -> Tensor:
        return self.decode(codes)


def _stats(seed: int):
    g = torch.Generator().manual_seed(seed)
    lo = (-torch.rand(A, generator=g) * 0.9 - 0.1).tolist()
    hi = (torch.rand(A, generator=g) * 0.9 + 0.1).tolist()
    return {"q01": [round(v, 6) for v in lo], "q99": [round(v, 6) for v in hi],
            "mask": [True] * (A - 1) + [False]}


def write_package(out: str, name: str, draft_kind: int = 0, nan_trigger: bool = False,
                  verify: bool = True, horizon: int = H, paths: bool = True, img: int = IMG) -> None:
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    main = (Main if verify else MainCore)(seed=1234, nan_trigger=nan_trigger, img=img).eval()
    draft = (Draft if paths else DraftNoPaths)(main, draft_kind).eval()
    tok = Tokenizer(seed=99, horizon=horizon).eval()
    files = {"main": "main.pt", "draft": "draft.pt", "tokenizer": "tokenizer.pt"}
    torch.jit.script(main).save(os.path.join(d, files["main"]))
    torch.jit.script(draft).save(os.path.join(d, files["draft"]))
    torch.jit.script(tok).save(os.path.join(d, files["tokenizer"]))
    h = hashlib.sha256()
    for key in ("main", "draft", "tokenizer"):
        with open(os.path.join(d, files[key]), "rb") as f:
            h.update(f.read())
    manifest = {
        "format": "rsd-policy",
        "format_version": 1,
        "name": "tiny-" + name,
        "version": "0.1.0",
        "content_hash": "sha256:" + h.hexdigest(),
        "cameras": CAMERAS,
        "image": {"height": img, "width": img, "channels": 3, "dtype": "uint8"},
        "instruction": {"tokenizer": "bytes", "vocab": None, "max_tokens": MAX_TOKENS},
        "proprio_dim": PROPRIO,
        "chunk": {"horizon": H, "action_dim": A, "gripper_index": A - 1},
        "rfsq": {"layers": L, "groups": G, "levels": K},
        "hidden_dim": D,
        "action_stats": {"libero_spatial": _stats(7), "bridge_orig": _stats(8)},
        "decoding": {"mode": "spec", "gamma": GAMMA, "radii": [0] + [1] * (L - 1)},
        "modules": files,
    }
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: make_test_models.py OUTDIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    torch.manual_seed(0)
    write_package(out, "exact", draft_kind=0)
    write_package(out, "poor", draft_kind=1)
    write_package(out, "mixed", draft_kind=2)
    write_package(out, "no_paths", draft_kind=2, paths=False)
    write_package(out, "nan", nan_trigger=True)
    write_package(out, "no_verify", verify=False)
    write_package(out, "bad_shape", horizon=H + 1)
    write_package(out, "sim_no_paths", draft_kind=2, paths=False, img=SIM_IMG)
    print(f"make_test_models: wrote 8 packages under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
