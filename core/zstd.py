"""zstd for agent-to-collector bodies: the standard library's from Python 3.14 (PEP 784), its backport
(``backports.zstd``) before that. The collector decodes request bodies with the same one."""

try:
    from compression.zstd import ZstdCompressor, ZstdDecompressor, ZstdError, compress  # type: ignore[import-not-found]
except ImportError:
    from backports.zstd import ZstdCompressor, ZstdDecompressor, ZstdError, compress

__all__ = ["ZstdCompressor", "ZstdDecompressor", "ZstdError", "compress"]
