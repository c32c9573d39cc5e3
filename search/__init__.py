"""resound's search side: how vectors answer questions (query, similar, classify, evaluation)."""

from search.engine import Engine, Hit

__all__ = ["Engine", "Hit"]
