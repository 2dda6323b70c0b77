"""Keys and authenticated encryption; everything from the `cryptography` package.

Nothing here is hand-rolled: AES-256-GCM for every ciphertext, Argon2id for the
passphrase, Ed25519 for signatures.  Every format carries a version and binds its
ciphertext to what it protects through associated data.
"""
