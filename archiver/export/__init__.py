"""Evidence bundles: the writer (bundle.py), load files (loadfile.py) and the standalone verifier (verify.py)."""
