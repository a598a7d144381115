"""Score retrieval: full-ranking LRAP and friends over Qdrant's answers to test queries."""
