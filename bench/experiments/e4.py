"""Fashion-MNIST: which cheap representation keeps pixel-level neighbours (P@10) while UMAP pulls classes apart (LRAP)."""
from common import *
import umap, warnings
from sklearn.decomposition import PCA
warnings.filterwarnings("ignore")
tr, te = load("fashion-mnist")
px = lambda a: a.reshape(len(a), -1).astype(np.float32)/255.0
a, b = px(tr.images), px(te.images)
unit = lambda x: (x - x.mean(1, keepdims=True)) / np.linalg.norm(x - x.mean(1, keepdims=True), axis=1, keepdims=True)
print("pixels", score(a, tr.labels, b, te.labels), flush=True)
print("centred unit pixels", score(unit(a), tr.labels, unit(b), te.labels), flush=True)
for name, (fa, fb) in {"pixels": (a, b), "unit": (unit(a), unit(b))}.items():
    p = PCA(50, random_state=0).fit(fa); pa, pb = p.transform(fa), p.transform(fb)
    print(name, "pca50", score(pa, tr.labels, pb, te.labels), flush=True)
    for nn in (15, 50):
        u = umap.UMAP(n_components=16, n_neighbors=nn, min_dist=0.0).fit(pa)
        ua, ub = u.embedding_, u.transform(pb)
        c = ua.mean(0); s = np.sqrt(((ua - c)**2).mean()); ua = (ua - c)/s; ub = (ub - c)/s
        r = np.sqrt((pa**2).sum(1).mean()); qa, qb = pa/r*4, pb/r*4   # PCA at the UMAP's RMS norm (4 = sqrt(16))
        print(name, "umap16 nn", nn, score(ua, tr.labels, ub, te.labels), flush=True)
        for beta in (0.25, 0.5, 1.0):
            print(name, "umap16 nn", nn, "+ beta*pca", beta, score(np.hstack([ua, beta*qa]), tr.labels, np.hstack([ub, beta*qb]), te.labels), flush=True)
