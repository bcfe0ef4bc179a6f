"""draft_archs_test.py: the reference draft's three architectures (train/rsd_model.py: Draft, ParallelDraft,
HeadDraft) go through the package writer and back.

For each: an untrained draft of the reference's shape is scripted into a package (export.write_draft, which
itself checks the scripted propose against the Python one and propose_paths' shape and first layer), read back
by export.load_draft as the same class with equal weights, and its scripted propose_paths' later layers equal
propose's where the architecture proposes them in one pass.

Usage: python train/draft_archs_test.py TRAIN_DIR
"""
import os
import sys
import tempfile

import torch


def main():
    sys.path.insert(0, sys.argv[1])
    import export
    import rsd_model as rm

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pkg = os.path.join(tmp, "pkg")
        man = export.random_package(pkg)
        L, G, K, D = man["rfsq"]["layers"], man["rfsq"]["groups"], man["rfsq"]["levels"], 128
        S = (man["hidden_dim"] - D) // D
        g = torch.Generator().manual_seed(3)
        hid = torch.randn(4, man["hidden_dim"], generator=g)
        codes = torch.randint(0, K, (4, L, G), generator=g)
        pos = torch.tensor([1, 3, 5, L - 1])
        for arch in (rm.Draft, rm.ParallelDraft, rm.HeadDraft):
            torch.manual_seed(7)
            draft = arch(L, G, K, D, S).eval()
            h = export.write_draft(pkg, draft)
            if not h.startswith("sha256:"):
                raise SystemExit(f"{arch.__name__}: content hash {h!r}")
            back = export.load_draft(pkg)
            if type(back) is not arch:
                raise SystemExit(f"{arch.__name__}: load_draft gave {type(back).__name__}")
            for k, v in draft.state_dict().items():
                if not torch.equal(v, back.state_dict()[k]):
                    raise SystemExit(f"{arch.__name__}: weight {k} differs after the round trip")
            sd = torch.jit.load(os.path.join(pkg, "draft.pt"))
            with torch.no_grad():
                prop = sd.propose(hid, codes, pos, 5)
                paths = sd.propose_paths(hid, codes, pos, 5, 3)
            if prop.shape != (4, 5, G) or int(prop.min()) < 0 or int(prop.max()) >= K:
                raise SystemExit(f"{arch.__name__}: propose gave shape {tuple(prop.shape)}, codes "
                                 f"{int(prop.min())}..{int(prop.max())}")
            if not torch.equal(paths[:, 0], prop) and arch is not rm.Draft:
                raise SystemExit(f"{arch.__name__}: propose_paths' path 0 is not propose's gamma layers")
            if arch is not rm.Draft and not torch.equal(paths[:, 1, 1:], prop[:, 1:]):
                raise SystemExit(f"{arch.__name__}: a one-pass draft's later layers differ between paths")
            print(f"draft_archs_test: {arch.__name__} ok ({h[:19]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
