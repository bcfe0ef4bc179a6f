"""fit_tokenizer.py: the action statistics and the RFSQ tokenizer of the reference policy.

Owns action normalization (q01/q99 per dimension over every training action; the gripper passes through as
its sign, -1 open / +1 close) and the tokenizer's fit: a PCA of the normalized 8x7 chunks gives the G latent
directions (`basis`), each latent is scaled so that 99.5% of the training values lie in [-1, 1] (`zscale`),
and rsd_model.RFSQTokenizer quantizes it into L residual layers of K levels. Also measures the reconstruction
error. Not here: the quantizer itself (rsd_model.py).
"""
import numpy as np
import torch

import rsd_model as rm


def action_stats(actions: np.ndarray) -> dict:
    """actions [N, A] -> q01, q99, mean, std (lists)."""
    return {"q01": np.quantile(actions, 0.01, 0).tolist(), "q99": np.quantile(actions, 0.99, 0).tolist(),
            "mean": actions.mean(0).tolist(), "std": actions.std(0).tolist()}


def normalize(chunk: np.ndarray, stats: dict) -> np.ndarray:
    """[N, H, A] raw actions -> normalized units (the inverse of the package's unnormalization)."""
    q01, q99 = np.asarray(stats["q01"], np.float32), np.asarray(stats["q99"], np.float32)
    x = 2.0 * (chunk - q01) / np.maximum(q99 - q01, 1e-6) - 1.0
    x = np.clip(x, -1.0, 1.0)
    x[..., rm.GRIPPER] = np.where(chunk[..., rm.GRIPPER] > 0, 1.0, -1.0)
    return x.astype(np.float32)


def unnormalize(x: np.ndarray, stats: dict) -> np.ndarray:
    """The package's rule (docs/model-package.md): mask dims from [-1, 1] to [q01, q99], gripper by sign."""
    q01, q99 = np.asarray(stats["q01"], np.float32), np.asarray(stats["q99"], np.float32)
    y = 0.5 * (np.clip(x, -1, 1) + 1.0) * (q99 - q01) + q01
    y[..., rm.GRIPPER] = np.where(x[..., rm.GRIPPER] > 0, 1.0, -1.0)
    return y


def fit(xn: np.ndarray, L: int, G: int, K: int) -> rm.RFSQTokenizer:
    """xn: normalized training chunks [N, H, A]."""
    flat = torch.from_numpy(xn.reshape(len(xn), -1)).double()
    mean = flat.mean(0)
    _, _, vt = torch.linalg.svd(flat - mean, full_matrices=False)
    basis = vt[:G].t().contiguous()                                           # [H*A, G]
    z = (flat - mean).matmul(basis)
    zscale = torch.quantile(z.abs(), 0.995, dim=0).clamp(min=1e-3)
    return rm.RFSQTokenizer(L, G, K, mean.float(), basis.float(), zscale.float())


def codes_of(tok: rm.RFSQTokenizer, xn: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return tok.quantize(tok.encode_latent(torch.from_numpy(xn)))


def report(tok: rm.RFSQTokenizer, xn: np.ndarray, stats: dict, raw: np.ndarray) -> dict:
    """Reconstruction error of the codes (and of the unquantized PCA latent) on chunks xn (raw: unnormalized)."""
    with torch.no_grad():
        x = torch.from_numpy(xn)
        z = tok.encode_latent(x)
        codes = tok.quantize(z)
        rec = tok.decode(codes).numpy()
        pca = (z * tok.zscale).matmul(tok.basis.t()) + tok.mean
        pca = pca.view_as(x).numpy()
        out = {}
        arm = [a for a in range(rm.A) if a != rm.GRIPPER]
        for name, r in (("rfsq", rec), ("pca", pca)):
            out[name + "_rmse_norm"] = float(np.sqrt(((r[..., arm] - xn[..., arm]) ** 2).mean()))
            out[name + "_mae_raw"] = float(np.abs(unnormalize(r, stats)[..., arm] - raw[..., arm]).mean())
            out[name + "_gripper_sign_err"] = float(((r[..., rm.GRIPPER] > 0) != (xn[..., rm.GRIPPER] > 0)).mean())
        # error after the first l layers: how much each layer refines
        out["rmse_norm_after_layers"] = []
        for l in range(1, tok.L + 1):
            c = codes.clone()
            c[:, l:] = (tok.K - 1) // 2
            r = tok.decode(c).numpy()
            out["rmse_norm_after_layers"].append(round(float(np.sqrt(((r[..., arm] - xn[..., arm]) ** 2).mean())), 5))
        hist = [np.bincount(codes[:, l].reshape(-1).numpy(), minlength=tok.K).tolist() for l in range(tok.L)]
        out["code_histogram_per_layer"] = hist
    return out
