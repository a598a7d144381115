"""Train the autoencoder and load the collection: reader -> encoder -> writer."""
