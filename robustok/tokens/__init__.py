"""Token files in one format: token stores (`robustok pretokenize`), post-training pairs and held-out samples.

One kind vocabulary (`kinds`: "ids" (n, h, w) integers | "latents" (n, C, h, w) floats), one layout (`store`:
manifest + shards, local npy or WebDataset tars; `pairs`: a store plus the real-image index and a held-out store)
and one fingerprint check (`check_fingerprint`).
"""

from robustok.tokens.kinds import TOKEN_KINDS, TokenKind, check_fingerprint, kind_of_tokenizer, token_kind
from robustok.tokens.store import TokenDataset, TokenShards, open_token_store, read_manifest, write_token_store

__all__ = [
    "TOKEN_KINDS",
    "TokenDataset",
    "TokenKind",
    "TokenShards",
    "check_fingerprint",
    "kind_of_tokenizer",
    "open_token_store",
    "read_manifest",
    "token_kind",
    "write_token_store",
]
