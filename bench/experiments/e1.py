from common import *
import umap
from sklearn.decomposition import PCA
from cbir.encoder import Encoder, PACKAGED_MODEL
tr, te = load()
t=time.time(); dtr = deskew(tr.images); dte = deskew(te.images); print("deskew", time.time()-t, flush=True)
np.save(OUT + "/dtr.npy", dtr); np.save(OUT + "/dte.npy", dte)
enc = Encoder(PACKAGED_MODEL)
ctr, cte = enc.encode(tr.images), enc.encode(te.images)
px = lambda a: a.reshape(len(a), -1)/255.0
print("pixels", score(px(tr.images), tr.labels, px(te.images), te.labels), flush=True)
print("deskew pixels", score(dtr.reshape(60000,-1)/255, tr.labels, dte.reshape(10000,-1)/255, te.labels), flush=True)
for name, (a, b) in {"deskew": (dtr.reshape(60000,-1)/255, dte.reshape(10000,-1)/255), "dae": (ctr, cte), "pixels": (px(tr.images), px(te.images))}.items():
    p = PCA(50, random_state=0).fit(a); a5, b5 = p.transform(a), p.transform(b)
    t=time.time(); u = umap.UMAP(n_components=16, n_neighbors=15, min_dist=0.0).fit(a5); ft=time.time()-t
    ea = u.embedding_; eb = u.transform(b5)
    np.save(f"{OUT}/u_{name}_tr.npy", ea); np.save(f"{OUT}/u_{name}_te.npy", eb)
    print(name, "umap16 fit", round(ft), score(ea, tr.labels, eb, te.labels), flush=True)
