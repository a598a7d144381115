from common import *
from sklearn.decomposition import PCA
tr, te = load()
dtr = np.load(OUT + "/dtr.npy").reshape(60000,-1)/255.0; dte = np.load(OUT + "/dte.npy").reshape(10000,-1)/255.0
ua, ub = np.load(OUT + "/u_deskew_tr.npy"), np.load(OUT + "/u_deskew_te.npy")
mu, sd = ua.mean(0), ua.std(); ua=(ua-mu)/sd; ub=(ub-mu)/sd
p = PCA(50, random_state=0).fit(dtr); pa, pb = p.transform(dtr), p.transform(dte)
s = np.sqrt((pa**2).sum(1).mean()); pa/=s; pb/=s   # unit RMS norm
print("umap rms", np.sqrt((ua**2).sum(1).mean()))
for beta in [0.05, 0.1, 0.2, 0.4]:
    print(beta, score(np.hstack([ua, beta*pa]), tr.labels, np.hstack([ub, beta*pb]), te.labels), flush=True)
