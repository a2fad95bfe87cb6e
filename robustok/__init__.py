"""robustok: robust image tokenizers (RobusTok, arXiv 2509.12474) as installable, tested software."""
from robustok.tokenizer import Tokenizer, TokenizerConfig

__version__ = "0.1.0"
__all__ = ["Tokenizer", "TokenizerConfig", "__version__"]
