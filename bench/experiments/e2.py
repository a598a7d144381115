from common import *
import keras, sys
from sklearn.decomposition import PCA
tr, te = load()
dtr = np.load(OUT + "/dtr.npy")/255.0; dte = np.load(OUT + "/dte.npy")/255.0
Y = np.load(OUT + "/u_deskew_tr.npy"); mu = Y.mean(0); sd = Y.std(); Yn = (Y-mu)/sd
variant = sys.argv[1]
keras.utils.set_random_seed(0)
if variant == "mlp":
    p = PCA(50, random_state=0).fit(dtr.reshape(60000,-1)); xa = p.transform(dtr.reshape(60000,-1)); xb = p.transform(dte.reshape(10000,-1))
    inp = keras.Input((50,)); h = keras.layers.Dense(512, activation="relu")(inp); h = keras.layers.Dense(512, activation="relu")(h)
    out = keras.layers.Dense(16)(h); m = keras.Model(inp, out)
else:
    xa, xb = dtr[..., None].astype("float32"), dte[..., None].astype("float32")
    from cbir.model import load_keras
    from cbir.encoders import packaged_path
    dae = load_keras(packaged_path("mnist", "dae"))  # the seed DAE
    enc = keras.Model(dae.input, dae.get_layer("encoder").output)
    enc.trainable = variant != "frozen"
    inp = keras.Input((28,28,1)); h = keras.layers.Flatten()(enc(inp)); h = keras.layers.Dense(512, activation="relu")(h); h = keras.layers.Dense(512, activation="relu")(h)
    out = keras.layers.Dense(16)(h); m = keras.Model(inp, out)
m.compile(keras.optimizers.Adam(1e-3), "mse")
ep = int(sys.argv[2])
t = time.time()
m.fit(xa, Yn, epochs=ep, batch_size=256, verbose=2, validation_split=0.0)
print("train s", time.time()-t)
ea, eb = m.predict(xa, batch_size=2048, verbose=0), m.predict(xb, batch_size=2048, verbose=0)
print(variant, "net db+q", score(ea, tr.labels, eb, te.labels), flush=True)
print(variant, "umap db, net q", score(Yn, tr.labels, eb, te.labels), flush=True)
