"""Labels and embeddings behind one interface (base), offline (local) and cloud."""
