"""rsd_model.py: the reference policy's three networks, written so that `torch.jit.script` turns each into the
module the package format asks for (docs/model-package.md).

Owns the architecture and the TorchScript interfaces:
  RFSQTokenizer  codes [B, L, G] -> normalized action chunk [B, H, A]: a residual finite scalar quantizer over a
                 fixed linear (PCA) latent of the chunk. Layer l quantizes the residual left by layers < l on a
                 grid of K levels spanning +-scale[l]; scale halves from layer to layer (layer 0 is coarse).
  Main           prefill (image CNN over both cameras, FiLM-conditioned on the instruction; instruction and
                 proprio tokens) -> per-row memory; a causal transformer over the L layer positions that
                 cross-attends to the memory predicts the G codes of layer l from the codes of layers < l.
                 step and verify run the same full pass over the L positions (`_decode`) and gather the rows'
                 positions, so they compute the same function by construction.
  Draft          a GRU over layer positions started from the main model's hidden state (which carries the
                 observation's memory), with one cross-attention per layer; proposes gamma layers.
  ParallelDraft  the same inputs, the gamma layers in one pass (gamma queries, one cross-attention).
  HeadDraft      the same inputs, the gamma layers in one pass through a small MLP (no attention): the fewest
                 operations per round, for devices where a call costs its number of operations.

Not here: data (rsd_data.py), fitting (train_*.py), writing the package (export.py).
"""
import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CAMERAS = ["agentview", "eye_in_hand"]
IMG = 128          # input image size (manifest)
IMG_IN = 64        # the CNN's input: the 128 px images average-pooled 2x2
PROPRIO = 8
MAX_TOKENS = 96    # instruction bytes (LIBERO-Spatial's longest instruction is under 90)
VOCAB = 257        # byte + 1, 0 = padding
H, A = 8, 7        # action chunk
GRIPPER = 6


class RFSQTokenizer(nn.Module):
    """Residual FSQ over z = P^T (x - mu) / zscale, x the flattened normalized chunk (H*A)."""

    def __init__(self, L: int, G: int, K: int, mean: Tensor, basis: Tensor, zscale: Tensor):
        super().__init__()
        self.L, self.G, self.K, self.H, self.A = L, G, K, H, A
        self.register_buffer("mean", mean.float().clone())        # [H*A]
        self.register_buffer("basis", basis.float().clone())      # [H*A, G], orthonormal columns
        self.register_buffer("zscale", zscale.float().clone())    # [G]
        self.register_buffer("scale", torch.tensor([0.5 ** l for l in range(L)], dtype=torch.float32))

    def encode_latent(self, x: Tensor) -> Tensor:
        """[B, H, A] normalized chunk -> [B, G] latent, clipped to [-1, 1]."""
        z = (x.reshape(x.shape[0], -1) - self.mean).matmul(self.basis) / self.zscale
        return z.clamp(-1.0, 1.0)

    def quantize(self, z: Tensor) -> Tensor:
        """[B, G] latent -> codes [B, L, G] (level indices)."""
        c = (self.K - 1) / 2.0
        r = z
        out: List[Tensor] = []
        for l in range(self.L):
            s = float(self.scale[l])
            k = torch.round((r / s).clamp(-1.0, 1.0) * c)
            out.append((k + c).to(torch.int64))
            r = r - k / c * s
        return torch.stack(out, 1)

    def latent(self, codes: Tensor) -> Tensor:
        c = (self.K - 1) / 2.0
        v = (codes.clamp(0, self.K - 1).to(torch.float32) - c) / c
        return (v * self.scale.view(1, self.L, 1)).sum(1)

    @torch.jit.export
    def decode(self, codes: Tensor) -> Tensor:
        z = self.latent(codes) * self.zscale
        x = z.matmul(self.basis.t()) + self.mean
        return x.view(codes.shape[0], self.H, self.A)

    def forward(self, codes: Tensor) -> Tensor:
        return self.decode(codes)


