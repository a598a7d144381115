"""Scratch experiments behind the README's "what was tried" table (run from this folder: e1, then e2 mlp 40 / e2 cnn 15, then e3)."""
import sys, time, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
from concurrent.futures import ThreadPoolExecutor
from cbir import datasets
from cbir.settings import Settings
from eval import metrics

def load(name="mnist"):
    s = Settings.from_env()
    tr = datasets.load(name, "train", s.data_dir, s.cache_dir)
    te = datasets.load(name, "test", s.data_dir, s.cache_dir)
    return tr, te

def score(db, dbl, q, ql, chunk=250):
    db = db.astype(np.float32); q = q.astype(np.float32)
    db_sq = (db.astype(np.float64)**2).sum(1)
    def run(lo):
        qc = q[lo:lo+chunk]
        d = (qc.astype(np.float64)**2).sum(1)[:, None] + db_sq[None, :] - 2 * (qc @ db.T).astype(np.float64)
        rel = ql[lo:lo+chunk, None] == dbl[None, :]
        l = sum(metrics.lrap_row(-d[i], rel[i]) for i in range(len(qc)))
        top = np.argpartition(d, 10, axis=1)[:, :10]
        p = np.take_along_axis(rel, top, axis=1).mean(1).sum()
        return l, p
    with ThreadPoolExecutor(2) as ex:
        res = list(ex.map(run, range(0, len(q), chunk)))
    return sum(r[0] for r in res)/len(q), sum(r[1] for r in res)/len(q)

def deskew(imgs):
    from scipy.ndimage import affine_transform
    out = np.empty_like(imgs, dtype=np.float32)
    c0, c1 = np.mgrid[:28, :28]
    for i, img in enumerate(imgs.astype(np.float32)):
        tot = img.sum()
        m0 = (c0*img).sum()/tot; m1 = (c1*img).sum()/tot
        m00 = ((c0-m0)**2*img).sum()/tot; m01 = ((c0-m0)*(c1-m1)*img).sum()/tot
        alpha = m01/m00
        affine = np.array([[1, 0], [alpha, 1]])
        ocenter = np.array(img.shape)/2.0
        offset = np.array([m0, m1]) - affine @ ocenter
        out[i] = affine_transform(img, affine, offset=offset, order=1)
    return out

OUT = __import__("os").environ.get("EXP_OUT", "/tmp/exp")  # where the experiments pass arrays to each other
