"""Find the training images nearest to query images: preprocess -> encode -> Qdrant query."""