class Attention(nn.Module):
    """Multi-head attention with explicit matmuls (scriptable; the mask is additive, -inf where not allowed)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.h = heads
        self.dh = d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.o = nn.Linear(d, d)

    def forward(self, x: Tensor, kv: Tensor, mask: Tensor) -> Tensor:
        """x [B, N, D] attends to keys/values kv [B, M, 2D] (self.kv of the attended tokens)."""
        b, n, d = x.shape
        m = kv.shape[1]
        q = self.q(x).view(b, n, self.h, self.dh).transpose(1, 2)
        kv = kv.view(b, m, 2, self.h, self.dh)
        k = kv[:, :, 0].transpose(1, 2)
        v = kv[:, :, 1].transpose(1, 2)
        att = q.matmul(k.transpose(2, 3)) * (1.0 / math.sqrt(self.dh)) + mask
        att = torch.softmax(att, -1)
        y = att.matmul(v).transpose(1, 2).reshape(b, n, d)
        return self.o(y)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.n1 = nn.LayerNorm(d)
        self.self_att = Attention(d, heads)
        self.n2 = nn.LayerNorm(d)
        self.cross_att = Attention(d, heads)
        self.n3 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(dropout)   # training only (eval: identity)

    def forward(self, x: Tensor, mem_kv: Tensor, causal: Tensor, no_mask: Tensor) -> Tensor:
        h = self.n1(x)
        x = x + self.drop(self.self_att(h, self.self_att.kv(h), causal))
        x = x + self.drop(self.cross_att(self.n2(x), mem_kv, no_mask))
        return x + self.drop(self.mlp(self.n3(x)))


class Main(nn.Module):
    """The memory is 16 image tokens per camera (a 4x4 grid), then the instruction token, then the proprio token ([B, S, D]).
    state [B, S + 1, 2 * blocks * D + D]: row s < S holds every block's cross-attention keys and values of memory
    token s (computed once in prefill, so a step costs only the L query positions), then the token itself;
    row S holds the context vector (instruction + proprio) in its first D entries, zeros after.
    The hidden state handed to the draft (hidden_dim = D + S * D) is the decoder's output at the layer's
    position (D) followed by the whole memory (S * D): the draft reads the same observation as main."""

    def __init__(self, L: int, G: int, K: int, D: int, proprio_mean: Tensor, proprio_std: Tensor,
                 blocks: int = 2, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.L, self.G, self.K, self.D = L, G, K, D
        self.ncam = len(CAMERAS)
        self.vocab, self.img, self.img_in = VOCAB, IMG, IMG_IN
        self.register_buffer("proprio_mean", proprio_mean.float().clone())
        self.register_buffer("proprio_std", proprio_std.float().clone())
        self.ch = 64
        self.conv1 = nn.Conv2d(3, 16, 5, 2, 2)
        self.gn1 = nn.GroupNorm(4, 16)
        self.conv2 = nn.Conv2d(16, 32, 3, 2, 1)
        self.gn2 = nn.GroupNorm(8, 32)
        self.conv3 = nn.Conv2d(32, self.ch, 3, 2, 1)
        self.gn3 = nn.GroupNorm(8, self.ch)
        self.film = nn.Linear(D, 2 * self.ch)
        self.conv4 = nn.Conv2d(self.ch, D, 3, 2, 1)
        self.img_pos = nn.Parameter(torch.randn(self.ncam, 16, D) * 0.02)
        self.tok_emb = nn.Embedding(VOCAB, 64, padding_idx=0)
        self.tok_conv = nn.Conv1d(64, D, 5, 1, 2)
        self.instr_proj = nn.Linear(D, D)
        self.prop_proj = nn.Sequential(nn.Linear(PROPRIO, D), nn.GELU(), nn.Linear(D, D))
        self.mem_norm = nn.LayerNorm(D)
        self.layer_emb = nn.Parameter(torch.randn(L, D) * 0.02)
        self.code_emb = nn.Embedding(L * G * K, D)
        self.ctx_proj = nn.Linear(2 * D, D)
        self.blocks = nn.ModuleList([Block(D, heads, dropout) for _ in range(blocks)])
        self.S = 16 * self.ncam + 2
        self.hidden_dim = D + self.S * D
        self.out_norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, G * K)
        self.register_buffer("causal", torch.triu(torch.full((L, L), float("-inf")), 1))
        self.register_buffer("no_mask", torch.zeros(1, 1, 1, 1))

    # ---- observation encoder ----
    def instr_feat(self, instr: Tensor) -> Tensor:
        e = self.tok_emb(instr.clamp(0, self.vocab - 1)).transpose(1, 2)          # [B, 64, T]
        f = F.gelu(self.tok_conv(e))                                          # [B, D, T]
        pad = (instr == 0).unsqueeze(1)
        f = f.masked_fill(pad, -1e4).max(2)[0]
        return self.instr_proj(f)                                             # [B, D]

    def encode64(self, img64: Tensor, proprio: Tensor, instr: Tensor) -> Tensor:
        """img64: float [B, C, 3, 64, 64] in [0, 1] -> memory [B, S, D]."""
        b = img64.shape[0]
        t = self.instr_feat(instr)
        x = (img64.reshape(b * self.ncam, 3, self.img_in, self.img_in) - 0.5) / 0.25
        x = F.gelu(self.gn1(self.conv1(x)))
        x = F.gelu(self.gn2(self.conv2(x)))
        x = self.gn3(self.conv3(x))                                           # [B*C, ch, 8, 8]; conv4 -> 4x4
        c = self.ch
        fb = self.film(t).view(b, 1, 2, c).expand(b, self.ncam, 2, c).reshape(b * self.ncam, 2, c)
        x = F.gelu(x * (1.0 + fb[:, 0].view(-1, c, 1, 1)) + fb[:, 1].view(-1, c, 1, 1))
        x = self.conv4(x).flatten(2).transpose(1, 2).reshape(b, self.ncam, 16, self.D) + self.img_pos
        p = self.prop_proj((proprio - self.proprio_mean) / self.proprio_std)
        mem = torch.cat([x.reshape(b, self.ncam * 16, self.D), t.unsqueeze(1), p.unsqueeze(1)], 1)
        return self.mem_norm(mem)

    def make_state(self, mem: Tensor) -> Tensor:
        """memory [B, S, D] -> state [B, S + 1, 2 * blocks * D] (see the class comment)."""
        kvs: List[Tensor] = []
        for blk in self.blocks:
            kvs.append(blk.cross_att.kv(mem))
        kvs.append(mem)
        kv = torch.cat(kvs, 2)
        ctx = self.ctx_proj(torch.cat([mem[:, -2], mem[:, -1]], 1))
        row = torch.cat([ctx, torch.zeros(mem.shape[0], kv.shape[2] - self.D, device=mem.device, dtype=mem.dtype)], 1)
        return torch.cat([kv, row.unsqueeze(1)], 1)

    # ---- layer decoder ----
    def _decode(self, state: Tensor, codes: Tensor) -> Tuple[Tensor, Tensor]:
        """Teacher-forced pass over all L positions: logits [B, L, G, K] and hidden [B, L, D]. Position l reads
        codes[:, :l] only (causal mask); the codes at and after a row's position do not change its outputs."""
        b = state.shape[0]
        base = (torch.arange(self.L, device=codes.device).view(1, self.L, 1) * self.G +
                torch.arange(self.G, device=codes.device).view(1, 1, self.G)) * self.K
        e = self.code_emb(base + codes.clamp(0, self.K - 1)).sum(2)          # [B, L, D]: embedding of layer l
        prev = torch.cat([torch.zeros(b, 1, self.D, device=state.device, dtype=state.dtype), e[:, :-1]], 1)
        ctx = state[:, -1, :self.D]                                           # instruction + proprio
        x = self.layer_emb.unsqueeze(0) + prev + ctx.unsqueeze(1)
        w = 2 * self.D
        i = 0
        for blk in self.blocks:
            x = blk(x, state[:, :-1, i * w:(i + 1) * w], self.causal, self.no_mask)
            i += 1
        hid = self.out_norm(x)
        return self.head(hid).view(b, self.L, self.G, self.K), hid

    def _full_hidden(self, state: Tensor, hid: Tensor) -> Tensor:
        """hid [B, N, D] -> [B, N, D + S * D]: each position's output followed by the row's memory."""
        b, n = hid.shape[0], hid.shape[1]
        w = 2 * self.D * len(self.blocks)
        mem = state[:, :-1, w:w + self.D].reshape(b, 1, self.S * self.D).expand(b, n, self.S * self.D)
        return torch.cat([hid, mem], 2)

    def _prep(self, images: Tensor) -> Tensor:
        b = images.shape[0]
        x = images.to(torch.float32).permute(0, 1, 4, 2, 3).reshape(b * self.ncam, 3, self.img, self.img)
        x = F.avg_pool2d(x, 2) / 255.0
        return x.view(b, self.ncam, 3, self.img_in, self.img_in)

    @torch.jit.export
    def prefill(self, images: Tensor, proprio: Tensor, instr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        state = self.make_state(self.encode64(self._prep(images), proprio, instr))
        zeros = torch.zeros(images.shape[0], self.L, self.G, dtype=torch.int64, device=images.device)
        logits, hid = self._decode(state, zeros)
        return state, logits[:, 0], self._full_hidden(state, hid[:, :1])[:, 0]

    @torch.jit.export
    def step(self, state: Tensor, codes: Tensor, pos: Tensor) -> Tuple[Tensor, Tensor]:
        logits, hid = self._decode(state, codes)
        rows = torch.arange(state.shape[0], device=state.device)
        p = pos.clamp(0, self.L - 1)
        return logits[rows, p], self._full_hidden(state, hid[rows, p].unsqueeze(1))[:, 0]

    @torch.jit.export
    def verify(self, state: Tensor, codes: Tensor, pos: Tensor, n: int) -> Tuple[Tensor, Tensor]:
        logits, hid = self._decode(state, codes)
        b = state.shape[0]
        li = (pos.view(b, 1) + torch.arange(n + 1, device=pos.device).view(1, n + 1)).clamp(0, self.L - 1)
        rows = torch.arange(b, device=state.device).view(b, 1).expand(b, n + 1)
        return logits[rows, li], self._full_hidden(state, hid[rows, li])

    def forward(self, images: Tensor, proprio: Tensor, instr: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return self.prefill(images, proprio, instr)


def top_combinations(lp: Tensor, width: int) -> Tensor:
    """Log-probabilities lp [B, G, K] of G independent codes -> the `width` most likely code combinations
    [B, width, G] by joint log-probability (a beam over the codes; combination 0 is the per-code argmax). Where
    fewer than width combinations exist, combination 0 fills the rest."""
    b, n_codes, k = lp.shape[0], lp.shape[1], lp.shape[2]
    score = torch.zeros(b, 1, device=lp.device)
    cand = torch.zeros(b, 1, 0, dtype=torch.int64, device=lp.device)
    for g in range(n_codes):
        s = (score.unsqueeze(2) + lp[:, g].unsqueeze(1)).reshape(b, -1)
        top = s.topk(min(width, s.shape[1]), dim=1)
        beam = torch.div(top.indices, k, rounding_mode="floor")
        cand = torch.cat([cand.gather(1, beam.unsqueeze(2).expand(-1, -1, cand.shape[2])),
                          torch.remainder(top.indices, k).unsqueeze(2)], 2)
        score = top.values
    if cand.shape[1] < width:
        cand = torch.cat([cand, cand[:, :1].expand(-1, width - cand.shape[1], -1)], 1)
    return cand


class DraftBase(nn.Module):
    """What every draft has: its shapes, `init` (main's decoder output -> the draft's width Dd) and `code_emb`
    (one vector per (layer, code index, level)), with the embedding of a layer's G codes. The weight names are
    those of the shipped packages' drafts."""

    def __init__(self, L: int, G: int, K: int, D: int, S: int, Dd: int):
        super().__init__()
        self.L, self.G, self.K, self.D, self.S, self.Dd = L, G, K, D, S, Dd
        self.init = nn.Linear(D, Dd)
        self.code_emb = nn.Embedding(L * G * K, Dd)

    def _emb(self, layer: Tensor, codes: Tensor) -> Tensor:
        """Embedding of the G codes [B, G] of layers `layer` [B]."""
        g = torch.arange(self.G, device=codes.device).view(1, self.G)
        idx = (layer.view(-1, 1) * self.G + g) * self.K + codes.clamp(0, self.K - 1)
        return self.code_emb(idx).sum(1)


class Draft(DraftBase):
    """hidden [B, D + S * D] (main's hidden that predicted layer pos-1: its decoder output, then the memory) +
    the codes of layer pos-1 -> gamma proposed layers. A GRU over layer positions whose state also reads the
    memory through one cross-attention per layer (one block, against main's two)."""

    def __init__(self, L: int, G: int, K: int, D: int, S: int, Dd: int = 128, heads: int = 4):
        super().__init__(L, G, K, D, S, Dd)
        self.mem_kv = nn.Linear(D, 2 * Dd)
        self.layer_emb = nn.Embedding(L, Dd)
        self.cell = nn.GRUCell(Dd, Dd)
        self.norm = nn.LayerNorm(Dd)
        self.att = Attention(Dd, heads)
        self.head = nn.Sequential(nn.LayerNorm(Dd), nn.Linear(Dd, 2 * Dd), nn.GELU(), nn.Linear(2 * Dd, G * K))
        self.register_buffer("no_mask", torch.zeros(1, 1, 1, 1))

    def _cell(self, h: Tensor, prev: Tensor, l_prev: Tensor, l_next: Tensor, kv: Tensor) -> Tensor:
        """One GRU step: state h [B, Dd] after reading the codes `prev` [B, G] of layers `l_prev` [B], towards
        layers `l_next` [B], then one cross-attention to the memory's keys/values kv."""
        h = self.cell(self._emb(l_prev, prev) + self.layer_emb(l_next), h)
        return h + self.att(self.norm(h).unsqueeze(1), kv, self.no_mask)[:, 0]

    def rollout(self, hidden: Tensor, prev: Tensor, pos: Tensor, forced: Tensor, steps: int) -> Tensor:
        """Logits [B, steps, G, K] for layers pos..pos+steps-1; after step j the input is forced[:, j] when
        forced has steps columns (training: teacher forcing), else the argmax (propose)."""
        b = hidden.shape[0]
        mem = hidden[:, self.D:].reshape(b, self.S, self.D)
        kv = self.mem_kv(mem)
        h = torch.tanh(self.init(hidden[:, :self.D]))
        out: List[Tensor] = []
        for j in range(steps):
            l_prev = (pos - 1 + j).clamp(0, self.L - 1)
            l_next = (pos + j).clamp(0, self.L - 1)
            h = self._cell(h, prev, l_prev, l_next, kv)
            lg = self.head(h).view(b, self.G, self.K)
            out.append(lg)
            if forced.shape[1] == steps:
                prev = forced[:, j]
            else:
                prev = lg.argmax(2)
        return torch.stack(out, 1)

    @torch.jit.export
    def propose(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        b = hidden.shape[0]
        rows = torch.arange(b, device=hidden.device)
        prev = codes[rows, (pos - 1).clamp(0, self.L - 1)]
        none = torch.zeros(b, 0, self.G, dtype=torch.int64, device=hidden.device)
        return self.rollout(hidden, prev, pos, none, gamma).argmax(3)

    @torch.jit.export
    def propose_paths(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int, width: int) -> Tensor:
        """[B, width, gamma, G]: the draft's `width` most likely code combinations for layer pos (joint
        log-probability over the G codes, a beam; path 0 is the per-code argmax), each continued greedily for
        gamma - 1 layers from itself. Where fewer than width combinations exist, path 0 fills the rest."""
        b = hidden.shape[0]
        rows = torch.arange(b, device=hidden.device)
        prev = codes[rows, (pos - 1).clamp(0, self.L - 1)]
        mem = hidden[:, self.D:].reshape(b, self.S, self.D)
        kv = self.mem_kv(mem)
        h = torch.tanh(self.init(hidden[:, :self.D]))
        h = self._cell(h, prev, (pos - 1).clamp(0, self.L - 1), pos.clamp(0, self.L - 1), kv)
        cand = top_combinations(torch.log_softmax(self.head(h).view(b, self.G, self.K), 2), width)
        w = width
        first = cand.reshape(b * w, self.G)
        out: List[Tensor] = [first]
        hw = h.repeat_interleave(w, 0)
        kvw = kv.repeat_interleave(w, 0)
        posw = pos.repeat_interleave(w, 0)
        prev = first
        for j in range(1, gamma):
            hw = self._cell(hw, prev, (posw - 1 + j).clamp(0, self.L - 1), (posw + j).clamp(0, self.L - 1), kvw)
            prev = self.head(hw).view(b * w, self.G, self.K).argmax(2)
            out.append(prev)
        return torch.stack(out, 1).view(b, w, gamma, self.G)

    def forward(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        return self.propose(hidden, codes, pos, gamma)


def last_decided(codes: Tensor, pos: Tensor, L: int) -> Tensor:
    """The codes [B, G] of each row's layer pos-1 (the last decided one; layer 0 for pos 0)."""
    return codes[torch.arange(codes.shape[0], device=codes.device), (pos - 1).clamp(0, L - 1)]


def paths_of_one_pass(logits: Tensor, width: int) -> Tensor:
    """propose_paths of a draft whose gamma layers come out of one pass (logits [B, gamma, G, K]): [B, width,
    gamma, G], the `width` most likely combinations for the first layer (top_combinations), each followed by the
    same gamma - 1 proposed layers (in one pass they do not depend on the first layer's codes)."""
    b, gamma, n_codes = logits.shape[0], logits.shape[1], logits.shape[2]
    first = top_combinations(torch.log_softmax(logits[:, 0], 2), width)
    rest = logits[:, 1:].argmax(3).unsqueeze(1).expand(b, width, gamma - 1, n_codes)
    return torch.cat([first.unsqueeze(2), rest], 2)


class OnePassDraft(DraftBase):
    """What the drafts whose gamma layers come out of one pass share: propose and propose_paths over the
    subclass's rollout (hidden, the last decided layer's codes, pos, unused forced codes, steps)."""

    @torch.jit.export
    def propose(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        prev = last_decided(codes, pos, self.L)
        return self.rollout(hidden, prev, pos, codes[:, :0], gamma).argmax(3)

    @torch.jit.export
    def propose_paths(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int, width: int) -> Tensor:
        prev = last_decided(codes, pos, self.L)
        return paths_of_one_pass(self.rollout(hidden, prev, pos, codes[:, :0], gamma), width)

    def forward(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        return self.propose(hidden, codes, pos, gamma)


class ParallelDraft(OnePassDraft):
    """The draft in one call per round: the same inputs as Draft (main's hidden state and the codes of layer
    pos-1), but the gamma proposed layers come out of one pass, as gamma queries (one per target layer, each
    knowing its distance from pos) that read the memory through one cross-attention, instead of gamma
    sequential GRU steps that each read the previous step's argmax. Fewer, larger operations per round, for a
    device where a draft round's cost is the number of calls it makes (docs/benchmarks.md, the GPU targets).
    Later proposed layers do not see the earlier ones' codes, so acceptance is lower per layer than Draft's."""

    def __init__(self, L: int, G: int, K: int, D: int, S: int, Dd: int = 128, heads: int = 4):
        super().__init__(L, G, K, D, S, Dd)
        self.mem_kv = nn.Linear(D, 2 * Dd)
        self.layer_query = nn.Embedding(L, Dd)
        self.dist_emb = nn.Embedding(L, Dd)
        self.norm = nn.LayerNorm(Dd)
        self.att = Attention(Dd, heads)
        self.mlp = nn.Sequential(nn.LayerNorm(Dd), nn.Linear(Dd, 2 * Dd), nn.GELU(), nn.Linear(2 * Dd, Dd))
        self.head = nn.Sequential(nn.LayerNorm(Dd), nn.Linear(Dd, 2 * Dd), nn.GELU(), nn.Linear(2 * Dd, G * K))
        self.register_buffer("no_mask", torch.zeros(1, 1, 1, 1))

    def rollout(self, hidden: Tensor, prev: Tensor, pos: Tensor, forced: Tensor, steps: int) -> Tensor:
        """Logits [B, steps, G, K] for layers pos..pos+steps-1 in one pass (forced is not used: no step reads
        another's codes; the argument keeps Draft's signature for training)."""
        b = hidden.shape[0]
        kv = self.mem_kv(hidden[:, self.D:].reshape(b, self.S, self.D))
        h = torch.tanh(self.init(hidden[:, :self.D])) + self._emb((pos - 1).clamp(0, self.L - 1), prev)
        j = torch.arange(steps, device=pos.device).view(1, steps)
        q = h.unsqueeze(1) + self.layer_query((pos.view(b, 1) + j).clamp(0, self.L - 1)) + \
            self.dist_emb(j.clamp(0, self.L - 1)).expand(b, steps, self.Dd)
        q = q + self.att(self.norm(q), kv, self.no_mask)
        q = q + self.mlp(q)
        return self.head(q).view(b, steps, self.G, self.K)


class HeadDraft(OnePassDraft):
    """The draft in a handful of operations per round: no attention and no recurrence. Main's hidden state that
    predicted layer pos-1 (its decoder output only: it has already read the memory) and that layer's codes give
    one vector; each proposed layer adds the embedding of (pos, distance) and goes through a two-layer MLP to its
    G x K logits, all gamma layers in one batched pass (like Medusa's heads, one per distance). 28 ATen
    operators per propose against ParallelDraft's 72, Draft's 315 (gamma 6) and a main step's 154, for a device
    where a call's cost is its number of operators (docs/benchmarks.md, the GPU targets): propose computes its
    index arithmetic once, from offsets made at construction, and reads main's decoder output as a view. It
    reads less than the GRU draft, so its acceptance per layer is lower."""

    def __init__(self, L: int, G: int, K: int, D: int, S: int, Dd: int = 256):
        super().__init__(L, G, K, D, S, Dd)
        self.target_emb = nn.Embedding(L * L, Dd)      # (first proposed layer pos, distance j)
        self.mid = nn.Linear(Dd, Dd)
        self.head = nn.Linear(Dd, G * K)
        # Offsets derived from the shapes (not weights: left out of the state dict): code g's row in code_emb
        # past its layer's first, and the distances 0..L-1 to the first proposed layer.
        self.register_buffer("code_off", (torch.arange(G) * K).view(1, G), persistent=False)
        self.register_buffer("dist", torch.arange(L).view(1, L), persistent=False)

    def _logits(self, hidden: Tensor, prev: Tensor, lp: Tensor, pos: Tensor, steps: int) -> Tensor:
        """Logits [B, steps, G, K] for layers pos..pos+steps-1 (steps <= L) from main's hidden, the codes prev
        [B, G] of layer lp = (pos - 1) clamped to 0..L-1. The same arithmetic as DraftBase._emb and an arange of
        distances, in fewer operators."""
        b = hidden.shape[0]
        idx = lp.view(b, 1) * (self.G * self.K) + self.code_off + prev.clamp(0, self.K - 1)
        base = self.init(hidden.narrow(1, 0, self.D)) + self.code_emb(idx).sum(1)
        target = pos.clamp(0, self.L - 1).view(b, 1) * self.L + self.dist.narrow(1, 0, steps)
        q = F.gelu(base.unsqueeze(1) + self.target_emb(target))
        return self.head(F.gelu(self.mid(q))).view(b, steps, self.G, self.K)

    def rollout(self, hidden: Tensor, prev: Tensor, pos: Tensor, forced: Tensor, steps: int) -> Tensor:
        """Logits [B, steps, G, K] for layers pos..pos+steps-1 in one pass (forced is not used, as in
        ParallelDraft)."""
        return self._logits(hidden, prev, (pos - 1).clamp(0, self.L - 1), pos, steps)

    def _prev(self, codes: Tensor, pos: Tensor) -> Tuple[Tensor, Tensor]:
        """The last decided layer lp of each row and its codes [B, G] (as last_decided)."""
        lp = (pos - 1).clamp(0, self.L - 1)
        return codes[torch.arange(codes.shape[0], device=codes.device), lp], lp

    @torch.jit.export
    def propose(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int) -> Tensor:
        prev, lp = self._prev(codes, pos)
        return self._logits(hidden, prev, lp, pos, gamma).argmax(3)

    @torch.jit.export
    def propose_paths(self, hidden: Tensor, codes: Tensor, pos: Tensor, gamma: int, width: int) -> Tensor:
        prev, lp = self._prev(codes, pos)
        return paths_of_one_pass(self._logits(hidden, prev, lp, pos, gamma), width)
