"""zstd for agent-to-collector bodies: the standard library's from Python 3.14 (PEP 784), its backport
(``backports.zstd``, the one aiohttp decodes request bodies with) before that."""

try:
    from compression.zstd import ZstdCompressor, compress  # type: ignore[import-not-found]
except ImportError:
    from backports.zstd import ZstdCompressor, compress

__all__ = ["ZstdCompressor", "compress"]
