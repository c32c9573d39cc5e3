"""Settings of the search service: limits on what a request may ask for, and where it may be served."""

from __future__ import annotations

from dataclasses import dataclass

# Host names a loopback-bound service answers to. Refusing others stops DNS rebinding: a web page whose
# name an attacker re-points at 127.0.0.1 would otherwise reach the service from the user's browser.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address or host name) only accepts connections from this machine."""
    import ipaddress

    if host in ("localhost", "[::1]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and policies of one service; `dataclasses.replace` a default to change one."""

    max_upload_bytes: int = 25 * 2**20  # a request body larger than this is refused with 413
    max_upload_seconds: float = 120.0  # a clip longer than this is refused with 413 (it is embedded whole)
    max_k: int = 100  # results per request
    max_labels: int = 256  # custom labels per classification request
    max_label_chars: int = 200
    default_label_set: str = "starter"  # label set the page classifies with unless told otherwise
    thumbnail_cache_entries: int = 2048  # waveform PNGs kept in memory (a few KB each)
    classifier_cache_entries: int = 16  # label sets whose prompt embeddings are kept
    # Host header values accepted; None accepts any (a service bound to a public address).
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS

    @classmethod
    def for_host(cls, host: str, **overrides: object) -> ServiceConfig:
        """The configuration for a service bound to `host`: Host checking on loopback, none elsewhere."""
        allowed = LOOPBACK_HOSTS if is_loopback(host) else None
        return cls(**{"allowed_hosts": allowed, **overrides})  # type: ignore[arg-type]
